"""Fixtures of the network front ends: the issuer's banks (ICBC, BOC) with real cards (tests/issuer), the
switch's routing table for them, and the whole chain on loopback (test acquirer → switch → issuer front ends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from citycard.bootstrap import Issuer, routing_table
from citycard.codec.iso8583 import AuthorizationRequest, Field60, IccData, Message, Tpdu
from citycard.db import Database
from citycard.hosts.issuer import IssuerFrontEnd
from citycard.hosts.switch import SwitchFrontEnd, SwitchLimits
from citycard.hosts.zone import ACQUIRER_LINK, ZoneMac
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import Deposit
from citycard.issuer.handlers import IssuerService
from citycard.net.link import Iso8583Link, LinkLimits
from citycard.switch import RoutingTable

from tests.issuer import conftest as issuer_fixtures
from tests.issuer.conftest import BOC_BIN, ICBC_BIN
from tests.issuer.test_slice import issue_registered

# the fixtures of tests/issuer: a database (SQLite and PostgreSQL), the HSM, the clock, the banks ICBC and BOC
banks = issuer_fixtures.banks
certify_issuer = issuer_fixtures.certify_issuer
clock = issuer_fixtures.clock
database = issuer_fixtures.database
demo_ca = issuer_fixtures.demo_ca
hsm = issuer_fixtures.hsm
service = issuer_fixtures.service
sink = issuer_fixtures.sink
terminal_for = issuer_fixtures.terminal_for

ICBC_ID = "01000001"  # the institution ids the issuer gives its first two banks (ICBC, then BOC)
BOC_ID = "01000002"
TERMINAL = "T0000001"
MERCHANT = "M00000000000001"
ACQUIRER_TPDU = Tpdu(destination=6, source=1)
FAST_LINK = LinkLimits(timeout_s=20.0, min_backoff_s=0.01, max_backoff_s=0.1)


def routing(service: IssuerService, database: Database) -> RoutingTable:
    """The switch's table as ``citycard.bootstrap`` builds it from the issuer's banks and BIN ranges."""
    table = routing_table(Issuer(service, database, Path("/nonexistent")))
    assert [(m.bank_code, m.institution_id) for m in table.members] == [("BOC", BOC_ID), ("ICBC", ICBC_ID)]
    assert dict(table.bins) == {ICBC_BIN: "ICBC", BOC_BIN: "BOC"}
    return table


def id_number(serial: int) -> str:
    """A valid resident ID number (GB 11643-1999 check digit) for holder ``serial`` (0 to 999)."""
    body = f"11010519491231{serial:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def funded(service: IssuerService, bank: str = "ICBC", amount_fen: int = 100_000, holder: int = 2) -> str:
    """A registered, active card of ``bank`` with ``amount_fen`` in its deposit account."""
    pan = issue_registered(service, bank, id_number=id_number(holder))
    service.deposit(Deposit(pan, amount_fen, f"dep-{pan}"))
    return pan


def purchase(
    pan: str,
    field55: bytes,
    amount_fen: int,
    rrn: str,
    *,
    acquirer: str = BOC_ID,
    stan: int = 1,
    pin_block: bytes | None = None,
    processing_code: str = "000000",
    condition_code: str = "00",
    type_code: str = "22",
) -> AuthorizationRequest:
    """A host-leg 0200 (32 and 37 added by the acquirer) for a card's first GENERATE AC."""
    return AuthorizationRequest(
        mti="0200",
        pan=pan,
        processing_code=processing_code,
        amount_fen=amount_fen,
        stan=stan,
        pos_entry_mode="051",
        card_sequence_number="001",
        condition_code=condition_code,
        acquirer_id=acquirer,
        rrn=rrn,
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        currency="156",
        pin_block=pin_block,
        icc=IccData.from_bytes(field55),
        field60=Field60(type_code, 1),
    )


@dataclass
class Chain:
    """The chain; ``zone`` is the acquirer leg's zone MAC (None: the legs carry no MAC)."""

    acquirer: Iso8583Link
    switch: SwitchFrontEnd
    issuers: dict[str, IssuerFrontEnd]
    zone: ZoneMac | None = None

    async def send(self, message: Message, timeout_s: float = 20.0) -> Message:
        """``message`` sent as the acquirer sends it (field 64 under the zone MAC key), its answer's MAC
        checked (every answer but an A0 carries one)."""
        if self.zone is None:
            return await self.acquirer.request(message, timeout_s=timeout_s)
        answer = await self.acquirer.request(self.zone.sign(message), timeout_s=timeout_s)
        assert self.zone.answer_ok(answer), f"the switch's {answer.mti} {answer.response_code} is unMACed"
        return dataclasses.replace(answer, mac=None)


@asynccontextmanager
async def chain(
    service: IssuerService,
    hsm: SoftHsm,
    database: Database,
    *,
    banks: tuple[str, ...] = ("ICBC", "BOC"),
    addresses: dict[str, tuple[str, int]] | None = None,
    limits: SwitchLimits | None = None,
    mac: bool = True,
    reload_s: float | None = None,
) -> AsyncIterator[Chain]:
    """Issuer front ends for ``banks``, the switch linked to them (or to ``addresses``), and a test
    acquirer's link to the switch; all on 127.0.0.1, free ports, stopped on exit. With ``mac`` (as the
    composition root builds them) every leg carries field 64 under its zone MAC key in ``hsm``."""
    table = routing(service, database)
    codes = [m.bank_code for m in table.members]
    zones = {link: ZoneMac.open(hsm, link) for link in (ACQUIRER_LINK, *codes)} if mac else None

    def zone(code: str) -> ZoneMac | None:
        return None if zones is None else zones[code]

    def load() -> RoutingTable:  # as the composition root reads it again (hosts.routing_reload)
        return routing_table(Issuer(service, database, Path("/nonexistent")))

    reload = {} if reload_s is None else {"reload": load, "reload_interval_s": reload_s}
    fronts = {
        code: IssuerFrontEnd(service, code, table, workers=2, zone=zone(code), **reload)  # type: ignore[arg-type]
        for code in banks
    }
    for front in fronts.values():
        await front.start()
    try:
        links = {code: ("127.0.0.1", front.port) for code, front in fronts.items()}
        links.update(addresses or {})
        switch_zones = None if zones is None else {code: zones[code] for code in (ACQUIRER_LINK, *links)}
        async with (
            SwitchFrontEnd(
                table,
                links,
                hsm,
                limits=limits or SwitchLimits(hop_timeout_s=10.0),
                zones=switch_zones,
                **reload,  # type: ignore[arg-type]
            ) as switch,
            Iso8583Link("127.0.0.1", switch.port, tpdu=ACQUIRER_TPDU, limits=FAST_LINK) as acquirer,
        ):
            yield Chain(acquirer, switch, fronts, zone(ACQUIRER_LINK))
    finally:
        for front in fronts.values():
            await front.stop()
