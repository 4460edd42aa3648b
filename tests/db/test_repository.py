"""The shared ledger scenarios and the unit of work on SQL (SQLite file and PostgreSQL schema)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError

from citycard.db import Database, RepositoryFactory, SqlLedgerRepository, SqlUnitOfWork
from citycard.db.tables import ledger_accounts
from citycard.ledger import (
    MAX_BATCH,
    Account,
    CreateAccountResult,
    CreateTransferResult,
    LedgerRepository,
    Transfer,
    TransferFlags,
)

from tests.ledger.scenarios import SCENARIOS, TIMED_SCENARIOS, ManualClock


class CommitEachCall:
    """A LedgerRepository that runs every call in its own unit of work and commits it."""

    def __init__(self, db: Database, clock: ManualClock | None = None) -> None:
        self.db = db
        self.clock = clock or ManualClock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self.db.unit_of_work(clock=self.clock) as uow:
                result = getattr(uow.ledger, name)(*args, **kwargs)
                uow.commit()
                return result

        return call


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_on_sql(database: Database, scenario: Callable[[LedgerRepository], None]) -> None:
    scenario(CommitEachCall(database))  # type: ignore[arg-type]
    with database.unit_of_work() as uow:
        assert uow.ledger.audit() == []
        assert uow.ledger.totals().balanced


def test_audit_finds_a_tampered_balance(database: Database) -> None:
    with database.unit_of_work() as uow:
        uow.ledger.create_accounts([Account(1), Account(2), Account(3)])
        hold = Transfer(2, 1, 3, 40, flags=TransferFlags.PENDING)
        assert (
            uow.ledger.create_transfers([Transfer(1, 1, 2, 100), hold, Transfer.post(3, hold, 30)])
            == [CreateTransferResult.OK] * 3
        )
        assert uow.ledger.audit() == []
        uow.session.execute(
            update(ledger_accounts).where(ledger_accounts.c.id == 2).values(credits_posted=101)
        )
        assert uow.ledger.audit() == [2]
        uow.session.execute(update(ledger_accounts).values(debits_pending=0, credits_pending=0))
        assert uow.ledger.audit() == [2]
        uow.session.execute(update(ledger_accounts).where(ledger_accounts.c.id == 1).values(debits_pending=5))
        assert uow.ledger.audit() == [1, 2]


@pytest.mark.parametrize("scenario", TIMED_SCENARIOS, ids=lambda s: s.__name__)
def test_timed_scenario_on_sql(
    database: Database, scenario: Callable[[LedgerRepository, ManualClock], None]
) -> None:
    clock = ManualClock()
    scenario(CommitEachCall(database, clock), clock)  # type: ignore[arg-type]
    with database.unit_of_work() as uow:
        assert uow.ledger.audit() == []


def test_scenario_in_one_transaction(database: Database) -> None:
    """All scenarios' calls also work inside a single unit of work (reads see the transaction's writes)."""
    with database.unit_of_work() as uow:
        SCENARIOS[5](uow.ledger)  # two-phase post and void
        uow.commit()


def test_leaving_without_commit_rolls_back(database: Database) -> None:
    with database.unit_of_work() as uow:
        assert uow.ledger.create_accounts([Account(1), Account(2)]) == [CreateAccountResult.OK] * 2
    with database.unit_of_work() as uow:
        assert uow.ledger.balances() == []


def test_exception_rolls_back_and_commit_keeps(database: Database) -> None:
    with database.unit_of_work() as uow:
        uow.ledger.create_accounts([Account(1), Account(2)])
        uow.commit()
    with pytest.raises(RuntimeError), database.unit_of_work() as uow:
        assert uow.ledger.create_transfers([Transfer(1, 1, 2, 5)]) == [CreateTransferResult.OK]
        raise RuntimeError("handler failed")
    with database.unit_of_work() as uow:
        assert uow.ledger.journal() == []
        assert uow.ledger.create_transfers([Transfer(1, 1, 2, 5)]) == [CreateTransferResult.OK]
        uow.rollback()
        assert uow.ledger.journal() == []
        assert uow.ledger.create_transfers([Transfer(1, 1, 2, 7)]) == [CreateTransferResult.OK]
        uow.commit()
    with database.unit_of_work() as uow:
        assert [t.amount_fen for t in uow.ledger.journal()] == [7]
        assert uow.ledger.totals().balanced


class _Notes:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self.session = uow.session


class _ExtendedUnitOfWork(SqlUnitOfWork):
    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        **SqlUnitOfWork.repository_factories,
        "notes": _Notes,
    }
    notes: _Notes


def test_unit_of_work_is_extended_by_subclassing(database: Database) -> None:
    with database.unit_of_work(_ExtendedUnitOfWork) as uow:
        assert isinstance(uow, _ExtendedUnitOfWork)
        assert isinstance(uow.ledger, SqlLedgerRepository)
        assert uow.notes.session is uow.session is uow.ledger.session
    assert "notes" not in SqlUnitOfWork.repository_factories


def test_read_only_unit_of_work_reads_beside_a_writer_and_refuses_writes(database: Database) -> None:
    with database.unit_of_work() as uow:
        uow.ledger.create_accounts([Account(1), Account(2)])
        uow.ledger.create_transfers([Transfer(1, 1, 2, 5)])
        uow.commit()
    with database.unit_of_work() as writer:
        assert writer.ledger.create_transfers([Transfer(2, 1, 2, 7)]) == [CreateTransferResult.OK]
        # the writer holds its locks (on SQLite: the database write lock) and has not committed
        with database.unit_of_work(read_only=True) as reader:
            assert [t.id for t in reader.ledger.journal()] == [1]
            assert reader.ledger.totals().debits_posted == 5
        writer.commit()
    with database.unit_of_work(read_only=True) as reader:
        assert [t.id for t in reader.ledger.journal()] == [1, 2]
        with pytest.raises(DBAPIError):
            reader.ledger.create_transfers([Transfer(3, 1, 2, 1)])
    with database.unit_of_work() as uow:  # the same pooled connection writes again afterwards
        assert uow.ledger.create_transfers([Transfer(3, 1, 2, 1)]) == [CreateTransferResult.OK]
        uow.commit()


def test_a_full_batch_fits_the_database_parameter_limits(database: Database) -> None:
    """MAX_BATCH transfers (8,190) in one call, each naming a different pending transfer to post: every
    IN list, insert and update stays within SQLite's and PostgreSQL's bind-parameter limits."""
    n = MAX_BATCH // 2
    with database.unit_of_work() as uow:
        assert (
            uow.ledger.create_accounts([Account(i) for i in range(1, 101)]) == [CreateAccountResult.OK] * 100
        )
        holds = [
            Transfer(i, 1 + i % 100, 1 + (i + 1) % 100, 1, flags=TransferFlags.PENDING)
            for i in range(1, n + 1)
        ]
        posts = [Transfer.post(n + i, hold) for i, hold in enumerate(holds, start=1)]
        assert uow.ledger.create_transfers([*holds, *posts]) == [CreateTransferResult.OK] * (2 * n)
        uow.commit()
    with database.unit_of_work(read_only=True) as uow:
        assert len(uow.ledger.journal(limit=100_000)) == 2 * n
        assert uow.ledger.audit() == [] and uow.ledger.totals().balanced
        assert sum(a.debits_posted for a in uow.ledger.balances()) == n
