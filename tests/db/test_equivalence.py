"""The SQL ledger behaves exactly like the in-memory engine (Hypothesis, on SQLite and PostgreSQL).

Random histories (duplicates, reused ids, linked chains with a failing member, pending transfers with
and without timeouts, posts and voids of them, a clock that jumps, expiry sweeps) run through both; after
every step the results, every balance and the journal must be identical and the SQL ledger must sum to
zero.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from sqlalchemy import delete

from citycard.db import Database
from citycard.db.tables import ledger_accounts, ledger_transfers
from citycard.ledger import Account, InMemoryLedger, check_invariants

from tests.ledger.scenarios import ManualClock
from tests.ledger.strategies import Step, accounts, histories


def _reset(db: Database) -> None:
    with db.engine.begin() as connection:
        connection.execute(delete(ledger_transfers))
        connection.execute(delete(ledger_accounts))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(opening=accounts(), steps=histories())
def test_sql_equals_memory(database: Database, opening: list[Account], steps: list[Step]) -> None:
    _reset(database)
    clock = ManualClock()
    now = [clock()]
    memory = InMemoryLedger(lambda: now[0])
    with database.unit_of_work(clock=lambda: now[0]) as uow:
        assert uow.ledger.create_accounts(opening) == memory.create_accounts(opening)
        uow.commit()
    for advance_s, batch in steps:
        clock.advance_s(advance_s)
        now[0] = clock()
        with database.unit_of_work(clock=lambda: now[0]) as uow:
            if batch is None:
                assert uow.ledger.expire_pending_transfers() == memory.expire_pending_transfers()
            else:
                assert uow.ledger.create_transfers(batch) == memory.create_transfers(batch)
            uow.commit()
        check_invariants(memory.state)
        with database.unit_of_work(read_only=True) as uow:
            assert uow.ledger.balances() == memory.balances()
            assert uow.ledger.totals() == memory.totals()
            assert uow.ledger.totals().balanced
    with database.unit_of_work(read_only=True) as uow:
        assert uow.ledger.journal() == memory.journal()
        assert uow.ledger.audit() == memory.audit() == []
