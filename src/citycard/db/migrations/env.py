"""Alembic environment of citycard: target metadata is every table module's (``load_all_tables``).

Run through :func:`citycard.db.migrate`, which hands over an open connection in
``config.attributes["connection"]``; without one, an engine is made from ``sqlalchemy.url`` or the settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from citycard.db.engine import make_engine
from citycard.db.tables import load_all_tables

config = context.config
target_metadata = load_all_tables()


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as new_connection:
            _configure(new_connection)
    finally:
        engine.dispose()


run()
