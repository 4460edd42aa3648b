"""Alembic migrations run from inside the package: ``migrate(url)`` brings a database to the newest schema.

The migration environment (``env.py``, ``script.py.mako``, ``versions/``) ships in
``citycard/db/migrations``; no ``alembic.ini`` is needed. Revisions: ``0001_ledger`` (ledger accounts and
transfers), then one revision per area, each with ``down_revision`` set to the one before it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .engine import make_engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "downgrade", "head_revision", "migrate"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migrations (for ``command.*`` calls)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(target: str | Engine | None = None, revision: str = "head", *, schema: str | None = None) -> None:
    """Upgrade the database at ``target`` (a URL, an engine, or the settings' URL) to ``revision``."""
    _run(command.upgrade, target, revision, schema)


def downgrade(target: str | Engine, revision: str, *, schema: str | None = None) -> None:
    """Downgrade the database at ``target`` to ``revision`` (``"base"`` removes every table)."""
    _run(command.downgrade, target, revision, schema)


def _run(
    step: Callable[[Config, str], None], target: str | Engine | None, revision: str, schema: str | None
) -> None:
    """Run an Alembic ``command`` to ``revision`` in one transaction on ``target``."""
    engine = target if isinstance(target, Engine) else make_engine(target, schema=schema)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            step(config, revision)
    finally:
        if engine is not target:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped in the package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
