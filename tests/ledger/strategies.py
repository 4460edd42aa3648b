"""Hypothesis strategies for ledger histories: accounts, then batches of transfers with duplicates,
linked chains (often with a failing member), pending transfers and posts/voids of them."""

from __future__ import annotations

from hypothesis import strategies as st

from citycard.ledger import Account, AccountFlags, Transfer, TransferFlags

__all__ = ["ACCOUNT_IDS", "accounts", "histories"]

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
def histories(draw: st.DrawFn, max_batches: int = 10) -> list[list[Transfer]]:
    """Batches of transfers; posts and voids mostly refer to pending transfers drawn earlier."""
    pendings: list[Transfer] = []
    submitted: list[Transfer] = []
    batches: list[list[Transfer]] = []
    account = st.sampled_from((*ACCOUNT_IDS, *ACCOUNT_IDS, _UNKNOWN))
    for _ in range(draw(st.integers(1, max_batches))):
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
                t = Transfer(
                    transfer_id, debit, credit, amount, flags=flags, code=draw(st.sampled_from((1, 2)))
                )
                if kind == "pending":
                    pendings.append(t)
            submitted.append(t)
            batch.append(t)
        batches.append(batch)
    return batches
