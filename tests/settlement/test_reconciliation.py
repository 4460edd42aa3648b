"""The reconciliation's captured column in each acquiring bank's business day (clearing's calendar): records
either side of a bank's cut-over are captured in the same business day as clearing places them, so a day
whose items clearing placed by the cut-over reconciles with no difference; a late upload, a journal export,
a reversal and a record not cleared yet are each one difference with its reason. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from citycard.clearing import BEIJING, business_window, parse_cutovers
from citycard.db import Database
from citycard.db.acquirer_tables import acquirer_transactions, acquirer_uploads
from citycard.db.center_tables import center_merchants
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.durable import StagedFolder
from citycard.settlement import settle_day

from tests.db.dbtargets import KINDS, fresh_database
from tests.settlement.day import MERCHANTS, RESTAURANT, SUPERMARKET, add_banks, item, prepare

pytestmark = pytest.mark.xdist_group("settlement")

DAY = "20261125"
CUTOVERS = parse_cutovers("ICBC=23:00")  # BOC: the default, midnight


def beijing(day: int, hh: int, mm: int) -> int:
    """ns of 2026-11-``day`` hh:mm in Beijing."""
    return int(datetime(2026, 11, day, hh, mm, tzinfo=BEIJING).timestamp()) * 10**9


def window(day: str, bank: str) -> tuple[int, int]:
    return business_window(date(int(day[:4]), int(day[4:6]), int(day[6:])), CUTOVERS.of(bank))


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        add_banks(db)
        with db.engine.begin() as c:
            c.execute(
                insert(center_merchants),
                [
                    {
                        "merchant_id": m,
                        "name": f"merchant {m[-4:]}",
                        "mcc": mcc,
                        "industry": industry,
                        "district": "city",
                        "bank_code": bank,
                        "status": "active",
                        "created_ns": 0,
                    }
                    for m, (bank, mcc, industry, _) in MERCHANTS.items()
                ],
            )
        yield db


def online(n: int, merchant: str, at_ns: int, amount: int, status: str = "answered") -> dict[str, Any]:
    return {
        "terminal_id": MERCHANTS[merchant][3],
        "batch": 1,
        "stan": n,
        "merchant_id": merchant,
        "rrn": f"{n:012d}",
        "kind": "purchase",
        "amount_fen": amount,
        "pan_masked": "621226******0017",
        "status": status,
        "response_code": "00",
        "created_ns": at_ns,
        "updated_ns": at_ns,
    }


def upload(n: int, merchant: str, at_ns: int, amount: int) -> dict[str, Any]:
    return {
        "terminal_id": MERCHANTS[merchant][3],
        "batch": 1,
        "stan": n,
        "merchant_id": merchant,
        "amount_fen": amount,
        "pan_masked": "621661******0025",
        "message": b"\x03\x20",
        "received_ns": at_ns,
    }


def test_beijing_helper() -> None:
    assert beijing(25, 23, 0) == window(DAY, "ICBC")[1]
    assert beijing(24, 23, 0) == window(DAY, "ICBC")[0]
    assert beijing(26, 0, 0) == window(DAY, "BOC")[1]


def test_captured_by_each_banks_cut_over(database: Database, tmp_path: Path) -> None:
    # ICBC (cut-over 23:00) acquires the supermarket, BOC (midnight) the restaurant
    captured_rows = [
        online(1, SUPERMARKET, beijing(24, 23, 1), 1000),  # after ICBC's cut-over on the 24th: the 25th
        online(2, SUPERMARKET, beijing(25, 22, 59), 2000),  # before it on the 25th: the 25th
        online(3, SUPERMARKET, beijing(25, 23, 1), 4000),  # after it on the 25th: the 26th (not today)
        online(4, RESTAURANT, beijing(25, 23, 30), 8000),  # BOC at midnight: the 25th
        online(5, RESTAURANT, beijing(25, 10, 0), 300, status="reversal_queued"),  # reversed
        online(6, RESTAURANT, beijing(25, 11, 0), 500),  # approved, not cleared (an exception, say)
    ]
    uploads = [
        upload(7, SUPERMARKET, beijing(24, 23, 5), 150),  # received after ICBC's cut-over: the 25th
        upload(8, SUPERMARKET, beijing(23, 12, 0), 250),  # received two days ago, cleared today (late)
    ]
    items = [
        item(1, "online", "purchase", 1, 1000, "ICBC", SUPERMARKET),
        item(2, "online", "purchase", 1, 2000, "BOC", SUPERMARKET),
        item(4, "online", "purchase", 1, 8000, "ICBC", RESTAURANT),
        item(7, "offline", "purchase", 1, 150, "BOC", SUPERMARKET),
        item(8, "offline", "purchase", 1, 250, "BOC", SUPERMARKET),
        item(9, "offline", "purchase", 1, 99, "ICBC", RESTAURANT),  # from a journal export: never uploaded
    ]
    with database.engine.begin() as c:
        c.execute(insert(acquirer_transactions), captured_rows)
        c.execute(insert(acquirer_uploads), uploads)
    prepare(database, items)

    with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        totals, streamed = uow.settlement.captured(DAY, window)
        differences = list(streamed)
        calendar_totals, calendar_streamed = uow.settlement.captured(DAY)
        calendar_differences = list(calendar_streamed)
    assert [(c.source, c.bank, c.count, c.amount_fen) for c in totals] == [
        ("online", "BOC", 2, 8500),  # 4 and 6 (5 reversed)
        ("offline", "ICBC", 1, 150),  # 7
        ("online", "ICBC", 2, 3000),  # 1 and 2; not 3
    ]
    assert (totals[2].start_ns, totals[2].end_ns) == (beijing(24, 23, 0), beijing(25, 23, 0))
    assert [(d.source, d.bank, d.reference, d.amount_fen, d.reason) for d in differences] == [
        ("online", "BOC", "000000000005", 300, "reversed (by the terminal, or no answer): not financial"),
        (
            "online",
            "BOC",
            "000000000006",
            500,
            "approved but not among the cleared items: not cleared yet (a clearing exception)",
        ),
        (
            "offline",
            "BOC",
            "FOOD0001/1/9",
            99,
            "cleared today, not captured by the acquirer (a terminal's journal export imported)",
        ),
        (
            "offline",
            "ICBC",
            "SHOP0001/1/8",
            250,
            "cleared today, captured in an earlier business day of ICBC (late upload or accepted exception)",
        ),
    ]
    # the Beijing calendar day (what the report did before) sees 3 as captured today and 1 and 7 not
    assert [(c.source, c.bank, c.count, c.amount_fen) for c in calendar_totals] == [
        ("online", "BOC", 2, 8500),
        ("online", "ICBC", 2, 6000),
    ]
    assert {d.reference for d in calendar_differences} > {"000000000003", "000000000001", "SHOP0001/1/7"}

    with StagedFolder(tmp_path / "day") as folder:
        settle_day(
            lambda: database.unit_of_work(SettlementUnitOfWork),
            DAY,
            clock=lambda: 7,
            sink=folder,
            window=window,
        )
    rows = list(csv.reader((tmp_path / "day" / "reconciliation.csv").read_text().splitlines()))
    icbc = "ICBC's business day (2026-11-24T15:00:00.000Z, 2026-11-25T15:00:00.000Z]"
    assert rows[2:9] == [
        ["D", "captured", "online/BOC", "2", "8500", "captured by the acquirer in BOC's business day "
         "(2026-11-24T16:00:00.000Z, 2026-11-25T16:00:00.000Z]"],
        ["D", "captured", "offline/ICBC", "1", "150", f"captured by the acquirer in {icbc}"],
        ["D", "captured", "online/ICBC", "2", "3000", f"captured by the acquirer in {icbc}"],
        *(
            ["X", "captured-cleared", f"{d.source}/{d.bank}:{d.reference}", "1", str(d.amount_fen), d.reason]
            for d in differences
        ),
    ]  # fmt: skip
    # every difference explained: captured - (captured, not cleared) + (cleared, not captured) = cleared
    captured = sum(c.amount_fen for c in totals)
    not_cleared = 500  # 6 (5, reversed, is not counted as captured)
    not_captured = 99 + 250
    assert captured - not_cleared + not_captured == sum(i.amount_fen for i in items)


def test_a_late_reversal_given_back_is_named_as_such(database: Database) -> None:
    """Items clearing gave back today for reversals that reached the issuers after their originals cleared
    (clearing.md: a cash load's ``+1``, a purchase's ``void``) carry the original's RRN, captured by the
    acquirer in an earlier business day: the difference says so, not "late upload"."""
    with database.engine.begin() as c:
        c.execute(
            insert(acquirer_transactions),
            [
                {
                    **online(10, SUPERMARKET, beijing(24, 12, 0), 700, "reversal_queued"),
                    "kind": "ec_cash_load",
                },
                online(11, SUPERMARKET, beijing(24, 12, 5), 900, "reversal_queued"),
                online(12, SUPERMARKET, beijing(24, 12, 9), 400),  # a late upload's kind of difference
            ],
        )
    prepare(
        database,
        [
            item(10, "online", "ec_cash_load", 1, 700, "ICBC", SUPERMARKET),
            item(11, "online", "void", -1, 900, "ICBC", SUPERMARKET),
            item(12, "online", "purchase", 1, 400, "ICBC", SUPERMARKET),
        ],
    )
    with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
        _, streamed = uow.settlement.captured(DAY, window)
        reasons = {d.reference: d.reason for d in streamed}
    given_back = "cleared today, the reversal of a transaction captured in an earlier business day of ICBC"
    assert reasons["000000000010"] == f"{given_back}: its item given back"
    assert reasons["000000000011"] == f"{given_back}: its item given back"
    assert reasons["000000000012"].endswith("(late upload or accepted exception)")
