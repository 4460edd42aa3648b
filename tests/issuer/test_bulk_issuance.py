"""Issuance is set-based (issue 10): a batch's cards are checked and written in a fixed number of statements,
whatever their number, and come out exactly as issuing them one at a time did — the same PANs in the same
order (the BIN range's serials, the Luhn digit), the same rows, one EC float account each, a transit file
each; a PAN that exists already refuses the batch with nothing written."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from citycard.codec.pan import mask_pan
from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.commands import IssueCards
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import BankAccount, BinRange, Card, CardStatus, DuplicateIssuance, RecordState
from citycard.issuer.usecases.cards import ISSUE_BATCH
from citycard.issuer.usecases.deps import ec_float, expiry_after

from tests.issuer.conftest import BOC_BIN, Clock, ledger_snapshot


@pytest.fixture
def bare(database: Database, banks: IssuerService, clock: Clock) -> IssuerService:
    """The banks' service without personalisation (as the bulk issuance of the demo city and benchmarks)."""
    return IssuerService(lambda: database.unit_of_work(IssuerUnitOfWork, clock=clock), banks.hsm, clock)


def _stored(database: Database) -> list[Card]:
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        return uow.cards.list("BOC", limit=10_000)


def test_a_bulk_issuance_is_the_cards_one_at_a_time_would_be(database: Database, bare: IssuerService) -> None:
    count = 2 * ISSUE_BATCH + 3  # two full transactions and a short one
    seen: list[int] = []
    cards = bare.issue_cards(IssueCards("BOC", "anon-ec", count), progress=seen.append)
    assert seen == [1] * count
    # the reference: serial after serial of the BIN range, each PAN with its Luhn digit
    pans = [BinRange(BOC_BIN, "BOC").pan(serial) for serial in range(1, count + 1)]
    assert [c.pan for c in cards] == pans
    assert pans[:3] == ["6216610000000000016", "6216610000000000024", "6216610000000000032"]  # as before
    first_ec = cards[0].ec_float_account_id
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        product = uow.products.get("BOC", "anon-ec")
        bin_range = uow.banks.get_bin(BOC_BIN)
        transits = [uow.card_records.transit(pan) for pan in pans[ISSUE_BATCH - 2 : ISSUE_BATCH + 2]]
        accounts = uow.ledger.lookup_accounts([c.ec_float_account_id for c in cards])
    assert product is not None and bin_range is not None and bin_range.next_serial == count + 1
    for k, card in enumerate(cards):
        batch_start = cards[k - k % ISSUE_BATCH]
        expected = Card(
            pan=pans[k],
            psn="01",
            bank_code="BOC",
            product_code="anon-ec",
            holder_id=None,
            status=CardStatus.ISSUED,
            expiry=expiry_after(batch_start.issued_at_ns, product.validity_years),
            ec_float_account_id=first_ec + k,  # consecutive ids across the transactions
            deposit_account_id=None,
            issued_at_ns=batch_start.issued_at_ns,  # one reading of the clock per transaction
        )
        assert card == expected, k
    assert len({c.issued_at_ns for c in cards}) == 3
    assert _stored(database) == cards  # the rows are the cards returned
    assert [a.id for a in accounts] == [c.ec_float_account_id for c in cards]
    assert all(a.code == BankAccount.CARD_EC_FLOAT for a in accounts)
    assert [(a.flags, a.limit_fen) for a in accounts] == [
        (ec_float(a.id, product).flags, ec_float(a.id, product).limit_fen) for a in accounts
    ]
    assert all(t is not None and t.state is RecordState.WRITTEN for t in transits)


def test_a_batch_costs_the_same_statements_whatever_its_size(database: Database, bare: IssuerService) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    bare.issue_cards(IssueCards("BOC", "anon-ec", 1))  # caches warm
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        bare.issue_cards(IssueCards("BOC", "anon-ec", 10))
        ten = len(statements)
        bare.issue_cards(IssueCards("BOC", "anon-ec", ISSUE_BATCH))
    finally:
        event.remove(database.engine, "before_cursor_execute", count)
    assert len(statements) - ten == ten, statements[ten:]  # was two statements more per card


def test_an_existing_pan_refuses_the_batch(database: Database, bare: IssuerService) -> None:
    (first,) = bare.issue_cards(IssueCards("BOC", "anon-ec", 1))
    taken = BinRange(BOC_BIN, "BOC").pan(7)  # the 6th card of the next issuance, there already
    with database.unit_of_work(IssuerUnitOfWork) as uow:  # (as a card of an older numbering could be)
        uow.cards.add(Card(taken, "01", "BOC", "anon-ec", None, CardStatus.ISSUED, "3012", 1, None, 0))
        uow.commit()
    before, stored = ledger_snapshot(database), _stored(database)
    with pytest.raises(DuplicateIssuance, match=re.escape(f"card {mask_pan(taken)} exists already")):
        bare.issue_cards(IssueCards("BOC", "anon-ec", 10))
    assert ledger_snapshot(database) == before and _stored(database) == stored
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        bin_range = uow.banks.get_bin(BOC_BIN)
        assert bin_range is not None and bin_range.next_serial == 2  # the serials were not taken
        assert uow.cards.existing([first.pan, taken, BinRange(BOC_BIN, "BOC").pan(3)]) == {first.pan, taken}
        assert uow.cards.existing([]) == set()
