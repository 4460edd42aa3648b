"""The card's life (SQLite and PostgreSQL): loss, cooling period and refund, replacement, block/unblock by
script at the next online contact, closure, renewal, and the signed deny list."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from citycard.codec.tlv import decode
from citycard.db import Database
from citycard.issuer.commands import (
    ActivateCard,
    AuthorizationKind,
    BlockCard,
    CloseCard,
    IssueCards,
    RecordOfflineClearing,
    RefundEcBalance,
    RenewCard,
    ReplaceCard,
    ReportLost,
    UnblockCard,
)
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import (
    BankAccount,
    CardStateError,
    CardStatus,
    InvalidIdNumber,
    UnregisteredCardLoss,
)
from citycard.kernel.denylist import encode_document

from tests.issuer.conftest import DAY_NS, HOLDER_ID, Clock, MemorySink, Terminal, ledger_snapshot
from tests.issuer.test_authorization import funded_card
from tests.issuer.test_slice import issue_registered, request


def ec_load(banks: IssuerService, term: Terminal, pan: str, amount: int, rid: str, un: bytes) -> None:
    resp = banks.authorize(request(pan, AuthorizationKind.EC_LOAD, amount, term.first_ac(amount, un=un), rid))
    assert resp.approved, resp.reason
    _, sws = term.complete(resp.field55, resp.arc)
    assert sws == [0x9000]


def card_status(database: Database, pan: str) -> CardStatus:
    from citycard.db.issuer_repositories import IssuerUnitOfWork

    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
        assert card is not None
        return card.status


def test_unregistered_card_loss_is_the_holders_loss(banks: IssuerService, database: Database) -> None:
    (card,) = banks.issue_cards(IssueCards("ICBC", "anon-ec"))
    before = ledger_snapshot(database)
    with pytest.raises(UnregisteredCardLoss, match="holder's loss"):
        banks.report_lost(ReportLost(card.pan))
    assert ledger_snapshot(database) == before
    assert banks.export_deny_list("ICBC").version == 0


def test_loss_report_cooling_period_and_refund_to_account(
    banks: IssuerService, database: Database, clock: Clock, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 50_000)
    term = terminal_for(pan)
    ec_load(banks, term, pan, 30_000, "l-1", b"\x01\x01\x01\x01")
    with pytest.raises(InvalidIdNumber):
        banks.report_lost(ReportLost(pan, id_number="110105194912310021"))
    lost = banks.report_lost(ReportLost(pan, id_number=HOLDER_ID))
    assert lost.status == CardStatus.LOST
    signed = banks.export_deny_list("ICBC")
    body = json.loads(signed.body)
    assert [e["pan"] for e in body["entries"]] == [pan] and body["version"] == signed.version == 1
    # a lost card is declined online ("41"), and cannot be refunded before the cooling period
    resp = banks.authorize(request(pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100), "p-1"))
    assert resp.response_code == "41"
    with pytest.raises(CardStateError, match="cooling period"):
        banks.refund_ec_balance(RefundEcBalance(pan))
    clock.advance(7 * DAY_NS)
    with pytest.raises(CardStateError, match="not cleared"):
        banks.refund_ec_balance(RefundEcBalance(pan))
    banks.record_offline_clearing(RecordOfflineClearing(pan, clock.now))
    assert banks.refund_ec_balance(RefundEcBalance(pan)) == 30_000
    resp = banks.authorize(
        request(issue_registered(banks, bank="BOC"), AuthorizationKind.BALANCE_INQUIRY, 0, b"", "b-unused")
    )
    assert resp.response_code == "30"  # (a request without chip data is a format error)
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced


def test_replacement_receives_the_balance_at_its_next_online_contact(
    banks: IssuerService, clock: Clock, sink: MemorySink, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 50_000)
    ec_load(banks, terminal_for(pan), pan, 12_000, "l-1", b"\x02\x02\x02\x02")
    banks.report_lost(ReportLost(pan))
    new = banks.replace_card(ReplaceCard(pan))
    assert new.pan != pan and new.deposit_account_id is not None and new.pan in sink.images
    banks.activate(ActivateCard(new.pan))
    clock.advance(8 * DAY_NS)
    banks.record_offline_clearing(RecordOfflineClearing(pan, clock.now))
    assert banks.refund_ec_balance(RefundEcBalance(pan, to="replacement")) == 12_000
    term = terminal_for(new.pan)
    resp = banks.authorize(
        request(
            new.pan, AuthorizationKind.BALANCE_INQUIRY, 0, term.first_ac(0, un=b"\x03\x03\x03\x03"), "b-1"
        )
    )
    assert resp.approved and len(resp.scripts) == 1
    _, sws = term.complete(resp.field55, resp.arc)
    assert sws == [0x9000] and term.ec_balance() == 12_000


def test_block_and_unblock_by_script_at_the_next_contact(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks)
    term = terminal_for(pan)
    banks.block(BlockCard(pan))
    resp = banks.authorize(
        request(pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100, un=b"\x04" * 4), "p-1")
    )
    assert resp.response_code == "62" and resp.scripts[0][:4] == bytes.fromhex("841E0000")
    _, sws = term.complete(resp.field55, resp.arc)
    assert sws == [0x9000]
    assert card_status(database, pan) == CardStatus.BLOCKED
    assert [e["pan"] for e in json.loads(banks.export_deny_list("ICBC").body)["entries"]] == [pan]
    banks.unblock(UnblockCard(pan))
    resp = banks.authorize(
        request(pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100, un=b"\x05" * 4), "p-2")
    )
    assert resp.approved and resp.scripts[0][:4] == bytes.fromhex("84180000")
    assert decode(resp.field55)[-1].tag == "71"  # run before the second GENERATE AC
    cid, sws = term.complete(resp.field55, resp.arc)
    assert sws == [0x9000] and cid == 0x40  # unblocked first, the card approves the purchase that carried it
    assert card_status(database, pan) == CardStatus.ACTIVE
    assert json.loads(banks.export_deny_list("ICBC").body)["entries"] == []
    resp = banks.authorize(
        request(pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100, un=b"\x06" * 4), "p-3")
    )
    assert resp.approved and not resp.scripts
    cid, _ = term.complete(resp.field55, resp.arc)
    assert cid == 0x40


def test_close_unregistered_card_refunds_cash_after_clearing(
    banks: IssuerService, database: Database, clock: Clock, terminal_for: Callable[[str], Terminal]
) -> None:
    (card,) = banks.issue_cards(IssueCards("BOC", "anon-ec"))
    banks.activate(ActivateCard(card.pan))
    term = terminal_for(card.pan)
    resp = banks.authorize(
        request(card.pan, AuthorizationKind.EC_CASH_LOAD, 5_000, term.first_ac(5_000), "c-1")
    )
    assert resp.approved and resp.ec_balance_fen == 5_000
    resp2 = banks.authorize(
        request(card.pan, AuthorizationKind.PURCHASE, 100, term.first_ac(100, un=b"\x07" * 4), "p-1")
    )
    assert resp2.response_code == "57"  # no account behind an anonymous card
    closed = banks.close(CloseCard(card.pan))
    assert closed.status == CardStatus.CLOSED
    with pytest.raises(UnregisteredCardLoss):
        banks.refund_ec_balance(RefundEcBalance(card.pan, to="account"))
    clock.advance(7 * DAY_NS)
    banks.record_offline_clearing(RecordOfflineClearing(card.pan, clock.now))
    assert banks.refund_ec_balance(RefundEcBalance(card.pan, to="cash")) == 5_000
    with pytest.raises(CardStateError):
        banks.close(CloseCard(card.pan))


def test_renewal_issues_a_successor(banks: IssuerService, database: Database) -> None:
    pan = issue_registered(banks)
    new = banks.renew(RenewCard(pan))
    assert new.pan != pan and new.holder_id is not None
    assert card_status(database, pan) == CardStatus.EXPIRED
    with pytest.raises(CardStateError):
        banks.renew(RenewCard(pan))


def test_deny_list_document_signature_verifies(banks: IssuerService) -> None:
    pan = issue_registered(banks)
    banks.report_lost(ReportLost(pan))
    signed = banks.export_deny_list("ICBC")
    doc = encode_document(
        signed.body, signed.signature, signed.key_label, signed.key_kcv, signed.modulus, signed.exponent
    )
    body = base64.b64decode(doc["body"])
    public = rsa.RSAPublicNumbers(
        int(doc["key"]["exponent"], 16), int(doc["key"]["modulus"], 16)
    ).public_key()
    public.verify(bytes.fromhex(doc["signature"]), body, padding.PKCS1v15(), hashes.SHA256())
    tampered = body.replace(pan.encode(), pan[:-1].encode() + b"0")
    with pytest.raises(InvalidSignature):
        public.verify(bytes.fromhex(doc["signature"]), tampered, padding.PKCS1v15(), hashes.SHA256())
    assert json.loads(banks.export_deny_list("BOC").body)["entries"] == []


def test_expired_card_is_declined(
    banks: IssuerService, clock: Clock, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = issue_registered(banks)
    term = terminal_for(pan)
    clock.advance(11 * 366 * DAY_NS)  # past the 10-year validity of the product
    resp = banks.authorize(request(pan, AuthorizationKind.BALANCE_INQUIRY, 0, term.first_ac(0), "b-1"))
    assert resp.response_code == "54"
    assert banks.renew(RenewCard(pan)).expiry > "3611"  # the successor gets a fresh validity


def test_migration_0002_down_and_up(database: Database) -> None:
    from sqlalchemy import inspect

    from citycard.db import downgrade, migrate

    schema = database.engine.dialect.default_schema_name if database.engine.dialect.name != "sqlite" else None
    downgrade(database.engine, "0001_ledger")
    names = set(inspect(database.engine).get_table_names(schema=schema))
    assert "ledger_accounts" in names and not any(n.startswith("issuer_") for n in names)
    migrate(database.engine)
    assert "issuer_cards" in set(inspect(database.engine).get_table_names(schema=schema))


def test_annual_fees_once_per_period_and_expiry_job(
    banks: IssuerService, database: Database, clock: Clock
) -> None:
    from citycard.issuer.commands import ActivateCard, AddProduct, ChargeAnnualFees, Deposit, ExpireCards

    banks.add_product(AddProduct("BOC", "fee-debit", "debit with a fee", "621661", annual_fee_fen=1_000))
    paying, broke = (
        banks.issue_cards(IssueCards("BOC", "fee-debit", holder_name=n, id_number=i))[0]
        for n, i in (("Wang Wu", HOLDER_ID), ("Zhao Liu", "440524188001010014"))
    )
    for card in (paying, broke):
        banks.activate(ActivateCard(card.pan))
    banks.deposit(Deposit(paying.pan, 5_000, "dep-1"))
    assert banks.charge_annual_fees(ChargeAnnualFees("BOC", "2026")) == (1_000, [broke.pan])
    assert banks.charge_annual_fees(ChargeAnnualFees("BOC", "2026")) == (0, [broke.pan])
    assert banks.charge_annual_fees(ChargeAnnualFees("BOC", "2027"))[0] == 1_000
    assert banks.expire_cards(ExpireCards("BOC")) == []
    clock.advance(11 * 366 * DAY_NS)
    assert sorted(banks.expire_cards(ExpireCards("BOC"))) == sorted([paying.pan, broke.pan])
    assert card_status(database, paying.pan) == CardStatus.EXPIRED


def test_ec_float_never_exceeds_the_cards_limit(
    banks: IssuerService, database: Database, clock: Clock, terminal_for: Callable[[str], Terminal]
) -> None:
    """The ledger itself caps each card's EC float at the product's EC limit (9F77, 1000.00 here): a refund
    that would push the replacement's float over it is refused, posts nothing, and can go to the account."""
    pan = funded_card(banks, 200_000)
    ec_load(banks, terminal_for(pan), pan, 60_000, "l-1", b"\x04\x04\x04\x04")
    banks.report_lost(ReportLost(pan))
    new = banks.replace_card(ReplaceCard(pan))
    banks.activate(ActivateCard(new.pan))
    ec_load(banks, terminal_for(new.pan), new.pan, 50_000, "l-2", b"\x05\x05\x05\x05")
    clock.advance(8 * DAY_NS)
    banks.record_offline_clearing(RecordOfflineClearing(pan, clock.now))
    before = ledger_snapshot(database)
    with pytest.raises(CardStateError, match="exceed its limit"):
        banks.refund_ec_balance(RefundEcBalance(pan, to="replacement"))
    assert ledger_snapshot(database) == before
    assert banks.refund_ec_balance(RefundEcBalance(pan, to="account")) == 60_000
    with database.unit_of_work() as uow:
        floats = [a for a in uow.ledger.balances() if a.code == BankAccount.CARD_EC_FLOAT]
        assert len(floats) == 2 and all(a.limit_fen == 100_000 for a in floats)
        assert sorted(a.credit_balance_fen for a in floats) == [0, 50_000] and uow.ledger.totals().balanced
