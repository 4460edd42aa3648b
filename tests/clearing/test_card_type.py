"""The card type reaches settlement through clearing (docs/clearing.md, docs/settlement.md "Fees"): a product
is debit unless made credit (``AddProduct(card_type=…)``, anything else refused, nothing added); every
clearing item, online or offline, carries its card's product's type."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.db.issuer_tables import issuer_products
from citycard.issuer.commands import AddProduct, MalformedRequest
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import CardType

from tests.clearing.test_day import DAY, Day, engine, items
from tests.issuer.conftest import BOC_BIN, Clock


def test_a_product_is_debit_unless_made_credit(banks: IssuerService, database: Database) -> None:
    made = banks.add_product(
        AddProduct("BOC", "credit-gold", "Gold credit card", BOC_BIN, card_type="credit")
    )
    assert made.card_type is CardType.CREDIT
    with pytest.raises(MalformedRequest, match="card_type"):
        banks.add_product(AddProduct("BOC", "prepaid", "Prepaid", BOC_BIN, card_type="prepaid"))
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        kept = {p.code: p.card_type for p in uow.products.list("BOC")}
    assert kept == {"anon-ec": CardType.DEBIT, "credit-gold": CardType.CREDIT, "debit-ec": CardType.DEBIT}


def test_every_item_carries_its_cards_type(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    with database.engine.begin() as c:  # BOC's products become credit products before the day is cleared
        c.execute(
            update(issuer_products).where(issuer_products.c.bank_code == "BOC").values(card_type="credit")
        )
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    clearing.run(DAY)
    got = {(i["source"], i["issuer_bank"], i["card_type"]) for i in items(database, "20261125")}
    assert got == {
        ("online", "ICBC", "debit"),
        ("online", "BOC", "credit"),
        ("offline", "ICBC", "debit"),
        ("offline", "BOC", "credit"),
    }
