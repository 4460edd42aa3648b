"""The network behind ``citycard pos`` for the terminal's tests, all real and on loopback ports: a citycard
home with the ICBC bank and a registered card issued by ``IssuerService`` (PIN 123456 on the chip and at
the issuer, 500.00 yuan on deposit), the merchant and the terminal ``CITY0001`` registered (its TMK injected
into the platform HSM and its own), then the issuer front end, the switch and the acquirer, each built by
``citycard.bootstrap`` and started on port 0 on an event loop of their own; ``CITYCARD_ACQUIRER`` points at
the acquirer.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from citycard import bootstrap
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.config import settings
from citycard.issuer.commands import (
    ActivateCard,
    AddBank,
    AddBinRange,
    AddProduct,
    Deposit,
    IssueCards,
    SetPin,
)
from citycard.net.loop import new_event_loop

PIN = "123456"
TID, MID = "CITY0001", "CITYMERCHANT001"
T = TypeVar("T")


class Loop:
    """An event loop in a thread of its own for the servers (the terminal's client has its own)."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Chain:
    home: Path
    pan: str
    issuer: bootstrap.Issuer
    port: int
    servers: dict[str, Any]
    loop: Loop

    def status(self) -> dict[str, Any]:
        from citycard.issuer.views import card_status

        with self.issuer.unit_of_work(read_only=True) as uow:
            return card_status(uow, self.pan)

    def uploads(self) -> int:
        """Offline purchases the acquirer keeps for clearing."""
        from citycard.db.acquirer_repositories import AcquirerUnitOfWork

        with self.issuer.database.unit_of_work(AcquirerUnitOfWork, read_only=True) as uow:
            return uow.uploads.count()

    def upload(self, batch: int, stan: int) -> Any:
        from citycard.acquirer import TransactionKey
        from citycard.db.acquirer_repositories import acquirer_unit_of_work
        from citycard.hsm.protection import RecordProtection

        protection = RecordProtection.open(self.issuer.hsm)  # the uploads are sealed under its data key
        with acquirer_unit_of_work(self.issuer.database, protection, read_only=True) as uow:
            return uow.uploads.get(TransactionKey(TID, batch, stan))

    def stop(self, name: str) -> None:
        self.loop.run(self.servers[name].stop())

    def start(self, name: str) -> None:
        self.loop.run(self.servers[name].start())


def _setup(issuer: bootstrap.Issuer, deposit_fen: int) -> str:
    service, hsm = issuer.service, issuer.hsm
    service.add_bank(AddBank("ICBC", "ICBC city branch"))
    service.add_bin_range(AddBinRange("ICBC", "621226"))
    service.add_product(AddProduct("ICBC", "debit-ec", "Citizen card", "621226", registered=True))
    (card,) = service.issue_cards(
        IssueCards("ICBC", "debit-ec", holder_name="Li Ming", id_number="11010519491231002X")
    )
    service.activate(ActivateCard(card.pan))
    service.set_pin(SetPin(card.pan, hsm.encrypt_pin(hsm.get("icbc-zpk"), PIN, card.pan)))
    if deposit_fen:
        service.deposit(Deposit(card.pan, deposit_fen, "dep-1"))
    return card.pan


@contextmanager
def chain(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    deposit_fen: int = 50_000,
    hop_timeout_s: float = 10.0,
    more_banks: Mapping[str, str] | None = None,
) -> Iterator[Chain]:
    """``more_banks``: code -> BIN of banks beside ICBC (each with a registered product ``debit-ec`` and its
    own issuer front end, server ``issuer-<code>``, routed by the switch)."""
    from citycard.hosts.acquirer import AcquirerConfig

    monkeypatch.setenv("CITYCARD_HOME", str(home))
    s = settings()
    with bootstrap.open_issuer(s, create_key=True) as issuer:
        pan = _setup(issuer, deposit_fen)
        center = bootstrap.Center(s, issuer.database, issuer.hsm)
        center.handle(AddMerchant(MID, "City supermarket", "5411", "Downtown", "ICBC"))
        center.handle(AddTerminal(TID, MID))
        loop = Loop()
        servers: dict[str, Any] = {}
        try:
            front = servers["issuer"] = bootstrap.build_issuer_front_end(issuer, "ICBC")
            loop.run(front.start())
            routes = {"ICBC": ("127.0.0.1", front.port)}
            for code, bin_ in (more_banks or {}).items():
                issuer.service.add_bank(AddBank(code, f"{code} city branch"))
                issuer.service.add_bin_range(AddBinRange(code, bin_))
                issuer.service.add_product(
                    AddProduct(code, "debit-ec", "Citizen card", bin_, registered=True)
                )
                other = servers[f"issuer-{code}"] = bootstrap.build_issuer_front_end(issuer, code)
                loop.run(other.start())
                routes[code] = ("127.0.0.1", other.port)
            switch = servers["switch"] = bootstrap.build_switch(issuer, routes)
            loop.run(switch.start())
            config = AcquirerConfig(
                port=0, switch_port=switch.port, hop_timeout_s=hop_timeout_s, saf_idle_s=0.05
            )
            acquirer = servers["acquirer"] = bootstrap.build_acquirer(
                s, issuer.hsm, issuer.database, config=config
            )
            loop.run(acquirer.start())
            monkeypatch.setenv("CITYCARD_ACQUIRER", f"127.0.0.1:{acquirer.port}")
            yield Chain(home, pan, issuer, acquirer.port, servers, loop)
        finally:
            for name in ("acquirer", "switch", "issuer", *(f"issuer-{c}" for c in more_banks or {})):
                if name in servers:
                    with contextlib.suppress(Exception):  # already stopped by the test
                        loop.run(servers[name].stop())
            loop.close()
