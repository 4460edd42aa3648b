"""Sharded ledger accounts (``ledger_account_shards``): a hot account's balance changes are spread over rows
and summed on every read, so balances, totals, the audit and reports show one account whose balance is the
sum of its transfers; concurrent writers credit it without waiting for each other (PostgreSQL)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from sqlalchemy import func, select, text

from citycard.db import Database, SqlUnitOfWork, downgrade, migrate
from citycard.db.repositories import DEFAULT_SHARDS, SqlLedgerRepository
from citycard.db.tables import ledger_account_shards
from citycard.db.uow import RepositoryFactory
from citycard.ledger import (
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)

from tests.db.dbtargets import fresh_database

R = CreateTransferResult
HOT_CODE = 21
HOT = 1  # the sharded account (code 21, no balance rule)
CUSTOMERS = range(2, 8)
FUNDED = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


class ShardingUnitOfWork(SqlUnitOfWork):
    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        "ledger": lambda uow: SqlLedgerRepository(uow.session, uow.clock, sharded_codes=frozenset({HOT_CODE}))
    }


def _setup(db: Database) -> None:
    with db.unit_of_work(ShardingUnitOfWork) as uow:
        accounts = [Account(HOT, code=HOT_CODE), Account(100, code=5)]
        accounts += [Account(i, flags=FUNDED) for i in CUSTOMERS]
        assert uow.ledger.create_accounts(accounts) == [CreateAccountResult.OK] * len(accounts)
        assert uow.ledger.create_transfers([Transfer(i, 100, i, 1_000) for i in CUSTOMERS]) == [R.OK] * 6
        uow.commit()


def _shard_rows(db: Database) -> list[tuple[int, int, int]]:
    with db.engine.connect() as connection:
        s = ledger_account_shards.c
        query = (
            select(s.shard, s.debits_posted, s.credits_posted).where(s.account_id == HOT).order_by(s.shard)
        )
        return [tuple(r) for r in connection.execute(query)]  # type: ignore[misc]


def test_a_sharded_account_reads_as_one_account(database: Database) -> None:
    _setup(database)
    assert len(_shard_rows(database)) == DEFAULT_SHARDS  # created with its shard rows
    with database.unit_of_work(ShardingUnitOfWork) as uow:
        results = uow.ledger.create_transfers(
            [Transfer(1_000 + i, i, HOT, 10 * i) for i in CUSTOMERS]
            + [
                Transfer(2_000, HOT, 2, 5),  # a debit of the sharded account
                Transfer(2_001, 3, HOT, 7, flags=TransferFlags.PENDING),
                Transfer(2_002, 4, HOT, 3, flags=TransferFlags.PENDING),
            ]
        )
        assert results == [R.OK] * 9
        assert uow.ledger.create_transfers([Transfer.post(2_003, _pending(uow, 2_001))]) == [R.OK]
        assert uow.ledger.create_transfers([Transfer.void(2_004, _pending(uow, 2_002))]) == [R.OK]
        uow.commit()
    credited = sum(10 * i for i in CUSTOMERS) + 7
    with database.unit_of_work(ShardingUnitOfWork) as uow:
        (hot,) = uow.ledger.lookup_accounts([HOT])
        assert (hot.debits_posted, hot.credits_posted, hot.debits_pending, hot.credits_pending) == (
            5,
            credited,
            0,
            0,
        )
        assert [a for a in uow.ledger.balances() if a.id == HOT] == [hot]
        assert uow.ledger.totals().balanced
        assert uow.ledger.audit() == []
    # the account's own row kept zeros: every change is in its shard rows, which sum to the balance
    rows = _shard_rows(database)
    assert (sum(r[1] for r in rows), sum(r[2] for r in rows)) == (5, credited)
    with database.engine.connect() as connection:
        own = connection.execute(
            text(f"SELECT debits_posted, credits_posted FROM ledger_accounts WHERE id = {HOT}")
        )
        assert tuple(own.one()) == (0, 0)


def _pending(uow: ShardingUnitOfWork, transfer_id: int) -> Transfer:
    (pending,) = uow.ledger.lookup_transfers([transfer_id])
    return pending


def test_a_retried_transfer_to_a_sharded_account_is_posted_once(database: Database) -> None:
    _setup(database)
    for attempt in range(3):
        with database.unit_of_work(ShardingUnitOfWork) as uow:
            result = uow.ledger.create_transfers([Transfer(5_000, 2, HOT, 40)])
            assert result == [R.OK if attempt == 0 else R.EXISTS]
            uow.commit()
    with database.unit_of_work(ShardingUnitOfWork) as uow:
        assert uow.ledger.create_transfers([Transfer(5_000, 2, HOT, 41)]) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
        (hot, customer) = uow.ledger.lookup_accounts([HOT, 2])
        assert (hot.credits_posted, customer.debits_posted) == (40, 40)
        assert uow.ledger.audit() == []


def test_accounts_with_a_balance_rule_are_never_sharded(database: Database) -> None:
    with database.unit_of_work(ShardingUnitOfWork) as uow:
        uow.ledger.create_accounts([Account(9, code=HOT_CODE, flags=FUNDED), Account(10, code=HOT_CODE)])
        uow.commit()
    with database.engine.connect() as connection:
        counts = connection.execute(text("SELECT id, shards FROM ledger_accounts ORDER BY id")).all()
        assert [tuple(r) for r in counts] == [(9, 0), (10, DEFAULT_SHARDS)]
        rows = connection.execute(select(func.count()).select_from(ledger_account_shards)).scalar_one()
        assert rows == DEFAULT_SHARDS


def test_writers_crediting_a_sharded_account_do_not_wait_for_each_other(tmp_path: Path) -> None:
    """PostgreSQL: A credits the sharded account and keeps its transaction open; B credits it too and
    commits meanwhile (with one row per account, B would wait for A's commit). Both count afterwards."""
    with fresh_database("postgresql", tmp_path) as db:
        _setup(db)
        with db.unit_of_work(ShardingUnitOfWork) as uow_a:
            assert uow_a.ledger.create_transfers([Transfer(7_000, 2, HOT, 11)]) == [R.OK]
            done = threading.Event()
            outcome: list[object] = []

            def writer_b() -> None:
                try:
                    with db.unit_of_work(ShardingUnitOfWork) as uow_b:
                        outcome.extend(uow_b.ledger.create_transfers([Transfer(7_001, 3, HOT, 13)]))
                        uow_b.commit()
                except BaseException as error:
                    outcome.append(error)
                done.set()

            b = threading.Thread(target=writer_b)
            b.start()
            finished_while_a_open = done.wait(timeout=30)
            uow_a.commit()
        b.join(timeout=30)
        assert finished_while_a_open, "B waited for A's transaction"
        assert outcome == [R.OK]
        with db.unit_of_work(ShardingUnitOfWork) as uow:
            (hot,) = uow.ledger.lookup_accounts([HOT])
            assert hot.credits_posted == 24
            assert uow.ledger.audit() == []
        assert len([r for r in _shard_rows(db) if r[2]]) == 2  # two rows took the two credits


def test_migration_shards_existing_settlement_accounts_and_downgrade_folds_them_back(tmp_path: Path) -> None:
    """0010 shards the settlement account of a bank that existed before it, keeping its balance; the
    downgrade adds the shard rows back into the account's own columns."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate(url, "0006_issuer_lookups")
    db = Database.open(url)
    try:
        with db.engine.begin() as connection:
            for account_id, code, flags in ((1, 20, 4), (2, 21, 0), (3, 22, 0), (4, 10, 0)):
                connection.execute(
                    text(
                        "INSERT INTO ledger_accounts VALUES"
                        f" ({account_id}, 156, {code}, {flags}, NULL, 0, 0, 0, 0, 0, 1)"
                    )
                )
            connection.execute(text("INSERT INTO issuer_banks VALUES ('B', 'bank', 1, 2, 3)"))
            connection.execute(
                text(
                    "INSERT INTO ledger_transfers VALUES (9, 4, 2, 50, NULL, 156, 1, 0, 0, 0, 2, NULL, NULL)"
                )
            )
            connection.execute(text("UPDATE ledger_accounts SET credits_posted = 50 WHERE id = 2"))
            connection.execute(text("UPDATE ledger_accounts SET debits_posted = 50 WHERE id = 4"))
        migrate(url)
        with db.unit_of_work(ShardingUnitOfWork) as uow:
            assert uow.ledger.create_transfers([Transfer(10, 4, 2, 25)]) == [R.OK]
            uow.commit()
        with db.engine.connect() as connection:
            shards = connection.execute(text("SELECT id, shards FROM ledger_accounts ORDER BY id")).all()
            assert [tuple(r) for r in shards] == [(1, 0), (2, DEFAULT_SHARDS), (3, 0), (4, 0)]
        with db.unit_of_work(ShardingUnitOfWork) as uow:
            assert uow.ledger.lookup_accounts([2])[0].credits_posted == 75
            assert uow.ledger.audit() == []
        downgrade(db.engine, "0006_issuer_lookups")
        with db.engine.connect() as connection:
            own = connection.execute(
                text("SELECT credits_posted FROM ledger_accounts WHERE id = 2")
            ).scalar_one()
            assert own == 75
    finally:
        db.close()
