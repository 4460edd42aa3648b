"""The ledger repository on SQL: the engine of :mod:`citycard.ledger.engine` run over locked rows.

``create_transfers`` locks the accounts a batch names (``SELECT … FOR UPDATE``, in id order, so two writers
never deadlock on PostgreSQL; on SQLite the writer already holds the database from ``BEGIN IMMEDIATE``), loads
the transfers it refers to (on PostgreSQL, for a batch that resolves no pending transfer, only when a first
decision without them needs them: see ``create_transfers``), runs the pure engine on that small
:class:`~citycard.ledger.engine.LedgerState` and writes back the effects. Same code, same results as the
in-memory ledger. If a concurrent writer inserted one of our transfer ids first (a unique-key race not covered
by the account locks, when the same id names other accounts), the insert is undone (``ON CONFLICT DO NOTHING``
for one row, a savepoint for several) and the batch is re-evaluated: it gets ``exists`` or
``exists_with_different_fields``, as it would have serially. This relies on PostgreSQL's default isolation,
READ COMMITTED: each statement after the lock wait sees what the other writer committed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Connection,
    Integer,
    SmallInteger,
    Subquery,
    Table,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
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

from .driver import DriverStatement, execute_driver_command, execute_driver_sql, int_array, run_together
from .tables import BALANCE_COLUMNS, ledger_account_shards, ledger_accounts, ledger_transfers

__all__ = [
    "DEFAULT_SHARDS",
    "ConcurrentWriteConflict",
    "SqlLedgerRepository",
    "account_balances",
    "account_from_row",
    "transfer_from_row",
]

_RACE_RETRIES = 3
DEFAULT_SHARDS = 16
"""Rows a sharded account's balance changes are spread over (more than the writers one host runs)."""
_SHARD_KEY = "citycard_ledger_shard"
_SHARD_NUMBERS = itertools.count()  # each new database connection writes to the next shard


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
"""SQLite: new balances of plain accounts, one row each (PostgreSQL: :data:`_UPDATE_BALANCES_PG`)."""


_S = ledger_account_shards.c
_UPDATE_SHARDS = (
    update(ledger_account_shards)
    .where(_S.account_id == bindparam("s_id"), _S.shard == bindparam("s_shard"))
    .values({name: _S[name] + bindparam(f"s_{name}") for name in BALANCE_COLUMNS})
)


def account_balances(sharded_among: BindParameter[list[int]] | None = None) -> Subquery:
    """Every account with its balances as the ledger sees them: its own columns plus, for a sharded account,
    the sums of its shard rows. Every read of balances goes through this (the repository's, reports').

    ``sharded_among``: only the sharded accounts among those ids, found from their shard rows (every sharded
    account has them) and joined to their accounts — not a look-up of every id in ``ledger_accounts``: the
    lock of a clearing batch names 800 EC float accounts, each on a page of its own, for one or two sharded
    settlement accounts, and a second visit of each page was 40 % of that statement's server time
    (docs/performance.md, ledger, 2026-12-05 evening)."""
    sums_query = select(
        _S.account_id, *(func.sum(_S[name]).cast(BigInteger).label(name) for name in BALANCE_COLUMNS)
    ).group_by(_S.account_id)
    if sharded_among is not None:
        sums_query = sums_query.where(_S.account_id.in_(sharded_among))
    sums = sums_query.subquery("shard_sums")
    every = sharded_among is None  # else the accounts with shard rows only: nothing to coalesce
    columns = [
        (_A[name] + (func.coalesce(sums.c[name], literal_column("0")) if every else sums.c[name])).label(name)
        if name in BALANCE_COLUMNS
        else _A[name]
        for name in (column.key for column in ledger_accounts.c)
    ]
    joined = ledger_accounts.join(sums, sums.c.account_id == _A.id, isouter=every)
    return select(*columns).select_from(joined).subquery("ledger_balances")


_BALANCES = account_balances()
_B = _BALANCES.c
_IDS: BindParameter[list[int]] = bindparam("ids", expanding=True)
_SELECT_ACCOUNTS = select(_BALANCES).where(_B.id.in_(_IDS)).order_by(_B.id)
_LOCKED = (
    select(ledger_accounts)
    .where(_A.id.in_(_IDS), _A.shards == literal_column("0"))
    .order_by(_A.id)
    .with_for_update()
    .cte("locked")
)
_SHARDED = account_balances(sharded_among=_IDS)
_LOCK_ACCOUNTS = union_all(select(_LOCKED), select(_SHARDED).where(_SHARDED.c.shards > literal_column("0")))
"""Accounts by id: the plain ones locked (``FOR UPDATE``, in id order, the locked row's latest version),
the sharded ones read without a lock (they have no balance rule; their writers add to shard rows), found
from their shard rows (:func:`account_balances` ``sharded_among``)."""
_ACCOUNTS_BY_ID = {
    lock: DriverStatement(statement, arrays={"ids": "BIGINT[]"})
    for lock, statement in ((True, _LOCK_ACCOUNTS), (False, _SELECT_ACCOUNTS))
}
"""The two account reads of every transfer, on psycopg directly (``citycard.db.driver``)."""
_SELECT_TRANSFERS = select(ledger_transfers).where(_T.id.in_(_IDS)).order_by(_T.id)
_SELECT_RELATED_TRANSFERS = DriverStatement(
    select(ledger_transfers).where(
        or_(_T.id.in_(_IDS), _T.pending_id.in_(bindparam("pending_ids", expanding=True)))
    ),
    arrays={"ids": "BIGINT[]", "pending_ids": "BIGINT[]"},
)
"""The transfers a batch names (its ids, the pending ids it resolves) and those resolving them: on PostgreSQL
one prepared statement whatever the batch's size (an expanding ``IN`` of a clearing batch's 800 ids costs
SQLAlchemy and psycopg some 20 ms of client CPU to render and bind, each time)."""
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


def _shard(connection: Connection) -> int:
    """This database connection's preferred shard number, fixed per connection so that concurrent writers
    (each on its own connection) tend to add to different rows: the PostgreSQL server process id (distinct
    across client processes), else a number counted in this process."""
    info = connection.info
    if _SHARD_KEY not in info:
        backend_pid = getattr(
            getattr(connection.connection.dbapi_connection, "info", None), "backend_pid", None
        )
        info[_SHARD_KEY] = backend_pid if isinstance(backend_pid, int) else next(_SHARD_NUMBERS)
    return int(info[_SHARD_KEY])


_BALANCE_ROW = ("id", *BALANCE_COLUMNS)
_BALANCE_PARAMS = tuple(f"b_{n}" for n in _BALANCE_ROW)
"""The parameters of a plain account's balance row (:meth:`SqlLedgerRepository._balance_rows`)."""
_SET_BALANCES_PG = """UPDATE ledger_accounts AS a SET {set_accounts}
    FROM unnest({account_arrays}) AS v(id, {balances})
    WHERE a.id = v.id AND a.id = ANY(%(b_id)s::bigint[])""".format(
    set_accounts=", ".join(f"{n} = v.{n}" for n in BALANCE_COLUMNS),
    account_arrays=", ".join(f"%(b_{n})s::bigint[]" for n in _BALANCE_ROW),
    balances=", ".join(BALANCE_COLUMNS),
)
"""PostgreSQL: the new balances of plain accounts (rows of ``b_id``, ``b_debits_pending`` … as arrays). The
``= ANY`` is for the planner: it finds the rows by the primary key, where a join on the arrays alone becomes a
hash join over every account (a sequential scan of the whole table, 20 ms at 50 000 accounts, per batch)."""
_UPDATE_BALANCES_PG = f"WITH updated AS ({_SET_BALANCES_PG} RETURNING a.id) SELECT count(*) FROM updated"
"""PostgreSQL: :data:`_SET_BALANCES_PG` for any number of accounts in one statement (the accounts are locked
already: it waits for no one), with the count of rows it updated."""

_SHARD_ROW = ("id", "shard", *BALANCE_COLUMNS)
_SHARD_PARAMS = tuple(f"s_{n}" for n in _SHARD_ROW)
"""The parameters of a sharded account's change (:meth:`SqlLedgerRepository._balance_rows`)."""
_SET_SHARDS = ", ".join(f"{n} = s.{n} + v.{n}" for n in BALANCE_COLUMNS)
_SHARD_SOURCE = "unnest({arrays}) AS v(id, shard, {balances})".format(
    arrays=", ".join(
        ["%(s_id)s::bigint[]", "%(s_shard)s::smallint[]", *(f"%(s_{n})s::bigint[]" for n in BALANCE_COLUMNS)]
    ),
    balances=", ".join(BALANCE_COLUMNS),
)
"""PostgreSQL: changes of sharded accounts added to their shard rows, the rows (``s_id``, ``s_shard``, the
balance columns) as arrays ``v``: the writes of :data:`_ONE_TRANSFER_PG` and :data:`_UPDATE_SHARDS_PG`."""

_TRANSFER_COLUMNS = tuple(column.key for column in ledger_transfers.c)
_ONE_TRANSFER_PG = """WITH inserted AS (
    INSERT INTO ledger_transfers ({columns}) VALUES ({values}) ON CONFLICT DO NOTHING RETURNING id
), accounts AS (
    {set_balances} AND EXISTS (SELECT FROM inserted) RETURNING a.id
), shards AS (
    UPDATE ledger_account_shards AS s SET {set_shards}
    FROM {shard_source}
    WHERE s.account_id = v.id AND EXISTS (SELECT FROM inserted) AND s.shard = COALESCE((
        SELECT f.shard FROM ledger_account_shards AS f WHERE f.account_id = v.id
        ORDER BY f.shard = v.shard DESC, f.shard LIMIT 1 FOR UPDATE SKIP LOCKED
    ), v.shard)
    RETURNING s.account_id
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM accounts), (SELECT count(*) FROM shards)
""".format(
    columns=", ".join(_TRANSFER_COLUMNS),
    values=", ".join(f"%({name})s" for name in _TRANSFER_COLUMNS),
    set_balances=_SET_BALANCES_PG,
    set_shards=_SET_SHARDS,
    shard_source=_SHARD_SOURCE,
)


def _write_one_transfer_pg(
    connection: Connection,
    transfer: dict[str, Any],
    plain: list[dict[str, int]],
    shards: list[dict[str, int]],
) -> bool:
    """PostgreSQL: insert one transfer and, if it was inserted, write the balances — one round trip (a
    statement of data-modifying CTEs). False if the transfer's id was taken (then nothing is written).

    A sharded account's change goes to the connection's preferred shard row, or, if another transaction
    holds that row, to the first one nobody holds (``FOR UPDATE SKIP LOCKED``); only when all are held
    does it wait, for the preferred one."""
    params: dict[str, Any] = {**transfer, **_arrays(plain, _BALANCE_PARAMS), **_arrays(shards, _SHARD_PARAMS)}
    ((inserted, accounts, sharded),) = execute_driver_sql(connection, _ONE_TRANSFER_PG, params)
    if not inserted:
        return False
    assert (accounts, sharded) == (len(plain), len(shards)), (accounts, sharded, plain, shards)
    return True


def _update_balances(connection: Connection, plain: list[dict[str, int]]) -> None:
    """Write the new balances of plain accounts (:func:`SqlLedgerRepository._balance_rows`): on PostgreSQL
    all in one statement, on SQLite an ``executemany`` (one writer, no round trips)."""
    if connection.dialect.name != "postgresql":
        connection.execute(_UPDATE_BALANCES, plain)
        return
    ((updated,),) = execute_driver_sql(connection, *_balances_pg(plain))
    assert updated == len(plain), (updated, plain)


_UPDATE_SHARDS_PG = f"""WITH updated AS (
    UPDATE ledger_account_shards AS s SET {_SET_SHARDS}
    FROM {_SHARD_SOURCE}
    WHERE s.account_id = v.id AND s.shard = v.shard
    RETURNING 1
) SELECT count(*) FROM updated"""
"""PostgreSQL: :data:`_UPDATE_SHARDS` of any number of shard rows in one statement, with the count of rows
it updated."""


def _update_shards(connection: Connection, shards: list[dict[str, int]]) -> None:
    """Add the changes of sharded accounts to their shard rows (each a distinct account): on PostgreSQL in
    one statement, on SQLite an ``executemany``."""
    if connection.dialect.name != "postgresql":
        connection.execute(_UPDATE_SHARDS, shards)
        return
    ((updated,),) = execute_driver_sql(connection, *_shards_pg(shards))
    assert updated == len(shards), (updated, shards)


def _insert(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys, columns of ``table``): on PostgreSQL one statement
    whatever their number, ``INSERT … SELECT * FROM unnest(<one array per column>)`` (an ``executemany``
    sends one statement per row, each parsed, bound and executed on its own: for a clearing batch of 800
    transfers the larger part of its write); on SQLite an ``executemany`` (one writer, no round trips).

    Either way a unique-key conflict raises ``IntegrityError`` (the caller's savepoint undoes the whole
    statement) and foreign keys are checked as before: on PostgreSQL at the end of the statement, so a
    row may refer to one inserted by the same statement (a post of a pending transfer of the batch)."""
    if connection.dialect.name != "postgresql":
        connection.execute(_INSERTS[table], rows)
        return
    ((inserted,),) = execute_driver_sql(connection, *_insert_pg(table, rows))
    assert inserted == len(rows), (inserted, len(rows))


def _balances_pg(plain: list[dict[str, int]]) -> tuple[str, dict[str, str]]:
    """:data:`_UPDATE_BALANCES_PG` and its parameters for ``plain`` (it returns the count of rows updated)."""
    return _UPDATE_BALANCES_PG, _arrays(plain, _BALANCE_PARAMS)


def _shards_pg(shards: list[dict[str, int]]) -> tuple[str, dict[str, str]]:
    """:data:`_UPDATE_SHARDS_PG` and its parameters for ``shards`` (it returns the count of rows updated)."""
    return _UPDATE_SHARDS_PG, _arrays(shards, _SHARD_PARAMS)


def _insert_pg(table: Table, rows: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """:func:`_insert`'s statement on PostgreSQL and its parameters (it returns the count inserted)."""
    columns = tuple(rows[0])
    return _insert_sql_pg(table, columns), _arrays(rows, columns)


_INSERTS = {table: insert(table) for table in (ledger_accounts, ledger_transfers, ledger_account_shards)}


@cache
def _insert_sql_pg(table: Table, columns: tuple[str, ...]) -> str:
    """The statement of :func:`_insert` on PostgreSQL; the rows go in array order (the order given)."""
    arrays = ", ".join(f"%({name})s::{_pg_integer_type(table.c[name].type)}[]" for name in columns)
    return (
        f"WITH inserted AS (INSERT INTO {table.name} ({', '.join(columns)})"
        f" SELECT * FROM unnest({arrays}) RETURNING 1) SELECT count(*) FROM inserted"
    )


def _pg_integer_type(column_type: object) -> str:
    """PostgreSQL's name of an integer column type (every ledger column is one)."""
    for kind, name in ((BigInteger, "bigint"), (SmallInteger, "smallint"), (Integer, "integer")):
        if isinstance(column_type, kind):
            return name
    raise AssertionError(f"not an integer column: {column_type!r}")


def _arrays(rows: Sequence[dict[str, Any]], names: Iterable[str]) -> dict[str, str]:
    """Each of ``names`` → the array literal of its values in ``rows``, in order."""
    return {name: int_array(row[name] for row in rows) for name in names}


def _decide(
    accounts: Sequence[Account], rows: Sequence[Any], transfers: Sequence[Transfer], now_ns: int
) -> tuple[list[CreateTransferResult], BatchEffects]:
    """The pure engine's decision on ``transfers`` over the accounts read and the transfer ``rows`` read."""
    state = LedgerState.of(accounts, map(transfer_from_row, rows), _expired(rows))
    return create_transfers(state, transfers, now_ns)


def _expired(rows: Iterable[Any]) -> dict[int, int]:
    return {r.id: r.expired_at_ns for r in rows if r.expired_at_ns is not None}


def _valid_ids(ids: Iterable[int]) -> list[int]:
    return sorted(i for i in set(ids) if 0 < i < 2**63)


def _check_limit(where: str, limit: int, most: int) -> None:
    if type(limit) is not int or not 0 < limit <= most:
        raise MalformedLedgerInput(where, f"must be 1..{most}")


class SqlLedgerRepository:
    """A :class:`~citycard.ledger.ports.LedgerRepository` in the transaction of ``session``.

    It never commits: the unit of work does. An account created with a code in ``sharded_codes`` and no
    balance rule (no flags, no limit) is sharded over ``shards`` rows (see ``ledger_account_shards``): a
    bank's network settlement account, which every purchase credits, would otherwise be one row that every
    purchase locks until it commits. Accounts this transaction has locked are remembered with their values,
    so that reading them again (a balance after a transfer) costs no query.
    """

    def __init__(
        self,
        session: Session,
        clock: Clock = time.time_ns,
        *,
        sharded_codes: frozenset[int] = frozenset(),
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        assert 0 < shards < 2**15
        self.session = session
        self.clock = clock
        self.sharded_codes = sharded_codes
        self.shards = shards
        self._locked: dict[int, Account] = {}  # plain accounts locked by this transaction, current values
        self._locked_in: object = None  # ... and that transaction
        self._sharded: dict[int, int] = {}  # account id -> shard count, of the sharded accounts read

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
        # PostgreSQL, a batch that resolves no pending transfer: first decide without reading the transfers.
        # If one of its ids exists, the insert writes nothing (ON CONFLICT DO NOTHING for one transfer, a
        # unique-key error undone by the savepoint for several) and the loop reads and decides again. Any
        # result but ok is checked at once: "exists" takes precedence over the balance checks, so the
        # transfers are read (under the same locks) and, if the batch names one, the batch decided again.
        optimistic = connection.dialect.name == "postgresql" and not pending_ids
        for attempt in range(_RACE_RETRIES + 1):
            accounts = self._select_accounts(connection, account_ids, lock=True)  # lock, then read transfers
            unread = optimistic and attempt == 0
            read = bool(related["ids"]) and not unread
            rows = _SELECT_RELATED_TRANSFERS.rows(connection, related) if read else []
            now_ns = self.clock()
            results, effects = _decide(accounts, rows, transfers, now_ns)
            if unread and related["ids"] and any(r is not CreateTransferResult.OK for r in results):
                rows = _SELECT_RELATED_TRANSFERS.rows(connection, related)
                if rows:  # decided without transfers the batch names: decide again with them
                    results, effects = _decide(accounts, rows, transfers, now_ns)
            if self._write(connection, effects, accounts, last_attempt=attempt == _RACE_RETRIES):
                return results
        raise AssertionError("unreachable: the last attempt raises")

    def _write(
        self,
        connection: Connection,
        effects: BatchEffects,
        read: Sequence[Account] = (),
        *,
        last_attempt: bool,
    ) -> bool:
        """Write ``effects`` (``read``: the accounts as read before); False if a concurrent writer took one
        of our ids first (nothing written then).

        On SQLite the transaction is the only writer (``BEGIN IMMEDIATE``), so no race is possible. On
        PostgreSQL, one new transfer (the common case) is written by one statement
        (:func:`_write_one_transfer_pg`) and one new account with ``ON CONFLICT DO NOTHING``, whose row
        counts tell whether an id was taken meanwhile; several rows are inserted in a savepoint that is
        rolled back on a unique-key race. Either way the batch is then re-evaluated.
        """
        rows = [
            *map(self._new_account_values, effects.new_accounts),
            *map(_transfer_values, effects.new_transfers),
        ]
        table = ledger_accounts if effects.new_accounts else ledger_transfers
        assert not (effects.new_accounts and effects.new_transfers)
        before = {a.id: a for a in read}
        if not rows or connection.dialect.name == "sqlite":  # nothing to insert, or the only writer
            if rows:
                _insert(connection, table, rows)
            self._update(connection, effects, before)
            return True
        assert connection.dialect.name == "postgresql", connection.dialect.name
        if len(effects.new_transfers) == 1 and not (effects.closed_deadlines or effects.expired):
            plain, shards = self._balance_rows(connection, effects, before)
            if not _write_one_transfer_pg(connection, rows[0], plain, shards):
                return self._conflict(last_attempt)
            self._remember(effects)
            return True
        if len(rows) == 1:
            accounts_pg, transfers_pg = _insert_or_skip_pg()
            on_conflict = accounts_pg if effects.new_accounts else transfers_pg
            if connection.execute(on_conflict, rows[0]).rowcount != 1:
                return self._conflict(last_attempt)
            self._update(connection, effects, before)
            return True
        if not (effects.closed_deadlines or effects.expired or effects.new_accounts):
            return self._write_together(connection, effects, before, rows, last_attempt=last_attempt)
        # a savepoint of the driver's own (SAVEPOINT, then RELEASE or ROLLBACK TO): SQLAlchemy's nested
        # transaction costs as much client CPU as the two statements it wraps
        execute_driver_command(connection, "SAVEPOINT ledger_write")
        try:
            _insert(connection, table, rows)
            self._update(connection, effects, before)
        except IntegrityError:
            execute_driver_command(connection, "ROLLBACK TO SAVEPOINT ledger_write")
            return self._conflict(last_attempt)
        execute_driver_command(connection, "RELEASE SAVEPOINT ledger_write")
        return True

    def _write_together(
        self,
        connection: Connection,
        effects: BatchEffects,
        before: dict[int, Account],
        transfers: list[dict[str, Any]],
        *,
        last_attempt: bool,
    ) -> bool:
        """PostgreSQL, several new transfers (nothing else to write but balances): the savepoint, the insert,
        the balance writes and the release sent together (``driver.run_together``: one wait for them all
        instead of one each). A unique-key race on an id fails the insert: the server skips the rest, the
        savepoint is rolled back to and the batch is decided again (:meth:`_write`)."""
        plain, shards = self._balance_rows(connection, effects, before)
        statements: list[tuple[str, dict[str, Any] | None]] = [
            ("SAVEPOINT ledger_write", None),
            _insert_pg(ledger_transfers, transfers),
            *([_balances_pg(plain)] if plain else []),
            *([_shards_pg(shards)] if shards else []),
            ("RELEASE SAVEPOINT ledger_write", None),
        ]
        try:
            results = run_together(connection, statements)
        except IntegrityError:
            execute_driver_command(connection, "ROLLBACK TO SAVEPOINT ledger_write")
            return self._conflict(last_attempt)
        counts = [rows[0][0] for rows in results[1:-1]]  # each statement's rows written
        wanted = [len(transfers), *([len(plain)] if plain else []), *([len(shards)] if shards else [])]
        assert counts == wanted, (counts, wanted)
        self._remember(effects)
        return True

    def _new_account_values(self, account: Account) -> dict[str, Any]:
        sharded = (
            account.code in self.sharded_codes
            and account.flags == AccountFlags.NONE
            and account.limit_fen is None
        )
        return _account_values(account) | {"shards": self.shards if sharded else 0}

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
        rows = _SELECT_RELATED_TRANSFERS.rows(connection, {"ids": ids, "pending_ids": ids})
        state = LedgerState.of(accounts, map(transfer_from_row, rows), _expired(rows))
        expired, effects = expire_pending_transfers(state, now_ns, candidates=ids, limit=limit)
        self._update(connection, effects, {a.id: a for a in accounts})
        return expired

    def _balance_rows(
        self, connection: Connection, effects: BatchEffects, before: dict[int, Account]
    ) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
        """The balance writes of ``effects``: (new values of plain accounts, changes of sharded accounts on
        this connection's shard)."""
        plain, shards = [], []
        for a in effects.updated_accounts.values():
            count = self._sharded.get(a.id)
            if count is None:
                plain.append({"b_id": a.id, **{f"b_{n}": getattr(a, n) for n in BALANCE_COLUMNS}})
                continue
            old = before[a.id]
            change = {f"s_{n}": getattr(a, n) - getattr(old, n) for n in BALANCE_COLUMNS}
            shards.append({"s_id": a.id, "s_shard": _shard(connection) % count, **change})
        return plain, shards

    def _update(self, connection: Connection, effects: BatchEffects, before: dict[int, Account]) -> None:
        plain, shards = self._balance_rows(connection, effects, before)
        if plain:
            _update_balances(connection, plain)
        if shards:
            _update_shards(connection, shards)
        if effects.closed_deadlines:
            connection.execute(_CLOSE_DEADLINES, {"ids": effects.closed_deadlines})
        if effects.expired:
            connection.execute(
                _MARK_EXPIRED, [{"b_id": i, "b_expired_at_ns": at} for i, at in effects.expired.items()]
            )
        new_shards = [
            {"account_id": a.id, "shard": n, **dict.fromkeys(BALANCE_COLUMNS, 0)}
            for a in effects.new_accounts
            if self._new_account_values(a)["shards"]
            for n in range(self.shards)
        ]
        if new_shards:
            _insert(connection, ledger_account_shards, new_shards)
        self._remember(effects)

    def _remember(self, effects: BatchEffects) -> None:
        known = self._known()
        for a in effects.updated_accounts.values():
            if a.id not in self._sharded:
                known[a.id] = a

    def _known(self) -> dict[int, Account]:
        """The plain accounts this transaction holds locked, by id (forgotten when it ends)."""
        transaction = self.session.get_transaction()
        if transaction is not self._locked_in:
            self._locked, self._locked_in = {}, transaction
        return self._locked

    # -- queries ----------------------------------------------------------------------------------------

    def _select_accounts(
        self, connection: Connection, ids: Iterable[int], *, lock: bool = False
    ) -> list[Account]:
        wanted = _valid_ids(ids)
        if not wanted:
            return []
        known = self._known()
        if not lock and all(i in known for i in wanted):
            return [known[i] for i in wanted]
        accounts = []
        for row in _ACCOUNTS_BY_ID[lock].rows(connection, {"ids": wanted}):
            account = account_from_row(row)
            accounts.append(account)
            if row.shards:
                self._sharded[row.id] = row.shards
            elif lock:
                known[row.id] = account
        accounts.sort(key=lambda a: a.id)
        return accounts

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
        query = select(_BALANCES).where(_B.id > after_id).order_by(_B.id).limit(limit)
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
            _B.id, _B.debits_pending, _B.debits_posted, _B.credits_pending, _B.credits_posted
        ).order_by(_B.id)
        for account_id, *stored in connection.execute(stored_balances):
            if stored != expected.pop(account_id, [0, 0, 0, 0]):
                wrong.append(account_id)
        return sorted([*wrong, *expected])

    def totals(self) -> Totals:
        row = self.session.execute(
            select(
                func.coalesce(func.sum(_B.debits_pending), 0),
                func.coalesce(func.sum(_B.debits_posted), 0),
                func.coalesce(func.sum(_B.credits_pending), 0),
                func.coalesce(func.sum(_B.credits_posted), 0),
            )
        ).one()
        return Totals(*(int(v) for v in row))
