"""Bad input to the issuer's commands is a typed error when the command is built or handled, and changes
nothing: unknown banks, malformed periods and phone numbers, BIN ranges that overlap assigned ones."""

from __future__ import annotations

import pytest

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.commands import (
    AddBank,
    AddBinRange,
    AddProduct,
    ChargeAnnualFees,
    ExpireCards,
    IssueCards,
    MalformedRequest,
)
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import AlreadyExists, BinOverlap, NotFound

from tests.issuer.conftest import HOLDER_ID, ICBC_BIN, ledger_snapshot


def test_periodic_jobs_refuse_an_unknown_bank(banks: IssuerService, database: Database) -> None:
    before = ledger_snapshot(database)
    with pytest.raises(NotFound, match="no bank NOPE"):
        banks.charge_annual_fees(ChargeAnnualFees("NOPE", "2026"))
    with pytest.raises(NotFound, match="no bank NOPE"):
        banks.expire_cards(ExpireCards("NOPE"))
    with pytest.raises(NotFound, match="no bank NOPE"):
        banks.export_deny_list("NOPE")
    assert ledger_snapshot(database) == before


@pytest.mark.parametrize("period", ["", "abc", "26", "2026-13", "2026-7", "20261", " 2026", "3026"])
def test_annual_fee_period_is_a_year_or_a_month(period: str) -> None:
    with pytest.raises(MalformedRequest, match="period"):
        ChargeAnnualFees("ICBC", period)


@pytest.mark.parametrize("period", ["2026", "2026-07", "1999-12"])
def test_annual_fee_periods_accepted(period: str) -> None:
    assert ChargeAnnualFees("ICBC", period).period == period


@pytest.mark.parametrize("phone", ["abc", "123", "1380000000", "138000000000", "23800000000", "+1 555 0100"])
def test_issue_refuses_a_malformed_phone_number(phone: str) -> None:
    with pytest.raises(MalformedRequest, match="phone"):
        IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number=HOLDER_ID, phone=phone)


@pytest.mark.parametrize("phone", ["", "13800000000", "+86 138 0000 0000", "010-12345678", "0755-1234567"])
def test_issue_accepts_phone_numbers(phone: str) -> None:
    assert (
        IssueCards("ICBC", "debit-ec", holder_name="Li Si", id_number=HOLDER_ID, phone=phone).phone == phone
    )


@pytest.mark.parametrize(
    ("code", "bin_", "pan_length"),
    [("bad code", None, 19), ("ICBC", "6212", 19), ("ICBC", "62122x", 19), ("ICBC", "621226", 15)],
)
def test_set_up_commands_are_checked_when_built(code: str, bin_: str | None, pan_length: int) -> None:
    with pytest.raises(MalformedRequest):
        AddBank(code, "name") if bin_ is None else AddBinRange(code, bin_, pan_length)


@pytest.mark.parametrize("bin_", ["6212261", "62122601", ICBC_BIN])
def test_overlapping_bin_ranges_are_refused(banks: IssuerService, database: Database, bin_: str) -> None:
    """A PAN of 6212261… would belong to both 621226 and 6212261: one BIN a prefix of the other is refused,
    for the same bank and for another; the same BIN again is AlreadyExists."""
    banks.add_bank(AddBank("ABC", "ABC city branch"))
    for bank in ("ABC", "ICBC"):
        expected = AlreadyExists if bin_ == ICBC_BIN else BinOverlap
        with pytest.raises(expected, match=ICBC_BIN):
            banks.add_bin_range(AddBinRange(bank, bin_))
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        assert uow.banks.get_bin(bin_) == (uow.banks.get_bin(ICBC_BIN) if bin_ == ICBC_BIN else None)


def test_a_shorter_bin_over_an_assigned_one_is_refused(banks: IssuerService) -> None:
    banks.add_bin_range(AddBinRange("ICBC", "62122799"))
    with pytest.raises(BinOverlap, match="62122799"):
        banks.add_bin_range(AddBinRange("BOC", "621227"))
    banks.add_bin_range(AddBinRange("BOC", "621228"))  # a neighbour is fine


def test_a_product_single_limit_above_its_balance_limit_is_refused(banks: IssuerService) -> None:
    """9F78 above 9F77 would promise the card a payment its balance can never hold."""
    product = AddProduct(
        "ICBC", "odd-ec", "odd", ICBC_BIN, ec_balance_limit_fen=50_000, ec_single_limit_fen=50_001
    )
    with pytest.raises(MalformedRequest, match="ec_single_limit_fen"):
        banks.add_product(product)


def test_a_card_search_by_a_malformed_phone_is_refused(banks: IssuerService, database: Database) -> None:
    from citycard.issuer.views import CardSearch, find_cards

    read = database.unit_of_work(IssuerUnitOfWork, read_only=True)
    with read as uow, pytest.raises(MalformedRequest, match="phone"):
        find_cards(uow, banks.hsm, CardSearch(phone="abc"))
