"""The ledger repository on SQL: the engine of :mod:`citycard.ledger.engine` run over locked rows.

``create_transfers`` locks the accounts a batch names (``SELECT … FOR UPDATE``, in id order, so two
writers never deadlock on PostgreSQL; on SQLite the writer already holds the database from
``BEGIN IMMEDIATE``), loads the transfers it refers to, runs the pure engine on that small
:class:`~citycard.ledger.engine.LedgerState` and writes back the effects. Same code, same results as the
in-memory ledger. If a concurrent writer inserted one of our transfer ids first (a unique-key race not
covered by the account locks, when the same id names other accounts), the insert is undone (``ON CONFLICT DO
NOTHING`` for one row, a savepoint for several) and the batch is re-evaluated: it gets ``exists`` or
``exists_with_different_fields``, as it would have serially. This relies on PostgreSQL's default
isolation, READ COMMITTED: each statement after the lock wait sees what the other writer committed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from citycard.ledger.engine import (
    MAX_JOURNAL,
    BatchEffects,
    LedgerState,
    Totals,
    check_batch,
    create_accounts,
    create_transfers,
    expire_pending_transfers,
)
from citycard.ledger.model import (
    MAX_BATCH,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    MalformedLedgerInput,
    Transfer,
    TransferFlags,
)
from citycard.ledger.ports import Clock

from .tables import ledger_accounts, ledger_transfers

__all__ = ["ConcurrentWriteConflict", "SqlLedgerRepository", "account_from_row", "transfer_from_row"]

_RACE_RETRIES = 3


class ConcurrentWriteConflict(RuntimeError):
    """Concurrent writers took this batch's ids in each of ``_RACE_RETRIES`` attempts (run it again)."""


_A = ledger_accounts.c
_T = ledger_transfers.c


def account_from_row(row: Any) -> Account:
    return Account(
        id=row.id,
        ledger=row.ledger,
        code=row.code,
        flags=AccountFlags(row.flags),
        limit_fen=row.limit_fen,
        user_data=row.user_data,
        debits_pending=row.debits_pending,
        debits_posted=row.debits_posted,
        credits_pending=row.credits_pending,
        credits_posted=row.credits_posted,
        timestamp_ns=row.timestamp_ns,
    )


def transfer_from_row(row: Any) -> Transfer:
    return Transfer(
        id=row.id,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount_fen=row.amount_fen,
        pending_id=row.pending_id or 0,
        ledger=row.ledger,
        code=row.code,
        flags=TransferFlags(row.flags),
        user_data=row.user_data,
        timeout_s=row.timeout_s,
        timestamp_ns=row.timestamp_ns,
    )


def _account_values(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "ledger": a.ledger,
        "code": a.code,
        "flags": int(a.flags),
        "limit_fen": a.limit_fen,
        "user_data": a.user_data,
        "debits_pending": a.debits_pending,
        "debits_posted": a.debits_posted,
        "credits_pending": a.credits_pending,
        "credits_posted": a.credits_posted,
        "timestamp_ns": a.timestamp_ns,
    }


def _transfer_values(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "debit_account_id": t.debit_account_id,
        "credit_account_id": t.credit_account_id,
        "amount_fen": t.amount_fen,
        "pending_id": t.pending_id or None,
        "ledger": t.ledger,
        "code": t.code,
        "flags": int(t.flags),
        "user_data": t.user_data,
        "timeout_s": t.timeout_s,
        "timestamp_ns": t.timestamp_ns,
        "expires_at_ns": t.expires_at_ns,
        "expired_at_ns": None,
    }


_UPDATE_BALANCES = (
    update(ledger_accounts)
    .where(_A.id == bindparam("b_id"))
    .values(
        debits_pending=bindparam("b_debits_pending"),
        debits_posted=bindparam("b_debits_posted"),
        credits_pending=bindparam("b_credits_pending"),
        credits_posted=bindparam("b_credits_posted"),
    )
)


_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_SELECT_ACCOUNTS = select(ledger_accounts).where(_A.id.in_(_IDS)).order_by(_A.id)
_LOCK_ACCOUNTS = _SELECT_ACCOUNTS.with_for_update()
_SELECT_TRANSFERS = select(ledger_transfers).where(_T.id.in_(_IDS)).order_by(_T.id)
_SELECT_RELATED_TRANSFERS = select(ledger_transfers).where(
    or_(_T.id.in_(_IDS), _T.pending_id.in_(bindparam("pending_ids", expanding=True)))
)
_CLOSE_DEADLINES = update(ledger_transfers).where(_T.id.in_(_IDS)).values(expires_at_ns=None)
_MARK_EXPIRED = (
    update(ledger_transfers)
    .where(_T.id == bindparam("b_id"))
    .values(expires_at_ns=None, expired_at_ns=bindparam("b_expired_at_ns"))
)
_SELECT_DUE = (
    select(ledger_transfers)
    .where(_T.expires_at_ns <= bindparam("now_ns"))
    .order_by(_T.expires_at_ns, _T.id)
    .limit(bindparam("limit"))
)
_INSERT_ACCOUNTS = insert(ledger_accounts)
_INSERT_TRANSFERS = insert(ledger_transfers)


@cache
def _insert_or_skip_pg() -> tuple[Any, Any]:
    """PostgreSQL, one row: an id (or a pending id) that a concurrent writer inserted first is skipped (row
    count 0) instead of raising an error that would abort the transaction. Built on first use: importing
    SQLAlchemy's PostgreSQL dialect costs every SQLite command some 70 ms."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    accounts, transfers = (
        pg_insert(table).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
        for table in (ledger_accounts, ledger_transfers)
    )
    return accounts, transfers


def _expired(rows: Iterable[Any]) -> dict[int, int]:
    return {r.id: r.expired_at_ns for r in rows if r.expired_at_ns is not None}


def _valid_ids(ids: Iterable[int]) -> list[int]:
    return sorted(i for i in set(ids) if 0 < i < 2**63)


def _check_limit(where: str, limit: int, most: int) -> None:
    if type(limit) is not int or not 0 < limit <= most:
        raise MalformedLedgerInput(where, f"must be 1..{most}")


class SqlLedgerRepository:
    """A :class:`~citycard.ledger.ports.LedgerRepository` in the transaction of ``session``.

    It never commits: the unit of work does.
    """

    def __init__(self, session: Session, clock: Clock = time.time_ns) -> None:
        self.session = session
        self.clock = clock

    # -- commands ---------------------------------------------------------------------------------------

    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        check_batch(accounts, Account)
        connection = self.session.connection()
        for attempt in range(_RACE_RETRIES):
            state = LedgerState.of(self._select_accounts(connection, {a.id for a in accounts}, lock=True), ())
            results, effects = create_accounts(state, accounts, self.clock())
            if self._write(connection, effects, last_attempt=attempt == _RACE_RETRIES - 1):
                return results
        raise AssertionError("unreachable: the last attempt raises")

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]:
        check_batch(transfers, Transfer)
        connection = self.session.connection()
        account_ids = {t.debit_account_id for t in transfers} | {t.credit_account_id for t in transfers}
        pending_ids = _valid_ids(t.pending_id for t in transfers)
        related = {"ids": _valid_ids([*(t.id for t in transfers), *pending_ids]), "pending_ids": pending_ids}
        for attempt in range(_RACE_RETRIES):
            accounts = self._select_accounts(connection, account_ids, lock=True)  # lock, then read transfers
            rows = list(connection.execute(_SELECT_RELATED_TRANSFERS, related)) if related["ids"] else []
            state = LedgerState.of(accounts, map(transfer_from_row, rows), _expired(rows))
            results, effects = create_transfers(state, transfers, self.clock())
            if self._write(connection, effects, last_attempt=attempt == _RACE_RETRIES - 1):
                return results
        raise AssertionError("unreachable: the last attempt raises")

    def _write(self, connection: Connection, effects: BatchEffects, *, last_attempt: bool) -> bool:
        """Write ``effects``; False if a concurrent writer took one of our ids first (nothing written then).

        On SQLite the transaction is the only writer (``BEGIN IMMEDIATE``), so no race is possible. On
        PostgreSQL, one new row (the common case: one transfer per call) is inserted with ``ON CONFLICT DO
        NOTHING`` and its row count tells whether an id was taken meanwhile; several rows are inserted in a
        savepoint that is rolled back on a unique-key race. Either way the batch is then re-evaluated.
        """
        rows = [*map(_account_values, effects.new_accounts), *map(_transfer_values, effects.new_transfers)]
        insert_statement = _INSERT_ACCOUNTS if effects.new_accounts else _INSERT_TRANSFERS
        assert not (effects.new_accounts and effects.new_transfers)
        if not rows or connection.dialect.name == "sqlite":  # nothing to insert, or the only writer
            if rows:
                connection.execute(insert_statement, rows)
            self._update(connection, effects)
            return True
        assert connection.dialect.name == "postgresql", connection.dialect.name
        if len(rows) == 1:
            accounts_pg, transfers_pg = _insert_or_skip_pg()
            on_conflict = accounts_pg if effects.new_accounts else transfers_pg
            if connection.execute(on_conflict, rows[0]).rowcount != 1:
                return self._conflict(last_attempt)
            self._update(connection, effects)
            return True
        savepoint = connection.begin_nested()
        try:
            if rows:
                connection.execute(insert_statement, rows)
            self._update(connection, effects)
        except IntegrityError:
            savepoint.rollback()
            return self._conflict(last_attempt)
        savepoint.commit()
        return True

    @staticmethod
    def _conflict(last_attempt: bool) -> bool:
        if last_attempt:
            raise ConcurrentWriteConflict(f"concurrent writers took this batch's ids {_RACE_RETRIES} times")
        return False

    def expire_pending_transfers(self, *, limit: int = MAX_BATCH) -> list[int]:
        """Expire the pending transfers whose timeout has passed (earliest first, at most ``limit``)."""
        if type(limit) is not int or not 0 < limit <= MAX_BATCH:
            raise MalformedLedgerInput("expire.limit", f"must be 1..{MAX_BATCH}")
        connection = self.session.connection()
        now_ns = self.clock()
        due = [
            transfer_from_row(r) for r in connection.execute(_SELECT_DUE, {"now_ns": now_ns, "limit": limit})
        ]
        if not due:
            return []
        ids = [t.id for t in due]
        accounts = self._select_accounts(
            connection, [a for t in due for a in (t.debit_account_id, t.credit_account_id)], lock=True
        )
        # read again after the locks: a concurrent post or void of one of them has committed by now
        rows = list(connection.execute(_SELECT_RELATED_TRANSFERS, {"ids": ids, "pending_ids": ids}))
        state = LedgerState.of(accounts, map(transfer_from_row, rows), _expired(rows))
        expired, effects = expire_pending_transfers(state, now_ns, candidates=ids, limit=limit)
        self._update(connection, effects)
        return expired

    @staticmethod
    def _update(connection: Connection, effects: BatchEffects) -> None:
        if effects.updated_accounts:
            connection.execute(
                _UPDATE_BALANCES,
                [
                    {
                        "b_id": a.id,
                        "b_debits_pending": a.debits_pending,
                        "b_debits_posted": a.debits_posted,
                        "b_credits_pending": a.credits_pending,
                        "b_credits_posted": a.credits_posted,
                    }
                    for a in effects.updated_accounts.values()
                ],
            )
        if effects.closed_deadlines:
            connection.execute(_CLOSE_DEADLINES, {"ids": effects.closed_deadlines})
        if effects.expired:
            connection.execute(
                _MARK_EXPIRED, [{"b_id": i, "b_expired_at_ns": at} for i, at in effects.expired.items()]
            )

    # -- queries ----------------------------------------------------------------------------------------

    @staticmethod
    def _select_accounts(connection: Connection, ids: Iterable[int], *, lock: bool = False) -> list[Account]:
        wanted = _valid_ids(ids)
        if not wanted:
            return []
        rows = connection.execute(_LOCK_ACCOUNTS if lock else _SELECT_ACCOUNTS, {"ids": wanted})
        return [account_from_row(r) for r in rows]

    def lookup_accounts(self, account_ids: Iterable[int]) -> list[Account]:
        return self._select_accounts(self.session.connection(), account_ids)

    def lookup_transfers(self, transfer_ids: Iterable[int]) -> list[Transfer]:
        wanted = _valid_ids(transfer_ids)
        if not wanted:
            return []
        rows = self.session.connection().execute(_SELECT_TRANSFERS, {"ids": wanted})
        return [transfer_from_row(r) for r in rows]

    def balances(
        self, account_ids: Iterable[int] | None = None, *, after_id: int = 0, limit: int = 10_000
    ) -> list[Account]:
        _check_limit("balances.limit", limit, 100_000)
        if account_ids is not None:
            return [a for a in self.lookup_accounts(account_ids) if a.id > after_id][:limit]
        query = select(ledger_accounts).where(_A.id > after_id).order_by(_A.id).limit(limit)
        return [account_from_row(r) for r in self.session.connection().execute(query)]

    def journal(
        self,
        *,
        account_id: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 1000,
    ) -> list[Transfer]:
        _check_limit("journal.limit", limit, MAX_JOURNAL)
        query = select(ledger_transfers)
        if account_id is not None:
            query = query.where(or_(_T.debit_account_id == account_id, _T.credit_account_id == account_id))
        if since_ns is not None:
            query = query.where(_T.timestamp_ns >= since_ns)
        if until_ns is not None:
            query = query.where(_T.timestamp_ns < until_ns)
        if after is not None:
            after_ns, after_id = after
            query = query.where(
                or_(_T.timestamp_ns > after_ns, and_(_T.timestamp_ns == after_ns, _T.id > after_id))
            )
        query = query.order_by(_T.timestamp_ns, _T.id).limit(limit)
        return [transfer_from_row(r) for r in self.session.connection().execute(query)]

    def audit(self) -> list[int]:
        """Ids of accounts whose stored balances differ from the sums of their transfers (SQL aggregates).

        The same rule as :func:`citycard.ledger.engine.recompute_balances`: posted = plain transfers and
        posts; pending = pending transfers that no post or void refers to. Empty when the books agree.
        """
        pending = _T.flags.op("&")(int(TransferFlags.PENDING)) != 0
        resolved = select(_T.pending_id).where(_T.pending_id.is_not(None))
        open_pending = and_(pending, _T.id.not_in(resolved), _T.expired_at_ns.is_(None))
        posted = _T.flags.op("&")(int(TransferFlags.PENDING | TransferFlags.VOID_PENDING_TRANSFER)) == 0
        expected: dict[int, list[int]] = {}
        connection = self.session.connection()
        for side, offset in ((_T.debit_account_id, 0), (_T.credit_account_id, 2)):
            query = select(
                side,
                func.coalesce(func.sum(case((open_pending, _T.amount_fen), else_=0)), 0),
                func.coalesce(func.sum(case((posted, _T.amount_fen), else_=0)), 0),
            ).group_by(side)
            for account_id, pending_sum, posted_sum in connection.execute(query):
                sums = expected.setdefault(account_id, [0, 0, 0, 0])
                sums[offset], sums[offset + 1] = int(pending_sum), int(posted_sum)
        wrong = []
        stored_balances = select(
            _A.id, _A.debits_pending, _A.debits_posted, _A.credits_pending, _A.credits_posted
        ).order_by(_A.id)
        for account_id, *stored in connection.execute(stored_balances):
            if stored != expected.pop(account_id, [0, 0, 0, 0]):
                wrong.append(account_id)
        return sorted([*wrong, *expected])

    def totals(self) -> Totals:
        row = self.session.execute(
            select(
                func.coalesce(func.sum(_A.debits_pending), 0),
                func.coalesce(func.sum(_A.debits_posted), 0),
                func.coalesce(func.sum(_A.credits_pending), 0),
                func.coalesce(func.sum(_A.credits_posted), 0),
            )
        ).one()
        return Totals(*(int(v) for v in row))
