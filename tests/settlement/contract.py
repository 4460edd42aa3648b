"""Clearing's tables as the team contract describes them (/work/wt/CONTRACT.md), for settlement's tests
while clearing's own migration has not landed: created only where the database lacks them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    insert,
)

from citycard.db import Database
from citycard.settlement.model import ClearedItem

contract_metadata = MetaData()
clearing_items = Table(
    "clearing_items",
    contract_metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("clearing_date", String(8), nullable=False),
    Column("source", String(8), nullable=False),
    Column("source_ref", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sign", SmallInteger, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("issuer_bank", String(8), nullable=False),
    Column("acquirer_bank", String(8), nullable=False),
    Column("merchant_id", String(15), nullable=False),
    Column("terminal_id", String(8), nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("industry", String(16), nullable=True),
    Column("pan_masked", String(19), nullable=False),
    Column("atc", Integer, nullable=True),
    Column("txn_ns", BigInteger, nullable=False),
    Column("rrn", String(12), nullable=True),
    Column("service_ref", String(32), nullable=True),
    UniqueConstraint("source", "source_ref"),
)
clearing_runs = Table(
    "clearing_runs",
    contract_metadata,
    Column("clearing_date", String(8), primary_key=True),
    Column("status", String(8), nullable=False),
    Column("finished_ns", BigInteger, nullable=True),
)


def ensure_clearing_tables(database: Database) -> None:
    contract_metadata.create_all(database.engine, checkfirst=True)


def insert_cleared_day(database: Database, day: str, items: list[ClearedItem]) -> None:
    """The day's items and its run, as clearing writes them (status 'cleared')."""
    rows: list[dict[str, Any]] = [
        {**{name: getattr(item, name) for name in ClearedItem.__slots__}, "clearing_date": day}
        for item in items
    ]
    with database.engine.begin() as connection:
        if rows:
            connection.execute(insert(clearing_items), rows)
        # clearing's own clearing_runs has more NOT NULL columns (counts, amounts): zero them
        runs = Table("clearing_runs", MetaData(), autoload_with=connection)
        row: dict[str, Any] = {c.name: 0 for c in runs.columns if not c.nullable}
        row.update(clearing_date=day, status="cleared")
        connection.execute(insert(runs).values(**row))
