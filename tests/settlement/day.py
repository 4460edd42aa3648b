"""A day of the city for settlement's tests: two banks' cards (ICBC, BOC), four merchants of four industries
acquired by the two banks, online and offline purchases, fares, a refund, a purchase voided, an EC cash
load; the issuers' books as authorization and clearing leave them (each item's amount on the issuing bank's
network settlement account)."""

from __future__ import annotations

from datetime import UTC, datetime

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AddBank
from citycard.issuer.handlers import IssuerService
from citycard.ledger.model import Account, Transfer
from citycard.settlement.model import ClearedItem

from tests.settlement.contract import insert_cleared_day

DAY = "20261125"
NEXT_DAY = "20261126"
T0 = int(datetime(2026, 11, 25, 2, 0, tzinfo=UTC).timestamp()) * 10**9  # 10:00 in Beijing
SUPERMARKET = "104110054110001"  # ICBC acquires it
RESTAURANT = "104110058120001"  # BOC
BUS = "104110041310001"  # ICBC: validators
HOSPITAL = "104110080620001"  # BOC
MERCHANTS = {
    SUPERMARKET: ("ICBC", "5411", "supermarket", "SHOP0001"),
    RESTAURANT: ("BOC", "5812", "catering", "FOOD0001"),
    BUS: ("ICBC", "4131", "transport", "BUS00001"),
    HOSPITAL: ("BOC", "8062", "hospital", "HOSP0001"),
}
ICBC_PAN = "621226******0017"
BOC_PAN = "621661******0025"
CARD_ACCOUNT = {"ICBC": 1001, "BOC": 1002}  # stand-ins for the holders' deposit and EC float accounts


def item(n: int, source: str, kind: str, sign: int, amount: int, issuer: str, merchant: str) -> ClearedItem:
    bank, mcc, industry, terminal = MERCHANTS[merchant]
    pan = ICBC_PAN if issuer == "ICBC" else BOC_PAN
    ref = f"{n:012d}" if source == "online" else f"{terminal}/1/{n}"
    rrn = f"{n:012d}" if source == "online" else None
    return ClearedItem(
        n,
        source,
        ref,
        kind,
        sign,
        amount,
        issuer,
        bank,
        merchant,
        terminal,
        mcc,
        industry,
        pan,
        T0 + n * 60 * 10**9,
        rrn,
    )


ITEMS = [
    item(1, "online", "purchase", 1, 12345, "ICBC", SUPERMARKET),
    item(2, "online", "purchase", 1, 9999, "BOC", SUPERMARKET),
    item(3, "offline", "purchase", 1, 1999, "BOC", SUPERMARKET),
    item(4, "online", "purchase", 1, 25050, "ICBC", RESTAURANT),
    item(5, "online", "refund", -1, 5000, "ICBC", RESTAURANT),
    item(6, "offline", "fare", 1, 200, "BOC", BUS),
    item(7, "offline", "fare", 1, 200, "ICBC", BUS),
    item(8, "offline", "fare", 1, 150, "ICBC", BUS),
    item(9, "online", "purchase", 1, 30000, "BOC", HOSPITAL),
    item(10, "online", "purchase", 1, 888, "BOC", RESTAURANT),
    item(11, "online", "void", -1, 888, "BOC", RESTAURANT),
    item(12, "online", "ec_cash_load", -1, 5000, "ICBC", SUPERMARKET),
]


def add_banks(database: Database) -> None:
    service = IssuerService(
        lambda: database.unit_of_work(IssuerUnitOfWork), SoftHsm(bytes(range(32))), lambda: T0
    )
    for code in ("ICBC", "BOC"):
        service.add_bank(AddBank(code, f"{code} city branch"))


def network_settlement(database: Database) -> dict[str, int]:
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        return {code: uow.banks.get(code).settlement_account_id for code in ("ICBC", "BOC")}  # type: ignore[union-attr]


def prepare(database: Database, items: list[ClearedItem] = ITEMS, day: str = DAY) -> None:
    """The issuers' postings of the items (as authorization and clearing made them), the day cleared."""
    settlement = network_settlement(database)
    with database.unit_of_work() as uow:
        uow.ledger.create_accounts([Account(i, code=10) for i in CARD_ACCOUNT.values()])
        transfers = []
        for it in items:
            card, bank = CARD_ACCOUNT[it.issuer_bank], settlement[it.issuer_bank]
            debit, credit = (card, bank) if it.sign > 0 else (bank, card)
            transfers.append(Transfer(10**6 + int(day) * 100 + it.id, debit, credit, it.amount_fen, code=21))
        assert all(r.value == "ok" for r in uow.ledger.create_transfers(transfers))
        uow.commit()
    insert_cleared_day(database, day, items)
