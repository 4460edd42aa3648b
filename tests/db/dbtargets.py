"""Fresh, migrated databases for tests, on SQLite and on PostgreSQL (reusable by other test directories).

``fresh_database(kind, tmp_path)`` yields a migrated :class:`citycard.db.Database`: an SQLite file under
``tmp_path``, or a new PostgreSQL schema at ``tests.conftest.POSTGRES_URL`` (unique per test, so parallel
pytest workers never collide) that is dropped afterwards. When PostgreSQL is unreachable the test skips,
or fails where ``CITYCARD_REQUIRE_POSTGRES`` is set (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from citycard.db import Database, drop_schema, migrate

from tests.conftest import POSTGRES_URL, require_or_skip

__all__ = ["KINDS", "fresh_database", "postgres_reachable"]

KINDS = ("sqlite", "postgresql")
_reachable: bool | None = None


def postgres_reachable() -> bool:
    global _reachable
    if _reachable is None:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            _reachable = True
        except Exception:
            _reachable = False
        finally:
            engine.dispose()
    return _reachable


def _schema_name() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"t_{worker}_{uuid.uuid4().hex[:12]}"


@contextmanager
def fresh_database(kind: str, tmp_path: Path, **engine_kwargs: object) -> Iterator[Database]:
    """A migrated database of ``kind`` (``"sqlite"`` or ``"postgresql"``), removed afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'citycard-test.db'}"
        migrate(url)
        db = Database.open(url, **engine_kwargs)
        try:
            yield db
        finally:
            db.close()
        return
    assert kind == "postgresql", kind
    if not postgres_reachable():
        require_or_skip("CITYCARD_REQUIRE_POSTGRES", f"PostgreSQL not reachable at {POSTGRES_URL}")
    schema = _schema_name()
    migrate(POSTGRES_URL, schema=schema)
    db = Database.open(POSTGRES_URL, schema=schema, **engine_kwargs)
    try:
        yield db
    finally:
        db.close()
        drop_schema(POSTGRES_URL, schema)


def primary_key(database: Database, table: str) -> list[str]:
    """The columns of ``table``'s primary key, in order, as the database reports them."""
    return list(inspect(database.engine).get_pk_constraint(table)["constrained_columns"])
