"""The packaged Alembic migrations build exactly the tables of the shared metadata, on both databases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from citycard.db import (
    Database,
    SchemaRevisionError,
    current_revision,
    downgrade,
    head_revision,
    load_all_tables,
    make_engine,
    migrate,
    require_current,
    shipped_revisions,
    stored_revision,
)
from citycard.db.migrate import MIGRATIONS_DIR, alembic_config


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


def test_shipped_revisions_are_alembics_own_history() -> None:
    """The cheap check reads file names only: they must be Alembic's linear history, base to head."""
    walked = [script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    assert shipped_revisions() == walked[::-1]
    assert shipped_revisions()[-1] == head_revision()


def test_require_current_migrates_an_empty_database_and_refuses_another_revision(database: Database) -> None:
    head = head_revision()
    assert require_current(database.engine) is None  # current: nothing to do
    downgrade(database.engine, "base")
    assert stored_revision(database.engine) is None
    assert require_current(database.engine) == head  # first use of an empty database migrates it
    assert stored_revision(database.engine) == head == current_revision(database.engine)
    downgrade(database.engine, shipped_revisions()[0])
    with pytest.raises(
        SchemaRevisionError, match=f"at revision {shipped_revisions()[0]}, .*citycard db upgrade"
    ):
        require_current(database.engine)
    assert stored_revision(database.engine) == shipped_revisions()[0]  # refused, not migrated
    migrate(database.engine)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(SchemaRevisionError, match="9999_future, which this citycard does not know"):
        require_current(database.engine)


def test_a_database_of_someone_else_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE accounts (id INTEGER)"))
        with pytest.raises(SchemaRevisionError, match="not citycard's"):
            require_current(engine)
        assert inspect(engine).get_table_names() == ["accounts"]
    finally:
        engine.dispose()


def test_0017_gives_each_existing_holder_the_records_keyed_by_its_banks_hash(database: Database) -> None:
    """Before 0017 the back end keyed records by a bank's ``id_hash``; the ID number is not stored, so the
    migration makes that hash the holder's ``citizen_key``: the existing records are the holder's, as they
    were, and no holder is left without a key."""
    downgrade(database.engine, "0016_validator_line_vehicle")
    holders = [(1, "a" * 64, 101), (2, "b" * 64, 102)]
    with database.engine.begin() as connection:
        for holder_id, id_hash, account in holders:
            connection.execute(
                text(
                    "INSERT INTO issuer_cardholders (id, name, id_hash, id_last4, phone, deposit_account_id)"
                    " VALUES (:id, 'Li Ming', :h, '002X', '', :a)"
                ),
                {"id": holder_id, "h": id_hash, "a": account},
            )
        connection.execute(
            text("INSERT INTO public_social_security VALUES (:k, '201001', 190, '202611', 500000, 1)"),
            {"k": "a" * 64},
        )
    migrate(database.engine)
    assert current_revision(database.engine) == head_revision()
    with database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT h.id, h.citizen_key, s.contribution_months FROM issuer_cardholders h"
                " LEFT JOIN public_social_security s ON s.citizen_key = h.citizen_key ORDER BY h.id"
            )
        ).all()
    assert [tuple(r) for r in rows] == [(1, "a" * 64, 190), (2, "b" * 64, None)]
    assert _diff(database) == []
