"""The settlement store's reads for the web, on both databases: several bus companies' fares by line in one
query (the dashboard and the settlement page name every bus company of the day), a merchant's and a bank's
rows of the settled days read by merchant and by participant (not every settled day loaded whole), and a
settled day found however old it is."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from citycard.db import Database
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.settlement import settle_day

from tests.db.dbtargets import KINDS, fresh_database
from tests.settlement.day import BUS, DAY, ITEMS, NEXT_DAY, RESTAURANT, SUPERMARKET, add_banks, prepare


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        add_banks(db)
        yield db


def _statements(database: Database) -> list[str]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(database.engine, "before_cursor_execute", count)
    return seen


def test_two_bus_companies_fares_by_line_come_from_one_query(database: Database) -> None:
    lines = {6: 5, 7: 12, 8: 5}
    items = [dataclasses.replace(i, bus_line=lines[i.id]) if i.id in lines else i for i in ITEMS]
    # a second company: the fare of item 8 made on the restaurant's terminal stands for it
    items = [dataclasses.replace(i, merchant_id=RESTAURANT) if i.id == 8 else i for i in items]
    prepare(database, items)
    seen = _statements(database)
    with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        both = uow.settlement.fares_by_lines(DAY, [RESTAURANT, BUS, SUPERMARKET, BUS])
        assert len([s for s in seen if "clearing_items" in s]) == 1
        assert both == [(BUS, 5, 1, 200), (BUS, 12, 1, 200), (RESTAURANT, 5, 1, 150)]
        assert uow.settlement.fares_by_line(DAY, BUS) == [(5, 1, 200), (12, 1, 200)]
        assert uow.settlement.fares_by_lines(DAY, []) == []


def test_a_merchants_and_a_banks_rows_of_the_settled_days_newest_first(database: Database) -> None:
    prepare(database, ITEMS, DAY)
    settle_day(lambda: database.unit_of_work(SettlementUnitOfWork), DAY, clock=lambda: 0)
    again = [  # the next day: the supermarket's items again, as other records
        dataclasses.replace(i, id=i.id + 100, source_ref=f"{i.source_ref}-2")
        for i in ITEMS
        if i.merchant_id == SUPERMARKET
    ]
    prepare(database, again, NEXT_DAY)
    settle_day(lambda: database.unit_of_work(SettlementUnitOfWork), NEXT_DAY, clock=lambda: 0)
    with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        records = {d: uow.settlement.load(d) for d in (DAY, NEXT_DAY)}
        rows = uow.settlement.merchant_days(SUPERMARKET, 60)
        assert [d for d, _ in rows] == [NEXT_DAY, DAY]
        for d, row in rows:
            record = records[d]
            assert record is not None and row in record.merchants
        assert [d for d, _ in uow.settlement.merchant_days(SUPERMARKET, 1)] == [NEXT_DAY]
        assert [d for d, _ in uow.settlement.merchant_days(SUPERMARKET, 60, DAY)] == [DAY]
        positions = uow.settlement.participant_days("ICBC", 60)
        assert [d for d, _ in positions] == [NEXT_DAY, DAY]
        for d, position in positions:
            record = records[d]
            assert record is not None and position in record.positions
        assert uow.settlement.is_settled(DAY) and uow.settlement.is_settled(NEXT_DAY)
        assert not uow.settlement.is_settled("20261124")
