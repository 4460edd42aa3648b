"""Clearing: the end of the business day, pure rules (no storage, no clock, no keys).

What counts in a day (:mod:`.calendar`: each acquiring bank's cut-over in Beijing time), what an offline TC
carries (:mod:`.tc`: field 55 parsed, the AC input rebuilt for the HSM), and what becomes of each offline
record (:mod:`.rules`: cleared, a duplicate reported, or an exception with its reason). Storage and the HSM
are the adapter's (``citycard.db.clearing_repositories``); the whole design is in ``docs/clearing.md``.
"""

from __future__ import annotations

from .calendar import BEIJING, Cutovers, business_window, clearing_date_of, parse_cutovers
from .model import (
    NEVER_PAYABLE,
    ClearingPolicy,
    ExceptionAction,
    ExceptionReason,
    ExceptionStatus,
    ItemKind,
    LostLiability,
    Outcome,
    Verdict,
    allowed_actions,
)
from .rules import CardFacts, JournalCopy, OfflineRecord, SeenTc, TcKey, classify
from .tc import TcData, TcDataError, parse_tc

__all__ = [
    "BEIJING",
    "NEVER_PAYABLE",
    "CardFacts",
    "ClearingPolicy",
    "Cutovers",
    "ExceptionAction",
    "ExceptionReason",
    "ExceptionStatus",
    "ItemKind",
    "JournalCopy",
    "LostLiability",
    "OfflineRecord",
    "Outcome",
    "SeenTc",
    "TcData",
    "TcDataError",
    "TcKey",
    "Verdict",
    "allowed_actions",
    "business_window",
    "classify",
    "clearing_date_of",
    "parse_cutovers",
    "parse_tc",
]
