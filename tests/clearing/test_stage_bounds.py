"""Staging's batch bounds (``ORDER BY`` the uploads' receipt index ``OFFSET … LIMIT 1``) walk that index in
its order on PostgreSQL even before its statistics know the day's uploads: no plan that reads the rest of
the day and sorts it (what PostgreSQL picks for a freshly written day, per bound: a day's staging then
grows with the square of its size)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text

from citycard.clearing import ClearingPolicy
from citycard.db import Database
from citycard.db.acquirer_tables import acquirer_uploads
from citycard.db.clearing_repositories import STAGE_BATCHES, ClearingEngine, day_text
from citycard.db.clearing_tables import clearing_presentments
from citycard.hsm.soft import SoftHsm

from tests.clearing.world import DAY

UPLOADS = 200
EARLIER = 20_000  # an earlier day's uploads: a table of a few pages is walked in order whatever the plan


def _day_of_uploads(
    database: Database,
) -> tuple[ClearingEngine, dict[str, tuple[int, int]], list[dict[str, Any]]]:
    """PostgreSQL only (else the test is skipped): a clearing engine of batches of two, the day's windows,
    and the day's UPLOADS uploads, stored (returned as rows, in receipt order)."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("the plan of a PostgreSQL query")
    clearing = ClearingEngine(database, SoftHsm(bytes(range(32))), ClearingPolicy(), batch_size=2)
    windows = clearing.windows(DAY)
    start = windows[""][0]
    rows = [
        {"terminal_id": f"T{i % 7:07d}", "batch": 1, "stan": i + 1, "merchant_id": "NOBODY"}
        | {"received_ns": start + 1 + i, "field55": b"", "pan_masked": "", "psn": "", "amount_fen": 1}
        for i in range(UPLOADS)
    ]
    with database.engine.begin() as c:
        c.execute(insert(acquirer_uploads), rows)
    return clearing, windows, rows


@contextmanager
def _plans(database: Database, wanted: Callable[[str], bool]) -> Iterator[list[str]]:
    """The PostgreSQL plans (``EXPLAIN``, on the same connection) of the statements run meanwhile that
    ``wanted`` picks, by their text."""
    plans: list[str] = []

    def explain(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if wanted(statement):
            with cursor.connection.cursor() as other:
                other.execute("EXPLAIN " + statement, parameters)
                plans.append("\n".join(r[0] for r in other.fetchall()))

    event.listen(database.engine, "after_cursor_execute", explain)
    try:
        yield plans
    finally:
        event.remove(database.engine, "after_cursor_execute", explain)


def test_bounds_walk_the_index_before_statistics(database: Database) -> None:
    clearing, windows, rows = _day_of_uploads(database)
    start = windows[""][0]
    with database.engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO acquirer_uploads (terminal_id, batch, stan, merchant_id, received_ns, field55)"
                " SELECT 'OLD00001', 1, n, 'NOBODY', :start - 1000000 + n, ''"
                " FROM generate_series(1, :n) AS n"
            ),
            {"start": start, "n": EARLIER},  # received just before the day's window
        )
    # a bound, in its transaction
    with _plans(database, lambda s: "OFFSET" in s and "FROM acquirer_uploads" in s) as plans:
        assert clearing.stage(day_text(DAY), windows) == UPLOADS
    # batches of STAGE_BATCHES times batch_size, and the last bound found none
    assert len(plans) == UPLOADS // (2 * STAGE_BATCHES) + 1
    for plan in plans:
        assert "Index" in plan and "ix_acquirer_uploads_received" in plan, plan
        assert "Sort" not in plan, plan
    with database.engine.connect() as c:
        staged = c.execute(select(clearing_presentments.c.ref).order_by(clearing_presentments.c.received_ns))
        assert [r.ref for r in staged] == [f"{r['terminal_id']}/1/{r['stan']}" for r in rows]


def test_staging_reads_no_presentment_but_by_its_key(database: Database) -> None:
    """The staging insert skips an upload staged before by its conflict on the primary key, never by a
    join that PostgreSQL may plan as a sequential scan of the presentments per upload: it did so for a day
    whose table had been analyzed empty, and with two staging processes each scan read the rows the other
    was inserting (minutes for a first batch of 10 000)."""
    clearing, windows, _ = _day_of_uploads(database)
    with database.engine.begin() as c:
        c.execute(text("ANALYZE clearing_presentments"))  # statistics: an empty table
    with _plans(database, lambda s: s.startswith("INSERT INTO clearing_presentments")) as plans:
        assert clearing.stage(day_text(DAY), windows) == UPLOADS
        assert clearing.stage(day_text(DAY), windows) == 0  # staged once: the conflicts write nothing
    assert plans
    for plan in plans:
        assert "Conflict Arbiter Indexes: pk_clearing_presentments" in plan, plan
        assert "Scan on clearing_presentments" not in plan, plan
        assert "Scan using pk_clearing_presentments" not in plan, plan
