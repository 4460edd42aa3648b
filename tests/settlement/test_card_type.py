"""Fee caps by card type through settlement (发改价格〔2016〕557号, docs/settlement.md "Fees"): a day of two
100 000-yuan purchases at the restaurant (BOC acquires it, catering 0.60 %), one with an ICBC debit card, one
with a BOC credit card, and a small one with a card of unknown type (an item from before migration 0023):
the debit card's issuer fee is capped at 13 yuan, the credit card's is not, the network fee is capped for
both; every position, the merchant's discount and the ledger's fee accounts to the fen."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from citycard.db import Database
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.durable import StagedFolder
from citycard.settlement import settle_day
from citycard.settlement.model import CENTER

from tests.db.dbtargets import KINDS, fresh_database
from tests.settlement.day import DAY, RESTAURANT, add_banks, item, prepare

pytestmark = pytest.mark.xdist_group("settlement")


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        add_banks(db)
        yield db


def test_a_credit_cards_issuer_fee_is_not_capped_through_settlement(
    database: Database, tmp_path: Path
) -> None:
    items = [
        dataclasses.replace(
            item(1, "online", "purchase", 1, 10_000_000, "ICBC", RESTAURANT), card_type="debit"
        ),
        dataclasses.replace(
            item(2, "online", "purchase", 1, 10_000_000, "BOC", RESTAURANT), card_type="credit"
        ),
        item(3, "online", "purchase", 1, 12_345, "ICBC", RESTAURANT),  # no card type: priced as debit
    ]
    prepare(database, items)
    with StagedFolder(tmp_path / "files") as stage:
        result = settle_day(
            lambda: database.unit_of_work(SettlementUnitOfWork), DAY, clock=lambda: 7, sink=stage
        )
    record = result.record
    # debit 100 000 yuan: discount 600.00, issuer 13.00 (350.00 capped), network 3.25 (32.50 capped)
    # credit 100 000 yuan: discount 600.00, issuer 350.00, network 3.25
    # 123.45 yuan: discount 74.07 -> 0.74; issuer 43.2075 -> 0.43; issuer+network 47.22 -> 0.47: network 0.04
    positions = {p.participant: p for p in record.positions}
    icbc, boc, center = positions["ICBC"], positions["BOC"], positions[CENTER]
    assert (icbc.issued_gross_fen, icbc.issuer_fee_fen) == (10_000_000 + 12_345, 1_300 + 43)
    assert (boc.issued_gross_fen, boc.issuer_fee_fen) == (10_000_000, 35_000)
    assert center.network_fee_fen == 325 + 325 + 4
    [merchant] = record.merchants
    assert merchant.discount_fen == 60_000 + 60_000 + 74
    assert merchant.issuer_fee_fen == 1_300 + 35_000 + 43
    assert merchant.acquirer_fee_fen == (60_000 - 1_300 - 325) + (60_000 - 35_000 - 325) + (74 - 43 - 4)
    assert (boc.acquired_net_fen, boc.acquirer_fee_fen) == (20_012_345 - 120_074, merchant.acquirer_fee_fen)
    assert {p: positions[p].net_fen for p in positions} == {
        "ICBC": -(10_012_345 - 1_343),
        "BOC": 20_012_345 - 120_074 + (58_375 + 24_675 + 27) - (10_000_000 - 35_000),
        CENTER: 654,
    }
    assert sum(p.net_fen for p in record.positions) == 0
    # the bank file shows each item's fees: the credit card's issuer fee uncapped
    rows = (tmp_path / "files" / "bank-BOC.csv").read_text().splitlines()
    by_ref = {r.split(",")[4]: r.split(",") for r in rows if r.startswith("D,")}
    assert by_ref["000000000001"][-5:-1] == ["60000", "1300", "325", "58375"]
    assert by_ref["000000000002"][-5:-1] == ["60000", "35000", "325", "24675"]
