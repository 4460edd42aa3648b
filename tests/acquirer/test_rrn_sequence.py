"""RRNs from PostgreSQL's sequence (migration 0020): two purchases in open transactions take their numbers
without waiting for each other (the counter row they used to lock is gone from the path), a retry keeps its
RRN and takes no number, the migration carries the counter's position over (no RRN given twice) and back;
and a purchase's acquirer work is one transaction of four round trips, its answer one round trip."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import text

from citycard.acquirer import (
    BeginTransaction,
    RecordAnswer,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    begin_checked,
    begin_transaction,
    record_answer,
)
from citycard.acquirer.model import UNNUMBERED, AcquirerTransaction
from citycard.db import downgrade, migrate
from citycard.db.acquirer_repositories import AcquirerUnitOfWork

from tests.db.dbtargets import fresh_database

MERCHANT = "850100082410002"


def _begin(terminal: str, stan: int) -> BeginTransaction:
    return BeginTransaction(
        TransactionKey(terminal, 1, stan), MERCHANT, TransactionKind.PURCHASE, 100, "622424******0113"
    )


def test_two_open_transactions_take_rrns_without_waiting_for_each_other(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as db:
        first = db.unit_of_work(AcquirerUnitOfWork)
        with first:
            held = first.transactions.add_numbered(  # not committed: its number is taken, nothing locked
                _record("10000001", 1)
            )
            assert held is not None and held.rrn == "000000000001"
            done: list[str] = []

            def other() -> None:
                begun = begin_transaction(_begin("10000002", 1), db.unit_of_work(AcquirerUnitOfWork), _clock)
                assert begun.record is not None
                done.append(begun.record.rrn)

            thread = threading.Thread(target=other)
            thread.start()
            thread.join(timeout=10)  # with the counter row it waited for this transaction's end
            assert done == ["000000000002"]
            first.commit()
        again = begin_transaction(_begin("10000001", 1), db.unit_of_work(AcquirerUnitOfWork), _clock)
        assert again.record is not None and again.record.rrn == "000000000001" and not again.fresh
        third = begin_transaction(_begin("10000003", 1), db.unit_of_work(AcquirerUnitOfWork), _clock)
        assert third.record is not None and third.record.rrn == "000000000003"  # the retry took none


def _clock() -> int:
    return 1_000_000_000


def _record(terminal: str, stan: int) -> AcquirerTransaction:
    return AcquirerTransaction(
        key=TransactionKey(terminal, 1, stan),
        merchant_id=MERCHANT,
        rrn=UNNUMBERED,
        kind=TransactionKind.PURCHASE,
        amount_fen=100,
        pan_masked=None,
        status=TransactionStatus.PENDING,
        response_code=None,
        original_rrn=None,
        created_ns=1,
        updated_ns=1,
    )


def test_the_migration_starts_the_sequence_where_the_counter_stood_and_gives_it_back(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as db:
        downgrade(db.engine, "0019_acquirer_sealed")
        with db.engine.begin() as connection:  # a database that gave RRNs 1 … 41 with the counter
            connection.execute(text("INSERT INTO acquirer_sequences (name, next_value) VALUES ('rrn', 42)"))
        migrate(db.engine)
        begun = begin_transaction(_begin("10000001", 1), db.unit_of_work(AcquirerUnitOfWork), _clock)
        assert begun.record is not None and begun.record.rrn == "000000000042"
        downgrade(db.engine, "0019_acquirer_sealed")
        with db.engine.connect() as connection:
            counter = connection.execute(text("SELECT next_value FROM acquirer_sequences")).scalar_one()
        assert counter == 43
        migrate(db.engine)


def test_a_purchase_is_one_transaction_of_four_round_trips_and_its_answer_one(tmp_path: Path) -> None:
    from citycard.bootstrap import acquirer_registry_in_transaction

    from benchmarks.bench_auth import RoundTripCounter

    with fresh_database("postgresql", tmp_path) as db:
        registry = acquirer_registry_in_transaction()
        begin_transaction(_begin("10000001", 1), db.unit_of_work(AcquirerUnitOfWork), _clock)  # warm
        counter = RoundTripCounter(db.engine)
        words: list[object] = []

        def check(uow: AcquirerUnitOfWork) -> None:
            words.append(registry(uow, "10000001", MERCHANT))  # read in the same transaction

        begun = begin_checked(_begin("10000001", 2), check, db.unit_of_work(AcquirerUnitOfWork), _clock)
        assert begun is not None and begun.fresh and len(words) == 1
        assert counter.count == 4  # BEGIN, the registry, the numbered insert, COMMIT
        before = counter.count
        answered = record_answer(
            RecordAnswer(TransactionKey("10000001", 1, 2), "00"), db.unit_of_work(AcquirerUnitOfWork), _clock
        )
        assert answered is not None and answered.status == TransactionStatus.ANSWERED
        assert counter.count - before == 1  # the conditional update, in autocommit (no BEGIN, no COMMIT)
        with db.unit_of_work(AcquirerUnitOfWork) as uow:  # committed; the pool's next unit of work is one
            stored = uow.transactions.get(TransactionKey("10000001", 1, 2))
            assert stored is not None and stored.status == TransactionStatus.ANSWERED
            assert uow.session.connection().get_isolation_level() != "AUTOCOMMIT"
