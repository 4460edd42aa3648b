"""What a ledger batch reads on PostgreSQL, and that reading less changes no result.

A batch that resolves no pending transfer is first decided without reading ``ledger_transfers``: an id that
exists shows as the insert's unique-key conflict (the batch is then read and decided again), and any result
but ok makes the repository read at once, since ``exists`` takes precedence over the balance checks. The
results must be those of the in-memory ledger on both databases. The lock of a batch's accounts looks up
each named id once in ``ledger_accounts`` (the sharded ones are found from their shard rows)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import event

from citycard.db import Database, SqlUnitOfWork
from citycard.db.repositories import _ACCOUNTS_BY_ID, SqlLedgerRepository
from citycard.db.uow import RepositoryFactory
from citycard.ledger import (
    Account,
    AccountFlags,
    CreateTransferResult,
    InMemoryLedger,
    Transfer,
    TransferFlags,
)

from tests.db.dbtargets import KINDS, fresh_database

R = CreateTransferResult
HOT_CODE = 21
FLOATS = range(2, 6)
SOURCE, HOT = 1, 100
FUNDED = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
CLOCK_NS = 1_700_000_000 * 10**9


class ShardingUnitOfWork(SqlUnitOfWork):
    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        "ledger": lambda uow: SqlLedgerRepository(uow.session, uow.clock, sharded_codes=frozenset({HOT_CODE}))
    }


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db


def _opening(ledger: Any) -> None:
    accounts = [Account(SOURCE), Account(HOT, code=HOT_CODE), *(Account(i, flags=FUNDED) for i in FLOATS)]
    ledger.create_accounts(accounts)
    assert ledger.create_transfers([Transfer(10 + i, SOURCE, i, 100) for i in FLOATS]) == [R.OK] * len(FLOATS)


_PENDING = Transfer(70, 2, HOT, 5, flags=TransferFlags.PENDING)
BATCHES = [
    # new ids, all ok: no read
    [Transfer(50, 2, HOT, 10), Transfer(51, 3, HOT, 10)],
    # an id that exists with the same fields, the rest ok: the insert conflicts, read, decided again
    [Transfer(52, 4, HOT, 10), Transfer(50, 2, HOT, 10)],
    # an existing id with other fields behind a transfer that overdraws: read at once
    [Transfer(53, 5, HOT, 1_000), Transfer(51, 3, HOT, 11)],
    # an overdraft of an existing id: "exists" before the balance check
    [Transfer(50, 2, HOT, 10), Transfer(54, 2, HOT, 1_000)],
    # existing ids that would overdraw now: every result fails undecided, nothing is inserted to conflict
    [Transfer(50, 2, HOT, 1_000), Transfer(51, 3, HOT, 1_000)],
    # a linked chain broken by an existing id
    [Transfer(55, 4, HOT, 1, flags=TransferFlags.LINKED), Transfer(52, 4, HOT, 10), Transfer(56, 5, HOT, 1)],
    # a pending transfer and its post in one batch, then a second post of it
    [_PENDING, Transfer.post(71, _PENDING)],
    [Transfer.post(72, _PENDING), Transfer(57, 5, HOT, 1)],
]


def test_batches_read_less_and_decide_as_the_memory_ledger(database: Database) -> None:
    memory = InMemoryLedger(lambda: CLOCK_NS)
    _opening(memory)
    expected = [memory.create_transfers(batch) for batch in BATCHES]
    assert R.EXISTS in expected[1] and R.EXISTS_WITH_DIFFERENT_FIELDS in expected[2]  # the cases are met
    assert expected[4] == [R.EXISTS_WITH_DIFFERENT_FIELDS] * 2
    with database.unit_of_work(ShardingUnitOfWork, clock=lambda: CLOCK_NS) as uow:
        _opening(uow.ledger)
        uow.commit()
    got = []
    for batch in BATCHES:
        with database.unit_of_work(ShardingUnitOfWork, clock=lambda: CLOCK_NS) as uow:
            got.append(uow.ledger.create_transfers(batch))
            uow.commit()
    assert got == expected
    with database.unit_of_work(ShardingUnitOfWork) as uow:
        assert uow.ledger.audit() == []
        stored = uow.ledger.balances()
        assert [(a.id, a.debits_posted, a.credits_posted, a.debits_pending) for a in stored] == [
            (a.id, a.debits_posted, a.credits_posted, a.debits_pending)
            for a in memory.balances(range(1, HOT + 1))
        ]


def _transfer_reads(db: Database, batch: list[Transfer]) -> int:
    """How many statements reading ``ledger_transfers`` ``create_transfers(batch)`` sends."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.unit_of_work(ShardingUnitOfWork, clock=lambda: CLOCK_NS) as uow:
            assert uow.ledger.create_transfers(batch) == [R.OK] * len(batch)
            uow.commit()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return sum(1 for s in statements if re.match(r"\s*SELECT\b.*\bFROM ledger_transfers\b", s, re.S))


def test_a_batch_resolving_no_pending_transfer_reads_no_transfers(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as db:
        with db.unit_of_work(ShardingUnitOfWork, clock=lambda: CLOCK_NS) as uow:
            _opening(uow.ledger)
            uow.commit()
        assert _transfer_reads(db, [Transfer(50 + i, i, HOT, 1) for i in FLOATS]) == 0
        pending = Transfer(60, 2, HOT, 5, flags=TransferFlags.PENDING)
        assert _transfer_reads(db, [pending, Transfer(61, 3, HOT, 1)]) == 0
        assert _transfer_reads(db, [Transfer.post(62, pending), Transfer(63, 3, HOT, 1)]) == 1


def test_the_lock_looks_up_each_named_account_once(tmp_path: Path) -> None:
    """PostgreSQL: one look-up of the named ids in ``ledger_accounts``' primary key (the plain accounts,
    locked); the sharded accounts are joined from their shard rows, not looked up among all ids again."""
    with fresh_database("postgresql", tmp_path) as db:
        with db.unit_of_work(ShardingUnitOfWork, clock=lambda: CLOCK_NS) as uow:
            _opening(uow.ledger)
            uow.commit()
            ids = [SOURCE, HOT, *FLOATS]
            accounts = uow.ledger._select_accounts(uow.session.connection(), ids, lock=True)
            assert [(a.id, a.credits_posted) for a in accounts] == [
                (SOURCE, 0),
                *((i, 100) for i in FLOATS),
                (HOT, 0),
            ]
        with db.engine.connect() as c:
            c.exec_driver_sql("SET enable_seqscan = off")  # as on a table of many accounts
            sql = _ACCOUNTS_BY_ID[True]._compile(c)
            plan = "\n".join(row[0] for row in c.exec_driver_sql(f"EXPLAIN {sql}", {"ids": "{1,2,3,100}"}))
        assert len(re.findall(r"Index Cond: \(id = ANY", plan)) == 1, plan
