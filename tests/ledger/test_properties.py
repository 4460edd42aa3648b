"""Properties of the in-memory engine over random histories (Hypothesis).

After every batch: every account keeps its flags' rules and the ledger sums to zero (``check_invariants``);
exactly the transfers reported ``ok`` are stored; every balance equals what the stored transfers say
(recomputed independently from the journal); a linked chain is stored entirely or not at all.
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
)

from tests.ledger.strategies import accounts, histories

R = CreateTransferResult


def _recomputed(state: LedgerState) -> dict[int, tuple[int, int, int, int]]:
    """(debits_pending, debits_posted, credits_pending, credits_posted) from the stored transfers alone."""
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    resolved = {t.pending_id for t in state.transfers.values() if t.is_resolution}
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


@settings(max_examples=300, deadline=None)
@given(accounts(), histories())
def test_random_histories_keep_the_invariants(opening: list[Account], batches: list[list[Transfer]]) -> None:
    state = LedgerState()
    create_accounts(state, opening, 1)
    stored = 0
    for step, batch in enumerate(batches, start=2):
        results, effects = create_transfers(state, batch, step)
        assert len(results) == len(batch)
        check_invariants(state)
        stored += results.count(R.OK)
        assert len(state.transfers) == stored
        ok_ids = [t.id for t, r in zip(batch, results, strict=True) if r is R.OK]
        assert [t.id for t in effects.new_transfers] == ok_ids
        assert _balances(state) == _recomputed(state)
        assert audit(state.accounts.values(), state.transfers.values()) == []
        for chain in _chains(batch):
            oks = [results[i] is R.OK for i in chain]
            assert all(oks) or not any(oks), [results[i] for i in chain]
            if not all(oks):
                failures = [results[i] for i in chain if results[i] is not R.LINKED_EVENT_FAILED]
                assert len(failures) == 1


@settings(max_examples=100, deadline=None)
@given(accounts(), histories())
def test_replay_is_deterministic(opening: list[Account], batches: list[list[Transfer]]) -> None:
    runs = []
    for _ in range(2):
        state = LedgerState()
        create_accounts(state, opening, 1)
        results = [create_transfers(state, batch, step)[0] for step, batch in enumerate(batches, start=2)]
        runs.append((results, state.accounts, state.transfers))
    assert runs[0] == runs[1]
