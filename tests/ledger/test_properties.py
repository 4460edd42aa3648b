"""Properties of the in-memory engine over random histories (Hypothesis).

After every step: every account keeps its flags' rules and the ledger sums to zero (``check_invariants``);
exactly the transfers reported ``ok`` are stored; every balance equals what the stored transfers say
(recomputed independently from the journal); a linked chain is stored entirely or not at all; no pending
transfer is posted or voided past its deadline; the expiry sweep leaves nothing due behind.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings

from citycard.ledger import (
    Account,
    CreateTransferResult,
    LedgerState,
    Transfer,
    TransferFlags,
    audit,
    check_invariants,
    create_accounts,
    create_transfers,
    expire_pending_transfers,
)

from tests.ledger.strategies import Step, accounts, histories

R = CreateTransferResult


def _recomputed(state: LedgerState) -> dict[int, tuple[int, int, int, int]]:
    """(debits_pending, debits_posted, credits_pending, credits_posted) from the stored transfers alone."""
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    resolved = {t.pending_id for t in state.transfers.values() if t.is_resolution} | set(state.expired)
    for t in state.transfers.values():
        if t.flags & TransferFlags.PENDING:
            if t.id not in resolved:
                sums[t.debit_account_id][0] += t.amount_fen
                sums[t.credit_account_id][2] += t.amount_fen
        elif t.flags & TransferFlags.VOID_PENDING_TRANSFER:
            pass
        else:
            sums[t.debit_account_id][1] += t.amount_fen
            sums[t.credit_account_id][3] += t.amount_fen
    return {i: (s[0], s[1], s[2], s[3]) for i, s in sums.items()}


def _balances(state: LedgerState) -> dict[int, tuple[int, int, int, int]]:
    return {
        a.id: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in state.accounts.values()
        if a.debits_pending or a.debits_posted or a.credits_pending or a.credits_posted
    }


def _chains(batch: list[Transfer]) -> list[list[int]]:
    chains: list[list[int]] = [[]]
    for i, t in enumerate(batch):
        chains[-1].append(i)
        if not t.flags & TransferFlags.LINKED:
            chains.append([])
    return [c for c in chains if c]


SECOND_NS = 1_000_000_000


def _run_step(state: LedgerState, batch: list[Transfer] | None, now_ns: int) -> tuple[list[R], list[int]]:
    if batch is None:
        expired, _ = expire_pending_transfers(state, now_ns)
        return [], expired
    results, _ = create_transfers(state, batch, now_ns)
    return results, []


@settings(max_examples=300, deadline=None)
@given(accounts(), histories())
def test_random_histories_keep_the_invariants(opening: list[Account], steps: list[Step]) -> None:
    state = LedgerState()
    now_ns = 1_700_000_000 * SECOND_NS
    create_accounts(state, opening, now_ns)
    stored = 0
    for advance_s, batch in steps:
        now_ns += advance_s * SECOND_NS + 1_000
        if batch is None:
            expired, effects = expire_pending_transfers(state, now_ns)
            check_invariants(state)
            assert set(effects.expired) == set(expired)
            for pending_id in expired:
                deadline = state.transfers[pending_id].expires_at_ns
                assert deadline is not None and deadline <= now_ns
                assert pending_id not in state.resolved
            still_due = [
                t.id
                for t in state.transfers.values()
                if (t.expires_at_ns or now_ns + 1) <= now_ns
                and t.id not in state.resolved
                and t.id not in state.expired
            ]
            assert still_due == []
            assert _balances(state) == _recomputed(state)
            continue
        results, effects = create_transfers(state, batch, now_ns)
        assert len(results) == len(batch)
        check_invariants(state)
        stored += results.count(R.OK)
        assert len(state.transfers) == stored
        ok = [t for t, r in zip(batch, results, strict=True) if r is R.OK]
        assert [t.id for t in effects.new_transfers] == [t.id for t in ok]
        for t in ok:
            if t.is_resolution:  # never resolved past its deadline
                deadline = state.transfers[t.pending_id].expires_at_ns
                assert deadline is None or now_ns < deadline
                assert t.pending_id not in state.expired
        assert _balances(state) == _recomputed(state)
        assert audit(state.accounts.values(), state.transfers.values(), state.expired) == []
        for chain in _chains(batch):
            oks = [results[i] is R.OK for i in chain]
            assert all(oks) or not any(oks), [results[i] for i in chain]
            if not all(oks):
                failures = [results[i] for i in chain if results[i] is not R.LINKED_EVENT_FAILED]
                assert len(failures) == 1


@settings(max_examples=100, deadline=None)
@given(accounts(), histories())
def test_replay_is_deterministic(opening: list[Account], steps: list[Step]) -> None:
    runs = []
    for _ in range(2):
        state = LedgerState()
        create_accounts(state, opening, 1)
        now_ns, outcomes = SECOND_NS, []
        for advance_s, batch in steps:
            now_ns += advance_s * SECOND_NS + 1_000
            outcomes.append(_run_step(state, batch, now_ns))
        runs.append((outcomes, state.accounts, state.transfers, state.expired))
    assert runs[0] == runs[1]
