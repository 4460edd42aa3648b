"""Statements of the authorization hot path run on psycopg itself, under the session's transaction.

SQLAlchemy builds and compiles a statement once; on PostgreSQL :class:`DriverStatement` then sends its SQL
text straight to the psycopg connection under the session (server-side prepared, rows as plain tuples
named by a class made once per statement), without SQLAlchemy's execution layer — its result objects,
type processors and cursor description cost about a third of an authorization's client CPU. On SQLite,
or with any other driver, it runs through SQLAlchemy as before, so both give the same rows.

The transaction is still the session's: psycopg opens it on the first statement and the unit of work
commits or rolls it back. The engine's ``before_cursor_execute`` listeners still see every statement (the
round-trip counts of ``benchmarks/bench_auth.py`` and ``tests/db/test_round_trips.py``), and a driver
error is raised as SQLAlchemy's (``DBAPIError.instance``: ``IntegrityError``, ``OperationalError`` …), so
``uow.is_retryable`` and the callers see what they saw before.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, Final

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

__all__ = [
    "BEGIN",
    "DriverStatement",
    "UnnestRows",
    "array_literal",
    "bytes_array",
    "copy_rows",
    "execute_driver_command",
    "execute_driver_sql",
    "int_array",
    "run_together",
    "text_array",
]


class DriverStatement:
    """A SQLAlchemy Core statement with result columns (a ``SELECT`` or a ``… RETURNING``), compiled once
    per dialect. ``arrays`` names its expanding ``IN`` parameters and their PostgreSQL array type
    (``{"ids": "BIGINT[]"}``): on PostgreSQL ``IN (…)`` becomes ``= ANY(%(ids)s::BIGINT[])``, one prepared
    statement whatever the list's length."""

    def __init__(self, statement: Any, *, arrays: Mapping[str, str] | None = None) -> None:
        self.statement = statement
        self.arrays = dict(arrays or {})
        self.row: Any = _row_class(list(statement.exported_columns.keys()))
        self._sql: str | None = None
        self._defaults: dict[str, Any] = {}

    def _compile(self, connection: Connection) -> str:
        compiled = self.statement.compile(dialect=connection.dialect)
        sql: str = compiled.string
        for name, array_type in self.arrays.items():
            placeholder = f"IN (__[POSTCOMPILE_{name}])"
            assert placeholder in sql, (name, sql)
            sql = sql.replace(placeholder, f"= ANY(%({name})s::{array_type})")
        assert "POSTCOMPILE" not in sql, sql
        self._defaults = {k: v for k, v in compiled.params.items() if v is not None}
        self._sql = sql
        return sql

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Every row, each with the statement's column names as attributes."""
        if connection.dialect.driver != "psycopg":
            return [self.row._make(r) for r in connection.execute(self.statement, dict(params))]
        return self._named(_run(connection, *self._sent(connection, params)))

    def rows_beginning(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """:meth:`rows`, as the statement that opens its unit of work's transaction: on psycopg ``BEGIN``
        (:data:`BEGIN`) is sent with it, one wait for both (:func:`run_together`), where psycopg would send
        its own ``BEGIN`` first and wait for it, even in pipeline mode. ``connection`` must have been taken
        in autocommit (``isolation_level="AUTOCOMMIT"``) and have run nothing yet: psycopg then sends no
        ``BEGIN`` of its own, and the transaction this one opens on the server lasts until the session's
        commit or rollback, which psycopg sends because the server reports it open (and returned to the
        pool, the connection is out of autocommit again). Elsewhere, :meth:`rows`."""
        if connection.dialect.driver != "psycopg":
            return self.rows(connection, params)
        driver: Any = connection.connection.driver_connection
        assert driver.autocommit and driver.info.transaction_status == _IDLE, "a fresh autocommit connection"
        _, rows = run_together(connection, [(BEGIN, None), self._sent(connection, params)])
        return self._named(rows)

    def _sent(self, connection: Connection, params: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        """The SQL text (compiled once) and the values sent with it: ``params`` over the defaults."""
        sql = self._sql or self._compile(connection)
        return sql, ({**self._defaults, **params} if self._defaults else params)

    def _named(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        """Each row's tuple made into the named tuple by ``tuple.__new__`` in C: ``_make`` is a Python call
        per row (a clearing batch reads two thousand presentments of some thirty columns)."""
        return list(map(_tuple_new, repeat(self.row), rows))

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        rows = self.rows(connection, params)
        return rows[0] if rows else None


_tuple_new = tuple.__new__
_IDLE: Final = 0
"""psycopg's ``pq.TransactionStatus.IDLE``: no transaction open on the server."""
BEGIN: Final = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"
"""What :meth:`DriverStatement.rows_beginning` opens: what psycopg itself would send on this engine's
connections (PostgreSQL's default isolation, written out)."""


def _row_class(names: list[str]) -> Any:
    return namedtuple("Row", names, rename=True)  # the names are known at run time


def execute_driver_sql(connection: Connection, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """``sql`` (PostgreSQL text with ``%(name)s`` parameters) on the psycopg connection; its rows."""
    assert connection.dialect.driver == "psycopg", connection.dialect.driver
    return _run(connection, sql, params)


def copy_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """``COPY table (columns) FROM STDIN`` of ``rows`` on the psycopg connection, in its transaction: the
    cheapest bulk insert (psycopg formats each row in C; PostgreSQL parses no statement per row)."""
    assert connection.dialect.driver == "psycopg", connection.dialect.driver
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f'COPY "{table}" ({names}) FROM STDIN'
    if connection._has_events or connection.engine._has_events:
        connection.dispatch.before_cursor_execute(connection, None, sql, {}, None, False)
    driver: Any = connection.connection.driver_connection
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except dbapi_error as exc:
        if connection.dialect.is_disconnect(exc, driver, None):
            connection.invalidate(exc)
        raise DBAPIError.instance(sql, {}, exc, dbapi_error) from exc


def int_array(values: Iterable[int | None]) -> str:
    """A PostgreSQL array literal of integers or NULLs (``{1,-2,NULL}``), for a parameter the statement casts
    (``%(x)s::int[]``, ``::bigint[]``): psycopg sends it as text, where a Python list costs it a search for
    the element type and a dump of each element (the ledger's one-transfer statement's eleven lists: about
    25 µs of client CPU per transfer, 2 µs as literals)."""
    return "{" + ",".join(["NULL" if value is None else str(int(value)) for value in values]) + "}"


def text_array(values: Iterable[str | None]) -> str:
    """A PostgreSQL array literal of strings or NULLs (``{"a","b\\"c",NULL}``: each string quoted, its
    backslashes and double quotes escaped), for a parameter the statement casts (``%(x)s::text[]``): psycopg
    dumps a Python list of strings element by element, with a regular-expression search on each to decide
    its quoting."""
    return (
        "{"
        + ",".join(
            ["NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
        )
        + "}"
    )


def bytes_array(values: Iterable[bytes | None]) -> str:
    """A PostgreSQL array literal of byte strings or NULLs, for a parameter cast to ``bytea[]``: each element
    in bytea's hex input form (``"\\\\x0aff"`` in the literal, ``\\x0aff`` once the array is parsed)."""
    return "{" + ",".join(["NULL" if v is None else '"\\\\x' + v.hex() + '"' for v in values]) + "}"


def bool_array(values: Iterable[bool | None]) -> str:
    """A PostgreSQL array literal of booleans or NULLs (``{t,f,NULL}``), for a parameter cast to
    ``boolean[]``."""
    return "{" + ",".join(["NULL" if v is None else "t" if v else "f" for v in values]) + "}"


_LITERALS: Mapping[type, Callable[[Any], str]] = {
    int: int_array,
    str: text_array,
    bytes: bytes_array,
    bool: bool_array,
}


def array_literal(column_type: Any) -> Callable[[Any], str]:
    """The array-literal function for values of a SQLAlchemy column type (by its Python type: integers,
    strings, byte strings, booleans)."""
    return _LITERALS[column_type.python_type]


class UnnestRows:
    """Many rows of some columns of one table sent as one array per column (``unnest(%(c)s::TYPE[], …) AS
    v(c, …)``): one statement of the same text whatever the number of rows — prepared once by the server,
    parsed once by psycopg (a multi-row ``VALUES`` of more than 4 KiB of text is parsed again by psycopg at
    every call, and an ``executemany`` runs the statement once per row) — and each array sent as one text
    literal (:func:`int_array`, :func:`text_array`, :func:`bytes_array`, :func:`bool_array`). PostgreSQL
    only. A column's value is found in the rows' dicts under ``prefix`` + its name, or under the key
    ``keys`` gives it."""

    def __init__(
        self, columns: Sequence[Any], *, prefix: str = "", keys: Mapping[str, str] | None = None
    ) -> None:
        self.columns = list(columns)
        self.names = [column.name for column in columns]
        self.keys = [(keys or {}).get(name, prefix + name) for name in self.names]
        self._literals = [array_literal(column.type) for column in columns]
        self._source: str | None = None

    @property
    def source(self) -> str:
        """The ``FROM`` item: the rows as a derived table ``v`` of the columns' names."""
        if self._source is None:
            from sqlalchemy.dialects import postgresql  # imported here: it costs every SQLite command

            dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
            arrays = ", ".join(
                f"%(u_{name})s::{column.type.compile(dialect=dialect)}[]"
                for name, column in zip(self.names, self.columns, strict=True)
            )
            self._source = f"unnest({arrays}) AS v({', '.join(self.names)})"
        return self._source

    def params(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """The statement's parameters for ``rows``: one array literal per column, the rows in order."""
        return {
            f"u_{name}": literal([row[key] for row in rows])
            for name, key, literal in zip(self.names, self.keys, self._literals, strict=True)
        }


def execute_driver_command(connection: Connection, sql: str) -> None:
    """``sql``, a command without parameters or rows (``SAVEPOINT x``), on the psycopg connection."""
    assert connection.dialect.driver == "psycopg", connection.dialect.driver
    _run(connection, sql, {}, fetch=False)


def run_together(
    connection: Connection, statements: Sequence[tuple[str, Mapping[str, Any] | None]]
) -> list[list[tuple[Any, ...]]]:
    """``statements`` sent to the server at once and answered at once — psycopg's pipeline mode: one flush,
    one sync, one wait for all instead of one per statement — on the psycopg connection, in its transaction;
    each statement's rows, in order. Each is ``(sql, params)`` as for :func:`execute_driver_sql`, or
    ``(sql, None)`` for a command without parameters or rows (``SAVEPOINT x``: its rows ``[]``).

    For statements none of which needs another's result before it is sent (a group's writes, each checked
    once all are back), in a transaction that is open already (else psycopg sends its ``BEGIN`` and waits for
    it before the rest: correct, one wait more). When one fails the server skips the rest up to the sync,
    the transaction is failed (as after any error: a ``ROLLBACK`` or ``ROLLBACK TO SAVEPOINT`` is the next
    thing to send) and the error is raised as SQLAlchemy's, as :func:`execute_driver_sql` raises it."""
    assert connection.dialect.driver == "psycopg", connection.dialect.driver
    driver: Any = connection.connection.driver_connection
    if connection._has_events or connection.engine._has_events:
        for sql, params in statements:
            connection.dispatch.before_cursor_execute(connection, None, sql, params or {}, None, False)
    dbapi_error = connection.dialect.loaded_dbapi.Error
    cursors = []
    try:
        with driver.pipeline():
            for sql, params in statements:
                cursor = driver.cursor()
                if params is None:
                    cursor.execute(sql)
                else:
                    cursor.execute(sql, params, prepare=True)
                cursors.append((cursor, params is not None))
        return [cursor.fetchall() if rows else [] for cursor, rows in cursors]
    except dbapi_error as exc:
        if connection.dialect.is_disconnect(exc, driver, None):
            connection.invalidate(exc)
        sent = "; ".join(sql.split(None, 1)[0] for sql, _ in statements)  # the statements' first words
        raise DBAPIError.instance(f"(together) {sent}", {}, exc, dbapi_error) from exc
    finally:
        for cursor, _ in cursors:
            cursor.close()


def _run(
    connection: Connection, sql: str, params: Mapping[str, Any], *, fetch: bool = True
) -> list[tuple[Any, ...]]:
    if connection._has_events or connection.engine._has_events:  # a cheap check first
        connection.dispatch.before_cursor_execute(connection, None, sql, params, None, False)
    driver: Any = connection.connection.driver_connection
    dbapi_error = connection.dialect.loaded_dbapi.Error
    try:
        if not fetch:
            driver.execute(sql)
            return []
        return driver.execute(sql, params, prepare=True).fetchall()  # type: ignore[no-any-return]
    except dbapi_error as exc:
        if connection.dialect.is_disconnect(exc, driver, None):
            connection.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, dbapi_error) from exc
