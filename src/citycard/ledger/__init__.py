"""Double-entry ledger in integer fen (TigerBeetle's model): pure values, engine and ports, no I/O."""

from __future__ import annotations

from .engine import (
    BatchEffects,
    LedgerState,
    Totals,
    account_violation,
    audit,
    check_invariants,
    create_accounts,
    create_transfers,
    expire_pending_transfers,
    journal,
    recompute_balances,
)
from .memory import InMemoryLedger, InMemoryUnitOfWork
from .model import (
    LEDGER_CNY,
    MAX_AMOUNT_FEN,
    MAX_BALANCE_FEN,
    MAX_BATCH,
    MAX_ID,
    MAX_TIMEOUT_S,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    MalformedLedgerInput,
    Transfer,
    TransferFlags,
)
from .ports import Clock, LedgerRepository, UnitOfWork

__all__ = [
    "LEDGER_CNY",
    "MAX_AMOUNT_FEN",
    "MAX_BALANCE_FEN",
    "MAX_BATCH",
    "MAX_ID",
    "MAX_TIMEOUT_S",
    "Account",
    "AccountFlags",
    "BatchEffects",
    "Clock",
    "CreateAccountResult",
    "CreateTransferResult",
    "InMemoryLedger",
    "InMemoryUnitOfWork",
    "LedgerRepository",
    "LedgerState",
    "MalformedLedgerInput",
    "Totals",
    "Transfer",
    "TransferFlags",
    "UnitOfWork",
    "account_violation",
    "audit",
    "check_invariants",
    "create_accounts",
    "create_transfers",
    "expire_pending_transfers",
    "journal",
    "recompute_balances",
]
