"""Chain benchmark: purchase authorizations through the switch and an issuer front end over loopback TCP,
beside the same authorizations made by calling ``IssuerService.authorize`` directly, in the same run on the
same database (the ratio is what the network front ends cost). The front ends are built by
``citycard.bootstrap`` as ``citycard serve`` builds them: field 64 under the zone MAC keys on both legs, the
test acquirer MACing each request and checking each answer under its leg's key as the acquirer does.

``python -m benchmarks chain``. Setup as ``bench_issuer`` (a bank, registered funded cards, ARQCs made
beforehand with the crypto functions); each ISO 8583 0200 goes test acquirer link → switch (routing, a link
per issuer) → issuer front end (thread pool) → the service, and back. SQLite file (WAL); PostgreSQL too when
reachable at ``CITYCARD_TEST_POSTGRES_URL``, its tables starting with ``CITYCARD_BENCH_HISTORY`` rows of
earlier traffic (default 100 000; 0, a fresh database: ``benchmarks/history.py``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import OperationalError

from citycard.bootstrap import Issuer, build_issuer_front_end, build_switch
from citycard.codec.iso8583 import AuthorizationRequest, Field60, IccData, Tpdu
from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hosts.zone import ACQUIRER_LINK, ZoneMac
from citycard.hsm.soft import SoftHsm
from citycard.issuer import commands
from citycard.issuer.commands import ActivateCard, AddBank, AddBinRange, AddProduct, Deposit, IssueCards
from citycard.issuer.handlers import IssuerService
from citycard.net.link import Iso8583Link
from citycard.net.loop import run as run_loop

from .bench_auth import _pgbench, _with_pgbench_database
from .bench_issuer import _field55, _id_number, _postgres, _sqlite
from .history import HISTORY, make_history

__all__ = ["main"]

CARDS = 20
PGBENCH_CLIENTS = 4  # as many as the issuer front end's worker threads
AUTHS = 300
"""Per row: direct, chain one at a time, chain with one request in flight per card."""


def _setup(db: Database) -> tuple[IssuerService, SoftHsm, list[str], str]:
    hsm = SoftHsm(os.urandom(32))
    service = IssuerService(lambda: db.unit_of_work(IssuerUnitOfWork), hsm, time.time_ns)
    bank = service.add_bank(AddBank("BENCH", "benchmark bank"))
    service.add_bin_range(AddBinRange("BENCH", "622000"))
    service.add_product(AddProduct("BENCH", "debit-ec", "bench", "622000"))
    pans = []
    for i in range(CARDS):
        (card,) = service.issue_cards(
            IssueCards("BENCH", "debit-ec", holder_name=f"Holder {i}", id_number=_id_number(i))
        )
        service.activate(ActivateCard(card.pan))
        service.deposit(Deposit(card.pan, 10**10, f"dep-{i}"))
        pans.append(card.pan)
    return service, hsm, pans, bank.institution_id


class _Cards:
    """ARQCs in ATC order per card (the issuer declines an ATC that does not rise)."""

    def __init__(self, hsm: SoftHsm, pans: list[str]) -> None:
        self.hsm, self.pans = hsm, pans
        self.atc = dict.fromkeys(pans, 0)
        self.n = 0

    def field55(self, pan: str) -> bytes:
        self.atc[pan] += 1
        self.n += 1
        return _field55(self.hsm, pan, self.atc[pan], 100, self.n)


def _message(pan: str, f55: bytes, institution: str, rrn: int) -> AuthorizationRequest:
    return AuthorizationRequest(
        mti="0200",
        pan=pan,
        processing_code="000000",
        amount_fen=100,
        stan=rrn % 1_000_000,
        pos_entry_mode="051",
        card_sequence_number="001",
        condition_code="00",
        acquirer_id=institution,
        rrn=f"{rrn:012d}",
        terminal_id="BENCH001",
        merchant_id="BENCH0000000001",
        currency="156",
        icc=IccData.from_bytes(f55),
        field60=Field60("22", 1),
    )


def _direct(service: IssuerService, cards: _Cards) -> float:
    requests = []
    for n in range(AUTHS):
        pan = cards.pans[n % CARDS]
        f55 = cards.field55(pan)
        requests.append(commands.AuthorizationRequest(f"d{n}", "purchase", pan, "01", 100, f55))  # type: ignore[arg-type]
    start = time.perf_counter()
    for req in requests:
        assert service.authorize(req).approved
    return AUTHS / (time.perf_counter() - start)


async def _chain(issuer: Issuer, cards: _Cards, institution: str, first_rrn: int) -> tuple[float, float]:
    per_card = AUTHS // CARDS
    sequential = []
    for n in range(AUTHS):
        pan = cards.pans[n % CARDS]
        sequential.append(_message(pan, cards.field55(pan), institution, first_rrn + n))
    parallel = [
        [
            _message(pan, cards.field55(pan), institution, first_rrn + AUTHS + c * per_card + k)
            for k in range(per_card)
        ]
        for c, pan in enumerate(cards.pans)
    ]
    zone = ZoneMac.open(issuer.hsm, ACQUIRER_LINK)  # the test acquirer MACs as the acquirer does
    async with build_issuer_front_end(issuer, "BENCH", workers=4) as front:
        switch = build_switch(issuer, {"BENCH": ("127.0.0.1", front.port)})
        async with switch, Iso8583Link("127.0.0.1", switch.port, tpdu=Tpdu(6, 1)) as link:
            return await _timed(link, zone, sequential, parallel, per_card)


async def _timed(
    link: Iso8583Link,
    zone: ZoneMac,
    sequential: list[AuthorizationRequest],
    parallel: list[list[AuthorizationRequest]],
    per_card: int,
) -> tuple[float, float]:
    async def send(message: AuthorizationRequest) -> None:
        answer = await link.request(zone.sign(message))  # field 64 made and checked as the acquirer does
        assert answer.approved and zone.answer_ok(answer), answer

    start = time.perf_counter()
    for message in sequential:
        await send(message)
    one_at_a_time = AUTHS / (time.perf_counter() - start)

    async def card(messages: list[AuthorizationRequest]) -> None:
        for message in messages:
            await send(message)

    start = time.perf_counter()
    await asyncio.gather(*(card(m) for m in parallel))
    in_flight = per_card * CARDS / (time.perf_counter() - start)
    return one_at_a_time, in_flight


def _measure(
    name: str, open_db: Callable[[], tuple[Database, Callable[[], None]]]
) -> tuple[str, float, float, float]:
    db, cleanup = open_db()
    try:
        service, hsm, pans, institution = _setup(db)
        if HISTORY and db.engine.dialect.name == "postgresql":
            make_history(db, HISTORY)
        cards = _Cards(hsm, pans)
        direct = _direct(service, cards)
        one, many = run_loop(_chain(Issuer(service, db, Path(".")), cards, institution, 1))
        return name, direct, one, many
    finally:
        db.close()
        cleanup()


def main() -> None:
    rows = [_measure("SQLite (file, WAL)", _sqlite)]
    try:
        rows.append(_measure("PostgreSQL", _postgres))
    except OperationalError as exc:
        print(f"PostgreSQL skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    print(
        f"{AUTHS} purchase authorizations per column over {CARDS} cards (authorizations/s);"
        f" PostgreSQL's tables start with {HISTORY} rows of history each"
    )
    print(f"{'database':<20} {'direct':>8} {'chain, 1':>9} {'ratio':>6} {f'chain, {CARDS}':>10} {'ratio':>6}")
    for name, direct, one, many in rows:
        print(
            f"{name:<20} {direct:>8.0f} {one:>9.0f} {one / direct:>6.2f} {many:>10.0f} {many / direct:>6.2f}"
        )
    if len(rows) == 2:  # issue 8's yardstick: the end-to-end rate beside pgbench's, same server, same run
        pgbench = _with_pgbench_database(lambda database: _pgbench(PGBENCH_CLIENTS, 5, database))
        many = rows[1][3]
        print(
            f"baseline: pgbench one-row UPDATE, {PGBENCH_CLIENTS} clients (the issuer front end's worker"
            f" threads): {pgbench:.0f} tx/s; PostgreSQL chain, {CARDS} in flight: {many / pgbench:.3f} of it"
        )
