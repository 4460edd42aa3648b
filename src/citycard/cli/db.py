"""``citycard db upgrade | current``: the database schema (packaged Alembic revisions, citycard.db.migrate).

Commands that use the database migrate an empty one on first use, and refuse one at an older revision with
a line that says to run ``citycard db upgrade``: migrations run when asked, not on every command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from citycard.bootstrap import open_engine
from citycard.config import settings
from citycard.db import (
    DatabaseUrlError,
    SchemaRevisionError,
    migrate,
    parse_url,
    shipped_revisions,
)
from citycard.db import stored_revision as read_revision

from .bank import fail, first_line

__all__ = ["app"]

app = typer.Typer(help="The database schema: upgrade it, show its revision.", no_args_is_help=True)
console = Console()


@contextmanager
def _database() -> Iterator[Engine]:
    """An engine on the configured database; its failures are one ``error:`` line."""
    try:
        with open_engine(settings()) as engine:  # the URL is checked as the engine is made
            shown = engine.url.render_as_string()
            try:
                yield engine
            except SchemaRevisionError as exc:
                raise fail(f"database {shown}: {exc}", status=2) from None
            except SQLAlchemyError as exc:
                raise fail(f"database {shown}: {first_line(exc)}") from None
    except DatabaseUrlError as exc:
        raise fail(str(exc), status=2) from None


@app.command("upgrade")
def upgrade() -> None:
    """Bring the database (``CITYCARD_DATABASE_URL``, else ``$CITYCARD_HOME/citycard.db``) to the newest
    schema revision; back it up first."""
    shipped = shipped_revisions()
    with _database() as engine:
        before = read_revision(engine)
        if before is not None and before not in shipped:
            raise SchemaRevisionError(f"revision {before} is newer than this citycard knows ({shipped[-1]})")
        if before != shipped[-1]:
            migrate(engine)
        shown = engine.url.render_as_string()
    change = "already at" if before == shipped[-1] else f"{before or 'empty'} ->"
    console.print(f"database {shown}: {change} revision {shipped[-1]}", highlight=False, soft_wrap=True)


@app.command("current")
def current() -> None:
    """The database's schema revision and the newest this citycard ships."""
    shipped = shipped_revisions()
    head = shipped[-1]
    url = settings().db_url
    try:
        parsed = parse_url(url)
    except DatabaseUrlError as exc:
        raise fail(str(exc), status=2) from None
    sqlite = parsed.get_backend_name() == "sqlite"
    file = parsed.database if sqlite and parsed.database != ":memory:" else None
    if file and not Path(file).exists():
        console.print(f"no database yet at {file}; this citycard ships {head}", highlight=False)
        return  # reading the revision must not create the file
    with _database() as engine:
        stored = read_revision(engine)
        shown = engine.url.render_as_string()
    if stored == head:
        state = "up to date"
    elif stored is not None and stored not in shipped:
        state = "a newer citycard made it"
    else:
        state = "run 'citycard db upgrade'"
    console.print(
        f"database {shown}: revision {stored or 'none (empty)'}; this citycard ships {head} ({state})",
        highlight=False,
        soft_wrap=True,
    )
