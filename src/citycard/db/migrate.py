"""Alembic migrations run from inside the package: ``migrate(url)`` brings a database to the newest schema.

The migration environment (``env.py``, ``script.py.mako``, ``versions/``) ships in
``citycard/db/migrations``; no ``alembic.ini`` is needed. Revisions: ``0001_ledger`` (ledger accounts and
transfers), then one revision per area, each with ``down_revision`` set to the one before it, in a file
named after its revision id (``versions/0002_issuer.py`` holds ``revision = "0002_issuer"``).

Migrations run when asked (``citycard db upgrade``, :func:`migrate`), not on every command. A command that
opens the database calls :func:`require_current` instead: a cheap check that reads the ``alembic_version``
table and the file names in ``versions/`` (Alembic itself is imported only to migrate). It migrates an
empty database on its first use and refuses, with :class:`SchemaRevisionError`, a database at another
revision than this version of citycard ships.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from .engine import READ_ONLY_OPTION, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaRevisionError",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "migrate",
    "require_current",
    "shipped_revisions",
    "stored_revision",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION_FILE = re.compile(r"([0-9]{4})_[a-z0-9_]+\.py")
_VERSION_TABLE = "alembic_version"


class SchemaRevisionError(RuntimeError):
    """The database is not at the schema revision this version of citycard ships (the message says what
    to do), or it is not a citycard database."""


def alembic_config() -> Config:
    """An Alembic configuration pointing at the packaged migrations (for ``command.*`` calls)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(target: str | Engine | None = None, revision: str = "head", *, schema: str | None = None) -> None:
    """Upgrade the database at ``target`` (a URL, an engine, or the settings' URL) to ``revision``."""
    from alembic import command

    _run(command.upgrade, target, revision, schema)


def downgrade(target: str | Engine, revision: str, *, schema: str | None = None) -> None:
    """Downgrade the database at ``target`` to ``revision`` (``"base"`` removes every table)."""
    from alembic import command

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
    """The revision the database is at (None before the first migration), as Alembic reads it."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped in the package, as Alembic's script directory says."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def shipped_revisions() -> list[str]:
    """The revision ids shipped in the package, oldest first, from the file names in ``versions/`` alone
    (a test checks that they are Alembic's own history, base to head)."""
    names = (path.name for path in (MIGRATIONS_DIR / "versions").iterdir())
    return sorted(name.removesuffix(".py") for name in names if _REVISION_FILE.fullmatch(name))


def stored_revision(engine: Engine) -> str | None:
    """The revision recorded in the database, None for an empty one (no table but perhaps an empty
    ``alembic_version``); reads, never writes. A database with tables but no revision is not citycard's."""
    with engine.connect().execution_options(**{READ_ONLY_OPTION: True}) as connection:
        tables = set(inspect(connection).get_table_names())
        versions: list[str] = []
        if _VERSION_TABLE in tables:
            versions = list(connection.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars())
    if len(versions) > 1:
        raise SchemaRevisionError(f"the database records {len(versions)} schema revisions, not one")
    if not versions and tables - {_VERSION_TABLE}:
        raise SchemaRevisionError("the database has tables but no schema revision: it is not citycard's")
    return versions[0] if versions else None


def require_current(engine: Engine) -> str | None:
    """Check that the database at ``engine`` is at the newest shipped revision; migrate it first if it is
    empty. Returns the revision it migrated to (None if it did not), raises :class:`SchemaRevisionError`."""
    shipped = shipped_revisions()
    head = shipped[-1]
    stored = stored_revision(engine)
    if stored == head:
        return None
    if stored is None:
        migrate(engine)
        return head
    if stored in shipped:
        raise SchemaRevisionError(
            f"the database schema is at revision {stored}, this citycard needs {head}: "
            "run 'citycard db upgrade' (back the database up first)"
        )
    raise SchemaRevisionError(
        f"the database schema is at revision {stored}, which this citycard does not know (it needs {head}): "
        "a newer citycard made it"
    )
