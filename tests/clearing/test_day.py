"""A clearing day on SQLite and PostgreSQL, built with the real card, kernel, issuer and acquirer code
(:mod:`tests.clearing.world`): online and offline purchases of two banks' cards at a supermarket (ICBC), a
pharmacy (BOC) and a bus company's validator (ICBC); uploads duplicated, cut in half across the cut-over and
sent in reverse order; a forged TC; a bit flipped in an amount and in a terminal id; a cloned card; a late
upload; a lost card spending offline; a fare a validator refused after the card paid. Items, exceptions and
the ledger are asserted to the fen, the rerun changes nothing, the next day takes what was cut off and what
an operator accepted, and the lost card's EC refund goes through end to end."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from citycard.clearing import ClearingPolicy, ExceptionAction
from citycard.db import Database
from citycard.db.clearing_repositories import ClearingEngine, ExceptionStateError
from citycard.db.clearing_tables import clearing_items
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.soft import DirectoryKeyStore, SoftHsm
from citycard.issuer.commands import (
    AuthorizationKind,
    AuthorizationRequest,
    RefundEcBalance,
    RefundTarget,
    ReportLost,
)
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import CardStateError
from citycard.kernel.config import ExceptionFile

from tests.clearing.world import (
    BUS,
    DAY,
    PHARMACY,
    SUPERMARKET,
    TERMINAL_NOW,
    Holder,
    Till,
    beijing_ns,
    card,
    ec_load,
    online_purchase,
    register,
    till,
)
from tests.issuer import conftest as issuer_fixtures
from tests.issuer.conftest import DAY_NS, Clock, ledger_snapshot

banks = issuer_fixtures.banks
certify_issuer = issuer_fixtures.certify_issuer
clock = issuer_fixtures.clock
database = issuer_fixtures.database
demo_ca = issuer_fixtures.demo_ca
service = issuer_fixtures.service
sink = issuer_fixtures.sink

NEXT_DAY = DAY + dt.timedelta(days=1)
IN_DAY = beijing_ns(dt.datetime(2026, 11, 25, 20, 0))  # uploads received in the day's window
AFTER_CUTOVER = beijing_ns(dt.datetime(2026, 11, 26, 1, 0))  # ... and after it (the next day's)


@pytest.fixture
def hsm(tmp_path: Path) -> SoftHsm:
    """The banks' HSM on a key store in a folder (a child process opens it in the crash test)."""
    return SoftHsm(bytes(range(32)), DirectoryKeyStore(tmp_path / "keys"))


@pytest.fixture
def day(
    banks: IssuerService, database: Database, sink: Any, clock: Clock, demo_ca: Any, tmp_path: Path
) -> Any:
    return build_day(banks, database, sink, clock, demo_ca, tmp_path)


class Day:
    """What the test day did, to compute every expected figure from."""

    def __init__(self) -> None:
        self.cards: dict[str, Holder] = {}
        self.tills: dict[str, Till] = {}
        self.cleared: dict[str, list[int]] = {}  # PAN -> offline amounts expected cleared on DAY
        self.entries: dict[str, Any] = {}


def build_day(
    banks: IssuerService, database: Database, sink: Any, clock: Clock, demo_ca: Any, tmp_path: Path
) -> Day:
    d = Day()
    register(database, clock)
    a = d.cards["a"] = card(banks, sink, "ICBC", 2, 100_000)
    b = d.cards["b"] = card(banks, sink, "BOC", 3, 100_000)
    lost = d.cards["lost"] = card(banks, sink, "ICBC", 4, 100_000)
    k = d.cards["k"] = card(banks, sink, "BOC", 5, 100_000)
    for name, amount in (("a", 10_000), ("b", 5_000), ("lost", 3_000), ("k", 4_000)):
        ec_load(banks, d.cards[name], amount, f"load-{name}")
    # online: purchases at the supermarket (ICBC) and the pharmacy (BOC), and a refund of part of one
    online_purchase(banks, a, 2_345, "on-a-1", SUPERMARKET)
    online_purchase(banks, b, 3_000, "on-b-1", PHARMACY)
    refund = AuthorizationRequest(
        "rf-b-1", AuthorizationKind.REFUND, b.pan, b.psn, 500, b"", terminal_id=PHARMACY[3],
        merchant_id=PHARMACY[0], original_request_id="on-b-1",
    )  # fmt: skip
    assert banks.authorize(refund).approved

    shop = d.tills["shop"] = till(tmp_path, SUPERMARKET, demo_ca, hsm=banks.hsm)
    pharmacy = d.tills["pharmacy"] = till(tmp_path, PHARMACY, demo_ca, hsm=banks.hsm)
    bus = d.tills["bus"] = till(tmp_path, BUS, demo_ca, validator=True, hsm=banks.hsm)
    e = d.entries
    # a late TC first: the pharmacy's terminal made it on 1 November, uploaded only today
    pharmacy.pos.clock = lambda: dt.datetime(2026, 11, 1, 9, 0)
    e["late"] = pharmacy.buy(a, 400)
    pharmacy.pos.clock = lambda: TERMINAL_NOW
    e["a1"] = shop.buy(a, 1_250)
    e["b1"] = shop.buy(b, 800)
    e["a2"] = shop.buy(a, 300)
    e["b2"] = pharmacy.buy(b, 1_500)
    e["a3"] = pharmacy.buy(a, 700)  # uploaded after the cut-over: the next day's
    e["fa"] = bus.fare(a, 200)
    e["fb"] = bus.fare(b, 200)
    # card k on the validator's exception file: the fare is refused after the card paid in its GPO
    config = bus.pos.config
    bus.pos.config = replace(config, exception_file=ExceptionFile(frozenset({k.pan}), TERMINAL_NOW, 60))
    e["double"] = bus.fare(k, 200)
    bus.pos.config = config
    assert e["double"].state == "refund"
    # the clone: a copy of card k's chip taken now spends the same ATC as the card itself
    clone = Holder(k.pan, copy.deepcopy(k.chip), "BOC")
    e["k1"] = shop.buy(k, 900)
    e["k2"] = pharmacy.buy(clone, 650)
    assert e["k1"].atc == e["k2"].atc
    # the lost card: reported lost at 17:00, spends offline at 23:00 (the terminal had no fresh deny list)
    banks.report_lost(ReportLost(lost.pan))
    shop.pos.clock = lambda: dt.datetime(2026, 11, 25, 23, 0)
    e["lost"] = shop.buy(lost, 1_000)
    shop.pos.clock = lambda: TERMINAL_NOW

    # the uploads: the supermarket's batch cut in half and sent second half first, one of them twice and
    # once more under another STAN; the pharmacy's with a bit flipped in one amount; the validator's
    # with a bit flipped in the terminal id of one fare; a forged TC
    up = IN_DAY
    for name in ("a2", "k1", "lost"):
        assert shop.upload(database, e[name], up)
    for name in ("a1", "b1"):
        assert shop.upload(database, e[name], up + 1)
    assert not shop.upload(database, e["a1"], up + 2)  # the same upload again: kept once
    assert shop.upload(database, e["a1"], up + 3, stan=99)  # the same TC under another STAN
    assert pharmacy.upload(database, e["late"], up)
    flipped = e["b2"].amount_fen ^ 0x100
    assert pharmacy.upload(database, e["b2"], up, amount_fen=flipped)
    assert pharmacy.upload(database, e["k2"], up)
    assert pharmacy.upload(database, e["a3"], AFTER_CUTOVER)
    forged = bytearray.fromhex(e["b1"].field55)
    at = forged.index(bytes.fromhex("9F2608")) + 3
    forged[at : at + 8] = bytes(8)
    assert shop.upload(database, e["b1"], up, stan=98, field55=bytes(forged))
    assert bus.upload(database, e["fa"], up)
    assert bus.upload(database, e["fb"], up, terminal_id="BUS00003")  # '1' ^ 0x02 = '3'
    assert bus.upload(database, e["double"], up)
    # the journal exports of the supermarket and the validator (the pharmacy's reach clearing by upload only)
    for t in (shop, bus):
        t.export(tmp_path / "exports")
    d.cleared = {
        a.pan: [1_250, 300, 200],
        b.pan: [800, 200],
        k.pan: [900],
        lost.pan: [1_000],
    }
    return d


def engine(database: Database, banks: IssuerService, clock: Clock, **kw: Any) -> ClearingEngine:
    return ClearingEngine(
        database,
        banks.hsm,
        ClearingPolicy(),
        clock=clock,
        record_offline_clearing=banks.record_offline_clearing,
        **kw,
    )


def items(database: Database, day: str) -> list[dict[str, Any]]:
    with database.engine.connect() as c:
        query = (
            select(clearing_items)
            .where(clearing_items.c.clearing_date == day)
            .order_by(clearing_items.c.source_ref)
        )
        return [dict(r._mapping) for r in c.execute(query)]


def balances(database: Database, service: IssuerService) -> dict[str, int]:
    """The EC float of each card and the banks' network settlement accounts (credit balances)."""
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        out = {}
        for bank in ("ICBC", "BOC"):
            b = uow.banks.get(bank)
            assert b is not None
            (acc,) = uow.ledger.lookup_accounts([b.settlement_account_id])
            out[bank] = acc.credit_balance_fen
        return out


def float_of(database: Database, pan: str) -> int:
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        c = uow.cards.get(pan)
        assert c is not None
        (acc,) = uow.ledger.lookup_accounts([c.ec_float_account_id])
        return acc.credit_balance_fen


def test_a_day_of_clearing(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    d = day
    a, b, lost, k = (d.cards[n] for n in ("a", "b", "lost", "k"))
    floats_before = {h.pan: float_of(database, h.pan) for h in d.cards.values()}
    assert floats_before == {a.pan: 10_000, b.pan: 5_000, lost.pan: 3_000, k.pan: 4_000}
    settlement_before = balances(database, banks)
    # the lost card's refund waits for clearing
    clock.advance(8 * DAY_NS)
    with pytest.raises(CardStateError, match="not cleared"):
        banks.refund_ec_balance(RefundEcBalance(lost.pan, RefundTarget.ACCOUNT))
    clock.advance(-8 * DAY_NS)

    clearing = engine(database, banks, clock, batch_size=3)
    assert clearing.import_journal(tmp_path / "exports", DAY) == 8
    summary = clearing.run(DAY)
    assert list(clearing.timings) == ["stage", "decide", "online", "finish"]  # the run's phases, timed
    assert all(seconds >= 0 for seconds in clearing.timings.values())
    online = [i for i in items(database, "20261125") if i["source"] == "online"]
    assert online and clearing.online("20261125", clearing.windows(DAY)) == 0  # each added once, counted
    # offline items: each TC that verifies, once, with the right kind and banks
    offline = [i for i in items(database, "20261125") if i["source"] == "offline"]
    got = sorted(
        (i["pan_masked"][-4:], i["amount_fen"], i["kind"], i["acquirer_bank"], i["issuer_bank"])
        for i in offline
    )
    want = sorted(
        [
            (a.pan[-4:], 1_250, "purchase", "ICBC", "ICBC"),
            (a.pan[-4:], 300, "purchase", "ICBC", "ICBC"),
            (a.pan[-4:], 200, "fare", "ICBC", "ICBC"),
            (b.pan[-4:], 800, "purchase", "ICBC", "BOC"),
            (b.pan[-4:], 200, "fare", "ICBC", "BOC"),
            (k.pan[-4:], 900, "purchase", "ICBC", "BOC"),
            (lost.pan[-4:], 1_000, "purchase", "ICBC", "ICBC"),
        ]
    )
    assert got == want
    assert all(i["sign"] == 1 and i["transfer_id"] and i["atc"] is not None for i in offline)
    assert all("*" in i["pan_masked"] for i in offline)
    # online: the two purchases and the refund, with the acquirer's bank of the merchant
    online = sorted(
        (i["source_ref"], i["kind"], i["sign"], i["amount_fen"], i["acquirer_bank"])
        for i in items(database, "20261125")
        if i["source"] == "online"
    )
    assert online == [
        ("on-a-1", "purchase", 1, 2_345, "ICBC"),
        ("on-b-1", "purchase", 1, 3_000, "BOC"),
        ("rf-b-1", "refund", -1, 500, "BOC"),
    ]
    # exceptions, each with its reason
    queue = {(x["reason"], x["ref"]): x for x in clearing.exceptions()}
    reasons = sorted(r for r, _ in queue)
    assert reasons == sorted(
        [
            "after_loss",  # the lost card: reported, cleared (the cardholder bears it by default)
            "amount_changed",  # the bit flipped in b2's amount
            "clone",  # k2: ATC of k1 with another cryptogram
            "duplicate",  # a1 again under STAN 99
            "fare_refund",  # the double tap
            "late",  # 24 days old
            "tc_invalid",  # the forged TC
            "terminal_changed",  # fb uploaded as from BUS00003 (its journal copy cleared from BUS00001)
        ]
    )
    assert queue[("duplicate", "POS00001/1/99")]["status"] == "reported"
    assert queue[("after_loss", f"POS00001/1/{d.entries['lost'].stan}")]["cleared"] == 1
    # the clone is on BOC's deny list at once
    signed = banks.export_deny_list("BOC")
    assert k.pan in signed.body.decode()
    # the ledger, to the fen: each card's EC float fell by what cleared; the issuers' settlement accounts
    # rose by it (online purchases had posted already at authorization)
    for h in d.cards.values():
        assert float_of(database, h.pan) == floats_before[h.pan] - sum(d.cleared[h.pan])
    after = balances(database, banks)
    assert after["ICBC"] - settlement_before["ICBC"] == sum(d.cleared[a.pan]) + sum(d.cleared[lost.pan])
    assert after["BOC"] - settlement_before["BOC"] == sum(d.cleared[b.pan]) + sum(d.cleared[k.pan])
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced and uow.ledger.audit() == []
    assert summary.offline_count == 7 and summary.offline_fen == 1_250 + 300 + 200 + 800 + 200 + 900 + 1_000
    assert summary.online_count == 2 and summary.online_fen == 5_345
    assert (summary.returns_count, summary.returns_fen) == (1, 500)
    assert summary.status == "cleared"

    # a rerun changes nothing and reports the same
    snapshot = ledger_snapshot(database)
    again = engine(database, banks, clock).run(DAY)
    assert again == summary and ledger_snapshot(database) == snapshot
    assert len(items(database, "20261125")) == 10

    # the operator accepts the late one, cannot accept the forged one, rejects it
    late = queue[("late", "POS00002/1/1")]
    forged = queue[("tc_invalid", "POS00001/1/98")]
    clearing.resolve(late["id"], ExceptionAction.ACCEPT)
    with pytest.raises(ExceptionStateError):
        clearing.resolve(forged["id"], ExceptionAction.ACCEPT)
    clearing.resolve(forged["id"], ExceptionAction.REJECT)
    with pytest.raises(ExceptionStateError):
        clearing.resolve(forged["id"], ExceptionAction.REJECT)  # worked once
    # the next day: the upload cut off by the cut-over, and the accepted exception, each an item
    nxt = engine(database, banks, clock).run(NEXT_DAY)
    refs = sorted(
        (i["source_ref"], i["amount_fen"], i["exception_id"] is not None) for i in items(database, "20261126")
    )
    assert refs == [("POS00002/1/1", 400, True), (f"POS00002/1/{d.entries['a3'].stan}", 700, False)]
    assert nxt.offline_count == 2 and nxt.offline_fen == 1_100
    assert float_of(database, a.pan) == 10_000 - 1_250 - 300 - 200 - 700 - 400

    # the lost card's EC balance, after the cooling period: what the books hold once its offline spending
    # cleared, moved to the holder's account
    clock.advance(8 * DAY_NS)
    refunded = banks.refund_ec_balance(RefundEcBalance(lost.pan, RefundTarget.ACCOUNT))
    assert refunded == 3_000 - 1_000
    assert float_of(database, lost.pan) == 0
