"""Group commit (SQLite and PostgreSQL): ``IssuerService.authorize_many`` answers several authorizations in
one transaction, each as it would be answered alone, and a request that fails costs the others nothing."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.api import KeyHandle
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest, AuthorizationResponse, Deposit
from citycard.issuer.handlers import IssuerService
from citycard.issuer.usecases import authorize

from benchmarks.bench_issuer import _id_number
from tests.issuer.conftest import Terminal, ledger_snapshot
from tests.issuer.test_authorization import with_tag
from tests.issuer.test_slice import issue_registered, request

PURCHASE = AuthorizationKind.PURCHASE


def funded_card(banks: IssuerService, amount_fen: int, holder: int) -> str:
    pan = issue_registered(banks, id_number=_id_number(holder))
    banks.deposit(Deposit(pan, amount_fen, f"dep-{pan}"))
    return pan


def _deposit(database: Database, pan: str) -> int:
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        card = uow.cards.get(pan)
        assert card is not None and card.deposit_account_id is not None
        (account,) = uow.ledger.lookup_accounts([card.deposit_account_id])
        return account.credit_balance_fen


def _answer(item: AuthorizationResponse | Exception) -> AuthorizationResponse:
    assert isinstance(item, AuthorizationResponse), item
    return item


def test_a_group_answers_each_request_as_alone_and_posts_each_once(
    banks: IssuerService,
    database: Database,
    terminal_for: Callable[[str], Terminal],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = funded_card(banks, 10_000, 1), funded_card(banks, 10_000, 2)
    term_a, term_b = terminal_for(a), terminal_for(b)
    a1 = request(a, PURCHASE, 1_000, term_a.first_ac(1_000, un=b"\x00\x00\x00\x01"), "a-1")
    a2 = request(a, PURCHASE, 2_000, term_a.first_ac(2_000, un=b"\x00\x00\x00\x02"), "a-2")  # next ATC
    f55 = term_b.first_ac(500)
    arqc = f55[f55.index(b"\x9f\x26\x08") + 3 :][:8]
    forged = request(b, PURCHASE, 500, with_tag(f55, "9F26", bytes([arqc[0] ^ 1]) + arqc[1:]), "b-1")
    unknown = request(a[:6] + "0000000099999", PURCHASE, 100, f55, "u-1")
    alone: list[str] = []
    real = authorize.authorize
    monkeypatch.setattr(
        authorize, "authorize", lambda req, *args: alone.append(req.request_id) or real(req, *args)
    )
    answers = [_answer(x) for x in banks.authorize_many([a1, forged, a2, unknown, a1])]  # a1 twice
    assert alone == []  # one transaction answered them all
    assert [x.response_code for x in answers] == ["00", "05", "00", "14", "00"]
    assert answers[4] == answers[0]  # the repeat in the same group: the stored answer
    assert answers[0].balance_fen == 9_000 and answers[2].balance_fen == 7_000
    assert _deposit(database, a) == 7_000 and _deposit(database, b) == 10_000
    again = [_answer(x) for x in banks.authorize_many([a2, a1])]  # retries later: stored, nothing posted
    assert again == [answers[2], answers[0]]
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced and uow.ledger.audit() == []
        assert sorted(t.amount_fen for t in uow.ledger.journal(limit=100) if t.amount_fen < 10_000) == [
            1_000,
            2_000,
        ]


def test_a_request_that_raises_in_a_group_costs_the_others_nothing(
    banks: IssuerService,
    database: Database,
    hsm: SoftHsm,
    terminal_for: Callable[[str], Terminal],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pans = [funded_card(banks, 10_000, i) for i in range(3)]
    reqs = [
        request(pan, PURCHASE, 1_000, terminal_for(pan).first_ac(1_000), f"p-{i}")
        for i, pan in enumerate(pans)
    ]
    real = hsm.verify_arqc

    def failing(imk: KeyHandle, pan: str, *args: Any) -> bool:  # a bug met deciding one request
        if pan == pans[1]:
            raise RuntimeError("a bug in one request")
        return real(imk, pan, *args)

    monkeypatch.setattr(hsm, "verify_arqc", failing)
    before = ledger_snapshot(database)
    answers = banks.authorize_many(reqs)
    assert isinstance(answers[1], RuntimeError)
    assert [_answer(answers[i]).response_code for i in (0, 2)] == ["00", "00"]
    assert [_deposit(database, pan) for pan in pans] == [9_000, 10_000, 9_000]
    monkeypatch.setattr(hsm, "verify_arqc", real)
    assert _answer(banks.authorize_many([reqs[1]])[0]).approved  # its retry, once the bug is gone
    assert [_deposit(database, pan) for pan in pans] == [9_000, 9_000, 9_000]
    assert ledger_snapshot(database) != before
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced and uow.ledger.audit() == []


def test_a_group_is_bounded() -> None:
    with pytest.raises(AssertionError):
        authorize.authorize_together([], None, None)  # type: ignore[arg-type]


def test_a_group_reads_each_card_ahead_once_and_its_later_requests_after_its_writes(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal]
) -> None:
    """``Authorizations.prefetch``: the group's first request of a card is answered from what was read ahead
    (its unpredictable number seen in an earlier transaction is still seen); a card's second request in the
    group reads after the first one's writes (the number the first recorded is seen, the balance moved)."""
    a, b = funded_card(banks, 10_000, 1), funded_card(banks, 10_000, 2)
    term_a, term_b = terminal_for(a), terminal_for(b)
    seen_before = b"\x00\x00\x00\x07"
    assert banks.authorize(request(b, PURCHASE, 100, term_b.first_ac(100, un=seen_before), "b-0")).approved
    b1 = request(b, PURCHASE, 100, term_b.first_ac(100, un=seen_before), "b-1")  # seen, a transaction ago
    a1 = request(a, PURCHASE, 1_000, term_a.first_ac(1_000, un=b"\x00\x00\x00\x01"), "a-1")
    a2 = request(a, PURCHASE, 2_000, term_a.first_ac(2_000, un=b"\x00\x00\x00\x01"), "a-2")  # a1's again
    answers = [_answer(x) for x in banks.authorize_many([a1, a2, b1])]
    assert "repeated_unpredictable_number" not in answers[0].flags
    assert "repeated_unpredictable_number" in answers[1].flags  # recorded by a1, in the same transaction
    assert "repeated_unpredictable_number" in answers[2].flags  # read ahead, from the earlier transaction
    assert answers[0].approved and answers[0].balance_fen == 9_000
    assert answers[2].balance_fen == _deposit(database, b)
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced and uow.ledger.audit() == []


def test_a_groups_answers_are_stored_together_or_the_group_is_refused(database: Database) -> None:
    """``Authorizations.add_many``: every answer stored (one statement on PostgreSQL), or False when one
    request id is stored already (a simultaneous first attempt that committed first): the caller rolls
    back and runs each request alone."""
    from citycard.issuer.ports import StoredAuthorization

    def stored(request_id: str) -> StoredAuthorization:
        return StoredAuthorization(
            request_id, "6212260000000000018", "purchase", "f", "00", 100, b"r", (7,), 1
        )

    with database.unit_of_work(IssuerUnitOfWork) as uow:
        assert uow.authorizations.add(stored("x"))
        uow.commit()
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        assert not uow.authorizations.add_many([stored("y"), stored("x")])  # x is stored: refused
    with database.unit_of_work(IssuerUnitOfWork) as uow:  # rolled back: y was not kept
        assert uow.authorizations.get("y") is None
        assert uow.authorizations.add_many([stored("y"), stored("z")])
        uow.commit()
    with database.unit_of_work(IssuerUnitOfWork) as uow:
        for request_id in "xyz":
            found = uow.authorizations.get(request_id)
            assert found is not None and found.transfer_ids == (7,) and found.response == b"r"


@pytest.mark.parametrize("seed", range(4))
def test_random_groups_answer_as_one_request_after_the_other(
    banks: IssuerService, database: Database, terminal_for: Callable[[str], Terminal], seed: int
) -> None:
    """Groups of purchases over a few cards in random order and amounts, some beyond the funds, some
    repeated (a retry in the same group): every answer is the one a request-after-request model gives
    (approved while the deposit covers it, else 51; a repeat gets its first answer), each approval debited
    once, and the books balance. The runs (one ledger call for several cards) and the read ahead must not
    show."""
    rng = random.Random(seed)
    pans = [funded_card(banks, 10_000, 10 * seed + i) for i in range(3)]
    terms = {pan: terminal_for(pan) for pan in pans}
    funds = dict.fromkeys(pans, 10_000)
    made = 0
    for _ in range(3):
        group: list[AuthorizationRequest] = []
        expected: list[str] = []
        after: list[int | None] = []  # the deposit balance an approval reports: after its own debit
        for _ in range(rng.randint(2, 9)):
            if group and rng.random() < 0.15:  # a retry of a request of this group: its first answer
                k = rng.randrange(len(group))
                group.append(group[k])
                expected.append(expected[k])
                after.append(after[k])
                continue
            pan = rng.choice(pans)
            amount = rng.randint(1, 5_000)
            made += 1
            un = made.to_bytes(4, "big")
            group.append(
                request(pan, PURCHASE, amount, terms[pan].first_ac(amount, un=un), f"r{seed}-{made}")
            )
            if amount <= funds[pan]:
                funds[pan] -= amount
                expected.append("00")
                after.append(funds[pan])
            else:
                expected.append("51")
                after.append(None)
        answers = [_answer(x) for x in banks.authorize_many(group)]
        assert [a.response_code for a in answers] == expected, (
            seed,
            [(r.pan[-4:], r.amount_fen) for r in group],
        )
        reported = [a.balance_fen if a.approved else None for a in answers]
        assert reported == after  # each its own card's balance after its own debit, not the run's
        assert [_deposit(database, pan) for pan in pans] == [funds[pan] for pan in pans]
    with database.unit_of_work() as uow:
        assert uow.ledger.totals().balanced and uow.ledger.audit() == []
