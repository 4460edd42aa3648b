"""Concurrent retries of one authorization (SQLite and PostgreSQL): one answer, posted once."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from citycard.db import Database
from citycard.issuer.commands import (
    AuthorizationKind,
    AuthorizationRequest,
    AuthorizationResponse,
    IssueCards,
)
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import DuplicateIssuance

from tests.issuer.conftest import HOLDER_ID, Terminal, ledger_snapshot
from tests.issuer.test_authorization import funded_card
from tests.issuer.test_slice import request


def test_concurrent_retries_post_once(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    pan = funded_card(banks, 10_000)
    req = request(pan, AuthorizationKind.PURCHASE, 1_000, terminal_for(pan).first_ac(1_000), "p-1")
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: banks.authorize(req), range(12)))
    assert all(a == answers[0] for a in answers) and answers[0].approved
    with database.unit_of_work() as uow:
        purchases = [t for t in uow.ledger.journal(limit=1000) if t.amount_fen == 1_000]
        assert len(purchases) == 1 and uow.ledger.totals().balanced
    assert answers[0].balance_fen == 9_000


def test_concurrent_first_attempts_for_an_unknown_card_get_one_clean_decline(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """No card row to lock: the request-id row is where simultaneous first attempts meet (PostgreSQL
    ``ON CONFLICT DO NOTHING``); the losers read the winner's answer instead of a database error."""
    pan = funded_card(banks, 10_000)
    f55 = terminal_for(pan).first_ac(1_000)
    unknown = pan[:6] + "0000000099999"
    before = ledger_snapshot(database)
    for round_ in range(3):  # several rounds: the race is not won the same way every time
        req = request(unknown, AuthorizationKind.PURCHASE, 1_000, f55, f"unknown-{round_}")
        barrier = Barrier(8)

        def attempt(
            _: int, req: AuthorizationRequest = req, barrier: Barrier = barrier
        ) -> AuthorizationResponse:
            barrier.wait()
            return banks.authorize(req)

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(attempt, range(8)))
        assert all(a == answers[0] for a in answers), answers
        assert answers[0].response_code == "14"
    assert ledger_snapshot(database) == before


def test_simultaneous_issuance_to_one_citizen_issues_one_card(
    banks: IssuerService, database: Database
) -> None:
    """Both attempts meet on the BIN range's row lock: one card is issued, the other is a clean
    DuplicateIssuance (not a unique-key error from the cardholder row)."""
    barrier = Barrier(4)

    def attempt(_: int) -> str:
        barrier.wait()
        try:
            banks.issue_cards(IssueCards("ICBC", "debit-ec", holder_name="Zhang San", id_number=HOLDER_ID))
        except DuplicateIssuance:
            return "duplicate"
        return "issued"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = sorted(pool.map(attempt, range(4)))
    assert outcomes == ["duplicate", "duplicate", "duplicate", "issued"]
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced


def test_a_reversal_racing_its_original_nets_to_zero(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """The original and its reversal (with retries) arrive together: whichever commits first, the original
    is either approved and reversed, or declined by the reversal's tombstone — the account as before."""
    pan = funded_card(banks, 100_000)
    term = terminal_for(pan)
    with database.unit_of_work() as uow:
        before = {a.id: a.credit_balance_fen for a in uow.ledger.balances()}
    outcomes = set()
    for round_ in range(4):
        rid = f"p-{round_}"
        original = request(
            pan, AuthorizationKind.PURCHASE, 1_000, term.first_ac(1_000, un=bytes([round_]) * 4), rid
        )
        reversal = AuthorizationRequest(
            f"R{rid}",
            AuthorizationKind.REVERSAL,
            pan,
            original.psn,
            1_000,
            b"",
            original_request_id=rid,
            terminal_id="T0000001",
        )
        barrier = Barrier(6)

        def send(
            i: int,
            original: AuthorizationRequest = original,
            reversal: AuthorizationRequest = reversal,
            barrier: Barrier = barrier,
        ) -> AuthorizationResponse:
            barrier.wait()
            return banks.authorize(original if i % 3 == 0 else reversal)

        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(pool.map(send, range(6)))
        originals = {a for a in answers if a.request_id == rid}
        reversals = {a for a in answers if a.request_id == f"R{rid}"}
        assert len(originals) == 1 and len(reversals) == 1, answers  # one answer each, however often sent
        assert reversals.pop().approved
        outcomes.add(originals.pop().response_code)
        with database.unit_of_work() as uow:
            assert {a.id: a.credit_balance_fen for a in uow.ledger.balances()} == before
            assert uow.ledger.totals().balanced
    assert outcomes <= {"00", "12"}
