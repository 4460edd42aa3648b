"""Concurrent writers on one ledger: no lost update, money conserved (PostgreSQL row locks; SQLite's single
writer). Threads, each with its own connection, post many transfers among a few accounts, race on the same
transfer ids, and overdraw accounts that forbid it; afterwards every balance must equal what the stored
transfers say, the ledger must sum to zero, and each transfer id must have been accepted exactly once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from citycard.db import SqlUnitOfWork, run_in_unit_of_work
from citycard.ledger import (
    Account,
    AccountFlags,
    CreateTransferResult,
    Transfer,
    TransferFlags,
    account_violation,
)

from tests.db.dbtargets import KINDS, fresh_database

R = CreateTransferResult
THREADS = 6
FUNDING_FEN = 1_000  # small against amounts of up to 900, so that overdrafts are refused often
BATCHES_PER_THREAD = 60
ACCOUNTS = (1, 2, 3, 4)
CREDIT_NORMAL = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


def _worker(db: object, index: int, log: list[tuple[Transfer, R]], errors: list[BaseException]) -> None:
    rng = random.Random(1000 + index)
    try:
        for n in range(BATCHES_PER_THREAD):
            if n % 10 == 0:
                # a contested id: every thread submits id 9_000_000+n, each with its own accounts
                debit, credit = rng.sample(ACCOUNTS, 2)
                batch = [Transfer(9_000_000 + n, debit, credit, 1 + index)]
            else:
                batch = []
                for k in range(rng.randint(1, 3)):
                    debit, credit = rng.sample(ACCOUNTS, 2)
                    linked = TransferFlags.LINKED if rng.random() < 0.3 else TransferFlags.NONE
                    batch.append(
                        Transfer(
                            index * 1_000_000 + n * 10 + k, debit, credit, rng.randint(1, 900), flags=linked
                        )
                    )
            with db.unit_of_work() as uow:  # type: ignore[attr-defined]
                results = uow.ledger.create_transfers(batch)
                uow.commit()
            log.extend(zip(batch, results, strict=True))
    except BaseException as error:  # reported by the main thread
        errors.append(error)


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_writers_lose_nothing(kind: str, tmp_path: Path) -> None:
    with fresh_database(kind, tmp_path, pool_size=THREADS + 2) as db:
        with db.unit_of_work() as uow:
            opening = [Account(1, code=1)] + [Account(i, code=2, flags=CREDIT_NORMAL) for i in ACCOUNTS[1:]]
            uow.ledger.create_accounts(opening)
            uow.ledger.create_transfers([Transfer(i, 1, i, FUNDING_FEN) for i in ACCOUNTS[1:]])
            uow.commit()
        logs: list[list[tuple[Transfer, R]]] = [[] for _ in range(THREADS)]
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_worker, args=(db, i, logs[i], errors)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        assert not any(t.is_alive() for t in threads)

        with db.unit_of_work() as uow:
            journal = {t.id: t for t in uow.ledger.journal(limit=100_000) if t.id > 4}
            balances = {a.id: a for a in uow.ledger.balances()}
            totals = uow.ledger.totals()

    accepted = Counter(t.id for log in logs for t, r in log if r is R.OK)
    assert all(n == 1 for n in accepted.values()), "a transfer id was accepted twice"
    assert set(accepted) == set(journal), "accepted transfers and stored transfers differ"
    contested = [r for log in logs for t, r in log if t.id >= 9_000_000]
    assert Counter(contested)[R.OK] == BATCHES_PER_THREAD // 10
    assert set(contested) <= {R.OK, R.EXISTS, R.EXISTS_WITH_DIFFERENT_FIELDS, R.EXCEEDS_CREDITS}
    refused = sum(1 for log in logs for _, r in log if r is R.EXCEEDS_CREDITS)
    assert refused > 0, "the test should drive accounts to their limit"

    expected: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for i in ACCOUNTS[1:]:
        expected[1][0] += FUNDING_FEN
        expected[i][1] += FUNDING_FEN
    for t in journal.values():
        expected[t.debit_account_id][0] += t.amount_fen
        expected[t.credit_account_id][1] += t.amount_fen
    for account_id, account in balances.items():
        assert (account.debits_posted, account.credits_posted) == tuple(expected[account_id]), account_id
        assert account_violation(account) is None
    assert totals.balanced
    assert sum(a.balance_fen for a in balances.values()) == 0


_PENDING = Transfer(300, 3, 4, 5, flags=TransferFlags.PENDING)


@pytest.mark.parametrize(
    ("batch_b", "expected_b", "balances"),
    [
        ([Transfer(50, 3, 4, 7)], [R.EXISTS_WITH_DIFFERENT_FIELDS], [7, -7, 0, 0]),
        (
            [Transfer(49, 3, 4, 1), Transfer(50, 3, 4, 7)],
            [R.OK, R.EXISTS_WITH_DIFFERENT_FIELDS],
            [7, -7, 1, -1],
        ),
        (
            [
                *(Transfer(100 + k, 3, 4, 1) for k in range(100)),
                Transfer(50, 3, 4, 7),
                *(Transfer(200 + k, 3, 4, 1) for k in range(100)),
                _PENDING,
                Transfer.post(301, _PENDING),  # refers to a row of the same statement
            ],
            [*[R.OK] * 100, R.EXISTS_WITH_DIFFERENT_FIELDS, *[R.OK] * 102],
            [7, -7, 205, -205],
        ),
    ],
    ids=["one row: on conflict do nothing", "several rows: savepoint", "a batch of 203: one insert"],
)
def test_racing_inserts_of_one_id_resolve_to_exists(
    tmp_path: Path, batch_b: list[Transfer], expected_b: list[R], balances: list[int]
) -> None:
    """PostgreSQL: B submits id 50 on other accounts while A's insert of id 50 is uncommitted. B's insert
    waits on the unique key (no account lock is shared) until A commits; the repository undoes B's insert
    and re-evaluates the batch: B gets ``exists_with_different_fields`` instead of an error. With many
    rows, B's single ``INSERT … SELECT FROM unnest`` has inserted some of them when it waits: the savepoint
    undoes them all, and the second attempt inserts the others, the nullable columns and the post of a
    pending transfer of the same batch included."""
    with fresh_database("postgresql", tmp_path) as db:
        with db.unit_of_work() as uow:
            uow.ledger.create_accounts([Account(i) for i in ACCOUNTS])
            uow.commit()
        outcome: list[object] = []

        def submit_b() -> None:
            try:
                with db.unit_of_work() as uow_b:
                    outcome.extend(uow_b.ledger.create_transfers(batch_b))
                    uow_b.commit()
            except BaseException as error:
                outcome.append(error)

        with db.unit_of_work() as uow_a:
            assert uow_a.ledger.create_transfers([Transfer(50, 1, 2, 7)]) == [R.OK]
            b = threading.Thread(target=submit_b)
            b.start()
            with db.engine.connect() as probe:
                for _ in range(400):
                    waiting = probe.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE '%INSERT INTO ledger_transfers%'"
                        )
                    ).scalar_one()
                    probe.rollback()  # pg_stat_activity is a snapshot per transaction
                    if waiting:
                        break
                    time.sleep(0.025)
            assert waiting, "B never waited on A's uncommitted insert"
            uow_a.commit()
        b.join(timeout=60)
        assert outcome == expected_b
        with db.unit_of_work() as uow:
            (stored,) = uow.ledger.lookup_transfers([50])
            assert (stored.debit_account_id, stored.credit_account_id) == (1, 2)
            assert [a.balance_fen for a in uow.ledger.balances()] == balances
            assert uow.ledger.audit() == []


def test_deadlocked_unit_of_work_is_run_again(tmp_path: Path) -> None:
    """PostgreSQL: two units of work each make two ledger calls on the same account pairs in opposite order,
    so they deadlock; PostgreSQL aborts one, ``run_in_unit_of_work`` runs it again, both commit once."""
    with fresh_database("postgresql", tmp_path) as db:
        with db.unit_of_work() as uow:
            uow.ledger.create_accounts([Account(i) for i in ACCOUNTS])
            uow.commit()
        both_hold_first_locks = threading.Barrier(2, timeout=30)
        attempts = Counter[int]()
        outcome: dict[int, object] = {}

        def work(
            first: tuple[int, int], second: tuple[int, int], base_id: int
        ) -> Callable[[SqlUnitOfWork], object]:
            def run(uow: SqlUnitOfWork) -> object:
                attempts[base_id] += 1
                a = uow.ledger.create_transfers([Transfer(base_id, *first, 10)])
                if attempts[base_id] == 1:
                    both_hold_first_locks.wait()
                b = uow.ledger.create_transfers([Transfer(base_id + 1, *second, 10)])
                return a + b

            return run

        def client(first: tuple[int, int], second: tuple[int, int], base_id: int) -> None:
            try:
                outcome[base_id] = run_in_unit_of_work(db.unit_of_work, work(first, second, base_id))
            except BaseException as error:
                outcome[base_id] = error

        threads = [
            threading.Thread(target=client, args=((1, 2), (3, 4), 100)),
            threading.Thread(target=client, args=((3, 4), (1, 2), 200)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert outcome == {100: [R.OK, R.OK], 200: [R.OK, R.OK]}
        assert max(attempts.values()) >= 2, "a deadlock victim should have been aborted and re-run"
        with db.unit_of_work() as uow:
            assert sorted(t.id for t in uow.ledger.journal()) == [100, 101, 200, 201]
            assert [a.balance_fen for a in uow.ledger.balances()] == [20, -20, 20, -20]


@pytest.mark.parametrize("kind", KINDS)
def test_expiry_sweep_racing_posts_resolves_each_pending_once(kind: str, tmp_path: Path) -> None:
    """Two hosts whose clocks disagree: for the poster the pending transfers are still open, for the
    sweeper they are due. Each pending transfer must end either posted or expired, never both, and the
    books must agree with the transfers (row locks on PostgreSQL, the single writer on SQLite)."""
    pendings = [
        Transfer(1_000 + i, 1, 2 + i % 3, 10, flags=TransferFlags.PENDING, timeout_s=1) for i in range(120)
    ]
    with fresh_database(kind, tmp_path) as db:
        start_ns = 1_700_000_000 * 1_000_000_000
        with db.unit_of_work(clock=lambda: start_ns) as uow:
            uow.ledger.create_accounts([Account(i) for i in ACCOUNTS])
            assert uow.ledger.create_transfers(pendings) == [R.OK] * len(pendings)
            uow.commit()
        posted: list[int] = []
        expired: list[int] = []
        errors: list[BaseException] = []

        def poster() -> None:
            try:
                for p in reversed(pendings):  # the sweep goes oldest first: they meet in the middle
                    with db.unit_of_work(clock=lambda: start_ns + 500_000_000) as uow:
                        (result,) = uow.ledger.create_transfers([Transfer.post(p.id + 10_000, p)])
                        uow.commit()
                    assert result in (R.OK, R.PENDING_TRANSFER_EXPIRED), result
                    if result is R.OK:
                        posted.append(p.id)
            except BaseException as error:
                errors.append(error)

        def sweeper() -> None:
            try:
                while len(posted) + len(expired) < len(pendings) and not errors:
                    with db.unit_of_work(clock=lambda: start_ns + 2_000_000_000) as uow:
                        expired.extend(uow.ledger.expire_pending_transfers(limit=3))
                        uow.commit()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=poster), threading.Thread(target=sweeper)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert sorted(posted + expired) == [p.id for p in pendings], "each pending resolved exactly once"
        with db.unit_of_work(read_only=True) as uow:
            assert uow.ledger.audit() == []
            assert uow.ledger.totals().balanced
            assert sum(a.debits_pending for a in uow.ledger.balances()) == 0
            assert uow.ledger.lookup_accounts([1])[0].debits_posted == 10 * len(posted)
