"""The end-to-end benchmark's own run, tiny and untimed (PostgreSQL): terminals sign on to the acquirer and
every purchase through acquirer, switch and issuer front end (group commit included) is approved and posted
once, the books balance and the hosts report the database transactions their groups took."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from citycard.db import Database

from tests.db.dbtargets import fresh_database


@pytest.mark.postgres
def test_the_end_to_end_benchmark_runs_and_every_purchase_is_approved_and_posted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import bench_e2e
    from benchmarks.history import HISTORY_ID, HISTORY_TABLES, count_history

    settings = (("TERMINALS", 3), ("SECONDS", 0.5), ("WARM_UP_S", 0.2), ("LAYOUT", "one"), ("HISTORY", 500))
    for name, value in settings:
        monkeypatch.setattr(bench_e2e, name, value)
    with ExitStack() as stack:
        databases: list[Database] = []

        def open_db() -> tuple[Database, Callable[[], None]]:
            databases.append(stack.enter_context(fresh_database("postgresql", tmp_path)))
            return databases[-1], lambda: None

        row = bench_e2e._measure(open_db)  # asserts that every answer is an approval
        assert row.rate > 0 and row.p50_ms <= row.p99_ms
        assert set(row.gc_ms) == {"all hosts and terminals"} and row.gc_ms["all hosts and terminals"] >= 0
        (db,) = databases
        with db.unit_of_work() as uow:
            assert uow.ledger.totals().balanced and uow.ledger.audit() == []
            purchases = [t for t in uow.ledger.journal(limit=100_000) if t.amount_fen == 100]
        with db.unit_of_work() as uow:
            run_sql = uow.session.connection().exec_driver_sql
            approved = run_sql(
                "SELECT count(*) FROM issuer_authorizations WHERE response_code = '00' AND amount_fen = 100"
                f" AND NOT starts_with(request_id, '{HISTORY_ID}')"
            )
            assert approved.scalar_one() == len(purchases) > 0  # one posting per approval, none twice
            # the history the run started with (earlier traffic: the module docstring), there as made
            assert count_history(run_sql) == dict.fromkeys(HISTORY_TABLES, 500)
        # the hosts' groups as reported: every purchase in one issuer transaction, one begun and one answer
        # recorded by the acquirer, each kind's transactions no more than its requests
        kinds = ("issuer authorizations", "acquirer begins", "acquirer answers")
        assert set(row.grouped) == set(kinds)
        for kind in kinds:
            groups, items = row.grouped[kind]
            assert 0 < groups <= items == len(purchases), (kind, groups, items)


def test_the_floor_relays_every_frame_unchanged_through_three_forked_hops() -> None:
    """The e2e benchmark's floor (``benchmarks/relay_floor.py``), tiny: each terminal's frames come back as
    sent (its own assertion), through two relays and an echo, each a process of its own, and the CPU is
    counted for the four processes."""
    from benchmarks.relay_floor import PLACES, measure

    floor = measure(3, warm_up_s=0.1, seconds=0.4)
    assert floor.rate > 0
    assert set(floor.cpu_ms) == {"terminals", *PLACES}
    assert all(ms >= 0 for ms in floor.cpu_ms.values())


def test_the_load_curve_draws_each_bar_to_scale_with_its_target_marked_and_names_the_targets_met() -> None:
    from benchmarks import bench_e2e

    assert bench_e2e._bar(750, 1500, 1500, width=10) == "#####....|"
    assert bench_e2e._bar(1800, 2000, 1500, width=8) == "######|."  # the mark over the bar's cells
    assert bench_e2e._bar(5000, 2000, 1000, width=4) == "##|#"  # beyond the scale: the whole width
    assert bench_e2e._bar(0, 100, 0, width=4) == "|..."

    def row(rate: float, p99_ms: float) -> bench_e2e._Row:
        return bench_e2e._Row(rate, p99_ms / 2, p99_ms, {}, {}, {})

    # each target at its bound is met; just past it is not
    assert list(bench_e2e._met(row(1500, 50.0), 5000).values()) == [True, True, True]
    assert list(bench_e2e._met(row(1499, 50.1), 4996).values()) == [False, True, False]
    assert list(bench_e2e._met(row(1500, 49.0), 5001).values()) == [True, False, True]
    assert bench_e2e._targets(row(700, 41.7), 9000) == (
        "≥ 1,500 auth/s not met (700), ≥ 0.3 of pgbench not met (0.078), p99 ≤ 50 ms met (41.7)"
    )
