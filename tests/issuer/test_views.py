"""The operator's read side on SQLite and PostgreSQL: card searches with paging, a card's status as the
books see it, and the journal newest first with what each transfer was and each bank's totals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork, _card_filters
from citycard.db.issuer_tables import issuer_cards
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import (
    AuthorizationKind,
    AuthorizationRequest,
    BlockCard,
    Deposit,
    IssueCards,
    MalformedRequest,
    RecordOfflineClearing,
    RefundEcBalance,
    ReportLost,
)
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import CardStatus, InvalidIdNumber, NotFound
from citycard.issuer.ports import CardQuery
from citycard.issuer.views import CardSearch, card_status, find_cards, transfer_kind

from tests.db.dbtargets import fresh_database
from tests.issuer.conftest import DAY_NS, HOLDER_ID, Clock, Terminal
from tests.issuer.test_lifecycle import ec_load
from tests.issuer.test_slice import PSN, issue_registered, request

OTHER_ID = "110105200001010016"  # valid GB 11643-1999 numbers (ISO 7064 MOD 11-2 check characters)
THIRD_ID = "440301199912310024"


def _find(database: Database, hsm: SoftHsm, search: CardSearch, **page: int) -> tuple[list[str], int]:
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        result = find_cards(uow, hsm, search, **page)
    return [c.pan for c in result.cards], result.total


def test_find_cards_by_each_filter_with_stable_pages(
    banks: IssuerService, database: Database, hsm: SoftHsm
) -> None:
    zhang = issue_registered(banks, "ICBC", HOLDER_ID)
    (li,) = banks.issue_cards(IssueCards("ICBC", "debit-ec", 1, "Li Si", OTHER_ID, "13900000002"))
    (wang,) = banks.issue_cards(IssueCards("BOC", "debit-ec", 1, "Wang Wu", THIRD_ID, "13900000003"))
    zhang_boc = issue_registered(banks, "BOC", HOLDER_ID)  # the same citizen at another bank
    anonymous = [c.pan for c in banks.issue_cards(IssueCards("BOC", "anon-ec", count=7))]

    boc = sorted([wang.pan, zhang_boc, *anonymous])
    pages = [_find(database, hsm, CardSearch(bank_code="BOC"), limit=4, offset=o) for o in (0, 4, 8)]
    assert [p[1] for p in pages] == [9, 9, 9]
    assert pages[0][0] + pages[1][0] + pages[2][0] == boc  # PAN order, no card twice, none lost
    assert _find(database, hsm, CardSearch(id_number=HOLDER_ID)) == (sorted([zhang, zhang_boc]), 2)
    assert _find(database, hsm, CardSearch(id_number=HOLDER_ID.lower(), bank_code="BOC")) == ([zhang_boc], 1)
    assert _find(database, hsm, CardSearch(phone="13900000002")) == ([li.pan], 1)
    assert _find(database, hsm, CardSearch(pan=wang.pan)) == ([wang.pan], 1)
    assert _find(database, hsm, CardSearch(pan_suffix=li.pan[-4:])) == ([li.pan], 1)
    assert _find(database, hsm, CardSearch(pan_suffix=li.pan[-9:], bank_code="ICBC")) == ([li.pan], 1)
    assert _find(database, hsm, CardSearch(pan_suffix="9" + li.pan[-4:])) == ([], 0)  # longer: all of it
    assert _find(database, hsm, CardSearch(id_number="11010519491231002X", phone="13900000002")) == ([], 0)
    assert _find(database, hsm, CardSearch(status="issued", bank_code="BOC"))[1] == 8
    banks.report_lost(ReportLost(zhang))
    assert _find(database, hsm, CardSearch(status="LOST")) == ([zhang], 1)
    for bad, error in (
        (CardSearch(status="gone"), MalformedRequest),
        (CardSearch(pan_suffix="123"), MalformedRequest),
        (CardSearch(pan="62122x"), MalformedRequest),
        (CardSearch(id_number="110105194912310021"), InvalidIdNumber),
        (CardSearch(bank_code="CCB"), NotFound),
    ):
        with pytest.raises(error):
            _find(database, hsm, bad)
    with pytest.raises(MalformedRequest, match="limit"):
        _find(database, hsm, CardSearch(), limit=0)


def test_card_status_is_what_the_books_say(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = issue_registered(banks)
    banks.deposit(Deposit(pan, 50_000, "d-1"))
    ec_load(banks, terminal_for(pan), pan, 12_345, "l-1", b"\x01\x02\x03\x04")
    banks.block(BlockCard(pan))
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        view = card_status(uow, pan)
        with pytest.raises(NotFound):
            card_status(uow, pan[:-1] + str((int(pan[-1]) + 1) % 10))
    assert view["pan"] == pan[:6] + "*********" + pan[-4:] and pan not in str(view)
    assert view["ec_balance_fen"] == 12_345 and view["deposit_available_fen"] == 50_000 - 12_345
    assert view["pending_script"] == "block" and view["status"] == "active"
    assert view["holder"] == "Zhang San" and view["holder_id_last4"] == "002X" and HOLDER_ID not in str(view)
    assert view["issued"] == "2026-11-25" and view["expiry"] == "2036-11" and view["bank"] == "ICBC"


def test_journal_newest_first_with_what_each_transfer_was_and_bank_totals(
    banks: IssuerService, database: Database, clock: Clock, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = issue_registered(banks)
    term = terminal_for(pan)
    banks.deposit(Deposit(pan, 50_000, "d-1"))
    assert banks.authorize(
        request(pan, AuthorizationKind.PURCHASE, 4_000, term.first_ac(4_000), "p-1")
    ).approved
    reversal = AuthorizationRequest(
        "r-1",
        AuthorizationKind.REVERSAL,
        pan,
        PSN,
        4_000,
        b"",
        original_request_id="p-1",
        terminal_id="T0000001",
    )
    assert banks.authorize(reversal).approved
    ec_load(banks, term, pan, 3_000, "l-1", b"\x05\x06\x07\x08")
    load = banks.authorize(
        request(pan, AuthorizationKind.EC_LOAD, 1_000, term.first_ac(1_000, un=b"\x09" * 4), "l-2")
    )
    assert load.approved  # the answer never reaches the card: the load is reversed
    undo = AuthorizationRequest(
        "r-2",
        AuthorizationKind.REVERSAL,
        pan,
        PSN,
        1_000,
        b"",
        original_request_id="l-2",
        terminal_id="T0000001",
    )
    assert banks.authorize(undo).approved
    banks.report_lost(ReportLost(pan))
    clock.advance(8 * DAY_NS)
    banks.record_offline_clearing(RecordOfflineClearing(pan, clock.now))
    assert banks.refund_ec_balance(RefundEcBalance(pan)) == 3_000
    other = issue_registered(banks, "BOC", OTHER_ID)
    banks.deposit(Deposit(other, 7_700, "d-2"))

    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        icbc = uow.books.journal(bank_code="ICBC", limit=100)
        owners = uow.books.owners(i for t in icbc for i in (t.debit_account_id, t.credit_account_id))
        kinds = [
            transfer_kind(t, owners.get(t.debit_account_id), owners.get(t.credit_account_id)) for t in icbc
        ]
        assert kinds == [
            "ec_refund_to_account",
            "ec_load_reversal",
            "ec_load",
            "ec_load",
            "purchase_reversal",
            "purchase",
            "cash_deposit",
        ]
        assert [(t.timestamp_ns, t.id) for t in icbc] == sorted(
            ((t.timestamp_ns, t.id) for t in icbc), reverse=True
        )
        older = uow.books.journal(bank_code="ICBC", before=(icbc[2].timestamp_ns, icbc[2].id), limit=2)
        assert [t.id for t in older] == [t.id for t in icbc[3:5]]  # the next page, newest first
        assert [t.amount_fen for t in uow.books.journal(bank_code="BOC")] == [7_700]
        totals = uow.books.totals("ICBC")
        assert totals.balanced and totals.debits_posted == sum(t.amount_fen for t in icbc)
        assert uow.books.totals("BOC").debits_posted == 7_700
        whole = uow.books.totals()
        assert whole.debits_posted == totals.debits_posted + 7_700 == uow.ledger.totals().debits_posted
        boc_accounts = uow.books.balances(bank_code="BOC")
        assert {a.id for a in boc_accounts} >= {
            t.credit_account_id for t in uow.books.journal(bank_code="BOC")
        }
        assert not {a.id for a in boc_accounts} & {a.id for a in uow.books.balances(bank_code="ICBC")}


def test_card_search_queries_use_their_indexes(tmp_path: Path) -> None:
    """The searches an operator makes all day are index lookups, not scans of every card (SQLite's plan)."""
    expected = {
        CardQuery(pan_suffix="12345"): "ix_issuer_cards_pan_last4",
        CardQuery(phone="13900000002"): "ix_issuer_cardholders_phone",
        CardQuery(status=CardStatus.LOST): "ix_issuer_cards_status",
        CardQuery(bank_code="BOC"): "ix_issuer_cards_bank",
    }
    with fresh_database("sqlite", tmp_path) as database, database.engine.connect() as connection:
        for query, index in expected.items():
            statement = select(issuer_cards).where(*_card_filters(query)).order_by(issuer_cards.c.pan)
            compiled = statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
            plan = " ".join(
                str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
            )
            assert index in plan, plan
