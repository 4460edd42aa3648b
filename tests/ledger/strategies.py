"""Hypothesis strategies for ledger histories: accounts, then steps. A step moves the clock on by some
seconds and then submits a batch of transfers (with duplicates, linked chains that often hold a failing
member, pending transfers with and without timeouts, posts and voids of them) or runs the expiry sweep."""

from __future__ import annotations

from hypothesis import strategies as st

from citycard.ledger import Account, AccountFlags, Transfer, TransferFlags

__all__ = ["ACCOUNT_IDS", "Step", "accounts", "histories"]

Step = tuple[int, list[Transfer] | None]
"""(seconds the clock moves on first, the batch to submit or None for ``expire_pending_transfers``)."""

ACCOUNT_IDS = (1, 2, 3, 4)
_UNKNOWN = 9
_FLAGS = (
    AccountFlags.NONE,
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
)


@st.composite
def accounts(draw: st.DrawFn) -> list[Account]:
    """Account 1 has no limits (the source of money); the others get random flags and limits."""
    made = [Account(1, code=1)]
    for account_id in ACCOUNT_IDS[1:]:
        flags = draw(st.sampled_from(_FLAGS))
        limit = draw(st.none() | st.integers(0, 600)) if flags else None
        made.append(Account(account_id, code=2, flags=flags, limit_fen=limit))
    return made


@st.composite
def histories(draw: st.DrawFn, max_batches: int = 10) -> list[Step]:
    """Steps of a history; posts and voids mostly refer to pending transfers drawn earlier."""
    pendings: list[Transfer] = []
    submitted: list[Transfer] = []
    batches: list[Step] = []
    account = st.sampled_from((*ACCOUNT_IDS, *ACCOUNT_IDS, _UNKNOWN))
    for _ in range(draw(st.integers(1, max_batches))):
        advance_s = draw(st.sampled_from((0, 0, 1, 2, 5)))
        if draw(st.integers(0, 5)) == 0:
            batches.append((advance_s, None))
            continue
        batch: list[Transfer] = []
        for _ in range(draw(st.integers(1, 5))):
            linked = TransferFlags.LINKED if draw(st.integers(0, 3)) == 0 else TransferFlags.NONE
            transfer_id = draw(st.integers(1, 40))
            kind = draw(st.sampled_from(("plain", "plain", "pending", "post", "void", "again")))
            if kind in ("post", "void") and pendings:
                pending = draw(st.sampled_from(pendings))
                if kind == "post":
                    amount = draw(st.integers(0, pending.amount_fen + 20))
                    t = Transfer.post(transfer_id, pending, amount, linked=int(bool(linked)))
                else:
                    t = Transfer.void(transfer_id, pending, linked=int(bool(linked)))
            elif kind == "again" and submitted:
                t = draw(st.sampled_from(submitted))  # a duplicate (or a reused id)
            else:
                debit = draw(account)
                same = draw(st.integers(0, 15)) == 0  # now and then the malformed debit == credit
                credit = debit if same else draw(account.filter(lambda a, d=debit: a != d))
                amount = draw(st.integers(0, 400))
                flags = linked | (TransferFlags.PENDING if kind == "pending" else TransferFlags.NONE)
                # timeouts mostly on pending transfers; now and then (malformed) on a plain one
                timeout_s = draw(st.sampled_from((0, 0, 0, 1, 3))) if draw(st.integers(0, 7)) else 0
                if kind != "pending" and draw(st.integers(0, 5)):
                    timeout_s = 0
                code = draw(st.sampled_from((1, 2)))
                t = Transfer(transfer_id, debit, credit, amount, flags=flags, code=code, timeout_s=timeout_s)
                if kind == "pending":
                    pendings.append(t)
            submitted.append(t)
            batch.append(t)
        batches.append((advance_s, batch))
    return batches
