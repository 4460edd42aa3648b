"""The ``auth`` benchmark's own run, tiny and untimed (PostgreSQL): its clients' purchases are approved and
the books balance (its own assertions), on tables that start with the history made before the clients
start (``benchmarks/history.py``), there as made when they start."""

from __future__ import annotations

from typing import Any

import pytest

from citycard.db import Database


@pytest.mark.postgres
def test_the_auth_benchmark_runs_on_tables_that_start_with_history(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import bench_auth
    from benchmarks.history import HISTORY_TABLES, count_history, make_history

    seen: dict[str, int] = {}

    def history_then_count(db: Database, rows: int) -> None:
        make_history(db, rows)
        with db.engine.connect() as connection:
            seen.update(count_history(connection.exec_driver_sql))

    settings: tuple[tuple[str, Any], ...] = (
        ("HISTORY", 300),
        ("make_history", history_then_count),
        ("CARDS_PER_CLIENT", 2),
        ("REQUESTS_PER_CLIENT", 12),
    )
    for name, value in settings:
        monkeypatch.setattr(bench_auth, name, value)
    row = bench_auth._authorizations(2, 0.2)  # asserts every answer an approval and the books balanced
    assert seen == dict.fromkeys(HISTORY_TABLES, 300)
    assert row.clients == 2 and row.auths_per_s > 0 and row.p50_ms <= row.p99_ms
    assert row.round_trips > 0 and row.cpu_ms > 0
