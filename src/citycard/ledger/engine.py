"""The ledger engine: ``create_accounts`` and ``create_transfers`` over an in-memory :class:`LedgerState`.

Semantics follow TigerBeetle's state machine (docs.tigerbeetle.com, "Requests: create_transfers",
"Two-phase transfers", "Linked events"): each event gets one result code; a linked chain is applied
all-or-nothing (one failure turns every other event of the chain into ``linked_event_failed``); a pending
transfer reserves its amount on both accounts until it is posted (for at most the pending amount) or
voided; an id that exists gives ``exists`` (same content) or ``exists_with_different_fields``.

The engine is pure: the caller passes the time (``now_ns``). The SQL repository runs this same code on
a :class:`LedgerState` holding only the rows a batch touches (loaded ``FOR UPDATE``) and writes back the
:class:`BatchEffects`, so the in-memory and SQL ledgers cannot disagree.

Invariants, asserted: per account, the balance limits of its flags hold; over the whole state, total
posted debits equal total posted credits and total pending debits equal total pending credits (so the
sum of all balances is zero).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from .model import (
    MAX_BALANCE_FEN,
    MAX_BATCH,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    MalformedLedgerInput,
    Transfer,
    TransferFlags,
    evolve,
)

__all__ = [
    "MAX_JOURNAL",
    "BatchEffects",
    "LedgerState",
    "Totals",
    "account_violation",
    "audit",
    "check_batch",
    "check_invariants",
    "create_accounts",
    "create_transfers",
    "expire_pending_transfers",
    "journal",
    "recompute_balances",
]

R = CreateTransferResult
MAX_JOURNAL = 100_000
"""Most transfers one journal query returns."""
# The flags as plain ints, tested against ``int(x.flags)``: an ``IntFlag``'s ``&`` builds a new flag through
# the enum machinery, some 1 µs each, and the engine tested about fifteen per transfer.
_DEBITS_LIMITED = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CREDITS_LIMITED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_BOTH_DIRECTIONS = _DEBITS_LIMITED | _CREDITS_LIMITED
_LINKED = int(TransferFlags.LINKED)
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_RESOLVE = _POST | int(TransferFlags.VOID_PENDING_TRANSFER)


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over all accounts; a consistent ledger has ``debits == credits`` for both kinds."""

    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def balanced(self) -> bool:
        return self.debits_posted == self.credits_posted and self.debits_pending == self.credits_pending


@dataclass
class LedgerState:
    """Accounts and transfers by id; which pending transfers were resolved (by which transfer id) and
    which expired (when)."""

    accounts: dict[int, Account] = field(default_factory=dict)
    transfers: dict[int, Transfer] = field(default_factory=dict)
    resolved: dict[int, int] = field(default_factory=dict)
    expired: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        accounts: Iterable[Account],
        transfers: Iterable[Transfer],
        expired: Mapping[int, int] | None = None,
    ) -> LedgerState:
        """A state holding these rows; resolutions are derived from the posts and voids among them."""
        state = cls({a.id: a for a in accounts}, {t.id: t for t in transfers}, {}, dict(expired or {}))
        for t in state.transfers.values():
            if t.is_resolution:
                state.resolved[t.pending_id] = t.id
        return state

    def totals(self) -> Totals:
        a = self.accounts.values()
        return Totals(
            sum(x.debits_pending for x in a),
            sum(x.debits_posted for x in a),
            sum(x.credits_pending for x in a),
            sum(x.credits_posted for x in a),
        )


@dataclass
class BatchEffects:
    """What a batch changed: accounts to insert or update (final values), transfers to insert, pending
    transfers with a timeout that were resolved (their deadline closes), and pending transfers that expired
    (id → time)."""

    new_accounts: list[Account] = field(default_factory=list)
    updated_accounts: dict[int, Account] = field(default_factory=dict)
    new_transfers: list[Transfer] = field(default_factory=list)
    closed_deadlines: list[int] = field(default_factory=list)
    expired: dict[int, int] = field(default_factory=dict)


def account_violation(account: Account) -> str | None:
    """The first balance rule ``account`` breaks, or None (used by asserts and by tests)."""
    a = account
    flags = int(a.flags)
    if min(a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) < 0:
        return "negative balance"
    if flags & _DEBITS_LIMITED:
        if a.debits_pending + a.debits_posted > a.credits_posted:
            return "debits exceed credits"
        if a.limit_fen is not None and a.credits_pending + a.credits_posted - a.debits_posted > a.limit_fen:
            return "credit balance above limit"
    if flags & _CREDITS_LIMITED:
        if a.credits_pending + a.credits_posted > a.debits_posted:
            return "credits exceed debits"
        if a.limit_fen is not None and a.debits_pending + a.debits_posted - a.credits_posted > a.limit_fen:
            return "debit balance above limit"
    if max(a.debits_pending + a.debits_posted, a.credits_pending + a.credits_posted) > MAX_BALANCE_FEN:
        return "balance overflow"
    return None


def check_invariants(state: LedgerState) -> Totals:
    """Assert every account keeps its rules and the ledger sums to zero; return the totals."""
    for account in state.accounts.values():
        assert account_violation(account) is None, (account.id, account_violation(account))
    totals = state.totals()
    assert totals.balanced, totals
    return totals


def check_batch(events: Sequence[object], kind: type) -> None:
    """Raise :class:`MalformedLedgerInput` unless ``events`` is a batch of at most ``MAX_BATCH`` ``kind``."""
    if len(events) > MAX_BATCH:
        raise MalformedLedgerInput("batch", f"at most {MAX_BATCH} events, got {len(events)}")
    for i, event in enumerate(events):
        if not isinstance(event, kind):
            raise MalformedLedgerInput(f"batch[{i}]", f"must be {kind.__name__}")


def create_accounts(
    state: LedgerState, accounts: Sequence[Account], now_ns: int
) -> tuple[list[CreateAccountResult], BatchEffects]:
    """Create accounts (balances start at zero); one result per account, in order."""
    check_batch(accounts, Account)
    results: list[CreateAccountResult] = []
    effects = BatchEffects()
    for account in accounts:
        result = _account_result(state, account)
        if result is CreateAccountResult.OK:
            stored = replace(account, timestamp_ns=now_ns)
            state.accounts[account.id] = stored
            effects.new_accounts.append(stored)
        results.append(result)
    return results, effects


def _account_result(state: LedgerState, a: Account) -> CreateAccountResult:
    C = CreateAccountResult
    if a.id == 0:
        return C.ID_MUST_NOT_BE_ZERO
    if a.id == MAX_BALANCE_FEN:
        return C.ID_MUST_NOT_BE_INT_MAX
    if int(a.flags) & _BOTH_DIRECTIONS == _BOTH_DIRECTIONS:
        return C.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if a.debits_pending or a.debits_posted or a.credits_pending or a.credits_posted:
        return C.BALANCES_MUST_BE_ZERO
    if a.ledger == 0:
        return C.LEDGER_MUST_NOT_BE_ZERO
    if a.code == 0:
        return C.CODE_MUST_NOT_BE_ZERO
    if a.limit_fen is not None and not int(a.flags) & _BOTH_DIRECTIONS:
        return C.LIMIT_REQUIRES_BALANCE_DIRECTION
    existing = state.accounts.get(a.id)
    if existing is not None:
        return C.EXISTS if existing.same_definition(a) else C.EXISTS_WITH_DIFFERENT_FIELDS
    return C.OK


class _Chain:
    """Changes of one linked chain, staged over the state until the whole chain succeeds."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self.accounts: dict[int, Account] = {}
        self.transfers: dict[int, Transfer] = {}
        self.resolved: dict[int, int] = {}
        self.closed_deadlines: list[int] = []

    def account(self, account_id: int) -> Account | None:
        return self.accounts.get(account_id) or self.state.accounts.get(account_id)

    def transfer(self, transfer_id: int) -> Transfer | None:
        return self.transfers.get(transfer_id) or self.state.transfers.get(transfer_id)

    def resolution(self, pending_id: int) -> int | None:
        return self.resolved.get(pending_id) or self.state.resolved.get(pending_id)

    def commit(self, effects: BatchEffects) -> None:
        self._assert_zero_sum()
        self.state.accounts.update(self.accounts)
        self.state.transfers.update(self.transfers)
        self.state.resolved.update(self.resolved)
        effects.updated_accounts.update(self.accounts)
        effects.new_transfers.extend(self.transfers.values())
        effects.closed_deadlines.extend(self.closed_deadlines)
        for account in self.accounts.values():
            assert account_violation(account) is None, (account.id, account_violation(account))

    def _assert_zero_sum(self) -> None:
        """The chain moved as much onto debits as onto credits, posted and pending (O(accounts touched))."""
        delta = [0, 0, 0, 0]
        for new in self.accounts.values():
            old = self.state.accounts[new.id]
            delta[0] += new.debits_pending - old.debits_pending
            delta[1] += new.debits_posted - old.debits_posted
            delta[2] += new.credits_pending - old.credits_pending
            delta[3] += new.credits_posted - old.credits_posted
        assert delta[0] == delta[2] and delta[1] == delta[3], delta


def create_transfers(
    state: LedgerState, transfers: Sequence[Transfer], now_ns: int
) -> tuple[list[CreateTransferResult], BatchEffects]:
    """Apply ``transfers`` in order; one result per transfer. Linked chains are all or nothing."""
    check_batch(transfers, Transfer)
    results: list[CreateTransferResult] = []
    effects = BatchEffects()
    start = 0
    while start < len(transfers):
        end = start
        while int(transfers[end].flags) & _LINKED and end + 1 < len(transfers):
            end += 1
        chain = _Chain(state)
        chain_results = [_apply(chain, t, now_ns) for t in transfers[start : end + 1]]
        if int(transfers[end].flags) & _LINKED and chain_results[-1] is R.OK:
            chain_results[-1] = R.LINKED_EVENT_CHAIN_OPEN
        failed = [i for i, r in enumerate(chain_results) if r is not R.OK]
        if failed:
            first = failed[0]
            chain_results = [r if i == first else R.LINKED_EVENT_FAILED for i, r in enumerate(chain_results)]
        else:
            chain.commit(effects)
        results.extend(chain_results)
        start = end + 1
    return results, effects


def _apply(chain: _Chain, t: Transfer, now_ns: int) -> CreateTransferResult:
    """Validate ``t`` against the chain's view and stage it; return its result."""
    result = _validate(chain, t, now_ns)
    if result is not R.OK:
        return result
    stored = t.stored_at(now_ns)
    debit = chain.account(t.debit_account_id)
    credit = chain.account(t.credit_account_id)
    assert debit is not None and credit is not None
    flags = int(t.flags)
    if flags & _RESOLVE:
        pending = chain.transfer(t.pending_id)
        assert pending is not None
        posted = t.amount_fen if flags & _POST else 0
        debit = evolve(
            debit,
            debits_pending=debit.debits_pending - pending.amount_fen,
            debits_posted=debit.debits_posted + posted,
        )
        credit = evolve(
            credit,
            credits_pending=credit.credits_pending - pending.amount_fen,
            credits_posted=credit.credits_posted + posted,
        )
        chain.resolved[t.pending_id] = t.id
        if pending.timeout_s:
            chain.closed_deadlines.append(pending.id)
    elif flags & _PENDING:
        debit = evolve(debit, debits_pending=debit.debits_pending + t.amount_fen)
        credit = evolve(credit, credits_pending=credit.credits_pending + t.amount_fen)
    else:
        debit = evolve(debit, debits_posted=debit.debits_posted + t.amount_fen)
        credit = evolve(credit, credits_posted=credit.credits_posted + t.amount_fen)
    chain.accounts[debit.id] = debit
    chain.accounts[credit.id] = credit
    chain.transfers[t.id] = stored
    return R.OK


def _validate(chain: _Chain, t: Transfer, now_ns: int) -> CreateTransferResult:
    result = _validate_fields(t)
    if result is not R.OK:
        return result
    existing = chain.transfer(t.id)
    if existing is not None:
        return R.EXISTS if existing.same_content(t) else R.EXISTS_WITH_DIFFERENT_FIELDS
    debit = chain.account(t.debit_account_id)
    credit = chain.account(t.credit_account_id)
    if debit is None:
        return R.DEBIT_ACCOUNT_NOT_FOUND
    if credit is None:
        return R.CREDIT_ACCOUNT_NOT_FOUND
    if debit.ledger != credit.ledger:
        return R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
    if t.ledger != debit.ledger:
        return R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
    if int(t.flags) & _RESOLVE:
        return _validate_resolution(chain, t, now_ns)
    return _validate_balances(debit, credit, t.amount_fen)


def _validate_fields(t: Transfer) -> CreateTransferResult:
    if t.id == 0:
        return R.ID_MUST_NOT_BE_ZERO
    if t.id == MAX_BALANCE_FEN:
        return R.ID_MUST_NOT_BE_INT_MAX
    flags = int(t.flags)
    kinds = flags & (_PENDING | _RESOLVE)
    if kinds & (kinds - 1):  # more than one of pending / post / void
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if flags & _RESOLVE:
        if t.pending_id == 0:
            return R.PENDING_ID_MUST_NOT_BE_ZERO
        if t.pending_id == t.id:
            return R.PENDING_ID_MUST_BE_DIFFERENT
    elif t.pending_id != 0:
        return R.PENDING_ID_MUST_BE_ZERO
    if t.timeout_s and not flags & _PENDING:
        return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if t.debit_account_id == 0:
        return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.credit_account_id == 0:
        return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if t.debit_account_id == t.credit_account_id:
        return R.ACCOUNTS_MUST_BE_DIFFERENT
    if t.ledger == 0:
        return R.LEDGER_MUST_NOT_BE_ZERO
    if t.code == 0:
        return R.CODE_MUST_NOT_BE_ZERO
    if t.amount_fen == 0:
        return R.AMOUNT_MUST_NOT_BE_ZERO
    return R.OK


def _validate_resolution(chain: _Chain, t: Transfer, now_ns: int) -> CreateTransferResult:
    pending = chain.transfer(t.pending_id)
    if pending is None:
        return R.PENDING_TRANSFER_NOT_FOUND
    if not int(pending.flags) & _PENDING:
        return R.PENDING_TRANSFER_NOT_PENDING
    if pending.debit_account_id != t.debit_account_id:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
    if pending.credit_account_id != t.credit_account_id:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
    if pending.ledger != t.ledger:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
    resolution = chain.resolution(t.pending_id)
    if resolution is not None:
        by = chain.transfer(resolution)
        assert by is not None
        if int(by.flags) & _POST:
            return R.PENDING_TRANSFER_ALREADY_POSTED
        return R.PENDING_TRANSFER_ALREADY_VOIDED
    expires_at_ns = pending.expires_at_ns
    if pending.id in chain.state.expired or (expires_at_ns is not None and now_ns >= expires_at_ns):
        return R.PENDING_TRANSFER_EXPIRED
    if int(t.flags) & _POST:
        if t.amount_fen > pending.amount_fen:
            return R.EXCEEDS_PENDING_TRANSFER_AMOUNT
    elif t.amount_fen != pending.amount_fen:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
    return R.OK


def _validate_balances(debit: Account, credit: Account, amount: int) -> CreateTransferResult:
    if debit.debits_pending + debit.debits_posted + amount > MAX_BALANCE_FEN:
        return R.OVERFLOWS_DEBITS
    if credit.credits_pending + credit.credits_posted + amount > MAX_BALANCE_FEN:
        return R.OVERFLOWS_CREDITS
    debit_flags, credit_flags = int(debit.flags), int(credit.flags)
    if debit_flags & _DEBITS_LIMITED and (
        debit.debits_pending + debit.debits_posted + amount > debit.credits_posted
    ):
        return R.EXCEEDS_CREDITS
    if credit_flags & _CREDITS_LIMITED and (
        credit.credits_pending + credit.credits_posted + amount > credit.debits_posted
    ):
        return R.EXCEEDS_DEBITS
    if (
        debit.limit_fen is not None
        and debit_flags & _CREDITS_LIMITED
        and debit.debits_pending + debit.debits_posted + amount - debit.credits_posted > debit.limit_fen
    ):
        return R.EXCEEDS_LIMIT
    if (
        credit.limit_fen is not None
        and credit_flags & _DEBITS_LIMITED
        and credit.credits_pending + credit.credits_posted + amount - credit.debits_posted > credit.limit_fen
    ):
        return R.EXCEEDS_LIMIT
    return R.OK


def expire_pending_transfers(
    state: LedgerState, now_ns: int, *, candidates: Iterable[int] | None = None, limit: int = MAX_BATCH
) -> tuple[list[int], BatchEffects]:
    """Expire pending transfers whose timeout has passed at ``now_ns`` and release what they reserved.

    At most ``limit``, earliest deadline first, among ``candidates`` (ids; default: every transfer in the
    state). A pending transfer already posted, voided or expired is left alone. Returns the expired ids.
    """
    if type(limit) is not int or not 0 < limit <= MAX_BATCH:
        raise MalformedLedgerInput("expire.limit", f"must be 1..{MAX_BATCH}")
    pool = state.transfers.values() if candidates is None else (state.transfers[i] for i in candidates)
    due: list[tuple[int, int]] = []
    for t in pool:
        expires_at_ns = t.expires_at_ns
        open_pending = t.id not in state.resolved and t.id not in state.expired
        if expires_at_ns is not None and expires_at_ns <= now_ns and open_pending:
            due.append((expires_at_ns, t.id))
    due = sorted(due)[:limit]
    effects = BatchEffects()
    for _, pending_id in due:
        pending = state.transfers[pending_id]
        debit = state.accounts[pending.debit_account_id]
        credit = state.accounts[pending.credit_account_id]
        debit = evolve(debit, debits_pending=debit.debits_pending - pending.amount_fen)
        credit = evolve(credit, credits_pending=credit.credits_pending - pending.amount_fen)
        assert debit.debits_pending >= 0 and credit.credits_pending >= 0, pending
        state.accounts[debit.id] = effects.updated_accounts[debit.id] = debit
        state.accounts[credit.id] = effects.updated_accounts[credit.id] = credit
        state.expired[pending_id] = effects.expired[pending_id] = now_ns
    for account in effects.updated_accounts.values():
        assert account_violation(account) is None, (account.id, account_violation(account))
    return [pending_id for _, pending_id in due], effects


def recompute_balances(
    transfers: Iterable[Transfer], expired: Iterable[int] = ()
) -> dict[int, tuple[int, int, int, int]]:
    """Each account's (debits_pending, debits_posted, credits_pending, credits_posted) from transfers alone.

    Posted: plain transfers and posts; pending: pending transfers that no post or void refers to and that
    are not among the ``expired`` ids. Accounts without any transfer are absent. Independent of the engine's
    bookkeeping, for audits.
    """
    chosen = list(transfers)
    resolved = {t.pending_id for t in chosen if t.is_resolution} | set(expired)
    sums: dict[int, list[int]] = {}
    for t in chosen:
        debit = sums.setdefault(t.debit_account_id, [0, 0, 0, 0])
        credit = sums.setdefault(t.credit_account_id, [0, 0, 0, 0])
        if t.flags & TransferFlags.PENDING:
            if t.id not in resolved:
                debit[0] += t.amount_fen
                credit[2] += t.amount_fen
        elif not t.flags & TransferFlags.VOID_PENDING_TRANSFER:
            debit[1] += t.amount_fen
            credit[3] += t.amount_fen
    return {i: (s[0], s[1], s[2], s[3]) for i, s in sums.items()}


def audit(
    accounts: Iterable[Account], transfers: Iterable[Transfer], expired: Iterable[int] = ()
) -> list[int]:
    """Ids of the accounts whose balances differ from what the transfers say (empty when the books agree)."""
    expected = recompute_balances(transfers, expired)
    wrong = []
    for a in accounts:
        stored = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        if stored != expected.pop(a.id, (0, 0, 0, 0)):
            wrong.append(a.id)
    wrong.extend(expected)  # transfers on accounts that do not exist
    return sorted(wrong)


def journal(
    transfers: Iterable[Transfer],
    *,
    account_id: int | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    after: tuple[int, int] | None = None,
    limit: int = 1000,
) -> list[Transfer]:
    """Transfers in (timestamp, id) order, optionally of one account and within [since, until).

    ``after`` is the (timestamp_ns, id) of the last transfer of the previous page: pass it to read on.
    """
    if type(limit) is not int or not 0 < limit <= MAX_JOURNAL:
        raise MalformedLedgerInput("journal.limit", f"must be 1..{MAX_JOURNAL}")
    chosen = [
        t
        for t in transfers
        if (account_id is None or account_id in (t.debit_account_id, t.credit_account_id))
        and (since_ns is None or t.timestamp_ns >= since_ns)
        and (until_ns is None or t.timestamp_ns < until_ns)
        and (after is None or (t.timestamp_ns, t.id) > after)
    ]
    chosen.sort(key=lambda t: (t.timestamp_ns, t.id))
    return chosen[:limit]
