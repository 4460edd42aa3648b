"""The clone check reads a bounded part of a card's history (``ClearingEngine._seen``) and decides as if it
had read all of it: a card with months of TCs, an ATC reused from long ago, a counter going back."""

from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import insert, select

from citycard.clearing import ClearingPolicy, ExceptionReason, Outcome
from citycard.clearing.rules import CardFacts, OfflineRecord, SeenTc, classify
from citycard.clearing.tc import TcData
from citycard.db import Database
from citycard.db.acquirer_repositories import card_shard
from citycard.db.clearing_repositories import ClearingEngine
from citycard.db.clearing_tables import clearing_seen_tcs
from citycard.issuer.handlers import IssuerService

from tests.clearing.test_day import engine
from tests.clearing.world import DAY
from tests.issuer.conftest import Clock

PAN, PSN = "6212345678901234566", "01"
FIRST_DAY = DAY - dt.timedelta(days=240)  # eight months of TCs before the day


def _history(database: Database, clearing: ClearingEngine) -> dict[int, SeenTc]:
    """Two TCs a day for 240 days, odd ATCs 1, 3, …, 959, dates rising with the ATC (as kept by clearing)."""
    rng = random.Random(7)
    fingerprint = clearing.protection.pan_fingerprint(PAN)
    history: dict[int, SeenTc] = {}
    rows = []
    for i in range(480):
        atc, day = 2 * i + 1, FIRST_DAY + dt.timedelta(days=i // 2)
        tc = SeenTc(atc, rng.randbytes(8), "POS00001", 100 + i, day, f"POS00001/{i // 2}/{i}")
        history[atc] = tc
        rows.append(
            {
                "card_shard": card_shard(fingerprint),
                "pan_fingerprint": fingerprint,
                "pan_masked": "621234******4566",
                "psn": PSN,
                "atc": atc,
                "cryptogram": tc.cryptogram.hex().upper(),
                "terminal_id": tc.terminal_id,
                "amount_fen": tc.amount_fen,
                "txn_date": tc.txn_date.strftime("%Y%m%d"),
                "ref": tc.ref,
            }
        )
    with database.engine.begin() as c:
        c.execute(insert(clearing_seen_tcs), rows)
    return history


def _record(n: int, atc: int, day: dt.date, cryptogram: bytes) -> OfflineRecord:
    tc = TcData(cryptogram, atc, 250, day, b"")
    return OfflineRecord(f"POS00001/900/{n}", PAN, PSN, tc, True, 250, "POS00001", True, 0)


def _decide(
    database: Database, clearing: ClearingEngine, records: list[OfflineRecord], everything: bool = False
) -> tuple[list[tuple[Outcome, ExceptionReason | None]], int]:
    """The verdicts of ``records`` over what ``_seen`` reads (or, ``everything``, the card's whole history),
    and the number of TCs read."""
    fingerprint = clearing.protection.pan_fingerprint(PAN)
    with database.engine.connect() as c:
        if everything:
            t = clearing_seen_tcs
            seen = {
                (PAN, r.psn, r.atc): SeenTc(
                    r.atc,
                    bytes.fromhex(r.cryptogram),
                    r.terminal_id,
                    r.amount_fen,
                    dt.datetime.strptime(r.txn_date, "%Y%m%d").date(),
                    r.ref,
                )
                for r in c.execute(select(t).where(t.c.pan_fingerprint == fingerprint))
            }
        else:
            wanted = {(PAN, PSN): {r.tc.atc for r in records if r.tc is not None}}
            seen = clearing._seen(c, {PAN: fingerprint}, wanted)
    read = len(seen)
    verdicts = classify(records, seen, {PAN: CardFacts(None)}, ClearingPolicy(), DAY)
    return [(v.outcome, v.reason) for v in verdicts], read


def test_long_history_read_bounded_and_clones_still_caught(
    database: Database, banks: IssuerService, clock: Clock
) -> None:
    clearing = engine(database, banks, clock)
    history = _history(database, clearing)
    top = history[959]
    # the day's next TC: read the card's last TCs only, and cleared
    verdicts, read = _decide(database, clearing, [_record(1, 961, DAY, b"\x11" * 8)])
    assert verdicts == [(Outcome.CLEAR, None)] and read <= 3
    # an ATC of five months ago spent again with another cryptogram: a clone, reading 3 TCs of 480
    verdicts, read = _decide(database, clearing, [_record(2, 301, DAY, b"\x22" * 8)])
    assert verdicts == [(Outcome.EXCEPTION, ExceptionReason.CLONE)] and read <= 3
    # ... and the same TC again is a duplicate, not a clone
    same = history[301]
    verdicts, read = _decide(database, clearing, [_record(3, 301, same.txn_date, same.cryptogram)])
    assert verdicts == [(Outcome.EXCEPTION, ExceptionReason.DUPLICATE)]
    # an unused ATC from months ago dated today: the counter went back (higher ATCs on earlier days)
    verdicts, read = _decide(database, clearing, [_record(4, 300, DAY, b"\x33" * 8)])
    assert verdicts == [(Outcome.EXCEPTION, ExceptionReason.CLONE)] and read <= 3
    # a higher ATC than any, dated before the last TC: the counter went back too
    early = top.txn_date - dt.timedelta(days=3)
    verdicts, read = _decide(database, clearing, [_record(5, 970, early, b"\x44" * 8)])
    assert verdicts == [(Outcome.EXCEPTION, ExceptionReason.CLONE)] and read <= 3
    # an unused ATC between two old ones, on their date: not a clone (late, as it is old)
    between = history[299].txn_date
    verdicts, read = _decide(database, clearing, [_record(6, 300, between, b"\x55" * 8)])
    assert verdicts == [(Outcome.EXCEPTION, ExceptionReason.LATE)] and read <= 3


def test_bounded_read_decides_as_the_whole_history(
    database: Database, banks: IssuerService, clock: Clock
) -> None:
    clearing = engine(database, banks, clock)
    history = _history(database, clearing)
    rng = random.Random(11)
    clones = 0
    for trial in range(150):
        records = []
        for n in range(rng.randrange(1, 5)):
            atc = rng.randrange(1, 1000) if rng.random() < 0.7 else rng.randrange(955, 975)
            old = history.get(atc)
            if old is not None and rng.random() < 0.3:
                records.append(_record(10 * trial + n, atc, old.txn_date, old.cryptogram))
                continue
            day = FIRST_DAY + dt.timedelta(days=rng.randrange(0, 250))
            records.append(_record(10 * trial + n, atc, day, rng.randbytes(8)))
        bounded, read = _decide(database, clearing, records)
        whole, _ = _decide(database, clearing, records, everything=True)
        assert bounded == whole, records
        assert read <= 35 * len(records)  # at most _ATC_RUN_GAP + 3 per TC, of 480 in the history
        clones += (Outcome.EXCEPTION, ExceptionReason.CLONE) in whole
    assert clones > 20
