"""Storage adapter: SQLAlchemy 2 engines, tables, repositories, unit of work and Alembic migrations.

An SQLite file by default (``citycard.config.settings().db_url``), PostgreSQL by ``CITYCARD_DATABASE_URL``::

    from citycard.db import Database, migrate
    migrate(url)                      # create or upgrade the schema (packaged Alembic revisions)
    db = Database.open(url)
    require_current(db.engine)        # cheap: migrates an empty database, refuses an older one
    with db.unit_of_work() as uow:
        uow.ledger.create_transfers([...])
        uow.commit()
"""

from __future__ import annotations

from .engine import DatabaseUrlError, drop_schema, ensure_schema, make_engine, make_session_factory, parse_url
from .migrate import (
    SchemaRevisionError,
    current_revision,
    downgrade,
    head_revision,
    migrate,
    require_current,
    shipped_revisions,
    stored_revision,
)
from .repositories import SqlLedgerRepository
from .tables import load_all_tables, metadata
from .uow import Database, RepositoryFactory, SqlUnitOfWork, is_retryable, run_in_unit_of_work

__all__ = [
    "Database",
    "DatabaseUrlError",
    "RepositoryFactory",
    "SchemaRevisionError",
    "SqlLedgerRepository",
    "SqlUnitOfWork",
    "current_revision",
    "downgrade",
    "drop_schema",
    "ensure_schema",
    "head_revision",
    "is_retryable",
    "load_all_tables",
    "make_engine",
    "make_session_factory",
    "metadata",
    "migrate",
    "parse_url",
    "require_current",
    "run_in_unit_of_work",
    "shipped_revisions",
    "stored_revision",
]
