"""The acquirer's values: a terminal's transaction and its record, RRNs, SAF entries, offline uploads.

- A terminal names its transaction by (terminal ID 41, batch number 60.2, STAN 11): :class:`TransactionKey`.
  The acquirer gives each one a retrieval reference number (37, an12; here 12 digits from a persisted
  sequence, :func:`format_rrn`), once: a retried request with the same key gets the same RRN, so the
  issuer's idempotency key (32 + ``-`` + 37) is the same and the retry is answered, not posted again.
- :class:`AcquirerTransaction` is what the acquirer keeps of it: terminal, merchant, key, RRN, kind, amount,
  the PAN masked (first 6, last 4: enough for a receipt or a dispute search; the clear PAN travels only in
  the messages forwarded), response code, times, status. A **tombstone** is the record of a terminal's
  reversal that came before its original: the original, if it comes later, is refused and never forwarded.
- :class:`SafEntry`: a message the acquirer must deliver to the switch until it is answered (store and
  forward): reversals (0400, then 0420 on repeats) and advices (0220 refunds). It holds the encoded
  host-to-host message, clear PAN included: the switch routes by the PAN's BIN and the issuer finds the
  card by it (it holds no PIN block and no MAC). The storage adapter keeps it sealed in the HSM
  (docs/network.md, "PANs at rest"): here, in memory, it is clear.
- :class:`OfflineUpload`: an offline EC purchase uploaded by a terminal (0320, 60.1 = 36, field 55), kept
  for clearing with its whole message (clearing verifies the TC with the PAN and field 55), sealed at rest
  as the SAF entries are.

Sources: 中国银联 "POS终端消息域说明" (fields 11, 37, 41, 60.2, 61), ISO 8583:1987 (repeats 0420/0221).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from citycard.codec.iso8583.codes import ResponseCode

__all__ = [
    "IN_BATCH_TOTALS",
    "MAX_RRN",
    "UNNUMBERED",
    "AcquirerTransaction",
    "AdviceRefusal",
    "FollowUps",
    "OfflineUpload",
    "SafEntry",
    "SafKind",
    "SafPolicy",
    "SafStatus",
    "TransactionKey",
    "TransactionKind",
    "TransactionStatus",
    "format_rrn",
    "parse_original",
    "refund_refusal",
]

MAX_RRN: Final = 999_999_999_999
"""RRNs are 12 digits; the sequence never wraps (a wrap would give an old RRN again)."""
MAX_STAN: Final = 999_999
MAX_BATCH: Final = 999_999
MAX_MESSAGE_BYTES: Final = 2048
"""An ISO message kept in the SAF queue or the upload store is at most the codec's largest message."""


UNNUMBERED: Final = "000000000000"
"""The RRN of a record not yet numbered (handed to ``Transactions.add_numbered``): no sequence value gives
it (they start at 1)."""


def format_rrn(value: int) -> str:
    """Field 37 for sequence value ``value``: 12 digits."""
    assert 0 < value <= MAX_RRN, "RRN sequence exhausted"
    return f"{value:012d}"


@dataclass(frozen=True, slots=True, order=True)
class TransactionKey:
    """A terminal's transaction: terminal ID (41), batch number (60.2), STAN (11)."""

    terminal_id: str
    batch: int
    stan: int

    def __post_init__(self) -> None:
        assert len(self.terminal_id) == 8, "terminal ID is 8 characters (41)"
        assert 0 <= self.batch <= MAX_BATCH and 0 <= self.stan <= MAX_STAN


def parse_original(terminal_id: str, field61: str | None) -> TransactionKey | None:
    """The key of the original transaction from field 61 (original batch n6, trace n6, date n4, ...), or
    None when 61 is missing or too short to name one."""
    if field61 is None or len(field61) < 12 or not field61[:12].isdigit():
        return None
    return TransactionKey(terminal_id, int(field61[:6]), int(field61[6:12]))


class TransactionKind(enum.StrEnum):
    """What a terminal asked (the rows of ``codec.iso8583.TRANSACTIONS`` the acquirer serves)."""

    PURCHASE = "purchase"
    BALANCE = "balance"
    VOID = "void"
    REFUND = "refund"
    EC_LOAD = "ec_load"
    EC_CASH_LOAD = "ec_cash_load"
    EC_LOAD_OTHER = "ec_load_other"
    OFFLINE_UPLOAD = "offline_upload"
    REVERSAL = "reversal"  # a tombstone: the terminal reversed a transaction the acquirer never saw


IN_BATCH_TOTALS: Final = frozenset(
    {TransactionKind.PURCHASE, TransactionKind.VOID, TransactionKind.REFUND, TransactionKind.OFFLINE_UPLOAD}
)
"""The kinds a terminal's batch settlement (0500) counts (``db.settlement_batch``, docs/iso8583.md). The
others (EC loads, balance inquiries) are left to the network's clearing, so a settled batch does not close
them: the reversal of a load may come after its batch settled (one held for the card's load log)."""


class TransactionStatus(enum.StrEnum):
    """A record's state. Transitions (the one table, :data:`TRANSITIONS`)."""

    PENDING = "pending"  # forwarded (or about to be); no answer yet
    ANSWERED = "answered"  # the issuer's answer relayed (approved or declined: see response_code)
    REVERSAL_QUEUED = "reversal_queued"  # given up (no answer) or reversed by the terminal: reversal in SAF
    TOMBSTONE = "tombstone"  # a reversal came first: the original is refused if it ever comes


TRANSITIONS: Final[dict[tuple[TransactionStatus, str], TransactionStatus]] = {
    (TransactionStatus.PENDING, "answer"): TransactionStatus.ANSWERED,
    (TransactionStatus.PENDING, "give up"): TransactionStatus.REVERSAL_QUEUED,
    (TransactionStatus.PENDING, "reverse"): TransactionStatus.REVERSAL_QUEUED,
    (TransactionStatus.ANSWERED, "reverse"): TransactionStatus.REVERSAL_QUEUED,
    (TransactionStatus.ANSWERED, "answer"): TransactionStatus.ANSWERED,  # a retry answered again
}
"""(status, event) → new status. Anything else leaves the record as it is (a late answer after a reversal
was queued is not recorded: the reversal settles it)."""


@dataclass(frozen=True, slots=True)
class AcquirerTransaction:
    """The acquirer's record of one terminal transaction (no clear PAN: ``pan_masked``)."""

    key: TransactionKey
    merchant_id: str
    rrn: str
    kind: TransactionKind
    amount_fen: int | None
    pan_masked: str | None
    status: TransactionStatus
    response_code: str | None
    original_rrn: str | None  # a void or refund: the transaction it follows up
    created_ns: int
    updated_ns: int
    service_ref: str | None = None  # a public service's reference (field 48 of the 0200), for clearing

    def __post_init__(self) -> None:
        assert len(self.rrn) == 12 and self.rrn.isdigit()
        assert self.amount_fen is None or self.amount_fen >= 0
        assert self.pan_masked is None or "*" in self.pan_masked or len(self.pan_masked) <= 10

    def moved(self, event: str) -> TransactionStatus | None:
        """The status after ``event``, or None when the table has no such transition."""
        return TRANSITIONS.get((self.status, event))


@dataclass(frozen=True, slots=True)
class AdviceRefusal:
    """Why the acquirer answers an advice at once with ``code`` and keeps and queues nothing."""

    code: str
    reason: str


_APPROVED_CODES: Final = frozenset(code.value for code in ResponseCode if code.approved)


@dataclass(frozen=True, slots=True)
class FollowUps:
    """The voids or the refunds of one transaction that share a status and a response code: how many, their
    amounts summed, the lowest of their RRNs (``Transactions.follow_ups``)."""

    kind: TransactionKind
    status: TransactionStatus
    response_code: str | None
    count: int
    amount_fen: int
    first_rrn: str


def _stands(status: TransactionStatus, response_code: str | None) -> bool:
    """Approved, or not answered yet (it may be approved): it counts against its original."""
    if status == TransactionStatus.PENDING:
        return True
    return status == TransactionStatus.ANSWERED and response_code in _APPROVED_CODES


def refund_refusal(
    original: AcquirerTransaction, follow_ups: Iterable[FollowUps], amount_fen: int
) -> AdviceRefusal | None:
    """Why a refund of ``amount_fen`` from ``original`` (the terminal's record it names in field 61) is
    refused at once, or None. A refund is an advice: the acquirer answers it 0230 ``00`` as soon as it is
    kept and forwards it later, so the terminal's receipt says approved before the issuer has seen it. What
    the acquirer's own records show the issuer would refuse is therefore refused here, with the issuer's
    codes (``issuer.decision``): an original that is not a purchase, not approved, reversed or voided
    (``12``); more than what is left of the purchase after its refunds (``64``). ``follow_ups`` are the
    voids and refunds of ``original``; those declined or reversed do not count, those not answered yet do
    (they may be approved)."""
    if original.kind != TransactionKind.PURCHASE:
        return AdviceRefusal("12", f"the original is a {original.kind}: only a purchase is refunded")
    if original.status == TransactionStatus.REVERSAL_QUEUED:
        return AdviceRefusal("12", "the original purchase was reversed")
    if original.status != TransactionStatus.ANSWERED:
        return AdviceRefusal("12", "the original purchase has no answer yet")
    if original.response_code not in _APPROVED_CODES:
        return AdviceRefusal("12", "the original purchase was declined: nothing to give back")
    standing = [group for group in follow_ups if _stands(group.status, group.response_code)]
    voids = sorted(group.first_rrn for group in standing if group.kind == TransactionKind.VOID)
    if voids:
        return AdviceRefusal("12", f"the original purchase was voided (RRN {voids[0]})")
    refunded = sum(group.amount_fen for group in standing if group.kind == TransactionKind.REFUND)
    remaining = (original.amount_fen or 0) - refunded
    if amount_fen > remaining:
        return AdviceRefusal(
            "64", f"the refund exceeds what is left of the purchase to refund ({remaining} fen)"
        )
    return None


class SafKind(enum.StrEnum):
    REVERSAL = "reversal"  # 0400, repeated as 0420
    ADVICE = "advice"  # 0220 (refund), repeated as 0220 (UnionPay repeats advices under the same MTI)


class SafStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"  # answered (any response code but 91, 96, 98, A0)


@dataclass(frozen=True, slots=True)
class SafEntry:
    """A message to deliver until answered. ``id`` is 0 until stored. ``rrn`` is field 37 of the message
    (a reversal carries its original's RRN); (kind, rrn) is unique, so queueing twice keeps one entry."""

    id: int
    kind: SafKind
    rrn: str
    message: bytes  # the encoded ISO message (MTI to the last field) as first sent, 39 included
    status: SafStatus
    attempts: int
    next_attempt_ns: int
    response_code: str | None
    """Done: the answer's code. Pending: the last answer's, one that does not deliver it (91, 96, 98, A0),
    or None when the last attempt got no answer (or none was made)."""
    created_ns: int

    def __post_init__(self) -> None:
        assert 0 < len(self.message) <= MAX_MESSAGE_BYTES
        assert self.attempts >= 0


@dataclass(frozen=True, slots=True)
class SafPolicy:
    """How the SAF queue is retried: the first repeat after ``min_backoff_ns``, each next twice as late,
    at most ``max_backoff_ns`` apart; ``batch`` entries taken at a time."""

    min_backoff_ns: int = 500_000_000
    max_backoff_ns: int = 60_000_000_000
    batch: int = 256

    def __post_init__(self) -> None:
        assert 0 < self.min_backoff_ns <= self.max_backoff_ns
        assert 0 < self.batch <= 10_000

    def backoff_ns(self, attempts: int) -> int:
        """The wait after ``attempts`` failed attempts."""
        assert attempts >= 1
        return min(self.max_backoff_ns, self.min_backoff_ns << min(attempts - 1, 40))


@dataclass(frozen=True, slots=True)
class OfflineUpload:
    """An offline EC purchase a terminal uploaded (0320, 60.1 = 36), kept for clearing."""

    key: TransactionKey
    merchant_id: str
    amount_fen: int | None
    pan_masked: str | None
    message: bytes  # the terminal's 0320 as received without its MAC (PAN and field 55: clearing needs them)
    received_ns: int
    service_ref: str | None = None  # a public service's reference (field 48 of the 0320), for clearing
    bus_line: int | None = None  # a validator's fare: the line and vehicle of field 63 of the 0320
    vehicle: str | None = None

    def __post_init__(self) -> None:
        assert 0 < len(self.message) <= MAX_MESSAGE_BYTES
