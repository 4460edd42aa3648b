"""Ledger scenarios that any :class:`~citycard.ledger.ports.LedgerRepository` must pass.

Run on the in-memory ledger (``tests/ledger/test_scenarios.py``) and on SQL through the unit of work
(``tests/db/test_repository.py``), so both implementations are held to one specification. Result codes
follow TigerBeetle's reference (docs.tigerbeetle.com/reference/requests/create_transfers).
"""

from __future__ import annotations

from collections.abc import Callable

from citycard.ledger import (
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    LedgerRepository,
    Transfer,
    TransferFlags,
)

__all__ = ["SCENARIOS", "TIMED_SCENARIOS", "ManualClock"]

A = CreateAccountResult
R = CreateTransferResult
F = TransferFlags
CREDIT_NORMAL = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
DEBIT_NORMAL = AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS

BANK, CUSTOMER, MERCHANT, EC_FLOAT = 1, 2, 3, 4
SECOND_NS = 1_000_000_000


class ManualClock:
    """Nanoseconds that move by 1 µs per reading, and by whole seconds when the test says so."""

    def __init__(self, start_ns: int = 1_700_000_000 * SECOND_NS) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        self.now_ns += 1_000
        return self.now_ns

    def advance_s(self, seconds: int) -> None:
        self.now_ns += seconds * SECOND_NS


def _setup(repo: LedgerRepository, ec_limit_fen: int = 100_000) -> None:
    """A bank cash account (no limits), a customer deposit, a merchant and one card's EC float."""
    results = repo.create_accounts(
        [
            Account(BANK, code=10),
            Account(CUSTOMER, code=20, flags=CREDIT_NORMAL),
            Account(MERCHANT, code=30, flags=CREDIT_NORMAL),
            Account(EC_FLOAT, code=40, flags=CREDIT_NORMAL, limit_fen=ec_limit_fen),
        ]
    )
    assert results == [A.OK] * 4


def _balances(repo: LedgerRepository) -> dict[int, tuple[int, int, int, int]]:
    return {
        a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in repo.balances()
    }


def _assert_zero_sum(repo: LedgerRepository) -> None:
    totals = repo.totals()
    assert totals.balanced, totals
    assert sum(a.balance_fen for a in repo.balances()) == 0


def plain_transfers_move_money(repo: LedgerRepository) -> None:
    _setup(repo)
    assert repo.create_transfers([Transfer(100, BANK, CUSTOMER, 50_000)]) == [R.OK]
    assert repo.create_transfers([Transfer(101, CUSTOMER, MERCHANT, 1_250)]) == [R.OK]
    b = _balances(repo)
    assert b[BANK] == (0, 50_000, 0, 0)
    assert b[CUSTOMER] == (0, 1_250, 0, 50_000)
    assert b[MERCHANT] == (0, 0, 0, 1_250)
    (customer,) = repo.lookup_accounts([CUSTOMER])
    assert customer.credit_balance_fen == 48_750 and customer.available_fen == 48_750
    _assert_zero_sum(repo)


def duplicate_ids_are_idempotent(repo: LedgerRepository) -> None:
    _setup(repo)
    first = Transfer(7, BANK, CUSTOMER, 300, user_data=9)
    assert repo.create_transfers([first]) == [R.OK]
    assert repo.create_transfers([first]) == [R.EXISTS]
    assert repo.create_transfers([Transfer(7, BANK, CUSTOMER, 301, user_data=9)]) == [
        R.EXISTS_WITH_DIFFERENT_FIELDS
    ]
    assert repo.create_transfers([Transfer(7, BANK, MERCHANT, 300, user_data=9)]) == [
        R.EXISTS_WITH_DIFFERENT_FIELDS
    ]
    assert _balances(repo)[CUSTOMER] == (0, 0, 0, 300)
    (stored,) = repo.lookup_transfers([7])
    assert stored.same_content(first) and stored.timestamp_ns > 0
    _assert_zero_sum(repo)


def overdraft_is_refused(repo: LedgerRepository) -> None:
    _setup(repo)
    assert repo.create_transfers([Transfer(1, BANK, CUSTOMER, 100)]) == [R.OK]
    assert repo.create_transfers([Transfer(2, CUSTOMER, MERCHANT, 101)]) == [R.EXCEEDS_CREDITS]
    assert repo.create_transfers([Transfer(3, CUSTOMER, MERCHANT, 100)]) == [R.OK]
    assert repo.create_transfers([Transfer(4, CUSTOMER, MERCHANT, 1)]) == [R.EXCEEDS_CREDITS]
    _assert_zero_sum(repo)


def debit_normal_accounts_refuse_excess_credits(repo: LedgerRepository) -> None:
    assert repo.create_accounts([Account(1, flags=DEBIT_NORMAL), Account(2)]) == [A.OK, A.OK]
    assert repo.create_transfers([Transfer(1, 2, 1, 5)]) == [R.EXCEEDS_DEBITS]
    assert repo.create_transfers([Transfer(2, 1, 2, 5), Transfer(3, 2, 1, 5)]) == [R.OK, R.OK]
    assert repo.create_transfers([Transfer(4, 2, 1, 1)]) == [R.EXCEEDS_DEBITS]
    _assert_zero_sum(repo)


def ec_float_stays_within_its_limit(repo: LedgerRepository) -> None:
    """The EC float of one card: never negative, never above the card's EC balance limit (9F77)."""
    _setup(repo, ec_limit_fen=1_000)
    assert repo.create_transfers([Transfer(1, BANK, CUSTOMER, 5_000)]) == [R.OK]
    assert repo.create_transfers([Transfer(2, CUSTOMER, EC_FLOAT, 1_001)]) == [R.EXCEEDS_LIMIT]
    assert repo.create_transfers([Transfer(3, CUSTOMER, EC_FLOAT, 600, flags=F.PENDING)]) == [R.OK]
    # the pending load counts against the limit until it is voided
    assert repo.create_transfers([Transfer(4, CUSTOMER, EC_FLOAT, 401)]) == [R.EXCEEDS_LIMIT]
    assert repo.create_transfers([Transfer(5, CUSTOMER, EC_FLOAT, 400)]) == [R.OK]
    (pending,) = repo.lookup_transfers([3])
    assert repo.create_transfers([Transfer.void(6, pending)]) == [R.OK]
    assert repo.create_transfers([Transfer(7, CUSTOMER, EC_FLOAT, 600)]) == [R.OK]
    assert _balances(repo)[EC_FLOAT] == (0, 0, 0, 1_000)
    assert repo.create_transfers([Transfer(8, EC_FLOAT, MERCHANT, 1_001)]) == [R.EXCEEDS_CREDITS]
    assert repo.create_transfers([Transfer(9, EC_FLOAT, MERCHANT, 1_000)]) == [R.OK]
    assert repo.create_transfers([Transfer(10, CUSTOMER, EC_FLOAT, 1_000)]) == [R.OK]
    _assert_zero_sum(repo)


def two_phase_post_and_void(repo: LedgerRepository) -> None:
    _setup(repo)
    assert repo.create_transfers([Transfer(1, BANK, CUSTOMER, 1_000)]) == [R.OK]
    hold = Transfer(2, CUSTOMER, MERCHANT, 700, flags=F.PENDING)
    assert repo.create_transfers([hold]) == [R.OK]
    b = _balances(repo)
    assert b[CUSTOMER] == (700, 0, 0, 1_000) and b[MERCHANT] == (0, 0, 700, 0)
    # reserved: only 300 is available
    assert repo.create_transfers([Transfer(3, CUSTOMER, MERCHANT, 301)]) == [R.EXCEEDS_CREDITS]
    assert repo.create_transfers([Transfer.post(4, hold, 701)]) == [R.EXCEEDS_PENDING_TRANSFER_AMOUNT]
    assert repo.create_transfers([Transfer.post(4, hold, 500)]) == [R.OK]
    b = _balances(repo)
    assert b[CUSTOMER] == (0, 500, 0, 1_000) and b[MERCHANT] == (0, 0, 0, 500)
    assert repo.create_transfers([Transfer.post(4, hold, 500)]) == [R.EXISTS]  # a retried post
    assert repo.create_transfers([Transfer.post(4, hold, 499)]) == [R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert repo.create_transfers([Transfer.post(5, hold)]) == [R.PENDING_TRANSFER_ALREADY_POSTED]
    assert repo.create_transfers([Transfer.void(5, hold)]) == [R.PENDING_TRANSFER_ALREADY_POSTED]
    hold2 = Transfer(6, CUSTOMER, MERCHANT, 200, flags=F.PENDING)
    assert repo.create_transfers([hold2]) == [R.OK]
    assert repo.create_transfers([Transfer.void(7, hold2, code=2)]) == [R.OK]
    assert repo.create_transfers([Transfer.post(8, hold2)]) == [R.PENDING_TRANSFER_ALREADY_VOIDED]
    assert _balances(repo)[CUSTOMER] == (0, 500, 0, 1_000)
    _assert_zero_sum(repo)


def resolution_errors(repo: LedgerRepository) -> None:
    _setup(repo)
    assert repo.create_transfers([Transfer(1, BANK, CUSTOMER, 1_000)]) == [R.OK]
    hold = Transfer(2, CUSTOMER, MERCHANT, 100, flags=F.PENDING)
    assert repo.create_transfers([hold]) == [R.OK]
    post = F.POST_PENDING_TRANSFER
    void = F.VOID_PENDING_TRANSFER
    cus, mer = CUSTOMER, MERCHANT
    cases = [
        (Transfer(10, cus, mer, 50, pending_id=99, flags=post), R.PENDING_TRANSFER_NOT_FOUND),
        (Transfer(10, BANK, cus, 50, pending_id=1, flags=post), R.PENDING_TRANSFER_NOT_PENDING),
        (
            Transfer(10, BANK, mer, 50, pending_id=2, flags=post),
            R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
        ),
        (
            Transfer(10, cus, BANK, 50, pending_id=2, flags=post),
            R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID,
        ),
        (Transfer(10, cus, mer, 50, pending_id=2, flags=void), R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT),
        (Transfer(10, cus, mer, 50, pending_id=0, flags=post), R.PENDING_ID_MUST_NOT_BE_ZERO),
        (Transfer(10, cus, mer, 50, pending_id=10, flags=post), R.PENDING_ID_MUST_BE_DIFFERENT),
        (Transfer(10, cus, mer, 50, pending_id=2), R.PENDING_ID_MUST_BE_ZERO),
        (Transfer(10, cus, mer, 50, pending_id=2, flags=post | void), R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
        (Transfer(10, cus, mer, 50, flags=F.PENDING | void), R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
    ]
    for transfer, expected in cases:
        assert repo.create_transfers([transfer]) == [expected], transfer
    assert repo.lookup_transfers([10]) == []
    _assert_zero_sum(repo)


def malformed_fields_are_result_codes(repo: LedgerRepository) -> None:
    _setup(repo)
    assert repo.create_accounts([Account(9, ledger=840)]) == [A.OK]
    cases = [
        (Transfer(0, BANK, CUSTOMER, 1), R.ID_MUST_NOT_BE_ZERO),
        (Transfer(2**63 - 1, BANK, CUSTOMER, 1), R.ID_MUST_NOT_BE_INT_MAX),
        (Transfer(1, 0, CUSTOMER, 1), R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
        (Transfer(1, BANK, 0, 1), R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
        (Transfer(1, BANK, BANK, 1), R.ACCOUNTS_MUST_BE_DIFFERENT),
        (Transfer(1, BANK, CUSTOMER, 1, ledger=0), R.LEDGER_MUST_NOT_BE_ZERO),
        (Transfer(1, BANK, CUSTOMER, 1, code=0), R.CODE_MUST_NOT_BE_ZERO),
        (Transfer(1, BANK, CUSTOMER, 0), R.AMOUNT_MUST_NOT_BE_ZERO),
        (Transfer(1, 77, CUSTOMER, 1), R.DEBIT_ACCOUNT_NOT_FOUND),
        (Transfer(1, BANK, 77, 1), R.CREDIT_ACCOUNT_NOT_FOUND),
        (Transfer(1, BANK, 9, 1), R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER),
        (Transfer(1, BANK, CUSTOMER, 1, ledger=840), R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS),
    ]
    for transfer, expected in cases:
        assert repo.create_transfers([transfer]) == [expected], transfer
    assert repo.journal() == []
    _assert_zero_sum(repo)


def linked_chains_are_all_or_nothing(repo: LedgerRepository) -> None:
    _setup(repo)
    assert repo.create_transfers([Transfer(1, BANK, CUSTOMER, 100)]) == [R.OK]
    L = F.LINKED
    results = repo.create_transfers(
        [
            Transfer(2, BANK, MERCHANT, 50),  # alone: commits
            Transfer(3, CUSTOMER, MERCHANT, 100, flags=L),
            Transfer(4, CUSTOMER, MERCHANT, 1, flags=L),  # fails: only 100 was there
            Transfer(5, BANK, MERCHANT, 10),  # last of the failed chain
            Transfer(6, BANK, MERCHANT, 20, flags=L),
            Transfer(7, BANK, CUSTOMER, 30),  # a chain that commits
            Transfer(8, BANK, MERCHANT, 40, flags=L),  # chain left open at the end of the batch
        ]
    )
    assert results == [
        R.OK,
        R.LINKED_EVENT_FAILED,
        R.EXCEEDS_CREDITS,
        R.LINKED_EVENT_FAILED,
        R.OK,
        R.OK,
        R.LINKED_EVENT_CHAIN_OPEN,
    ]
    assert [t.id for t in repo.lookup_transfers(range(1, 9))] == [1, 2, 6, 7]
    b = _balances(repo)
    assert b[CUSTOMER] == (0, 0, 0, 130) and b[MERCHANT] == (0, 0, 0, 70)
    _assert_zero_sum(repo)


def chain_can_post_what_it_reserved(repo: LedgerRepository) -> None:
    _setup(repo)
    hold = Transfer(1, BANK, CUSTOMER, 500, flags=F.PENDING | F.LINKED)
    results = repo.create_transfers([hold, Transfer.post(2, hold, 200)])
    assert results == [R.OK, R.OK]
    same_id = [Transfer(3, BANK, CUSTOMER, 5, flags=F.LINKED), Transfer(3, BANK, CUSTOMER, 5)]
    assert repo.create_transfers(same_id) == [R.LINKED_EVENT_FAILED, R.EXISTS_WITH_DIFFERENT_FIELDS]
    assert _balances(repo)[CUSTOMER] == (0, 0, 0, 200)
    _assert_zero_sum(repo)


def account_creation_results(repo: LedgerRepository) -> None:
    both = CREDIT_NORMAL | DEBIT_NORMAL
    results = repo.create_accounts(
        [
            Account(1, code=5),
            Account(1, code=5),
            Account(1, code=6),
            Account(0),
            Account(2**63 - 1),
            Account(2, flags=both),
            Account(3, debits_posted=1),
            Account(4, ledger=0),
            Account(5, code=0),
            Account(6, limit_fen=10),
            Account(7, flags=DEBIT_NORMAL, limit_fen=10, user_data=42),
        ]
    )
    assert results == [
        A.OK,
        A.EXISTS,
        A.EXISTS_WITH_DIFFERENT_FIELDS,
        A.ID_MUST_NOT_BE_ZERO,
        A.ID_MUST_NOT_BE_INT_MAX,
        A.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        A.BALANCES_MUST_BE_ZERO,
        A.LEDGER_MUST_NOT_BE_ZERO,
        A.CODE_MUST_NOT_BE_ZERO,
        A.LIMIT_REQUIRES_BALANCE_DIRECTION,
        A.OK,
    ]
    assert [a.id for a in repo.balances()] == [1, 7]
    (seven,) = repo.lookup_accounts([7, 8])
    assert seven.limit_fen == 10 and seven.user_data == 42 and seven.flags == DEBIT_NORMAL


def journal_and_balances_queries(repo: LedgerRepository) -> None:
    _setup(repo)
    assert (
        repo.create_transfers([Transfer(30, BANK, CUSTOMER, 10), Transfer(20, BANK, MERCHANT, 5)])
        == [R.OK] * 2
    )
    assert repo.create_transfers([Transfer(10, CUSTOMER, MERCHANT, 3)]) == [R.OK]
    everything = repo.journal()
    assert [t.id for t in everything] == [20, 30, 10]  # time order, then id within one batch
    t0, t1 = everything[0].timestamp_ns, everything[2].timestamp_ns
    assert t0 < t1
    assert [t.id for t in repo.journal(account_id=CUSTOMER)] == [30, 10]
    assert [t.id for t in repo.journal(since_ns=t1)] == [10]
    assert [t.id for t in repo.journal(until_ns=t1)] == [20, 30]
    assert [t.id for t in repo.journal(limit=1)] == [20]
    assert [a.id for a in repo.balances([MERCHANT, BANK, 99])] == [BANK, MERCHANT]
    assert [a.id for a in repo.balances(limit=2)] == [BANK, CUSTOMER]
    assert [a.id for a in repo.balances(after_id=CUSTOMER, limit=1)] == [MERCHANT]
    assert [a.id for a in repo.balances([MERCHANT, BANK], after_id=BANK)] == [MERCHANT]
    pages, after = [], None
    while page := repo.journal(after=after, limit=2):
        pages.append([t.id for t in page])
        after = (page[-1].timestamp_ns, page[-1].id)
    assert pages == [[20, 30], [10]]
    assert [t.id for t in repo.journal(account_id=MERCHANT, after=(t0, 20))] == [10]
    _assert_zero_sum(repo)


SCENARIOS: list[Callable[[LedgerRepository], None]] = [
    plain_transfers_move_money,
    duplicate_ids_are_idempotent,
    overdraft_is_refused,
    debit_normal_accounts_refuse_excess_credits,
    ec_float_stays_within_its_limit,
    two_phase_post_and_void,
    resolution_errors,
    malformed_fields_are_result_codes,
    linked_chains_are_all_or_nothing,
    chain_can_post_what_it_reserved,
    account_creation_results,
    journal_and_balances_queries,
]


def pending_transfers_expire(repo: LedgerRepository, clock: ManualClock) -> None:
    """TigerBeetle's pending timeout: after it, a post or void gets ``pending_transfer_expired`` and the
    expiry sweep releases the reservation (an EC load whose card never confirmed, for example)."""
    _setup(repo)
    assert repo.create_transfers([Transfer(1, BANK, CUSTOMER, 1_000)]) == [R.OK]
    assert repo.create_transfers([Transfer(2, BANK, CUSTOMER, 5, timeout_s=10)]) == [
        R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    ]
    short = Transfer(3, CUSTOMER, EC_FLOAT, 600, flags=F.PENDING, timeout_s=30)
    long = Transfer(4, CUSTOMER, MERCHANT, 300, flags=F.PENDING, timeout_s=90)
    posted = Transfer(5, CUSTOMER, MERCHANT, 100, flags=F.PENDING, timeout_s=30)
    assert repo.create_transfers([short, long, posted]) == [R.OK] * 3
    assert repo.create_transfers([Transfer.post(6, posted)]) == [R.OK]
    assert repo.expire_pending_transfers() == []  # nothing is due yet
    assert repo.create_transfers([Transfer(7, CUSTOMER, MERCHANT, 1)]) == [R.EXCEEDS_CREDITS]
    clock.advance_s(31)
    # due but not swept yet: it cannot be resolved any more, and it still holds its reservation
    assert repo.create_transfers([Transfer.post(8, short)]) == [R.PENDING_TRANSFER_EXPIRED]
    assert repo.create_transfers([Transfer.void(8, short)]) == [R.PENDING_TRANSFER_EXPIRED]
    assert _balances(repo)[CUSTOMER] == (900, 100, 0, 1_000)
    assert repo.expire_pending_transfers() == [3]
    assert repo.expire_pending_transfers() == []
    assert _balances(repo)[CUSTOMER] == (300, 100, 0, 1_000)
    assert _balances(repo)[EC_FLOAT] == (0, 0, 0, 0)
    assert repo.create_transfers([Transfer.void(8, short)]) == [R.PENDING_TRANSFER_EXPIRED]
    assert repo.create_transfers([Transfer(9, CUSTOMER, MERCHANT, 600)]) == [R.OK]
    assert repo.create_transfers([Transfer.void(10, long)]) == [R.OK]
    clock.advance_s(100)
    assert repo.expire_pending_transfers() == []  # voided before its deadline: nothing to expire
    assert _balances(repo)[CUSTOMER] == (0, 700, 0, 1_000)
    assert repo.create_transfers([short]) == [R.EXISTS]
    _assert_zero_sum(repo)


def expiry_is_bounded_and_earliest_first(repo: LedgerRepository, clock: ManualClock) -> None:
    _setup(repo)
    holds = [Transfer(10 + i, BANK, MERCHANT, 1, flags=F.PENDING, timeout_s=5 - i) for i in range(4)]
    assert repo.create_transfers(holds) == [R.OK] * 4
    clock.advance_s(5)
    assert repo.expire_pending_transfers(limit=2) == [13, 12]
    assert repo.expire_pending_transfers(limit=2) == [11, 10]
    assert _balances(repo)[MERCHANT] == (0, 0, 0, 0)
    _assert_zero_sum(repo)


TIMED_SCENARIOS: list[Callable[[LedgerRepository, ManualClock], None]] = [
    pending_transfers_expire,
    expiry_is_bounded_and_earliest_first,
]
