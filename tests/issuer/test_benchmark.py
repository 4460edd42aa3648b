"""The issuer benchmark's own requests must be approved (a smoke run with tiny counts, no timing)."""

from __future__ import annotations

import pytest

from citycard.db import Database


def test_benchmark_authorizations_are_approved(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import bench_issuer

    monkeypatch.setattr(bench_issuer, "CARDS", 2)
    monkeypatch.setattr(bench_issuer, "AUTHS", 4)
    assert bench_issuer._authorizations(database) > 0  # asserts every answer is an approval
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced
        assert sum(1 for t in uow.ledger.journal(limit=100) if t.amount_fen == 100) == 4
