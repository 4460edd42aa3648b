"""Follow-ups of a purchase (SQLite and PostgreSQL), with the ledger before and after: the void (消费撤销,
card present, same day, whole amount), the refund advice (退货, partial refunds up to the purchase), and
reversals — sent five times, and sent before their original (the tombstone)."""

from __future__ import annotations

from collections.abc import Callable

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest, AuthorizationResponse
from citycard.issuer.handlers import IssuerService

from tests.issuer.conftest import DAY_NS, Clock, Terminal, ledger_snapshot
from tests.issuer.test_authorization import funded_card
from tests.issuer.test_slice import PSN, request

PURCHASE = AuthorizationKind.PURCHASE
TERMINAL, MERCHANT = "T0000001", "M00000000000001"


def follow_up(
    kind: AuthorizationKind,
    pan: str,
    amount: int,
    original: str,
    rid: str,
    field55: bytes = b"",
    *,
    terminal: str = TERMINAL,
    merchant: str = MERCHANT,
) -> AuthorizationRequest:
    return AuthorizationRequest(
        rid,
        kind,
        pan,
        PSN,
        amount,
        field55,
        stan="000002",
        terminal_id=terminal,
        merchant_id=merchant,
        original_request_id=original,
    )


def purchase(banks: IssuerService, term: Terminal, pan: str, amount: int, rid: str, un: bytes) -> None:
    req = request(pan, PURCHASE, amount, term.first_ac(amount, un=un), rid)
    resp = banks.authorize(AuthorizationRequest(**{**req.__dict__, "merchant_id": MERCHANT}))
    assert resp.approved, resp.reason


def balances(database: Database) -> dict[int, int]:
    """Every account's net balance (credits less debits): a reversal nets to zero, it does not unpost."""
    with database.unit_of_work() as uow:
        return {a.id: a.credit_balance_fen for a in uow.ledger.balances()}


def deposit_balance(database: Database, pan: str) -> int:
    with database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        card = uow.cards.get(pan)
        assert card is not None and card.deposit_account_id is not None
        (account,) = uow.ledger.lookup_accounts([card.deposit_account_id])
        return account.available_fen


def test_void_cancels_a_same_day_purchase_once(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    term = terminal_for(pan)
    before = balances(database)
    purchase(banks, term, pan, 4_000, "p-1", b"\x01\x01\x01\x01")
    after_purchase = ledger_snapshot(database)
    # the whole amount only (64), and card present: the void's own ARQC
    wrong = banks.authorize(
        follow_up(AuthorizationKind.VOID, pan, 3_000, "p-1", "v-0", term.first_ac(3_000, un=b"\x02" * 4))
    )
    assert wrong.response_code == "64" and ledger_snapshot(database)[1] == after_purchase[1]
    void = follow_up(AuthorizationKind.VOID, pan, 4_000, "p-1", "v-1", term.first_ac(4_000, un=b"\x03" * 4))
    answer = banks.authorize(void)
    assert answer.approved and answer.arpc and answer.balance_fen == 10_000, answer.reason
    assert deposit_balance(database, pan) == 10_000
    assert balances(database) == before  # every balance as before the purchase
    voided = ledger_snapshot(database)
    assert banks.authorize(void) == answer and ledger_snapshot(database) == voided  # a retry: once
    again = banks.authorize(
        follow_up(AuthorizationKind.VOID, pan, 4_000, "p-1", "v-2", term.first_ac(4_000, un=b"\x04" * 4))
    )
    assert again.response_code == "12" and "already" in again.reason
    refund = banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 1_000, "p-1", "f-1"))
    assert refund.response_code == "12"  # a voided purchase is not refunded as well
    unknown = banks.authorize(
        follow_up(AuthorizationKind.VOID, pan, 4_000, "zz", "v-3", term.first_ac(4_000, un=b"\x05" * 4))
    )
    assert unknown.response_code == "25"
    assert ledger_snapshot(database)[1] == voided[1]


def test_void_is_refused_the_next_day_and_from_another_terminal(
    banks: IssuerService,
    database: Database,
    clock: Clock,
    terminal_for: Callable[[str], Terminal],
) -> None:
    pan = funded_card(banks, 10_000)
    term = terminal_for(pan)
    purchase(banks, term, pan, 2_000, "p-1", b"\x01\x01\x01\x01")
    after = ledger_snapshot(database)
    other = follow_up(
        AuthorizationKind.VOID, pan, 2_000, "p-1", "v-1", term.first_ac(2_000, un=b"\x02" * 4), merchant="M2"
    )
    answer = banks.authorize(other)
    assert answer.response_code == "58" and "terminal_mismatch" in answer.flags
    clock.advance(DAY_NS)
    late = banks.authorize(
        follow_up(AuthorizationKind.VOID, pan, 2_000, "p-1", "v-2", term.first_ac(2_000, un=b"\x03" * 4))
    )
    assert late.response_code == "12" and "same day" in late.reason
    assert ledger_snapshot(database)[1] == after[1]


def test_partial_refunds_up_to_the_purchase(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    purchase(banks, terminal_for(pan), pan, 5_000, "p-1", b"\x01\x01\x01\x01")
    assert deposit_balance(database, pan) == 5_000
    first = banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 2_000, "p-1", "f-1"))
    assert first.approved and first.balance_fen == 7_000 and not first.arpc
    after_first = ledger_snapshot(database)
    assert banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 2_000, "p-1", "f-1")) == first
    assert ledger_snapshot(database) == after_first  # idempotent by request id
    over = banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 3_001, "p-1", "f-2"))
    assert over.response_code == "64" and ledger_snapshot(database)[1] == after_first[1]
    assert banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 3_000, "p-1", "f-3")).approved
    assert deposit_balance(database, pan) == 10_000
    done = ledger_snapshot(database)
    assert banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 1, "p-1", "f-4")).response_code == "64"
    elsewhere = banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 1, "p-1", "f-5", merchant="M2"))
    assert elsewhere.response_code == "58"
    assert banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 1, "zz", "f-6")).response_code == "25"
    assert ledger_snapshot(database)[1] == done[1]
    # a refund reversed gives its amount back to what may still be refunded
    reversal = follow_up(AuthorizationKind.REVERSAL, pan, 3_000, "f-3", "R-f-3")
    assert banks.authorize(reversal).approved and deposit_balance(database, pan) == 7_000
    assert banks.authorize(follow_up(AuthorizationKind.REFUND, pan, 3_000, "p-1", "f-7")).approved
    assert deposit_balance(database, pan) == 10_000


def test_a_reversal_sent_five_times_applies_once(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    before, before_balances = ledger_snapshot(database), balances(database)
    purchase(banks, terminal_for(pan), pan, 4_000, "p-1", b"\x01\x01\x01\x01")
    reversal = follow_up(AuthorizationKind.REVERSAL, pan, 4_000, "p-1", "R-p-1")
    answers = {banks.authorize(reversal) for _ in range(5)}
    assert len(answers) == 1 and answers.pop().approved
    after = ledger_snapshot(database)
    assert balances(database) == before_balances  # balances as before the purchase
    assert len(after[2]) == len(before[2]) + 2  # the purchase and one mirror, not five


def test_a_reversal_before_its_original_declines_the_original(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    term = terminal_for(pan)
    before = ledger_snapshot(database)
    reversal = follow_up(AuthorizationKind.REVERSAL, pan, 4_000, "p-1", "R-p-1")
    first = banks.authorize(reversal)
    assert first.approved and "original_unknown" in first.flags
    assert ledger_snapshot(database) == before  # nothing posted
    for _ in range(4):  # its retries (0420) get the same answer
        assert banks.authorize(reversal) == first
    late = request(pan, PURCHASE, 4_000, term.first_ac(4_000, un=b"\x01" * 4), "p-1")
    answer = banks.authorize(AuthorizationRequest(**{**late.__dict__, "merchant_id": MERCHANT}))
    assert answer.response_code == "12" and "reversed before it arrived" in answer.reason
    assert "reversed_before_arrival" in answer.flags and not answer.approved
    assert ledger_snapshot(database) == before  # the original posts nothing either
    assert banks.authorize(late) == answer  # its retries too, whatever they carry
    assert banks.authorize(reversal) == first
    assert ledger_snapshot(database) == before
    # the card goes on: a later purchase is approved
    purchase(banks, term, pan, 1_000, "p-2", b"\x02" * 4)
    assert deposit_balance(database, pan) == 9_000


def test_a_reversed_void_puts_the_purchase_back(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    term = terminal_for(pan)
    purchase(banks, term, pan, 4_000, "p-1", b"\x01\x01\x01\x01")
    after_purchase = balances(database)
    void = follow_up(AuthorizationKind.VOID, pan, 4_000, "p-1", "v-1", term.first_ac(4_000, un=b"\x02" * 4))
    assert banks.authorize(void).approved
    response: AuthorizationResponse = banks.authorize(
        follow_up(AuthorizationKind.REVERSAL, pan, 4_000, "v-1", "R-v-1")
    )
    assert response.approved and balances(database) == after_purchase
    assert deposit_balance(database, pan) == 6_000
    again = follow_up(AuthorizationKind.VOID, pan, 4_000, "p-1", "v-2", term.first_ac(4_000, un=b"\x03" * 4))
    assert banks.authorize(again).approved and deposit_balance(database, pan) == 10_000
