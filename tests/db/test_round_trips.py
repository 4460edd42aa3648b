"""Round trips of one purchase authorization on PostgreSQL (a count, not a time: a regression in the number
of statements the issuer sends per request shows here), the statements and plan of a ledger batch, the
writes held back by the issuer's unit of work, and the benchmark's own requests (smoke run, tiny counts, no
timing)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.db.repositories import _BALANCE_ROW, _UPDATE_BALANCES_PG, _arrays
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AuthorizationRequest
from citycard.issuer.handlers import IssuerService
from citycard.ledger import Account, AccountFlags, CreateAccountResult, CreateTransferResult, Transfer

from tests.db.dbtargets import fresh_database
from tests.db.protocol import sent, waits

PURCHASE_ROUND_TRIPS = 6  # BEGIN, the card with the request id, the terminal registry, the UN and the EC
# float balance (read ahead: ``Authorizations.prefetch``), ledger lock, ledger write, authorization insert
# (with card and UN rows), COMMIT; was 15, then 7
GROUP_ROUND_TRIPS = 12  # a group of purchases, whatever its size: BEGIN, its one read ahead, the ledger's
# lock and its batch of every request's transfers (savepoint, transfers, balances, shards, release), the
# cards' rows, the unpredictable numbers and the authorizations (one statement each), COMMIT
GROUP_WAITS = 5  # of which sent together (``driver.run_together``): BEGIN and the read ahead
# (``DriverStatement.rows_beginning``), the ledger's five, and the last three writes; so the client waits
# for BEGIN with the read ahead, the lock, the ledger's write, the group's writes and COMMIT (was 6: psycopg
# waits for its own BEGIN)
PURCHASE_WAITS = 5  # a purchase alone: BEGIN with the read ahead, the lock, the ledger's write, the insert,
# COMMIT


def _service(db: Database) -> tuple[IssuerService, SoftHsm, list[AuthorizationRequest]]:
    from benchmarks import bench_auth

    hsm = SoftHsm(os.urandom(32))
    old = bench_auth.CARDS_PER_CLIENT, bench_auth.REQUESTS_PER_CLIENT
    bench_auth.CARDS_PER_CLIENT, bench_auth.REQUESTS_PER_CLIENT = 2, 10
    try:
        (requests,) = bench_auth._setup(db, hsm, 1)
    finally:
        bench_auth.CARDS_PER_CLIENT, bench_auth.REQUESTS_PER_CLIENT = old
    return IssuerService(lambda: db.unit_of_work(IssuerUnitOfWork), hsm, time.time_ns), hsm, requests


def test_a_purchase_costs_six_round_trips_in_five_waits_and_a_group_twelve_in_five(tmp_path: Path) -> None:
    from benchmarks.bench_auth import RoundTripCounter

    with fresh_database("postgresql", tmp_path) as db:
        service, _, requests = _service(db)
        assert service.authorize(requests[0]).approved  # caches warm (bank, keys)
        counter = RoundTripCounter(db.engine)
        for req in requests[1:4]:
            assert service.authorize(req).approved
        assert counter.count == 3 * PURCHASE_ROUND_TRIPS
        before = counter.count
        assert service.authorize(requests[1]).approved  # a retry: the stored answer
        assert counter.count - before == 4  # BEGIN, the card and request id, the stored answer, ROLLBACK
        group = requests[4:6]
        assert len({req.pan for req in group}) == 2, "two cards: each one's start read ahead"
        before = counter.count
        answers = service.authorize_many(group)
        assert all(not isinstance(a, Exception) and a.approved for a in answers)
        assert counter.count - before == GROUP_ROUND_TRIPS
        # the next group, its statements prepared by then (a statement's first use waits once more)
        with db.engine.connect() as c:  # the pool's one connection: the group's unit of work takes it next
            pgconn: Any = c.connection.driver_connection.pgconn  # type: ignore[union-attr]
        with sent(pgconn) as messages:
            answers = service.authorize_many(requests[6:8])
        assert all(not isinstance(a, Exception) and a.approved for a in answers)
        assert waits(messages) == GROUP_WAITS, " ".join(messages)
        assert service.authorize(requests[8]).approved  # a purchase alone, its statements prepared here
        with sent(pgconn) as messages:
            assert service.authorize(requests[9]).approved
        assert waits(messages) == PURCHASE_WAITS, " ".join(messages)
        with db.unit_of_work(IssuerUnitOfWork) as uow:
            assert uow.ledger.totals().balanced
            assert uow.ledger.audit() == []


def test_a_ledger_batch_sends_as_many_statements_whatever_its_size(tmp_path: Path) -> None:
    """PostgreSQL: ``create_transfers`` sends the same statements for 2 transfers as for 500: a batch's rows
    go as arrays (``INSERT … SELECT FROM unnest``, ``UPDATE … FROM unnest``), not one statement per row
    (an ``executemany``, each row parsed, bound and executed on its own: counted here once per row)."""
    size = 500
    funded = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    with fresh_database("postgresql", tmp_path) as db:
        with db.unit_of_work() as uow:
            floats = [Account(i, flags=funded, limit_fen=10**6) for i in range(2, size + 2)]
            assert set(uow.ledger.create_accounts([Account(1), *floats])) == {CreateAccountResult.OK}
            uow.commit()
        sent: list[int] = []

        def count(*args: Any) -> None:
            parameters, executemany = args[3], args[5]
            sent.append(len(parameters) if executemany else 1)

        event.listen(db.engine, "before_cursor_execute", count)
        statements = []
        for n, first_id in ((2, 10_000), (size, 20_000)):
            sent.clear()
            with db.unit_of_work() as uow:
                batch = [Transfer(first_id + i, 1, 2 + i, 10) for i in range(n)]
                assert set(uow.ledger.create_transfers(batch)) == {CreateTransferResult.OK}
                uow.commit()
            statements.append(sum(sent))
        assert statements[0] == statements[1], statements
        with db.unit_of_work() as uow:
            assert uow.ledger.audit() == []
            credited = uow.ledger.lookup_accounts([2, 3, 4, size + 1])
            assert [a.credits_posted for a in credited] == [20, 20, 10, 10]


def test_a_batch_updates_its_accounts_found_by_the_primary_key(tmp_path: Path) -> None:
    """PostgreSQL: a batch's balance update finds its accounts by the primary key, whatever the number of
    accounts; a join on the arrays alone is planned as a hash join over a scan of every account, per batch."""
    with fresh_database("postgresql", tmp_path) as db:
        with db.unit_of_work() as uow:
            uow.ledger.create_accounts([Account(i) for i in range(1, 5001)])
            uow.commit()
        batch = [{f"b_{n}": i if n == "id" else 1 for n in _BALANCE_ROW} for i in range(1000, 1100)]
        with db.engine.connect() as c:
            c.exec_driver_sql("ANALYZE ledger_accounts")
            explain = c.exec_driver_sql(f"EXPLAIN {_UPDATE_BALANCES_PG}", _arrays(batch, batch[0]))
            plan = "\n".join(line for (line,) in explain)
        assert "Index Scan using pk_ledger_accounts" in plan and "Seq Scan" not in plan, plan


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_held_back_writes_are_read_back_and_dropped_on_rollback(kind: str, tmp_path: Path) -> None:
    """A card update and an unpredictable number held back by the unit of work: a later read in the same
    transaction sees them, a rollback drops them, a commit writes them."""
    with fresh_database(kind, tmp_path) as db:
        _, _, requests = _service(db)
        pan = requests[0].pan
        statements: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        with db.unit_of_work(IssuerUnitOfWork) as uow:
            card = uow.cards.get(pan, for_update=True)
            assert card is not None
            uow.cards.update(replace(card, highest_atc=77))
            uow.authorizations.add_unpredictable_number(pan, b"\x01\x02\x03\x04", 77)
            assert not any(s.startswith("UPDATE issuer_cards") for s in statements)  # held back
            again = uow.cards.get(pan)
            assert again is not None and again.highest_atc == 77
            assert uow.authorizations.seen_unpredictable_number(pan, b"\x01\x02\x03\x04")
            uow.cards.update(replace(again, highest_atc=78))
            uow.rollback()
        with db.unit_of_work(IssuerUnitOfWork) as uow:
            card = uow.cards.get(pan)
            assert card is not None and card.highest_atc == -1  # as issued
            assert not uow.authorizations.seen_unpredictable_number(pan, b"\x01\x02\x03\x04")
            uow.cards.update(replace(card, highest_atc=5))
            uow.commit()
        with db.unit_of_work(IssuerUnitOfWork) as uow:
            card = uow.cards.get(pan)
            assert card is not None and card.highest_atc == 5


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_held_back_writes_of_several_cards_are_written_together_each_card_as_last_written(
    kind: str, tmp_path: Path
) -> None:
    """Writes held back for two cards, one of them written twice, and two unpredictable numbers go to the
    database together (on PostgreSQL one statement per kind): each card ends as its last write left it."""
    with fresh_database(kind, tmp_path) as db:
        _, _, requests = _service(db)
        first, second = requests[0].pan, next(r.pan for r in requests if r.pan != requests[0].pan)
        statements: list[str] = []
        with db.unit_of_work(IssuerUnitOfWork) as uow:
            a, b = uow.cards.get(first, for_update=True), uow.cards.get(second, for_update=True)
            assert a is not None and b is not None
            uow.cards.update(replace(a, highest_atc=7, pending_pin_change=b"\x01" * 8))
            uow.cards.update(replace(b, highest_atc=9))
            uow.cards.update(replace(a, highest_atc=8, pending_pin_change=None, pending_script="block"))
            uow.authorizations.add_unpredictable_number(first, b"\x00\x00\x00\x01", 8)
            uow.authorizations.add_unpredictable_number(second, b"\x00\x00\x00\x01", 9)
            event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
            uow.commit()
        if kind == "postgresql":
            assert sum(s.startswith("UPDATE issuer_cards") for s in statements) == 1, statements
            assert sum(s.startswith("INSERT INTO issuer_unpredictable_numbers") for s in statements) == 1
        with db.unit_of_work(IssuerUnitOfWork) as uow:
            a, b = uow.cards.get(first), uow.cards.get(second)
            assert a is not None and (a.highest_atc, a.pending_pin_change, a.pending_script) == (
                8,
                None,
                "block",
            )
            assert b is not None and (b.highest_atc, b.pending_script) == (9, None)
            assert uow.authorizations.seen_unpredictable_number(first, b"\x00\x00\x00\x01")
            assert uow.authorizations.seen_unpredictable_number(second, b"\x00\x00\x00\x01")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_benchmark_authorizations_are_approved(kind: str, tmp_path: Path) -> None:
    with fresh_database(kind, tmp_path) as db:
        service, _, requests = _service(db)
        for req in requests:
            answer = service.authorize(req)
            assert answer.approved, answer.reason
        retried = service.authorize(requests[-1])
        assert retried.approved
        with db.unit_of_work(IssuerUnitOfWork) as uow:
            assert uow.ledger.totals().balanced
            assert uow.ledger.audit() == []
            assert sum(1 for t in uow.ledger.journal(limit=100) if t.amount_fen == 100) == len(requests)
