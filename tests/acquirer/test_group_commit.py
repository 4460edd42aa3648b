"""Group commit in the acquirer (``begin_many``, ``record_answers``; ``hosts.groups``): purchases that
arrive together are begun in one transaction (new purchases: in two statements, each committing on its
own) and their answers recorded in one statement, each with the result it would have had alone; a group
that fails is rolled back and each of its items runs alone, so one item's failure costs no other its
record. On SQLite and PostgreSQL; the round trips on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from citycard.acquirer import (
    AcquirerTransaction,
    Begun,
    GiveUp,
    RecordAnswer,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    begin_many,
    begin_transaction,
    give_up,
    record_answers,
)
from citycard.db import Database
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work

from tests.acquirer.test_records import PROTECTION, TERMINAL, Clock, begin
from tests.db.dbtargets import fresh_database


def _uows(database: Database) -> AcquirerUnitOfWork:
    return acquirer_unit_of_work(database, PROTECTION)


def _stored(database: Database, key: TransactionKey) -> AcquirerTransaction | None:
    with _uows(database) as uow:
        return uow.transactions.get(key)


def _no_refusal(_uow: AcquirerUnitOfWork) -> None:
    return None


def test_a_group_begins_each_purchase_as_alone_a_retry_in_it_included(database: Database) -> None:
    clock = Clock()
    first, second = TransactionKey(TERMINAL, 1, 1), TransactionKey(TERMINAL, 1, 2)
    refused = TransactionKey(TERMINAL, 1, 3)

    def refuse(_uow: AcquirerUnitOfWork) -> str:
        return "58"

    results = begin_many(
        [
            (begin(first), _no_refusal),
            (begin(second), _no_refusal),
            (begin(first), _no_refusal),  # the terminal's retry, in the same group
            (begin(refused), refuse),
        ],
        lambda: _uows(database),
        clock,
    )
    a, b, again, no = results
    assert no == "58" and _stored(database, refused) is None  # refused: nothing begun
    assert not isinstance(a, str | Exception | type(None)) and a.fresh and a.record is not None
    assert not isinstance(b, str | Exception | type(None)) and b.fresh and b.record is not None
    assert not isinstance(again, str | Exception | type(None)) and not again.fresh
    assert again.record is not None and again.record.rrn == a.record.rrn == "000000000001"
    assert b.record.rrn == "000000000002"
    later = begin_transaction(begin(TransactionKey(TERMINAL, 1, 4)), _uows(database), clock)
    assert later.record is not None and later.record.rrn == "000000000003"  # committed, numbers go on


def test_a_group_that_fails_is_run_item_by_item_and_the_failing_one_alone_gets_its_error(
    database: Database,
) -> None:
    clock = Clock()
    keys = [TransactionKey(TERMINAL, 2, stan) for stan in (1, 2, 3)]

    def broken(_uow: AcquirerUnitOfWork) -> None:
        raise RuntimeError("the registry is broken")

    checks = [_no_refusal, broken, _no_refusal]
    results = begin_many(
        [(begin(key), check) for key, check in zip(keys, checks, strict=True)], lambda: _uows(database), clock
    )
    assert isinstance(results[1], RuntimeError) and _stored(database, keys[1]) is None
    for key, result in ((keys[0], results[0]), (keys[2], results[2])):
        assert not isinstance(result, str | Exception | type(None)) and result.fresh
        assert _stored(database, key) is not None  # committed alone, not rolled back with the group
    numbered = [r for r in (results[0], results[2]) if not isinstance(r, Exception | str | None)]
    rrns = [r.record.rrn for r in numbered if r.record is not None]
    # in order; on PostgreSQL the rolled back group's number is not given back (a sequence), a gap
    assert len(rrns) == 2 and rrns[0] < rrns[1]


def test_a_group_that_fails_after_its_insert_gives_each_purchase_its_record_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a group of new purchases commits each statement on its own (``_begin_new``): when a
    statement after the records' insert fails (here the stored record of a retry in the group), the records
    inserted stay and each item, run alone, gets its record back (not fresh, its RRN the group's): one
    record and one RRN per key, as if the group had succeeded; on SQLite the group is rolled back and each
    item begins alone."""
    from citycard.db.acquirer_repositories import SqlTransactions

    clock = Clock()
    first, second = TransactionKey(TERMINAL, 8, 1), TransactionKey(TERMINAL, 8, 2)
    get = SqlTransactions.get
    calls = 0

    def fails_once(self: SqlTransactions, *args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the connection dropped")
        return get(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SqlTransactions, "get", fails_once)
    items = [(begin(first), _no_refusal), (begin(second), _no_refusal), (begin(first), _no_refusal)]
    results = begin_many(items, lambda: _uows(database), clock)
    assert calls >= 2  # the group's read failed, the items alone read again
    begun = [r for r in results if isinstance(r, Begun)]
    assert len(begun) == 3 and all(b.record is not None for b in begun)
    rrns = [b.record.rrn for b in begun if b.record is not None]
    assert rrns[0] == rrns[2] != rrns[1]  # the retry has its original's RRN
    for key, rrn in ((first, rrns[0]), (second, rrns[1])):
        stored = _stored(database, key)
        assert stored is not None and stored.rrn == rrn and stored.status == TransactionStatus.PENDING
    if database.engine.dialect.name == "postgresql":
        assert not any(b.fresh for b in begun)  # committed by the group's insert, found alone


def test_answers_of_a_group_are_recorded_as_each_alone(database: Database) -> None:
    clock = Clock()
    answered, late, retried = (TransactionKey(TERMINAL, 3, stan) for stan in (1, 2, 3))
    never = TransactionKey(TERMINAL, 3, 9)
    for key in (answered, late, retried):
        begin_transaction(begin(key), _uows(database), clock)
    give_up(GiveUp(late, b"\x04\x00reversal", "98"), _uows(database), clock)  # its answer comes too late
    clock.now += 1
    results = record_answers(
        [
            RecordAnswer(answered, "00"),
            RecordAnswer(late, "00"),
            RecordAnswer(never, "00"),  # no such record
            RecordAnswer(retried, "51"),
            RecordAnswer(retried, "51"),  # the issuer's stored answer again (a retry), the same code
        ],
        lambda: _uows(database),
        clock,
    )
    a, b, none, r1, r2 = results
    assert isinstance(a, AcquirerTransaction) and a.status == TransactionStatus.ANSWERED
    assert a.response_code == "00" and a.updated_ns == clock.now
    assert isinstance(b, AcquirerTransaction) and b.status == TransactionStatus.REVERSAL_QUEUED
    assert b.response_code == "98"  # a late answer changes nothing
    assert none is None
    assert r1 == r2 and isinstance(r1, AcquirerTransaction) and r1.response_code == "51"
    for key, status in ((answered, "answered"), (late, "reversal_queued"), (retried, "answered")):
        stored = _stored(database, key)
        assert stored is not None and stored.status == status


def test_answers_recorded_alone_when_the_group_statement_fails(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citycard.db.acquirer_repositories import SqlTransactions

    clock = Clock()
    keys = [TransactionKey(TERMINAL, 4, stan) for stan in (1, 2)]
    for key in keys:
        begin_transaction(begin(key), _uows(database), clock)

    def fails(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the statement failed")

    monkeypatch.setattr(SqlTransactions, "move_many", fails)
    results = record_answers([RecordAnswer(key, "00") for key in keys], lambda: _uows(database), clock)
    assert all(isinstance(r, AcquirerTransaction) and r.status == TransactionStatus.ANSWERED for r in results)


def test_a_group_of_answers_and_a_group_of_begins_are_one_round_trip_each_on_postgresql(
    tmp_path: Path,
) -> None:
    from benchmarks.bench_auth import RoundTripCounter

    clock = Clock()
    with fresh_database("postgresql", tmp_path) as db:
        keys = [TransactionKey(TERMINAL, 5, stan) for stan in range(1, 21)]
        begun = begin_many([(begin(key), _no_refusal) for key in keys], lambda: _uows(db), clock)
        assert all(not isinstance(b, Exception | str | None) and b.fresh for b in begun)
        counter = RoundTripCounter(db.engine)
        results = record_answers([RecordAnswer(key, "00") for key in keys], lambda: _uows(db), clock)
        assert counter.count == 1  # one UPDATE … FROM unnest(…) in autocommit: no BEGIN, no COMMIT
        assert [r.key for r in results if isinstance(r, AcquirerTransaction)] == keys
        counter = RoundTripCounter(db.engine)
        begin_many(
            [(begin(TransactionKey(TERMINAL, 6, s)), _no_refusal) for s in (1, 2, 3)],
            lambda: _uows(db),
            clock,
        )
        assert counter.count == 1  # the three numbered in one insert, in autocommit: no BEGIN, no COMMIT
        counter = RoundTripCounter(db.engine)
        (alone,) = begin_many(
            [(begin(TransactionKey(TERMINAL, 6, 4)), _no_refusal)], lambda: _uows(db), clock
        )
        assert isinstance(alone, Begun) and alone.fresh and alone.record is not None
        assert counter.count == 1  # a new purchase alone is a group of one


def test_a_group_with_a_void_begins_item_by_item_and_a_key_stored_before_gets_its_record(
    database: Database,
) -> None:
    """A void names its original, which may be in the same group: such a group begins each in order, as
    alone. A purchase's key stored by an earlier transaction gets its stored record back (no new RRN)."""
    clock = Clock()
    earlier = TransactionKey(TERMINAL, 7, 1)
    stored = begin_transaction(begin(earlier), _uows(database), clock)
    assert stored.record is not None
    purchase, void = TransactionKey(TERMINAL, 7, 2), TransactionKey(TERMINAL, 7, 3)
    results = begin_many(
        [
            (begin(earlier), _no_refusal),  # a retry of an answered purchase
            (begin(purchase), _no_refusal),
            (begin(void, TransactionKind.VOID, original=purchase), _no_refusal),  # its original, just begun
        ],
        lambda: _uows(database),
        clock,
    )
    again, new, voided = results
    assert isinstance(again, Begun) and not again.fresh and again.record == stored.record
    assert isinstance(new, Begun) and new.fresh and new.record is not None
    assert isinstance(voided, Begun) and voided.fresh and voided.record is not None
    assert voided.record.original_rrn == new.record.rrn
    later = begin_many(
        [(begin(earlier), _no_refusal), (begin(purchase), _no_refusal)], lambda: _uows(database), clock
    )
    assert [b.record.rrn for b in later if isinstance(b, Begun) and b.record is not None] == [
        stored.record.rrn,
        new.record.rrn,
    ]  # the set-based path: both stored before, no number taken
    assert all(isinstance(b, Begun) and not b.fresh for b in later)
