"""The acquirer's domain on both databases: one RRN per terminal transaction, reversals queued before a
transaction is given up, tombstones for reversals that come first, advices and uploads kept once, the SAF
queue's backoff."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from citycard.acquirer import (
    AdviceRefusal,
    BeginTransaction,
    Begun,
    GiveUp,
    QueueAdvice,
    RecordAnswer,
    ReversalOutcome,
    ReverseAtTerminal,
    SafAnswered,
    SafFailed,
    SafKind,
    SafPolicy,
    SafStatus,
    StoreUpload,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    begin_transaction,
    due_entries,
    give_up,
    queue_advice,
    record_answer,
    record_saf_results,
    reverse_at_terminal,
    store_upload,
)
from citycard.acquirer.views import retry_now, saf_queue
from citycard.db import Database
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import SoftHsm

from tests.acquirer.support import stored_reversal

TERMINAL = "10000019"
MERCHANT = "850100082410002"
PROTECTION = RecordProtection.open(SoftHsm(bytes(range(32))))  # the acquirer's data keys, made once


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now


def begin(
    key: TransactionKey, kind: TransactionKind = TransactionKind.PURCHASE, **extra: object
) -> BeginTransaction:
    return BeginTransaction(key, MERCHANT, kind, 1250, "622424******0113", **extra)  # type: ignore[arg-type]


def test_a_retried_request_gets_the_same_rrn_and_another_key_the_next(database: Database) -> None:
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    first = begin_transaction(begin(TransactionKey(TERMINAL, 1, 7)), uow(), clock)
    again = begin_transaction(begin(TransactionKey(TERMINAL, 1, 7)), uow(), clock)
    other_batch = begin_transaction(begin(TransactionKey(TERMINAL, 2, 7)), uow(), clock)
    other_terminal = begin_transaction(begin(TransactionKey("10000020", 1, 7)), uow(), clock)
    assert first.fresh and not again.fresh
    assert first.record is not None and again.record is not None
    assert first.record.rrn == again.record.rrn == "000000000001"
    rrns = [b.record.rrn for b in (other_batch, other_terminal) if b.record]
    assert rrns == ["000000000002", "000000000003"]
    answered = record_answer(RecordAnswer(TransactionKey(TERMINAL, 1, 7), "00"), uow(), clock)
    assert answered is not None and answered.status == TransactionStatus.ANSWERED
    with uow() as read:
        stored = read.transactions.by_rrn("000000000001")
    assert stored is not None and stored.response_code == "00" and stored.pan_masked == "622424******0113"


def test_giving_up_queues_the_reversal_and_a_late_answer_changes_nothing(database: Database) -> None:
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    key = TransactionKey(TERMINAL, 1, 8)
    begun = begin_transaction(begin(key), uow(), clock)
    assert begun.record is not None
    entry = give_up(GiveUp(key, b"\x04\x00reversal", "98"), uow(), clock)
    again = give_up(GiveUp(key, b"\x04\x00reversal", "98"), uow(), clock)
    assert entry.id == again.id and entry.rrn == begun.record.rrn and entry.kind == SafKind.REVERSAL
    late = record_answer(RecordAnswer(key, "00"), uow(), clock)
    assert (
        late is not None and late.status == TransactionStatus.REVERSAL_QUEUED and late.response_code == "98"
    )
    assert [e.id for e in due_entries(uow(), clock, SafPolicy())] == [entry.id]


def test_a_terminal_reversal_of_an_unseen_transaction_is_a_tombstone_that_refuses_the_original(
    database: Database,
) -> None:
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    key = TransactionKey(TERMINAL, 3, 41)
    made: list[str] = []

    def reversal_for(rrn: str) -> bytes:
        made.append(rrn)
        return b"\x04\x00" + rrn.encode()

    outcome, record = reverse_at_terminal(ReverseAtTerminal(key, MERCHANT, reversal_for, "98"), uow(), clock)
    repeat, _ = reverse_at_terminal(ReverseAtTerminal(key, MERCHANT, reversal_for, "98"), uow(), clock)
    assert outcome == repeat == ReversalOutcome.TOMBSTONED and record.status == TransactionStatus.TOMBSTONE
    late = begin_transaction(begin(key), uow(), clock)
    assert late.refused and not late.fresh
    assert made == [] and due_entries(uow(), clock, SafPolicy()) == []

    seen = TransactionKey(TERMINAL, 3, 42)
    original = begin_transaction(begin(seen), uow(), clock)
    assert original.record is not None
    outcomes = [
        reverse_at_terminal(ReverseAtTerminal(seen, MERCHANT, reversal_for, "98"), uow(), clock)[0]
        for _ in range(5)
    ]
    assert outcomes == [ReversalOutcome.QUEUED] * 5
    due = due_entries(uow(), clock, SafPolicy())
    assert [(e.kind, e.rrn) for e in due] == [(SafKind.REVERSAL, original.record.rrn)]


def test_an_advice_is_queued_once_with_its_original_rrn_and_a_void_of_nothing_finds_nothing(
    database: Database,
) -> None:
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    purchase = begin_transaction(begin(TransactionKey(TERMINAL, 1, 1)), uow(), clock)
    assert purchase.record is not None
    record_answer(RecordAnswer(TransactionKey(TERMINAL, 1, 1), "00"), uow(), clock)  # approved: refundable
    refund_key = TransactionKey(TERMINAL, 1, 2)

    def advice_for(rrn: str, original: str | None) -> bytes:
        return f"0220{rrn}{original}".encode()

    command = QueueAdvice(
        begin(refund_key, TransactionKind.REFUND, original=TransactionKey(TERMINAL, 1, 1)), advice_for
    )
    first = queue_advice(command, uow(), clock)
    second = queue_advice(command, uow(), clock)
    assert isinstance(first, Begun) and isinstance(second, Begun)
    assert first.record is not None and second.record is not None and first.record.rrn == second.record.rrn
    assert first.record.original_rrn == purchase.record.rrn
    [entry] = due_entries(uow(), clock, SafPolicy())
    assert entry.message == f"0220{first.record.rrn}{purchase.record.rrn}".encode()
    record_saf_results([SafAnswered(entry.id, "00")], uow(), clock, SafPolicy())
    with uow() as read:
        assert read.saf.count(SafStatus.DONE) == 1 and read.saf.count(SafStatus.PENDING) == 0
        refund = read.transactions.get(refund_key)
    assert refund is not None and refund.status == TransactionStatus.ANSWERED and refund.response_code == "00"
    orphan = begin_transaction(
        begin(TransactionKey(TERMINAL, 1, 3), TransactionKind.VOID, original=TransactionKey(TERMINAL, 9, 9)),
        uow(),
        clock,
    )
    assert orphan.record is None


def _approved_sale(uow: Callable[[], AcquirerUnitOfWork], clock: Clock) -> TransactionKey:
    """A purchase of 12.50 (stan 1), approved."""
    sale = TransactionKey(TERMINAL, 1, 1)
    begin_transaction(begin(sale), uow(), clock)
    record_answer(RecordAnswer(sale, "00"), uow(), clock)
    return sale


def _refund(
    uow: Callable[[], AcquirerUnitOfWork], clock: Clock, original: TransactionKey, stan: int, fen: int
) -> Begun | AdviceRefusal:
    """The acquirer host's :func:`queue_advice` of a refund of ``fen`` from ``original`` (stan ``stan``)."""
    key = TransactionKey(TERMINAL, 1, stan)
    masked = "622424******0113"
    command = BeginTransaction(key, MERCHANT, TransactionKind.REFUND, fen, masked, original=original)
    return queue_advice(QueueAdvice(command, lambda rrn, _original: f"0220{rrn}".encode()), uow(), clock)


def test_a_refund_is_refused_at_once_beyond_what_is_left_of_its_purchase_and_nothing_is_kept(
    database: Database,
) -> None:
    """A refund is acknowledged before the issuer sees it, so the acquirer refuses what its records show the
    issuer would: more than is left of the purchase after its refunds (64). A refund the issuer declined
    frees its amount; one not answered yet holds it; a repeat is answered as the first time."""
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    sale = _approved_sale(uow, clock)
    stans = itertools.count(2)

    def refund(fen: int, stan: int | None = None) -> Begun | AdviceRefusal:
        return _refund(uow, clock, sale, next(stans) if stan is None else stan, fen)

    first = refund(1000)  # stan 2, not answered yet: it holds its 10.00
    assert isinstance(first, Begun) and first.record is not None
    refused = refund(300)  # stan 3
    assert refused == AdviceRefusal(
        "64", "the refund exceeds what is left of the purchase to refund (250 fen)"
    )
    with uow() as read:
        assert read.transactions.get(TransactionKey(TERMINAL, 1, 3)) is None  # nothing kept or queued
        assert [entry.rrn for entry in read.saf.due(clock(), 10)] == [first.record.rrn]
    [entry] = due_entries(uow(), clock, SafPolicy())
    record_saf_results([SafAnswered(entry.id, "61")], uow(), clock, SafPolicy())  # the issuer declined it
    declined_then = refund(1250)  # stan 4: the declined refund holds nothing
    assert isinstance(declined_then, Begun) and declined_then.fresh
    assert refund(1) == AdviceRefusal(
        "64", "the refund exceeds what is left of the purchase to refund (0 fen)"
    )
    again = refund(1000, stan=2)  # a repeat of the first: answered as it was, not judged again
    assert isinstance(again, Begun) and not again.fresh and again.record is not None
    assert again.record.rrn == first.record.rrn and again.record.response_code == "61"
    with uow() as read:
        groups = {
            (g.status, g.response_code): (g.count, g.amount_fen)
            for g in read.transactions.follow_ups(first.record.original_rrn or "")
        }
    assert groups == {
        (TransactionStatus.ANSWERED, "61"): (1, 1000),
        (TransactionStatus.PENDING, None): (1, 1250),
    }


def test_a_refund_of_a_purchase_declined_reversed_voided_or_unanswered_is_refused(database: Database) -> None:
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    stans = itertools.count(100)

    def refund_of(original: TransactionKey) -> Begun | AdviceRefusal:
        return _refund(uow, clock, original, next(stans), 100)

    declined, reversed_, voided, unanswered, load = (TransactionKey(TERMINAL, 1, n) for n in range(1, 6))
    for key in (declined, reversed_, voided, unanswered):
        begin_transaction(begin(key), uow(), clock)
    begin_transaction(begin(load, TransactionKind.EC_LOAD), uow(), clock)
    for key, code in ((declined, "51"), (voided, "00"), (load, "00")):
        record_answer(RecordAnswer(key, code), uow(), clock)
    give_up(GiveUp(reversed_, b"0400", "98"), uow(), clock)
    void = begin_transaction(
        begin(TransactionKey(TERMINAL, 1, 6), TransactionKind.VOID, original=voided), uow(), clock
    )
    assert void.record is not None
    refusals = {key.stan: refund_of(key) for key in (declined, reversed_, voided, unanswered, load)}
    assert refusals == {
        1: AdviceRefusal("12", "the original purchase was declined: nothing to give back"),
        2: AdviceRefusal("12", "the original purchase was reversed"),
        3: AdviceRefusal("12", f"the original purchase was voided (RRN {void.record.rrn})"),
        4: AdviceRefusal("12", "the original purchase has no answer yet"),
        5: AdviceRefusal("12", "the original is a ec_load: only a purchase is refunded"),
    }
    record_answer(
        RecordAnswer(TransactionKey(TERMINAL, 1, 6), "12"), uow(), clock
    )  # the issuer refused the void
    assert isinstance(refund_of(voided), Begun)  # a declined void leaves the purchase refundable
    with uow() as read:
        assert read.saf.count(SafStatus.PENDING) == 2  # the reversal and the one refund accepted


def test_refunds_of_one_purchase_at_once_are_judged_one_after_the_other(database: Database) -> None:
    """Six refunds of 40 % of one purchase, from six threads at once: the original's row is locked before
    its refunds are summed, so exactly two are kept and four refused (64), never a third that overdraws."""
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    sale = _approved_sale(uow, clock)
    start = threading.Barrier(6, timeout=30)

    def refund(stan: int) -> Begun | AdviceRefusal:
        start.wait()
        return _refund(uow, clock, sale, stan, 500)

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(refund, range(2, 8)))
    kept = [o for o in outcomes if isinstance(o, Begun)]
    assert len(kept) == 2 and all(o.fresh for o in kept)
    assert [o for o in outcomes if not isinstance(o, Begun)] == [
        AdviceRefusal("64", "the refund exceeds what is left of the purchase to refund (250 fen)")
    ] * 4
    with uow() as read:
        assert read.saf.count(SafStatus.PENDING) == 2


def test_the_saf_backoff_doubles_up_to_its_bound(database: Database) -> None:
    clock = Clock()
    policy = SafPolicy(min_backoff_ns=100, max_backoff_ns=500, batch=10)

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    key = TransactionKey(TERMINAL, 1, 9)
    begin_transaction(begin(key), uow(), clock)
    entry = give_up(GiveUp(key, b"\x04\x00x", "98"), uow(), clock)
    waits = []
    for attempts in itertools.count(1):
        if attempts > 5:
            break
        [due] = due_entries(uow(), clock, policy)
        record_saf_results([SafFailed(due.id, attempts)], uow(), clock, policy)
        assert due_entries(uow(), clock, policy) == []
        with uow() as read:
            stored = read.saf.get(entry.id)
        assert stored is not None
        waits.append(stored.next_attempt_ns - clock.now)
        clock.now = stored.next_attempt_ns
    assert waits == [100, 200, 400, 500, 500]


def test_the_queue_view_lists_what_waits_next_due_first_and_retry_makes_it_due_now(
    database: Database,
) -> None:
    """``citycard acquirer queue`` / ``retry`` (``acquirer.views``): each waiting entry read from its sealed
    message (the card masked), the next due first; delivered ones counted, not listed; retry brings every
    waiting entry forward, keeping its attempts and last answer."""
    clock = Clock()
    policy = SafPolicy(min_backoff_ns=100, max_backoff_ns=10_000, batch=10)
    pan = "6212260000000000018"

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    entries = []
    for stan, amount in ((21, 1250), (22, 300), (23, 999)):
        key = TransactionKey(TERMINAL, 1, stan)
        begin_transaction(begin(key), uow(), clock)
        entries.append(
            give_up(GiveUp(key, stored_reversal(pan, TERMINAL, MERCHANT, stan, amount), "98"), uow(), clock)
        )
    first, second, third = entries
    record_saf_results(
        [SafFailed(first.id, 3, "91"), SafFailed(second.id, 1), SafAnswered(third.id, "00")],
        uow(),
        clock,
        policy,
    )  # the first tried thrice (its next try 400 ns away), the second once (100), the third delivered
    view = saf_queue(uow())
    assert (view.pending, view.delivered) == (2, 1)
    assert [(e.rrn, e.stan, e.amount_fen, e.attempts, e.last_code) for e in view.entries] == [
        (second.rrn, 22, 300, 1, None),
        (first.rrn, 21, 1250, 3, "91"),
    ]
    shown = view.entries[1]
    assert shown.kind == SafKind.REVERSAL and shown.mti == "0400" and shown.terminal_id == TERMINAL
    assert shown.card == "621226*********0018" and shown.reason == "98"
    assert [e.rrn for e in saf_queue(uow(), limit=1).entries] == [second.rrn]
    key = TransactionKey(TERMINAL, 1, 24)
    begin_transaction(begin(key), uow(), clock)
    damaged = give_up(GiveUp(key, b"\x04\x00not a message", "98"), uow(), clock)
    (odd,) = [e for e in saf_queue(uow()).entries if e.rrn == damaged.rrn]  # listed, not hidden
    assert (odd.mti, odd.card, odd.amount_fen, odd.attempts) == ("????", None, None, 0)
    record_saf_results([SafAnswered(damaged.id, "00")], uow(), clock, policy)

    assert due_entries(uow(), clock, policy) == []
    assert retry_now(uow(), clock) == 2
    assert retry_now(uow(), clock) == 0  # due already
    due = due_entries(uow(), clock, policy)
    assert [(e.id, e.attempts, e.response_code) for e in due] == [(first.id, 3, "91"), (second.id, 1, None)]


def test_an_offline_upload_is_kept_once(database: Database) -> None:
    clock = Clock()

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, PROTECTION)

    command = StoreUpload(TransactionKey(TERMINAL, 1, 50), MERCHANT, 200, "622424******0113", b"\x03\x20tc")
    assert store_upload(command, uow(), clock) is True
    assert store_upload(command, uow(), clock) is False
    with uow() as read:
        assert read.uploads.count() == 1
        kept = read.uploads.get(TransactionKey(TERMINAL, 1, 50))
    assert kept is not None and kept.message == b"\x03\x20tc" and kept.amount_fen == 200
