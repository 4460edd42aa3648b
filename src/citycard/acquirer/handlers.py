"""The acquirer's handlers: ``handler(command, uow, clock[, policy])``, each one transaction.

What they guarantee (the store-and-forward rules of issue 8, ``docs/network.md``):

- **One RRN per terminal transaction.** :func:`begin_transaction` gives a new key the next RRN of the
  persisted sequence and keeps the record; a retried request (same terminal, batch and STAN) gets the
  same record back (``fresh=False``), so it is forwarded with the same RRN and the issuer answers it from
  its idempotency store instead of posting it again.
- **Nothing given up without a reversal on disk.** :func:`give_up` (no answer from the switch) queues the
  reversal in the same transaction that marks the record, before the terminal is answered 91/98.
- **A terminal's reversal is acknowledged once persisted.** :func:`reverse_at_terminal` queues the
  reversal of a known original, or records a *tombstone* for one never seen, so that the original, if it
  comes later, is refused and never forwarded (a transaction the acquirer never forwarded needs no
  reversal upstream).
- **An advice is acknowledged once persisted** (:func:`queue_advice`), with its RRN, and forwarded by SAF;
  a refund its original's records show the issuer would refuse (voided, declined, more than is left) is
  refused at once instead.
- **SAF**: :func:`due_entries`, then :func:`record_saf_results` for the batch: answered (done) or failed
  (retried after a backoff that doubles up to a bound, :class:`~.model.SafPolicy`). Delivery is at least
  once; the issuer's idempotency (request id 32-37, reversals ``R`` + it) makes it exactly once.
- **An offline upload is kept once** (:func:`store_upload`); a repeat is acknowledged again.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeVar

from .commands import (
    BeginTransaction,
    GiveUp,
    QueueAdvice,
    RecordAnswer,
    ReverseAtTerminal,
    SafAnswered,
    SafFailed,
    StoreUpload,
)
from .model import (
    TRANSITIONS,
    UNNUMBERED,
    AcquirerTransaction,
    AdviceRefusal,
    OfflineUpload,
    SafEntry,
    SafKind,
    SafPolicy,
    SafStatus,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    format_rrn,
    refund_refusal,
)
from .ports import MAX_MOVES, AcquirerUnitOfWork, Clock

R = TypeVar("R")
log = logging.getLogger(__name__)

__all__ = [
    "Begun",
    "ReversalOutcome",
    "begin_checked",
    "begin_many",
    "begin_transaction",
    "due_entries",
    "give_up",
    "queue_advice",
    "record_answer",
    "record_answers",
    "record_saf_results",
    "reverse_at_terminal",
    "store_upload",
]


@dataclass(frozen=True, slots=True)
class Begun:
    """The record of a transaction (None when its original is unknown: a void or refund answered 25).
    ``fresh`` is False for a retry (or a key tombstoned by an earlier reversal: ``record.status``)."""

    record: AcquirerTransaction | None
    fresh: bool

    @property
    def refused(self) -> bool:
        """The key was reversed before it came (a tombstone): the request must not be forwarded."""
        return self.record is not None and self.record.status == TransactionStatus.TOMBSTONE


def _new_record(cmd: BeginTransaction, now_ns: int, original_rrn: str | None = None) -> AcquirerTransaction:
    return AcquirerTransaction(
        key=cmd.key,
        merchant_id=cmd.merchant_id,
        rrn=UNNUMBERED,  # numbered by the store
        kind=cmd.kind,
        amount_fen=cmd.amount_fen,
        pan_masked=cmd.pan_masked,
        status=TransactionStatus.PENDING,
        response_code=None,
        original_rrn=original_rrn,
        created_ns=now_ns,
        updated_ns=now_ns,
        service_ref=cmd.service_ref,
    )


def _begin(cmd: BeginTransaction, uow: AcquirerUnitOfWork, now_ns: int) -> Begun:
    original_rrn = None
    if cmd.original is not None:  # a void or refund: its retry finds its record, whatever its original
        existing = uow.transactions.get(cmd.key, for_update=True)
        if existing is not None:
            return Begun(existing, fresh=False)
        original = uow.transactions.get(cmd.original)
        if original is None or original.status == TransactionStatus.TOMBSTONE:
            return Begun(None, fresh=False)
        original_rrn = original.rrn
    numbered = uow.transactions.add_numbered(_new_record(cmd, now_ns, original_rrn))  # one statement
    if numbered is not None:
        return Begun(numbered, fresh=True)
    stored = uow.transactions.get(cmd.key, for_update=True)  # a retry (or a simultaneous first attempt)
    assert stored is not None
    return Begun(stored, fresh=False)


def begin_transaction(cmd: BeginTransaction, uow: AcquirerUnitOfWork, clock: Clock) -> Begun:
    """The record of ``cmd.key``: a new one with the next RRN, or the stored one (module docstring)."""
    with uow:
        begun = _begin(cmd, uow, clock())
        uow.commit()
    return begun


def begin_checked(
    cmd: BeginTransaction,
    check: Callable[[AcquirerUnitOfWork], R | None],
    uow: AcquirerUnitOfWork,
    clock: Clock,
) -> Begun | R:
    """:func:`begin_transaction` after ``check`` in the same database transaction (the acquirer host's
    registry read of fields 41/42: one transaction per purchase instead of two). When ``check`` returns
    something (a refusal), nothing is begun and that is returned."""
    with uow:
        begun = _checked(cmd, check, uow, clock)
        if isinstance(begun, Begun):  # a refusal begins nothing: nothing to commit
            uow.commit()
    return begun


def _checked(
    cmd: BeginTransaction,
    check: Callable[[AcquirerUnitOfWork], R | None],
    uow: AcquirerUnitOfWork,
    clock: Clock,
) -> Begun | R:
    """``check``'s refusal, or ``cmd`` begun, in the transaction of ``uow``."""
    refusal = check(uow)
    return refusal if refusal is not None else _begin(cmd, uow, clock())


def begin_many(
    items: Sequence[tuple[BeginTransaction, Callable[[AcquirerUnitOfWork], R | None]]],
    uows: Callable[[], AcquirerUnitOfWork],
    clock: Clock,
    *,
    ahead: Callable[[AcquirerUnitOfWork, Sequence[BeginTransaction]], None] | None = None,
) -> list[Begun | R | Exception]:
    """Group commit of :func:`begin_checked` (the acquirer host's purchases that arrived together,
    ``hosts.groups``): each item's check, then its record, in order and in ONE transaction committed once
    (a group of new purchases: in as few statements, each committed on its own, :func:`_begin_new`); each
    result is what :func:`begin_checked` would have returned for it. A record begun in the group is
    seen by the group's later items (a retry of the same key gets it back, ``fresh=False``). When the
    transaction fails (a database error, e.g. a deadlock with another host thread over a retried key, or a
    bug) it is rolled back and each item runs alone in its own transaction; an item that then raises gets
    its exception in its place, so no item's failure costs another its record.

    In a group of new transactions that follow up nothing (no void: its original may be in the group), the
    checks run first (``ahead`` reads what they will ask in one go, e.g. the registry of every terminal) and
    the records are inserted in one statement (``Transactions.add_numbered_many``); a key met again (a
    retry in the group, or stored before) then gets its stored record as alone. A new purchase alone is such
    a group of one; a void alone runs :func:`begin_checked`."""
    if len(items) > 1 or items[0][0].original is None:
        try:
            with uows() as uow:
                together: list[Begun | R | Exception]
                if any(cmd.original is not None for cmd, _ in items):
                    together = [_checked(cmd, check, uow, clock) for cmd, check in items]
                else:  # each statement stands alone: no BEGIN or COMMIT to wait for (_begin_new)
                    uow.each_statement_commits()
                    together = _begin_new(items, uow, clock(), ahead)
                uow.commit()
            return together
        except Exception:  # each alone below: the guilty one raises again, in its own place
            log.info("group of %d begins rolled back: each runs alone", len(items), exc_info=True)
    alone: list[Begun | R | Exception] = []
    for cmd, check in items:
        try:
            alone.append(begin_checked(cmd, check, uows(), clock))
        except Exception as exc:  # this item's answer; the others go on
            alone.append(exc)
    return alone


def _begin_new(
    items: Sequence[tuple[BeginTransaction, Callable[[AcquirerUnitOfWork], R | None]]],
    uow: AcquirerUnitOfWork,
    now_ns: int,
    ahead: Callable[[AcquirerUnitOfWork, Sequence[BeginTransaction]], None] | None,
) -> list[Begun | R | Exception]:
    """:func:`begin_many`'s group of new transactions (none follows up an original), set-based: the
    registry read, then the records inserted in one statement (each numbered by the sequence in it), then the
    stored record of a key met again. Each of these statements stands alone — the insert is atomic by
    itself, and none relies on a lock or a read held after it (a terminal closed between the read and the
    insert is closed just after its purchase began, as it could be at any time) — so ``uow`` may commit each
    on its own (``each_statement_commits``: two waits for the database where ``BEGIN`` and ``COMMIT`` made
    four). Should a later statement fail after the insert, :func:`begin_many` runs each item alone and each
    finds its record (``fresh=False``: forwarded with the same RRN, as a retry is)."""
    if ahead is not None:
        ahead(uow, [cmd for cmd, _ in items])
    refusals = [check(uow) for _, check in items]
    first: dict[TransactionKey, BeginTransaction] = {}
    for (cmd, _), refusal in zip(items, refusals, strict=True):
        if refusal is None:
            first.setdefault(cmd.key, cmd)
    numbered = uow.transactions.add_numbered_many([_new_record(cmd, now_ns) for cmd in first.values()])
    begun: list[Begun | R | Exception] = []
    for (cmd, _), refusal in zip(items, refusals, strict=True):
        if refusal is not None:
            begun.append(refusal)
        elif first.get(cmd.key) is cmd and cmd.key in numbered:
            begun.append(Begun(numbered[cmd.key], fresh=True))
        else:  # stored before, or a retry within the group: its stored record
            begun.append(_begin(cmd, uow, now_ns))
    return begun


_ANSWER_MOVES: Final = {
    target: frozenset(
        source for (source, event), to in TRANSITIONS.items() if event == "answer" and to == target
    )
    for (_, event), target in TRANSITIONS.items()
    if event == "answer"
}
"""The status an answer moves a record to, and the statuses it moves it from (``model.TRANSITIONS``)."""


def record_answer(cmd: RecordAnswer, uow: AcquirerUnitOfWork, clock: Clock) -> AcquirerTransaction | None:
    """Keep the issuer's response code; a late answer after the reversal was queued changes nothing. One
    conditional update (the transitions of ``model.TRANSITIONS``); the record is read only when it did not
    move. Each statement stands alone (a conditional update is atomic by itself and no lock is held across
    them), so none needs a transaction around it: ``each_statement_commits``."""
    now = clock()
    with uow:
        uow.each_statement_commits()
        for target, sources in _ANSWER_MOVES.items():
            moved = uow.transactions.move(
                cmd.key, sources, status=target, response_code=cmd.response_code, updated_ns=now
            )
            if moved is not None:
                uow.commit()
                return moved
        return uow.transactions.get(cmd.key)  # None, or a status no answer moves


def record_answers(
    cmds: Sequence[RecordAnswer], uows: Callable[[], AcquirerUnitOfWork], clock: Clock
) -> list[AcquirerTransaction | Exception | None]:
    """:func:`record_answer` of a group of answers (``hosts.groups``): on PostgreSQL ONE conditional update
    of all their records (``Transactions.move_many``, autocommit), so a group costs one round trip and one
    commit; a record that did not move is read, as :func:`record_answer` reads it. Each result is what
    :func:`record_answer` would have returned, except that a key answered twice in one group takes its
    last answer once (both results are the record as it then stands). When the statement fails, each
    answer is recorded alone; one that then raises gets its exception in its place."""
    assert 0 < len(cmds) <= MAX_MOVES, len(cmds)
    if len(cmds) > 1:
        try:
            now = clock()
            left = {cmd.key: cmd.response_code for cmd in cmds}  # the last answer of a key wins
            found: dict[TransactionKey, AcquirerTransaction | None] = {}
            with uows() as uow:
                uow.each_statement_commits()
                for target, sources in _ANSWER_MOVES.items():
                    moved = uow.transactions.move_many(left, sources, status=target, updated_ns=now)
                    found.update(moved)
                    left = {key: code for key, code in left.items() if key not in moved}
                found.update((key, uow.transactions.get(key)) for key in left)  # None, or not moved
                uow.commit()
            return [found[cmd.key] for cmd in cmds]
        except Exception:  # each alone below
            log.info("group of %d answers failed: each is recorded alone", len(cmds), exc_info=True)
    alone: list[AcquirerTransaction | Exception | None] = []
    for cmd in cmds:
        try:
            alone.append(record_answer(cmd, uows(), clock))
        except Exception as exc:
            alone.append(exc)
    return alone


def _queue(uow: AcquirerUnitOfWork, kind: SafKind, rrn: str, message: bytes, now_ns: int) -> SafEntry:
    entry = SafEntry(0, kind, rrn, message, SafStatus.PENDING, 0, now_ns, None, now_ns)
    stored = uow.saf.add(entry)
    if stored is None:  # queued already (a repeat): keep the first
        found = uow.saf.find(kind, rrn)
        assert found is not None
        return found
    return stored


def give_up(cmd: GiveUp, uow: AcquirerUnitOfWork, clock: Clock) -> SafEntry:
    """No answer for ``cmd.key``: mark the record and queue its reversal, in one transaction."""
    now = clock()
    with uow:
        record = uow.transactions.get(cmd.key, for_update=True)
        assert record is not None, "a transaction is begun before it is forwarded"
        status = record.moved("give up")
        if status is not None:
            record = replace(record, status=status, response_code=cmd.reason, updated_ns=now)
            uow.transactions.update(record)
        entry = _queue(uow, SafKind.REVERSAL, record.rrn, cmd.reversal, now)
        uow.commit()
    return entry


class ReversalOutcome(enum.StrEnum):
    QUEUED = "queued"  # the original was seen: its reversal is in the SAF queue
    TOMBSTONED = "tombstoned"  # never seen: recorded so that it is refused if it comes


def reverse_at_terminal(
    cmd: ReverseAtTerminal, uow: AcquirerUnitOfWork, clock: Clock
) -> tuple[ReversalOutcome, AcquirerTransaction]:
    """A terminal's reversal: queue it for a known original, else record a tombstone (module docstring).
    A repeat of the same reversal finds the entry or the tombstone and changes nothing."""
    now = clock()
    with uow:
        original = uow.transactions.get(cmd.original, for_update=True)
        if original is None:
            original = AcquirerTransaction(
                key=cmd.original,
                merchant_id=cmd.merchant_id,
                rrn=format_rrn(uow.rrns.next_value()),
                kind=TransactionKind.REVERSAL,
                amount_fen=None,
                pan_masked=None,
                status=TransactionStatus.TOMBSTONE,
                response_code=cmd.reason,
                original_rrn=None,
                created_ns=now,
                updated_ns=now,
            )
            if uow.transactions.add(original):
                uow.commit()
                return ReversalOutcome.TOMBSTONED, original
            stored = uow.transactions.get(cmd.original, for_update=True)  # the original came meanwhile
            assert stored is not None
            original = stored
        if original.status == TransactionStatus.TOMBSTONE:
            return ReversalOutcome.TOMBSTONED, original
        status = original.moved("reverse")
        if status is not None:
            original = replace(original, status=status, updated_ns=now)
            uow.transactions.update(original)
        _queue(uow, SafKind.REVERSAL, original.rrn, cmd.reversal_for(original.rrn), now)
        uow.commit()
    return ReversalOutcome.QUEUED, original


def queue_advice(cmd: QueueAdvice, uow: AcquirerUnitOfWork, clock: Clock) -> Begun | AdviceRefusal:
    """Begin the advice's transaction and queue it for forwarding, in one transaction; a repeat finds both.
    ``record`` is None when its original is unknown (answered 25, nothing queued). A new refund that the
    records show the issuer would refuse (:func:`~.model.refund_refusal`) is refused: nothing is kept. Its
    original is locked first, so two refunds of one purchase are judged one after the other."""
    now = clock()
    with uow:
        begin = cmd.begin
        if (
            begin.kind == TransactionKind.REFUND
            and begin.original is not None
            and uow.transactions.get(begin.key) is None  # a repeat is answered as it was the first time
        ):
            original = uow.transactions.get(begin.original, for_update=True)
            if original is not None and original.status != TransactionStatus.TOMBSTONE:
                follow_ups = uow.transactions.follow_ups(original.rrn)
                refusal = refund_refusal(original, follow_ups, begin.amount_fen or 0)
                if refusal is not None:
                    return refusal
        begun = _begin(begin, uow, now)
        if begun.record is None or begun.refused:
            return begun
        record = begun.record
        if uow.saf.find(SafKind.ADVICE, record.rrn) is None:
            _queue(uow, SafKind.ADVICE, record.rrn, cmd.advice_for(record.rrn, record.original_rrn), now)
        uow.commit()
    return begun


def store_upload(cmd: StoreUpload, uow: AcquirerUnitOfWork, clock: Clock) -> bool:
    """Keep an offline upload for clearing; False when it was kept already (acknowledged again)."""
    upload = OfflineUpload(
        cmd.key,
        cmd.merchant_id,
        cmd.amount_fen,
        cmd.pan_masked,
        cmd.message,
        clock(),
        cmd.service_ref,
        cmd.bus_line,
        cmd.vehicle,
    )
    with uow:
        stored = uow.uploads.add(upload)
        uow.commit()
    return stored


def due_entries(uow: AcquirerUnitOfWork, clock: Clock, policy: SafPolicy) -> list[SafEntry]:
    """The pending SAF entries due now, oldest first, at most ``policy.batch``."""
    with uow:
        return uow.saf.due(clock(), policy.batch)


def record_saf_results(
    results: Sequence[SafAnswered | SafFailed], uow: AcquirerUnitOfWork, clock: Clock, policy: SafPolicy
) -> None:
    """The outcome of a batch of attempts, in one transaction: an answered entry is done (an advice's record
    keeps the response code); a failed one waits ``policy.backoff_ns(attempts)`` before its next attempt.
    Until this commits the entries are still due, so a crash in between sends them again (at least once)."""
    now = clock()
    with uow:
        for result in results:
            if isinstance(result, SafFailed):
                assert result.attempts >= 1
                uow.saf.set_result(
                    result.entry_id,
                    status=SafStatus.PENDING,
                    attempts=result.attempts,
                    next_attempt_ns=now + policy.backoff_ns(result.attempts),
                    response_code=result.last_code,
                )
                continue
            entry = uow.saf.get(result.entry_id)
            assert entry is not None
            uow.saf.set_result(
                entry.id,
                status=SafStatus.DONE,
                attempts=entry.attempts + 1,
                next_attempt_ns=entry.next_attempt_ns,
                response_code=result.response_code,
            )
            if entry.kind == SafKind.ADVICE:
                record = uow.transactions.by_rrn(entry.rrn)
                if record is not None and record.moved("answer") is not None:
                    answered = replace(
                        record,
                        status=TransactionStatus.ANSWERED,
                        response_code=result.response_code,
                        updated_ns=now,
                    )
                    uow.transactions.update(answered)
        uow.commit()
