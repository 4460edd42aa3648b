"""What an operator of the acquirer reads: the store-and-forward queue (``citycard acquirer queue``), and
the one thing an operator does to it, bring every pending entry forward once an outage is over
(``citycard acquirer retry``).

Reversals and advices wait in the queue until the switch answers them (``docs/network.md``, "Store and
forward"); after a long outage an entry's next try can be a minute away (the backoff doubles up to
``SafPolicy.max_backoff_ns``). The view says, per pending entry, what it is (kind, MTI, RRN, terminal and
STAN, amount, the card masked, a reversal's reason in 39), how often it was tried, the last answer, and
when it is tried next. Read through the ports, like the handlers: the stored message is opened by the
repository (sealed at rest) and decoded here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from citycard.codec.iso8583 import Iso8583Error, decode_message, parse
from citycard.codec.pan import mask_pan

from .model import SafEntry, SafKind, SafStatus
from .ports import AcquirerUnitOfWork

__all__ = [
    "MAX_LISTED",
    "QueuedMessage",
    "SafQueueView",
    "next_try",
    "queued_json",
    "retry_now",
    "saf_queue",
    "saf_waiting",
]

MAX_LISTED = 1000
"""Most pending entries one view lists (the counts cover them all)."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One pending entry as an operator reads it (no PAN in clear, no PIN block, no key)."""

    kind: SafKind
    rrn: str
    mti: str
    terminal_id: str | None
    stan: int | None
    amount_fen: int | None
    card: str | None
    """The PAN masked (first 6, last 4)."""
    reason: str | None
    """Field 39 of the message as queued: a reversal's reason (``98`` no answer, ``96``, ``06`` ...)."""
    attempts: int
    last_code: str | None
    """The response code of the last answer, if one came (``91``, ``96``, ``98``, ``A0`` keep it queued)."""
    next_attempt_ns: int
    created_ns: int


@dataclass(frozen=True, slots=True)
class SafQueueView:
    pending: int
    delivered: int
    entries: tuple[QueuedMessage, ...]
    """The first pending entries, the next due first (at most the limit asked for)."""


def _queued(entry: SafEntry) -> QueuedMessage:
    try:
        message = parse(decode_message(entry.message))
    except Iso8583Error:  # stored by this acquirer, so a bug or a damaged row: shown, not hidden
        return QueuedMessage(entry.kind, entry.rrn, "????", None, None, None, None, None, entry.attempts,
                             entry.response_code, entry.next_attempt_ns, entry.created_ns)  # fmt: skip
    pan = message.card_number
    code = message.response_code
    return QueuedMessage(
        kind=entry.kind,
        rrn=entry.rrn,
        mti=message.mti,
        terminal_id=message.terminal_id,
        stan=message.stan,
        amount_fen=message.amount_fen,
        card=None if pan is None else mask_pan(pan),
        reason=None if code is None else code.value,
        attempts=entry.attempts,
        last_code=entry.response_code,
        next_attempt_ns=entry.next_attempt_ns,
        created_ns=entry.created_ns,
    )


def queued_json(e: QueuedMessage, iso_time: Callable[[int], str]) -> dict[str, object]:
    """One pending entry as JSON (``citycard acquirer queue --json``, the console's ``/api/acquirer/queue``),
    its times written by ``iso_time``."""
    return {
        "kind": e.kind.value,
        "mti": e.mti,
        "rrn": e.rrn,
        "terminal_id": e.terminal_id,
        "stan": e.stan,
        "amount_fen": e.amount_fen,
        "card": e.card,
        "reason": e.reason,
        "attempts": e.attempts,
        "last_code": e.last_code,
        "next_attempt": iso_time(e.next_attempt_ns),
        "queued": iso_time(e.created_ns),
    }


def next_try(at_ns: int, now_ns: int) -> str:
    """When an entry is tried next, for a person: ``due``, or ``in 42 s``."""
    seconds = (at_ns - now_ns) // 1_000_000_000
    return "due" if seconds <= 0 else f"in {seconds} s"


def saf_queue(uow: AcquirerUnitOfWork, limit: int = 100) -> SafQueueView:
    """The queue's counts and its first ``limit`` pending entries (1..:data:`MAX_LISTED`)."""
    assert 0 < limit <= MAX_LISTED, limit
    with uow:
        pending = uow.saf.count(SafStatus.PENDING)
        delivered = uow.saf.count(SafStatus.DONE)
        entries = tuple(_queued(entry) for entry in uow.saf.pending(limit))
    return SafQueueView(pending, delivered, entries)


def saf_waiting(uow: AcquirerUnitOfWork) -> int:
    """How many entries wait (:attr:`SafQueueView.pending` without listing any)."""
    with uow:
        return uow.saf.count(SafStatus.PENDING)


def retry_now(uow: AcquirerUnitOfWork, clock: Callable[[], int]) -> int:
    """Every pending entry due now: a running acquirer sends them in its next round (within its
    ``saf_idle_s``), whatever their backoff had grown to. Their attempts are kept. Returns how many were
    brought forward."""
    with uow:
        moved = uow.saf.make_due(clock())
        uow.commit()
    return moved
