"""Settlement of a cleared day: fees, net positions per bank, ledger postings, merchant payouts (T+1),
per-bank clearing files, per-merchant statements and the reconciliation report (docs/settlement.md).

Pure domain: storage comes in through :mod:`citycard.settlement.ports` (``citycard.db`` implements it) and
files leave through a sink; ``citycard clearing run`` calls :func:`settle_day` after clearing a day.
"""

from .fees import FeeSchedule, FeeScheduleError, ItemFees, Rates, default_schedule, parse_schedule
from .model import (
    CENTER,
    Account,
    AccountKey,
    ClearedItem,
    DayTotals,
    MalformedDate,
    NotCleared,
    Position,
    SettlementError,
    SettlementRefused,
    clearing_date,
)
from .ports import DayRecord, SettlementStore, SettlementUnitOfWork
from .service import SettleResult, settle_day, write_files

__all__ = [
    "CENTER",
    "Account",
    "AccountKey",
    "ClearedItem",
    "DayRecord",
    "DayTotals",
    "FeeSchedule",
    "FeeScheduleError",
    "ItemFees",
    "MalformedDate",
    "NotCleared",
    "Position",
    "Rates",
    "SettleResult",
    "SettlementError",
    "SettlementRefused",
    "SettlementStore",
    "SettlementUnitOfWork",
    "clearing_date",
    "default_schedule",
    "parse_schedule",
    "settle_day",
    "write_files",
]
