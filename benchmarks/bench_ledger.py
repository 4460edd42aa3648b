"""Ledger throughput through the SQL repository, beside a bare one-row-update transaction (same run, same DB).

``python -m benchmarks ledger``. For SQLite (a temporary file, WAL) and PostgreSQL (``tests.conftest``'s URL,
a throw-away schema; skipped when unreachable) it measures:

- ledger, 1 transfer per transaction: a unit of work that creates one transfer and commits
  (lock 2 accounts, look up the id, insert, update 2 balances, in a savepoint);
- ledger, 100 transfers per transaction: one ``create_transfers`` batch of 100 per commit;
- ledger, 4 writer threads (each its own connection), 1 transfer per transaction, random account pairs;
- baseline: ``UPDATE counter SET n = n + 1 WHERE id = 1`` and commit, on the same engine.

The ratio is ledger transfers per second over baseline transactions per second.
"""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from citycard.db import Database, drop_schema, migrate
from citycard.ledger import Account, AccountFlags, CreateTransferResult, Transfer

from tests.conftest import POSTGRES_URL

__all__ = ["main"]

ROUNDS = 5  # the measurements are interleaved, so that a noisy neighbour slows all of them alike
ACCOUNTS = 100
SINGLE_TRANSFERS = 400
BATCHES = 8
BATCH_SIZE = 100
BASELINE_UPDATES = 400
THREADS = 4
CONCURRENT_TRANSFERS = 100


def _timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _measure(db: Database) -> dict[str, float]:
    with db.unit_of_work() as uow:
        funded = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
        uow.ledger.create_accounts([Account(1)] + [Account(i, flags=funded) for i in range(2, ACCOUNTS + 1)])
        uow.ledger.create_transfers([Transfer(i, 1, i, 10**9) for i in range(2, ACCOUNTS + 1)])
        uow.commit()
    ids = itertools.count(1_000_000)
    pairs = itertools.cycle(
        [(d, c) for d in range(2, ACCOUNTS + 1, 7) for c in range(3, ACCOUNTS + 1, 5) if d != c]
    )

    def single() -> None:
        for _ in range(SINGLE_TRANSFERS):
            debit, credit = next(pairs)
            with db.unit_of_work() as uow:
                results = uow.ledger.create_transfers([Transfer(next(ids), debit, credit, 1)])
                uow.commit()
            assert results == [CreateTransferResult.OK], results

    def batched() -> None:
        for _ in range(BATCHES):
            batch = [Transfer(next(ids), *next(pairs), 1) for _ in range(BATCH_SIZE)]
            with db.unit_of_work() as uow:
                results = uow.ledger.create_transfers(batch)
                uow.commit()
            assert results == [CreateTransferResult.OK] * BATCH_SIZE

    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)"))
        connection.execute(text("INSERT INTO bench_counter VALUES (1, 0)"))

    def concurrent() -> None:
        chunks = [[(next(ids), *next(pairs)) for _ in range(CONCURRENT_TRANSFERS)] for _ in range(THREADS)]

        def writer(chunk: list[tuple[int, int, int]]) -> None:
            for transfer_id, debit, credit in chunk:
                with db.unit_of_work() as uow:
                    results = uow.ledger.create_transfers([Transfer(transfer_id, debit, credit, 1)])
                    uow.commit()
                assert results == [CreateTransferResult.OK], results

        threads = [threading.Thread(target=writer, args=(chunk,)) for chunk in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def baseline() -> None:
        for _ in range(BASELINE_UPDATES):
            with db.engine.begin() as connection:
                connection.execute(text("UPDATE bench_counter SET n = n + 1 WHERE id = 1"))

    counts = {
        "baseline": (BASELINE_UPDATES, baseline),
        "single": (SINGLE_TRANSFERS, single),
        "batched": (BATCHES * BATCH_SIZE, batched),
        "concurrent": (THREADS * CONCURRENT_TRANSFERS, concurrent),
    }
    seconds = dict.fromkeys(counts, 0.0)
    for _ in range(ROUNDS):
        for name, (_, run) in counts.items():
            seconds[name] += _timed(run)
    rates = {name: ROUNDS * count / seconds[name] for name, (count, _) in counts.items()}
    with db.unit_of_work() as uow:
        assert uow.ledger.totals().balanced
    return rates


def _postgres_reachable() -> bool:
    engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


def main() -> None:
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        migrate(url)
        db = Database.open(url)
        try:
            rows.append(("SQLite (file, WAL)", _measure(db)))
        finally:
            db.close()
    if _postgres_reachable():
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        migrate(POSTGRES_URL, schema=schema)
        db = Database.open(POSTGRES_URL, schema=schema)
        try:
            rows.append(("PostgreSQL (loopback)", _measure(db)))
        finally:
            db.close()
            drop_schema(POSTGRES_URL, schema)
    else:
        print(f"PostgreSQL not reachable at {POSTGRES_URL}: skipped")

    header = (
        f"{'database':<24}{'baseline tx/s':>15}{'1 transfer/tx':>16}{'ratio':>8}"
        f"{'100 transfers/tx':>19}{'ratio':>8}{f'{THREADS} writers, 1/tx':>19}{'ratio':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows:
        print(
            f"{name:<24}{r['baseline']:>15,.0f}{r['single']:>16,.0f}{r['single'] / r['baseline']:>8.2f}"
            f"{r['batched']:>19,.0f}{r['batched'] / r['baseline']:>8.2f}"
            f"{r['concurrent']:>19,.0f}{r['concurrent'] / r['baseline']:>8.2f}"
        )
    print("(transfers per second; ratio = ledger rate / baseline one-row-update transactions per second)")


if __name__ == "__main__":
    main()
