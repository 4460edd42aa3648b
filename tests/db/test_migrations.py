"""The packaged Alembic migrations build exactly the tables of the shared metadata, on both databases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from citycard.db import (
    Database,
    current_revision,
    downgrade,
    head_revision,
    load_all_tables,
    make_engine,
    migrate,
)
from citycard.db.migrate import MIGRATIONS_DIR


def _diff(db: Database) -> list[object]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, load_all_tables()))


def test_migrated_schema_equals_metadata(database: Database) -> None:
    assert current_revision(database.engine) == head_revision()
    assert _diff(database) == []
    tables = set(inspect(database.engine).get_table_names())
    assert {"ledger_accounts", "ledger_transfers", "alembic_version"} <= tables
    assert tables - {"alembic_version"} == set(load_all_tables().tables)


def test_migrate_is_idempotent_and_downgrade_removes_everything(database: Database) -> None:
    migrate(database.engine)
    assert current_revision(database.engine) == head_revision()
    downgrade(database.engine, "base")
    assert current_revision(database.engine) is None
    assert set(inspect(database.engine).get_table_names()) <= {"alembic_version"}
    assert _diff(database) != []  # the comparison does see a schema that differs
    migrate(database.engine, "0001_ledger")
    assert current_revision(database.engine) == "0001_ledger"
    assert {"ledger_accounts", "ledger_transfers"} <= set(inspect(database.engine).get_table_names())


def test_first_revision_and_packaged_environment() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_ledger.py").is_file()
    assert not (MIGRATIONS_DIR.parent / "alembic.ini").exists()
    # packages (not bare directories), so that setuptools puts them in the wheel
    assert importlib.util.find_spec("citycard.db.migrations.versions") is not None


def test_default_url_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYCARD_DATABASE_URL", raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path / "home"))
    migrate()
    assert (tmp_path / "home" / "citycard.db").is_file()
    engine = make_engine()
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
