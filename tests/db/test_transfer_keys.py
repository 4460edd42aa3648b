"""What ``ledger_transfers``'s keys guard after revision 0027, on SQLite and PostgreSQL: no foreign keys to
the accounts (the ledger checks both accounts under its locks, and an account that a transfer names can be
neither deleted nor re-keyed), a pending transfer resolved at most once by a partial unique index, and the
expiry sweep and the pending look-up still walk their (now partial) indexes on PostgreSQL, custom plan or
generic."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from citycard.db import Database, downgrade, migrate
from citycard.db.repositories import _SELECT_DUE, _SELECT_RELATED_TRANSFERS, _insert_or_skip_pg
from citycard.db.tables import ledger_accounts, ledger_transfers
from citycard.ledger import Account, CreateTransferResult, Transfer, TransferFlags

_A = ledger_accounts.c
_T = ledger_transfers.c


def _books(db: Database) -> None:
    """Accounts 1, 2, 3 (3 named by no transfer); transfer 10 (1 → 2), a pending 11 and its post 12."""
    with db.unit_of_work() as uow:
        uow.ledger.create_accounts([Account(1), Account(2), Account(3)])
        hold = Transfer(11, 1, 2, 40, flags=TransferFlags.PENDING, timeout_s=60)
        batch = [Transfer(10, 1, 2, 100), hold, Transfer.post(12, hold, 30)]
        assert uow.ledger.create_transfers(batch) == [CreateTransferResult.OK] * 3
        uow.commit()


def _refused(db: Database, statement: Any) -> None:
    with db.engine.connect() as c, pytest.raises(IntegrityError, match="named by transfers"):
        c.execute(statement)


def test_an_account_named_by_a_transfer_cannot_be_deleted_or_rekeyed(database: Database) -> None:
    _books(database)
    for account in (1, 2):  # the debit side, the credit side
        _refused(database, delete(ledger_accounts).where(_A.id == account))
        _refused(database, update(ledger_accounts).where(_A.id == account).values(id=99))
    with database.engine.begin() as c:
        c.execute(update(ledger_accounts).where(_A.id == 1).values(id=1, user_data=7))  # same id: allowed
        c.execute(update(ledger_accounts).where(_A.id == 3).values(id=4))  # named by nothing
        c.execute(delete(ledger_accounts).where(_A.id == 4))
        ids = c.execute(select(_A.id).order_by(_A.id)).scalars().all()
        assert ids == [1, 2]
        c.execute(delete(ledger_transfers))  # once no transfer names them, accounts may go
        c.execute(delete(ledger_accounts))


def test_a_transfer_of_an_unknown_account_is_refused_by_the_ledger_and_found_by_the_audit(
    database: Database,
) -> None:
    _books(database)
    with database.unit_of_work() as uow:
        results = uow.ledger.create_transfers([Transfer(20, 1, 77, 5), Transfer(21, 77, 2, 5)])
        assert results == [
            CreateTransferResult.CREDIT_ACCOUNT_NOT_FOUND,
            CreateTransferResult.DEBIT_ACCOUNT_NOT_FOUND,
        ]
        assert uow.ledger.audit() == []
        # written past the ledger (no foreign key refuses it now): the audit names the unknown account
        uow.session.execute(
            insert(ledger_transfers).values(
                id=22,
                debit_account_id=1,
                credit_account_id=77,
                amount_fen=5,
                ledger=156,
                code=1,
                flags=0,
                user_data=0,
                timeout_s=0,
                timestamp_ns=1,
            )
        )
        assert uow.ledger.audit() == [1, 77]


def test_a_pending_transfer_is_resolved_once(database: Database) -> None:
    _books(database)
    second_post = {
        "id": 13, "debit_account_id": 1, "credit_account_id": 2, "amount_fen": 10, "pending_id": 11,
        "ledger": 156, "code": 1, "flags": int(TransferFlags.POST_PENDING_TRANSFER), "user_data": 0,
        "timeout_s": 0, "timestamp_ns": 2,
    }  # fmt: skip
    with database.engine.connect() as c, pytest.raises(IntegrityError):
        c.execute(insert(ledger_transfers).values(second_post))
    if database.engine.dialect.name == "postgresql":  # the one-transfer write's ON CONFLICT DO NOTHING
        with database.engine.begin() as c:
            _, transfers = _insert_or_skip_pg()
            assert c.execute(transfers, second_post).rowcount == 0
    with database.engine.begin() as c:  # rows without a pending id never conflict with each other
        for i in (14, 15):
            plain = second_post | {"id": i, "pending_id": None, "flags": 0}
            c.execute(insert(ledger_transfers).values(plain))
        assert c.execute(select(_T.id).where(_T.pending_id == 11)).scalars().all() == [12]


def _plans(c: Connection, sql: str, types: str, values: str) -> list[str]:
    """EXPLAIN of ``sql`` (``$n`` parameters) as a custom plan and as a generic one."""
    plans = []
    c.exec_driver_sql(f"PREPARE probe ({types}) AS {sql}")
    for mode in ("force_custom_plan", "force_generic_plan"):
        c.exec_driver_sql(f"SET LOCAL plan_cache_mode = {mode}")
        plans.append("\n".join(r[0] for r in c.exec_driver_sql(f"EXPLAIN EXECUTE probe ({values})")))
    c.exec_driver_sql("DEALLOCATE probe")
    return plans


def test_the_sweep_and_the_pending_lookup_walk_the_partial_indexes(database: Database) -> None:
    if database.engine.dialect.name != "postgresql":
        pytest.skip("the plans of PostgreSQL queries")
    _books(database)
    with database.engine.begin() as c:
        c.execute(  # enough rows that a sequential scan is no longer the cheapest plan
            text(
                "INSERT INTO ledger_transfers (id, debit_account_id, credit_account_id, amount_fen,"
                " ledger, code, flags, user_data, timeout_s, timestamp_ns)"
                " SELECT 1000 + n, 1, 2, 1, 156, 1, 0, 0, 0, n FROM generate_series(1, 20000) AS n"
            )
        )
        c.exec_driver_sql("ANALYZE ledger_transfers")
        due = str(_SELECT_DUE.compile(dialect=c.dialect)).replace("%(now_ns)s", "$1")
        due = due.replace("%(limit)s", "$2").replace("%(param_1)s", "$2")
        for plan in _plans(c, due, "bigint, bigint", "10, 100"):
            assert "ix_ledger_transfers_expires" in plan, plan
        related = _SELECT_RELATED_TRANSFERS._compile(c).replace("%(ids)s", "$1")
        related = related.replace("%(pending_ids)s", "$2")
        for plan in _plans(c, related, "bigint[], bigint[]", "'{11}', '{11}'"):
            assert "uq_ledger_transfers_pending_id" in plan, plan
            assert "Seq Scan" not in plan, plan


def test_the_revision_keeps_the_transfers_both_ways(database: Database) -> None:
    """0027 up and down over a table with a post of a pending transfer (on SQLite the table is made again:
    the row referring to another must survive the copy with foreign keys on)."""
    downgrade(database.engine, "0026_clearing_outcomes")
    _books(database)
    rows = select(_T.id, _T.pending_id, _T.expires_at_ns).order_by(_T.id)
    with database.engine.connect() as c:
        before = c.execute(rows).all()
    assert [r.pending_id for r in before] == [None, None, 11]
    migrate(database.engine)
    with database.engine.connect() as c:
        assert c.execute(rows).all() == before
    with database.unit_of_work() as uow:
        assert uow.ledger.audit() == []
    _refused(database, delete(ledger_accounts).where(_A.id == 1))
    downgrade(database.engine, "0026_clearing_outcomes")
    with database.engine.connect() as c:
        assert c.execute(rows).all() == before
    migrate(database.engine)
