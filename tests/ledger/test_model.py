"""Ledger values: what cannot exist raises ``MalformedLedgerInput`` saying where; the rest is a result."""

from __future__ import annotations

from dataclasses import replace

import pytest

from citycard.ledger import (
    MAX_AMOUNT_FEN,
    MAX_BATCH,
    Account,
    AccountFlags,
    InMemoryLedger,
    InMemoryUnitOfWork,
    LedgerState,
    MalformedLedgerInput,
    Transfer,
    TransferFlags,
    account_violation,
    audit,
    create_transfers,
    recompute_balances,
)
from citycard.ledger.model import evolve


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"amount_fen": 1.5}, "transfer.amount_fen"),
        ({"amount_fen": True}, "transfer.amount_fen"),
        ({"amount_fen": -1}, "transfer.amount_fen"),
        ({"amount_fen": MAX_AMOUNT_FEN + 1}, "transfer.amount_fen"),
        ({"id": -5}, "transfer.id"),
        ({"id": 2**63}, "transfer.id"),
        ({"debit_account_id": "1"}, "transfer.debit_account_id"),
        ({"pending_id": None}, "transfer.pending_id"),
        ({"flags": 2}, "transfer.flags"),
        ({"flags": TransferFlags(1 << 7)}, "transfer.flags"),
    ],
)
def test_malformed_transfer_raises_typed_error(fields: dict[str, object], where: str) -> None:
    base: dict[str, object] = {"id": 1, "debit_account_id": 1, "credit_account_id": 2, "amount_fen": 10}
    with pytest.raises(MalformedLedgerInput) as caught:
        Transfer(**{**base, **fields})  # type: ignore[arg-type]
    assert caught.value.where == where
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"limit_fen": -1}, "account.limit_fen"),
        ({"limit_fen": 1.0}, "account.limit_fen"),
        ({"code": -1}, "account.code"),
        ({"flags": 2}, "account.flags"),
        ({"credits_posted": -3}, "account.credits_posted"),
    ],
)
def test_malformed_account_raises_typed_error(fields: dict[str, object], where: str) -> None:
    with pytest.raises(MalformedLedgerInput) as caught:
        Account(**{"id": 1, **fields})  # type: ignore[arg-type]
    assert caught.value.where == where


def test_evolve_is_replace_without_the_checks_and_stamping_checks_the_time() -> None:
    """The engine derives balances and stamps with ``evolve`` (``replace`` cost three times as much per
    transfer): equal to ``replace`` where that is valid; an invalid time still raises as ``replace`` did; a
    negative balance, which only a bug could derive, is a violation the engine asserts."""
    account = Account(5, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS, limit_fen=900, credits_posted=70)
    assert evolve(account, debits_posted=30) == replace(account, debits_posted=30)
    transfer = Transfer(1, 2, 3, 40, flags=TransferFlags.PENDING, timeout_s=5, user_data=9)
    assert transfer.stored_at(123) == replace(transfer, timestamp_ns=123)
    for bad in (-1, 1.5, 2**63):
        with pytest.raises(MalformedLedgerInput) as caught:
            transfer.stored_at(bad)  # type: ignore[arg-type]
        assert caught.value.where == "transfer.timestamp_ns"
    assert account_violation(evolve(account, debits_pending=-1)) == "negative balance"
    assert account_violation(evolve(account, debits_posted=71)) == "debits exceed credits"


def test_batches_are_bounded_and_typed() -> None:
    state = LedgerState()
    with pytest.raises(MalformedLedgerInput, match="batch"):
        create_transfers(state, [Transfer(i + 1, 1, 2, 1) for i in range(MAX_BATCH + 1)], 1)
    with pytest.raises(MalformedLedgerInput, match=r"batch\[1\]"):
        create_transfers(state, [Transfer(1, 1, 2, 1), (1, 1, 2, 1)], 1)  # type: ignore[list-item]


def test_post_and_void_helpers_copy_the_pending_transfer() -> None:
    pending = Transfer(7, 1, 2, 500, flags=TransferFlags.PENDING, code=3)
    post = Transfer.post(8, pending, 200, linked=1)
    assert (post.pending_id, post.amount_fen, post.code) == (7, 200, 3)
    assert post.flags == TransferFlags.POST_PENDING_TRANSFER | TransferFlags.LINKED
    void = Transfer.void(9, pending)
    assert (void.amount_fen, void.flags, void.is_resolution) == (
        500,
        TransferFlags.VOID_PENDING_TRANSFER,
        True,
    )
    assert not pending.is_resolution


def test_account_balance_views() -> None:
    flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    a = Account(1, flags=flags, debits_pending=20, debits_posted=30, credits_posted=100)
    assert (a.balance_fen, a.credit_balance_fen, a.available_fen) == (-70, 70, 50)


def test_in_memory_unit_of_work_rolls_back_unless_committed() -> None:
    ledger = InMemoryLedger(lambda: 1)
    with InMemoryUnitOfWork(ledger) as uow:
        uow.ledger.create_accounts([Account(1), Account(2)])
        uow.commit()
        uow.ledger.create_transfers([Transfer(1, 1, 2, 5)])
    assert [a.id for a in ledger.balances()] == [1, 2]
    assert ledger.journal() == [] and ledger.totals().debits_posted == 0
    with InMemoryUnitOfWork(ledger) as uow:
        uow.ledger.create_transfers([Transfer(1, 1, 2, 5)])
        uow.rollback()
        uow.ledger.create_transfers([Transfer(2, 1, 2, 6)])
        uow.commit()
    assert [t.id for t in ledger.journal()] == [2]


def test_audit_names_accounts_whose_balances_disagree_with_transfers() -> None:
    pending = Transfer(2, 1, 3, 40, flags=TransferFlags.PENDING)
    transfers = [Transfer(1, 1, 2, 100), pending, Transfer.post(3, pending, 30), Transfer(4, 2, 9, 1)]
    assert recompute_balances(transfers) == {
        1: (0, 130, 0, 0),
        2: (0, 1, 0, 100),
        3: (0, 0, 0, 30),
        9: (0, 0, 0, 1),
    }
    sound = [
        Account(1, debits_posted=130),
        Account(2, debits_posted=1, credits_posted=100),
        Account(3, credits_posted=30),
        Account(9, credits_posted=1),
        Account(5),
    ]
    assert audit(sound, transfers) == []
    assert audit(sound[1:], transfers) == [1]  # transfers on an account that is missing
    tampered = [*sound[:4], Account(5, credits_pending=1)]
    assert audit(tampered, transfers) == [5]
