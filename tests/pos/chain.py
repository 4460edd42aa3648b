"""The network behind ``citycard pos`` for the command-line tests: a citycard home with the ICBC bank, a
registered card issued by the real ``IssuerService`` (PIN 123456 on the chip and at the issuer, 500.00 yuan
on deposit), the terminal ``CITY0001`` with its TMK injected into its own HSM, and an acquirer listening on
a loopback port (``CITYCARD_ACQUIRER`` points at it) that answers with the issuer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from citycard import bootstrap
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

from tests.pos.loopback_acquirer import LoopbackAcquirer, inject_tmk, serving

PIN = "123456"
TID = "CITY0001"


@dataclass
class Chain:
    home: Path
    pan: str
    acquirer: LoopbackAcquirer
    issuer: bootstrap.Issuer
    port: int

    def status(self) -> dict[str, object]:
        from citycard.issuer.views import card_status

        with self.issuer.unit_of_work(read_only=True) as uow:
            return card_status(uow, self.pan)


@contextmanager
def chain(home: Path, monkeypatch: pytest.MonkeyPatch, *, deposit_fen: int = 50_000) -> Iterator[Chain]:
    monkeypatch.setenv("CITYCARD_HOME", str(home))
    s = settings()
    with bootstrap.open_issuer(s, create_key=True) as issuer:
        service = issuer.service
        service.add_bank(AddBank("ICBC", "ICBC city branch"))
        service.add_bin_range(AddBinRange("ICBC", "621226"))
        service.add_product(AddProduct("ICBC", "debit-ec", "Citizen card", "621226", registered=True))
        (card,) = service.issue_cards(
            IssueCards("ICBC", "debit-ec", holder_name="Li Ming", id_number="11010519491231002X")
        )
        service.activate(ActivateCard(card.pan))
        hsm = issuer.hsm
        service.set_pin(SetPin(card.pan, hsm.encrypt_pin(hsm.get("icbc-zpk"), PIN, card.pan)))
        if deposit_fen:
            service.deposit(Deposit(card.pan, deposit_fen, "dep-1"))
        inject_tmk(hsm, bootstrap.terminal_hsm(s, TID, create=True), TID)
        acquirer = LoopbackAcquirer(service, hsm)
        with serving(acquirer) as port:
            monkeypatch.setenv("CITYCARD_ACQUIRER", f"127.0.0.1:{port}")
            yield Chain(home, card.pan, acquirer, issuer, port)
