"""``IssuerService.issue_for_holders``: registered cards for many holders in one transaction, all or none
(the demo city's bulk seeding uses it)."""

from __future__ import annotations

import pytest

from citycard.city.plan import holder
from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.commands import IssueCards, MalformedRequest
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import DuplicateIssuance

from tests.issuer.conftest import ledger_snapshot


def _commands(serials: range) -> list[IssueCards]:
    return [
        IssueCards("ICBC", "debit-ec", 1, h.name, h.id_number, h.phone)
        for h in (holder(0, serial) for serial in serials)
    ]


def test_each_holder_gets_a_card_and_a_deposit_account(banks: IssuerService) -> None:
    cards = banks.issue_for_holders(_commands(range(5)))
    assert len({c.pan for c in cards}) == 5 and len({c.holder_id for c in cards}) == 5
    assert all(c.registered and c.deposit_account_id is not None for c in cards)


def test_one_refused_holder_refuses_them_all(banks: IssuerService, database: Database) -> None:
    banks.issue_for_holders(_commands(range(2)))
    before = ledger_snapshot(database)
    with pytest.raises(DuplicateIssuance):  # holder 1 has a live card already
        banks.issue_for_holders(_commands(range(1, 4)))
    assert ledger_snapshot(database) == before
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        assert len(uow.cards.list("ICBC")) == 2
    with pytest.raises(MalformedRequest):  # an unregistered card has no holder to issue for
        banks.issue_for_holders([IssueCards("ICBC", "anon-ec", 3)])
