"""The SQL ledger behaves exactly like the in-memory engine (Hypothesis, on SQLite and PostgreSQL).

Random histories (duplicates, reused ids, linked chains with a failing member, pending transfers with
and without timeouts, posts and voids of them, a clock that jumps, expiry sweeps) run through both; after
every step the results, every balance and the journal must be identical and the SQL ledger must sum to
zero.
"""

from __future__ import annotations

from typing import ClassVar

from hypothesis import HealthCheck, given, settings
from sqlalchemy import delete, func, select

from citycard.db import Database, SqlUnitOfWork
from citycard.db.repositories import SqlLedgerRepository
from citycard.db.tables import ledger_account_shards, ledger_accounts, ledger_transfers
from citycard.db.uow import RepositoryFactory
from citycard.ledger import Account, InMemoryLedger, check_invariants

from tests.ledger.scenarios import ManualClock
from tests.ledger.strategies import Step, accounts, histories


def _reset(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(delete(ledger_transfers))
        connection.execute(delete(ledger_account_shards))
        connection.execute(delete(ledger_accounts))


class _ShardingUnitOfWork(SqlUnitOfWork):
    """Every account without a balance rule sharded (codes 1 and 2 are all the strategies make), over 3
    shards so that a history reuses them."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        "ledger": lambda uow: SqlLedgerRepository(
            uow.session, uow.clock, sharded_codes=frozenset({1, 2}), shards=3
        )
    }


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(opening=accounts(), steps=histories())
def test_sql_equals_memory(database: Database, opening: list[Account], steps: list[Step]) -> None:
    _run(database, SqlUnitOfWork, opening, steps)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(opening=accounts(), steps=histories())
def test_sql_with_sharded_accounts_equals_memory(
    database: Database, opening: list[Account], steps: list[Step]
) -> None:
    """The same with every rule-free account sharded (docs/ledger.md): balances, totals, the journal and
    the audit cannot tell."""
    _run(database, _ShardingUnitOfWork, opening, steps)


def _run(
    database: Database, uow_class: type[SqlUnitOfWork], opening: list[Account], steps: list[Step]
) -> None:
    _reset(database)
    clock = ManualClock()
    now = [clock()]
    memory = InMemoryLedger(lambda: now[0])
    with database.unit_of_work(uow_class, clock=lambda: now[0]) as uow:
        assert uow.ledger.create_accounts(opening) == memory.create_accounts(opening)
        uow.commit()
    if uow_class is _ShardingUnitOfWork:  # account 1 (code 1, no rule) at least is sharded
        with database.engine.connect() as connection:
            sharded = connection.execute(
                select(func.count()).where(ledger_accounts.c.shards > 0)
            ).scalar_one()
        assert sharded >= 1
    for advance_s, batch in steps:
        clock.advance_s(advance_s)
        now[0] = clock()
        with database.unit_of_work(uow_class, clock=lambda: now[0]) as uow:
            if batch is None:
                assert uow.ledger.expire_pending_transfers() == memory.expire_pending_transfers()
            else:
                assert uow.ledger.create_transfers(batch) == memory.create_transfers(batch)
            uow.commit()
        check_invariants(memory.state)
        with database.unit_of_work(uow_class, read_only=True) as uow:
            assert uow.ledger.balances() == memory.balances()
            assert uow.ledger.totals() == memory.totals()
            assert uow.ledger.totals().balanced
    with database.unit_of_work(uow_class, read_only=True) as uow:
        assert uow.ledger.journal() == memory.journal()
        assert uow.ledger.audit() == memory.audit() == []
