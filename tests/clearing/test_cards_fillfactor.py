"""Migration ``0028_cards_fillfactor``: ``issuer_cards``' pages half full on PostgreSQL, so that clearing's
mark of the day's cards (``ClearingEngine.record_cleared``, one ``UPDATE`` of each card with offline records)
writes each new version on its row's own page — a heap-only update, no entry in the table's indexes —
where full pages sent every card's new version elsewhere; on SQLite the migration does nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from citycard.clearing import ClearingPolicy
from citycard.db import Database, downgrade, migrate
from citycard.db.clearing_repositories import ClearingEngine
from citycard.db.clearing_tables import clearing_outcomes
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.db.issuer_tables import CARDS_FILLFACTOR, issuer_cards
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AddBank, AddBinRange, AddProduct, IssueCards
from citycard.issuer.handlers import IssuerService

from tests.db.dbtargets import KINDS, fresh_database

BEFORE = "0027_ledger_transfer_checks"
DAY = "20261125"
CARDS = 200  # three pages and more of cards even when packed (some 60 rows a page)


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Database]:
    with fresh_database("postgresql", tmp_path) as db:
        yield db


def _reloptions(database: Database) -> list[str] | None:
    with database.engine.connect() as c:
        return c.execute(  # type: ignore[no-any-return]
            text("SELECT reloptions FROM pg_class WHERE oid = 'issuer_cards'::regclass")
        ).scalar_one()


def test_0028_sets_the_fillfactor_and_its_downgrade_resets_it(database: Database) -> None:
    postgres = database.engine.dialect.name == "postgresql"
    if postgres:
        assert _reloptions(database) == [f"fillfactor={CARDS_FILLFACTOR}"]  # the migration's, the model's
    downgrade(database.engine, BEFORE)
    if postgres:
        assert _reloptions(database) is None
    migrate(database.engine)
    if postgres:
        assert _reloptions(database) == ["fillfactor=50"]


def _pages(database: Database) -> dict[str, int]:
    """Each card's page (the block of its row's ``ctid``)."""
    with database.engine.connect() as c:
        rows = c.execute(text("SELECT pan, (ctid::text::point)[0]::int FROM issuer_cards")).all()
    return {pan: page for pan, page in rows}


def test_record_cleared_updates_each_card_on_its_own_page(postgres: Database) -> None:
    hsm = SoftHsm(bytes(range(32)))
    service = IssuerService(lambda: postgres.unit_of_work(IssuerUnitOfWork), hsm, time.time_ns)
    service.add_bank(AddBank("ICBC", "ICBC city branch"))
    service.add_bin_range(AddBinRange("ICBC", "621226"))
    service.add_product(AddProduct("ICBC", "anon-ec", "Anonymous EC", "621226", registered=False))
    cards = service.issue_cards(IssueCards("ICBC", "anon-ec", CARDS))
    with postgres.engine.begin() as c:
        c.execute(
            insert(clearing_outcomes),
            [
                {
                    "clearing_date": DAY,
                    "ref": f"T0000001/1/{n}",
                    "outcome": "clear",
                    "card_account": card.ec_float_account_id,
                }
                for n, card in enumerate(cards, 1)
            ],
        )
    before = _pages(postgres)
    assert len(before) == CARDS and len(set(before.values())) > 3

    end_ns = 1_795_622_400_000_000_000
    ClearingEngine(postgres, hsm, ClearingPolicy()).record_cleared(DAY, end_ns)

    with postgres.engine.connect() as c:
        marks = set(c.execute(select(issuer_cards.c.offline_cleared_until_ns)).scalars())
    assert marks == {end_ns}
    assert _pages(postgres) == before  # every new version on its row's page: no index touched
