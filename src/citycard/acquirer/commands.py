"""Commands of the acquirer's handlers (:mod:`.handlers`): frozen values, checked at construction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .model import TransactionKey, TransactionKind

__all__ = [
    "BeginTransaction",
    "GiveUp",
    "QueueAdvice",
    "RecordAnswer",
    "ReverseAtTerminal",
    "SafAnswered",
    "SafFailed",
    "StoreUpload",
]


@dataclass(frozen=True, slots=True)
class BeginTransaction:
    """A terminal's request arrived: give it its RRN (the same one on a retry)."""

    key: TransactionKey
    merchant_id: str
    kind: TransactionKind
    amount_fen: int | None
    pan_masked: str | None
    original: TransactionKey | None = None  # a void or refund: the original's key from field 61
    service_ref: str | None = None  # a public service's reference (field 48), ``HR-202612030017``


@dataclass(frozen=True, slots=True)
class RecordAnswer:
    key: TransactionKey
    response_code: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No answer came for ``key``: queue ``reversal`` (the encoded 0400 carrying the original's RRN)."""

    key: TransactionKey
    reversal: bytes
    reason: str  # field 39 of the reversal: 98 no answer, 96, 06


@dataclass(frozen=True, slots=True)
class ReverseAtTerminal:
    """A terminal's reversal of its transaction ``original``. ``reversal_for(rrn)`` builds the message to
    forward for the original's RRN (called only when the original was seen)."""

    original: TransactionKey
    merchant_id: str
    reversal_for: Callable[[str], bytes]
    reason: str


@dataclass(frozen=True, slots=True)
class QueueAdvice:
    """An advice (0220 refund) to persist and forward: ``advice_for(rrn, original_rrn)`` builds it."""

    begin: BeginTransaction
    advice_for: Callable[[str, str | None], bytes]


@dataclass(frozen=True, slots=True)
class StoreUpload:
    key: TransactionKey
    merchant_id: str
    amount_fen: int | None
    pan_masked: str | None
    message: bytes
    service_ref: str | None = None  # field 48 of the 0320, as text
    bus_line: int | None = None  # field 63 of a validator's fare: its bus line and vehicle
    vehicle: str | None = None


@dataclass(frozen=True, slots=True)
class SafAnswered:
    entry_id: int
    response_code: str


@dataclass(frozen=True, slots=True)
class SafFailed:
    entry_id: int
    attempts: int
    last_code: str | None = None
    """The code of an answer that does not deliver it (91, 96, 98, A0); None when no answer came."""
