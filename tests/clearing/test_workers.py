"""Clearing in several processes (PostgreSQL): the test day cleared by two worker processes — the first
attempt with each worker killed before its second batch commits, then run again — gives exactly what one
process gives on a copy of the same database: every presentment's outcome, item, exception, TC remembered,
deny-list entry, ledger balance and transfer, and byte-identical settlement files."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from citycard.db import Database, drop_schema, migrate
from citycard.db.clearing_repositories import ClearingWorkerError
from citycard.db.clearing_tables import (
    clearing_exceptions,
    clearing_items,
    clearing_outcomes,
    clearing_presentments,
    clearing_runs,
    clearing_seen_tcs,
)
from citycard.db.issuer_tables import issuer_cards, issuer_deny_list
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.db.tables import metadata
from citycard.issuer.handlers import IssuerService

from tests.clearing.test_day import DAY, engine
from tests.conftest import POSTGRES_URL
from tests.issuer.conftest import Clock
from tests.settlement.test_end_to_end import settle_into

pytestmark = pytest.mark.xdist_group("clearing-workers")


def _copy(source: Database) -> tuple[Database, str]:
    """A new schema migrated like ``source``'s, holding the same rows (sequences moved past them)."""
    schema = f"clearing_copy_{uuid.uuid4().hex[:8]}"
    migrate(POSTGRES_URL, schema=schema)
    with source.engine.connect() as c:
        origin = c.execute(text("SELECT current_schema()")).scalar_one()
    with source.engine.begin() as c:
        for table in reversed(metadata.sorted_tables):  # rows the migrations seeded
            c.execute(text(f'DELETE FROM "{schema}"."{table.name}"'))
        for table in metadata.sorted_tables:
            c.execute(text(f'INSERT INTO "{schema}"."{table.name}" SELECT * FROM "{origin}"."{table.name}"'))
        serials = c.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = :s AND column_default LIKE 'nextval%'"
            ),
            {"s": schema},
        ).all()
        for table_name, column in serials:
            c.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('\"{schema}\".\"{table_name}\"', '{column}'), "
                    f'COALESCE((SELECT max("{column}") FROM "{schema}"."{table_name}"), 0) + 1, false)'
                )
            )
    return Database.open(POSTGRES_URL, schema=schema), schema


def _rows(database: Database, table: Any, key: tuple[str, ...], drop: tuple[str, ...] = ()) -> list[Any]:
    with database.engine.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(select(table))]
    return sorted(
        ({k: v for k, v in r.items() if k not in drop} for r in rows), key=lambda r: tuple(r[k] for k in key)
    )


_ITEM_ID = re.compile(rb"^(D,(?:[A-Z]+,)?)[0-9]+,", re.MULTILINE)
"""A file row's clearing item number: the items' insertion order, which differs between processes (and
the files list the items in that order): the files are compared as their sets of lines without it."""
_TIMES = ("opened_ns", "resolved_ns", "added_ns", "removed_ns")  # the test clock moves at every reading


def _state(database: Database, files: Path) -> dict[str, Any]:
    exceptions = _rows(database, clearing_exceptions, ("ref",), drop=_TIMES)
    ref_of = {e.pop("id"): e["ref"] for e in exceptions}
    items = _rows(database, clearing_items, ("source", "source_ref"), drop=("id",))
    for item in items:
        item["exception_id"] = ref_of.get(item["exception_id"])
    return {
        # a journal row's PAN is sealed by the clearing that finds its card: another random IV in each
        "presentments": _rows(database, clearing_presentments, ("ref",), drop=("pan_sealed",)),
        "outcomes": _rows(database, clearing_outcomes, ("clearing_date", "ref")),
        "items": items,
        "exceptions": exceptions,
        "tcs": _rows(database, clearing_seen_tcs, ("pan_fingerprint", "psn", "atc")),
        "runs": _rows(database, clearing_runs, ("clearing_date",), drop=("started_ns", "finished_ns")),
        "deny": _rows(database, issuer_deny_list, ("bank_code", "pan"), drop=_TIMES),
        "cleared_marks": _cleared_marks(database),
        "ledger": _ledger(database),
        "files": {  # the manifest is the files' hashes
            p.name: sorted(_ITEM_ID.sub(rb"\1#,", p.read_bytes()).splitlines())
            for p in files.iterdir()
            if p.name != "MANIFEST"
        },
    }


def _cleared_marks(database: Database) -> dict[str, int]:
    """Each card's mark of its offline transactions cleared, as ``ClearingEngine.record_cleared`` sets it:
    the lost and closed cards' marks are the issuer's (``RecordOfflineClearing``), whose service here is the
    original database's for both runs, and are left out."""
    ic = issuer_cards
    query = select(ic.c.pan, ic.c.offline_cleared_until_ns).where(ic.c.status.not_in(("lost", "closed")))
    with database.engine.connect() as c:
        return {pan: mark for pan, mark in c.execute(query)}


def _ledger(database: Database) -> Any:
    """Totals, every account's balances and every transfer (without the clock's timestamps)."""
    with database.unit_of_work() as uow:
        accounts = [replace(a, timestamp_ns=0) for a in uow.ledger.balances()]
        transfers = sorted((replace(t, timestamp_ns=0) for t in uow.ledger.journal(limit=100_000)), key=str)
        return uow.ledger.totals(), accounts, transfers


def _kill_after_first_batch() -> Any:
    written = 0

    def fault(point: str) -> None:
        nonlocal written
        if point == "batch-written":
            written += 1
            if written == 2:  # the worker's second batch dies before its commit
                os._exit(3)

    return fault


def test_two_processes_clear_exactly_as_one(
    banks: IssuerService, database: Database, clock: Clock, day: Any, tmp_path: Path
) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("clearing runs in several processes on PostgreSQL only (SQLite has one writer)")
    engine(database, banks, clock).import_journal(tmp_path / "exports", DAY)
    copy, schema = _copy(database)
    try:
        one = engine(copy, banks, clock, batch_size=1)
        assert one.run(DAY).status == "cleared"
        killed = engine(database, banks, clock, batch_size=1, workers=2, fault=_kill_after_first_batch())
        with pytest.raises(ClearingWorkerError, match="exited with 3"):
            killed.run(DAY)
        assert killed.summary(DAY).status == "running"
        progress: list[tuple[int, int]] = []
        two = engine(database, banks, clock, batch_size=1, workers=2)
        assert two.run(DAY, progress=lambda done, total: progress.append((done, total))) == one.summary(DAY)
        assert progress and progress[-1][0] == progress[-1][1]
        for db, folder in ((copy, tmp_path / "one"), (database, tmp_path / "two")):
            uow = partial(db.unit_of_work, SettlementUnitOfWork)
            settle_into(folder, uow, "2026-11-25", clock)
        a, b = _state(database, tmp_path / "two"), _state(copy, tmp_path / "one")
        assert a == b
        assert len(a["files"]) > 3 and a["items"] and a["exceptions"] and a["deny"]
        assert any(a["cleared_marks"].values())  # the day's cards marked, each by its shard's process
    finally:
        copy.close()
        drop_schema(POSTGRES_URL, schema)
