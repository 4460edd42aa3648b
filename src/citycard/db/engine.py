"""Engines and sessions on a database URL: an SQLite file by default, PostgreSQL by URL.

``make_engine()`` reads ``citycard.config.settings().db_url`` (``CITYCARD_DATABASE_URL``, else
``$CITYCARD_HOME/citycard.db``). On SQLite every transaction starts with ``BEGIN IMMEDIATE`` (one writer at a
time, taken at the start, so read-then-write never deadlocks; a read-only transaction begins DEFERRED
instead and takes no lock), foreign keys are on, the journal is WAL and
a busy connection waits up to 30 s. On PostgreSQL an optional ``schema`` is created if needed and put first on
the ``search_path`` of every connection (one schema per bank, or per test worker).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from citycard.config import settings

__all__ = [
    "READ_ONLY_OPTION",
    "DatabaseUrlError",
    "drop_schema",
    "ensure_schema",
    "make_engine",
    "make_session_factory",
    "parse_url",
]

READ_ONLY_OPTION = "citycard_read_only"
"""Execution option of a read-only transaction: SQLite begins it DEFERRED with ``PRAGMA query_only`` (no
write lock, so it never waits for the writer), PostgreSQL makes it ``READ ONLY``."""

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseUrlError(ValueError):
    """A database URL that cannot be used: unparseable, an unknown dialect or driver, an SQLite file whose
    folder cannot be made. The message never contains the password."""


def parse_url(url: str) -> URL:
    """``url`` parsed, with its dialect and driver loaded; :class:`DatabaseUrlError` if it cannot be used."""
    try:
        parsed = make_url(url)
        _ = parsed.port  # an unparseable port fails only here
        parsed.get_dialect()
    except (ArgumentError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "://" in reason:  # ArgumentError may quote the URL, and with it a password
            reason = "not a database URL"
        raise DatabaseUrlError(f"database URL: {reason}") from None
    return parsed


def _check_schema(schema: str) -> str:
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema {schema!r}: lower-case letters, digits and _ only, at most 63")
    return schema


def make_engine(url: str | None = None, *, schema: str | None = None, **kwargs: Any) -> Engine:
    """An engine on ``url`` (default: the settings' ``db_url``), set up as the module docstring says;
    :class:`DatabaseUrlError` if the URL cannot be used."""
    url = url or settings().db_url
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("schema: SQLite has no schemas; use another file")
        if parsed.database and parsed.database != ":memory:":
            folder = Path(parsed.database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUrlError(f"database folder {folder}: {exc.strerror or exc}") from None
        engine = create_engine(url, **kwargs)
        _sqlite_hooks(engine)
        return engine
    connect_args = dict(kwargs.pop("connect_args", {}))
    if schema is not None:
        ensure_schema(url, schema)
        connect_args["options"] = f"-c search_path={_check_schema(schema)}"
    return create_engine(url, connect_args=connect_args, **kwargs)


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = bool(connection.get_execution_options().get(READ_ONLY_OPTION))
        if connection.info.get("query_only", False) != read_only:
            connection.exec_driver_sql(f"PRAGMA query_only = {int(read_only)}")
            connection.info["query_only"] = read_only
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def ensure_schema(url: str, schema: str) -> None:
    """Create the PostgreSQL ``schema`` if it does not exist."""
    _schema_statement(url, 'CREATE SCHEMA IF NOT EXISTS "{}"', schema)


def drop_schema(url: str, schema: str) -> None:
    """Drop the PostgreSQL ``schema`` and everything in it."""
    _schema_statement(url, 'DROP SCHEMA IF EXISTS "{}" CASCADE', schema)


def _schema_statement(url: str, statement: str, schema: str) -> None:
    """Run ``statement`` on the checked ``schema`` name in a transaction of its own engine."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement.format(_check_schema(schema))))
    finally:
        engine.dispose()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
