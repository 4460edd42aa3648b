"""Settlement's test days written straight into clearing's own tables (``citycard.db.clearing_tables``), as
clearing's run leaves them: the day's items and its run with status 'cleared'."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from citycard.db import Database
from citycard.db.clearing_tables import clearing_items, clearing_runs
from citycard.settlement.model import ClearedItem


def insert_cleared_day(database: Database, day: str, items: list[ClearedItem]) -> None:
    """The day's items and its run, as clearing writes them (status 'cleared'; counts left to their
    server defaults)."""
    rows: list[dict[str, Any]] = [
        {**{name: getattr(item, name) for name in ClearedItem.__slots__}, "clearing_date": day}
        for item in items
    ]
    with database.engine.begin() as connection:
        if rows:
            connection.execute(insert(clearing_items), rows)
        connection.execute(insert(clearing_runs).values(clearing_date=day, status="cleared"))
