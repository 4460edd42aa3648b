"""Setting up a bank: its keys in the HSM and books in the ledger (``AddBank``), its BIN ranges
(``AddBinRange``; ISO/IEC 7812-1 issuer identification numbers) and card products (``AddProduct``)."""

from __future__ import annotations

import contextlib
import re

from citycard.hsm.api import Algorithm, KeyExistsError, KeyUsage
from citycard.ledger.model import Account, AccountFlags

from ..commands import AddBank, AddBinRange, AddProduct, MalformedRequest, check_amount
from ..model import (
    CITIZEN_KEY_LABEL,
    FIRST_INSTITUTION_ID,
    AlreadyExists,
    Bank,
    BankAccount,
    BinOverlap,
    BinRange,
    CardType,
    InstitutionIdTaken,
    NotFound,
    Product,
    bank_key_labels,
    institution_id_text,
)
from ..ports import IssuerUnitOfWork
from .deps import SYMMETRIC_KEYS, Deps, expect_ok

__all__ = ["add_bank", "add_bin_range", "add_product"]

_PRODUCT_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def add_bank(cmd: AddBank, uow: IssuerUnitOfWork, deps: Deps) -> Bank:
    """The bank, its keys (kept if a previous attempt made them) and its three system accounts: counter
    cash, network settlement and fee income."""
    with uow:
        if uow.banks.get(cmd.code) is not None:
            raise AlreadyExists(f"bank {cmd.code} exists already")
        institution_id = cmd.institution_id or _next_institution_id(uow)
        holder = uow.banks.bank_by_institution(institution_id)
        if holder is not None:
            raise InstitutionIdTaken(f"institution id {institution_id} is bank {holder.code}'s already")
        _bank_keys(cmd.code, deps)
        cash, settlement, fees = uow.ids.allocate(3)
        accounts = [
            Account(cash, code=BankAccount.CASH, flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
            Account(settlement, code=BankAccount.NETWORK_SETTLEMENT),
            Account(fees, code=BankAccount.FEE_INCOME),
        ]
        expect_ok(uow.ledger.create_accounts(accounts))
        bank = Bank(cmd.code, cmd.name, cash, settlement, fees, institution_id)
        uow.banks.add(bank)
        uow.commit()
    return bank


def _next_institution_id(uow: IssuerUnitOfWork) -> str:
    """The lowest free institution id from ``01000001`` on (banks are few: they are all read)."""
    taken = {bank.institution_id for bank in uow.banks.list()}
    number = FIRST_INSTITUTION_ID
    while institution_id_text(number) in taken:
        number += 1
    return institution_id_text(number)


def _bank_keys(code: str, deps: Deps) -> None:
    """Generate the bank's keys in the HSM (kept if a previous attempt made them already)."""
    labels = bank_key_labels(code)
    for role, (usage, algorithm) in SYMMETRIC_KEYS.items():
        with contextlib.suppress(KeyExistsError):
            deps.hsm.generate_key(labels[role], usage, algorithm=algorithm)
    with contextlib.suppress(KeyExistsError):  # the service center's, made with the first bank
        deps.hsm.generate_key(CITIZEN_KEY_LABEL, KeyUsage.HMAC, algorithm=Algorithm.HMAC)
    for role, usage, exponent in (
        ("issuer_rsa", KeyUsage.CA, 3),
        ("deny_list", KeyUsage.SIGNATURE, 65537),
    ):
        with contextlib.suppress(KeyExistsError):
            deps.hsm.generate_rsa_key(labels[role], usage, deps.rsa_bits, public_exponent=exponent)


def add_bin_range(cmd: AddBinRange, uow: IssuerUnitOfWork, deps: Deps) -> BinRange:
    """Assign a BIN range to a bank; the check that no range overlaps it (the same BIN, or one BIN the
    prefix of the other: a PAN would belong to both) is in the unit of work that adds it."""
    with uow:
        if uow.banks.get(cmd.bank_code) is None:
            raise NotFound(f"no bank {cmd.bank_code}")
        overlap = uow.banks.overlapping_bin(cmd.bin)
        if overlap is not None and overlap.bin == cmd.bin:
            raise AlreadyExists(f"BIN {cmd.bin} is assigned already")
        if overlap is not None:
            raise BinOverlap(f"BIN {cmd.bin} overlaps BIN {overlap.bin} of bank {overlap.bank_code}")
        bin_range = BinRange(cmd.bin, cmd.bank_code, cmd.pan_length)
        uow.banks.add_bin(bin_range)
        uow.commit()
    return bin_range


def add_product(cmd: AddProduct, uow: IssuerUnitOfWork, deps: Deps) -> Product:
    if not _PRODUCT_CODE.match(cmd.code):
        raise MalformedRequest("code", "a product code is lower-case letters, digits and '-'")
    for name in ("ec_balance_limit_fen", "ec_single_limit_fen", "ec_reset_threshold_fen"):
        check_amount(getattr(cmd, name), name, allow_zero=True)
    if cmd.ec_single_limit_fen > cmd.ec_balance_limit_fen:
        raise MalformedRequest("ec_single_limit_fen", "exceeds the EC balance limit (9F78 above 9F77)")
    check_amount(cmd.issue_fee_fen, "issue_fee_fen", allow_zero=True)
    check_amount(cmd.annual_fee_fen, "annual_fee_fen", allow_zero=True)
    try:
        card_type = CardType(cmd.card_type)
    except ValueError:
        raise MalformedRequest("card_type", "a card type is debit or credit") from None
    with uow:
        bin_range = uow.banks.get_bin(cmd.bin)
        if bin_range is None or bin_range.bank_code != cmd.bank_code:
            raise NotFound(f"BIN {cmd.bin} is not a BIN of bank {cmd.bank_code}")
        if uow.products.get(cmd.bank_code, cmd.code) is not None:
            raise AlreadyExists(f"product {cmd.code} exists already at {cmd.bank_code}")
        product = Product(
            cmd.code,
            cmd.bank_code,
            cmd.name,
            cmd.bin,
            cmd.registered,
            cmd.ec_balance_limit_fen,
            cmd.ec_single_limit_fen,
            cmd.ec_reset_threshold_fen,
            cmd.issue_fee_fen,
            cmd.annual_fee_fen,
            cmd.validity_years,
            card_type,
        )
        uow.products.add(product)
        uow.commit()
    return product
