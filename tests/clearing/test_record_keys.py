"""Rotation of the acquirer's data key reaches clearing's presentments (``citycard.db.record_keys``, on
SQLite and PostgreSQL): the test day staged under version 1 (``tests/clearing/test_day.py``), the key
rotated and a re-seal pass run in small batches, every sealed value of the acquirer's and clearing's tables
is under version 2 and opens to the same PAN or message; the day then clears to the same items and
exceptions as ``test_a_day_of_clearing`` asserts, and a rerun after one more rotation changes nothing. A
presentment re-staged or re-sealed between the pass's read and write is left as the other writer made it;
a sealed PAN that does not open is counted and left alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from citycard.db import Database
from citycard.db.acquirer_repositories import pan_record
from citycard.db.clearing_repositories import ClearingEngine
from citycard.db.clearing_tables import clearing_presentments
from citycard.db.record_keys import SEALED_COLUMNS, reseal_rows, reseal_value
from citycard.issuer.handlers import IssuerService

from tests.acquirer.test_record_keys import versions
from tests.clearing.test_day import DAY, Day, engine, items
from tests.issuer.conftest import Clock

PRESENTMENTS = next(c for c in SEALED_COLUMNS if c.name == "clearing_presentments.pan_sealed")


def _staged(database: Database, banks: IssuerService, clock: Clock, tmp_path: Path) -> ClearingEngine:
    """The test day's records staged (the journal imported, the uploads of the day's windows copied)."""
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    clearing.stage("20261125", clearing.windows(DAY))
    return clearing


def _pans(clearing: ClearingEngine) -> dict[str, str]:
    """Each presentment's PAN, as its sealed value opens (by ref)."""
    p = clearing_presentments.c
    with clearing.database.engine.connect() as c:
        rows = c.execute(select(p.ref, p.terminal_id, p.batch, p.stan, p.pan_sealed)).all()
    return {
        r.ref: clearing.protection.unseal(
            bytes(r.pan_sealed), pan_record(r.terminal_id, r.batch, r.stan)
        ).decode()
        for r in rows
        if r.pan_sealed is not None
    }


def _offline(database: Database) -> list[tuple[str, int, str]]:
    return sorted(
        (i["pan_masked"][-4:], i["amount_fen"], i["source_ref"])
        for i in items(database, "20261125")
        if i["source"] == "offline"
    )


def test_presentments_resealed_clear_to_the_same_items(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    clearing = _staged(database, banks, clock, tmp_path)
    pans = _pans(clearing)
    assert len(pans) >= 10 and set(pans.values()) <= {h.pan for h in day.cards.values()}
    assert set(versions(database, [PRESENTMENTS])[PRESENTMENTS.name]) == {1}

    protection = clearing.protection  # the engine seals under the new version at once
    assert protection.rotate() == 2
    report = reseal_rows(database, protection, batch=2)
    presentments = report.column(PRESENTMENTS.name)
    assert (presentments.resealed, presentments.current, presentments.unreadable) == (len(pans), 0, 0)
    assert report.column("acquirer_uploads.pan_sealed").resealed > 0 and report.unreadable == 0
    assert {n for v in versions(database, list(SEALED_COLUMNS)).values() for n in v} == {2}  # every column
    assert _pans(clearing) == pans

    summary = clearing.run(DAY)  # the same day as tests/clearing/test_day.py clears it, item for item
    want = sorted((pan[-4:], amount) for pan, amounts in day.cleared.items() for amount in amounts)
    assert [(last4, amount) for last4, amount, _ in _offline(database)] == want
    assert summary.offline_count == 7 and summary.offline_fen == sum(a for _, a in want)
    assert sorted(x["reason"] for x in clearing.exceptions()) == sorted(
        [
            "after_loss", "amount_changed", "clone", "duplicate", "fare_refund", "late", "tc_invalid",
            "terminal_changed",
        ]
    )  # fmt: skip
    cleared = _offline(database)

    assert protection.rotate() == 3  # cleared before and after another rotation: the same
    assert reseal_rows(database, protection).column(PRESENTMENTS.name).resealed == len(_pans(clearing))
    assert engine(database, banks, clock).run(DAY) == summary
    assert _offline(database) == cleared
    assert set(versions(database, [PRESENTMENTS])[PRESENTMENTS.name]) == {3}


def test_a_presentment_changed_between_read_and_write_is_left_as_made(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    clearing = _staged(database, banks, clock, tmp_path)
    clearing.protection.rotate()
    wanted = [PRESENTMENTS.table.c[k] for k in (*PRESENTMENTS.key, *PRESENTMENTS.reads)]
    query = select(*wanted, PRESENTMENTS.sealed).where(PRESENTMENTS.sealed.is_not(None)).order_by(wanted[0])
    with database.engine.connect() as c:
        stale = c.execute(query.limit(1)).one()
    assert reseal_rows(database, clearing.protection, columns=[PRESENTMENTS]).resealed > 0  # the other writer
    with database.engine.connect() as c:
        fresh = c.execute(query.limit(1)).one()
    assert fresh.pan_sealed != stale.pan_sealed
    with database.engine.begin() as c:
        assert reseal_value(c, clearing.protection, PRESENTMENTS, stale) == "changed_meanwhile"
    with database.engine.connect() as c:
        assert c.execute(query.limit(1)).one() == fresh


def test_a_sealed_pan_that_does_not_open_is_counted_and_left_alone(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    clearing = _staged(database, banks, clock, tmp_path)
    p = clearing_presentments.c
    with database.engine.begin() as c:  # one presentment's sealed PAN moved onto another record
        first, second = c.execute(
            select(p.ref, p.pan_sealed).where(p.pan_sealed.is_not(None)).order_by(p.ref).limit(2)
        ).all()
        c.execute(
            update(clearing_presentments).where(p.ref == second.ref).values(pan_sealed=first.pan_sealed)
        )
    clearing.protection.rotate()
    report = reseal_rows(database, clearing.protection).column(PRESENTMENTS.name)
    assert report.unreadable == 1 and report.resealed > 0
    with database.engine.connect() as c:
        kept = c.execute(select(p.pan_sealed).where(p.ref == second.ref)).scalar_one()
    assert bytes(kept) == bytes(first.pan_sealed)  # left as it was: loud where clearing reads it
