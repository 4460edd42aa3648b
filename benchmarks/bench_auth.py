"""Authorizations per second on PostgreSQL from N concurrent clients, beside pgbench's one-row-update rate
measured in the same run on the same server (issue 8, "Performance").

``python -m benchmarks auth``. Environment: ``CITYCARD_BENCH_CLIENTS`` (default ``1,4``: one row per
count), ``CITYCARD_BENCH_SECONDS`` (default 5, per measurement), ``CITYCARD_BENCH_GROUP`` (default 1:
``IssuerService.authorize`` per request; k > 1: ``IssuerService.authorize_many`` of k requests of k distinct
cards at a time, the issuer front end's group commit, each request's latency the group's),
``CITYCARD_BENCH_HISTORY`` (default 100 000 rows of earlier traffic in each table an authorization grows,
then ``ANALYZE``, before the clients start: ``benchmarks/history.py``; 0, a fresh database),
``CITYCARD_TEST_POSTGRES_URL``.

- citycard: N client processes (forked, each its own engine and ``IssuerService`` over the same software
  HSM), each with cards of its own (so no two clients contend for a card row), run purchase
  authorizations back to back for the given time, ``IssuerService.authorize`` each, in a throw-away
  schema. Reported: authorizations per second over all clients, latency p50 / p99, database round trips
  per authorization and client CPU per authorization (``time.process_time`` in each client).
- round trips: counted on each client's engine — every statement sent (``before_cursor_execute``, an
  ``executemany`` counts once: psycopg 3 pipelines it), plus one ``BEGIN`` per transaction (psycopg sends
  it before the first statement) and every ``COMMIT`` / ``ROLLBACK``. Statements sent together
  (``db.driver.run_together``: a group's ledger write, its held-back writes) count one each, so with groups
  the figure is the statements, more than the times the client waits (``tests/db/test_round_trips.py``
  counts those).
- baseline: ``pgbench`` (``-i`` on a scratch database of its own, unique name, dropped after) with a
  custom script of one ``UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid`` (a
  random row of 100,000; autocommit, so one round trip and one commit per transaction), the same N
  clients, ``-T`` seconds; run before and after the citycard measurement, the mean of the two is the
  rate and "ratio" = authorizations/s ÷ that rate.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any

from sqlalchemy import event, make_url

from citycard.db import Database, drop_schema, migrate
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import (
    ActivateCard,
    AddBank,
    AddBinRange,
    AddProduct,
    AuthorizationKind,
    AuthorizationRequest,
    Deposit,
    IssueCards,
)
from citycard.issuer.handlers import IssuerService

from benchmarks.bench_issuer import _field55, _id_number
from benchmarks.history import HISTORY, make_history

__all__ = ["RoundTripCounter", "main"]

POSTGRES_URL = os.environ.get(
    "CITYCARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CARDS_PER_CLIENT = 8
GROUP = int(os.environ.get("CITYCARD_BENCH_GROUP", "1"))
REQUESTS_PER_CLIENT = 6000  # more than a client can run in the time: it stops at the deadline
PGBENCH_ROWS = 100_000  # scale 1


class RoundTripCounter:
    """Counts the database round trips of an engine (see the module docstring for what counts)."""

    def __init__(self, engine: Any) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._one)
        event.listen(engine, "begin", self._one_conn)
        for name in ("commit", "rollback"):
            event.listen(engine, name, self._end)

    def _one(self, *_: Any) -> None:
        self.count += 1

    def _one_conn(self, connection: Any) -> None:
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":  # else none is sent
            self.count += 1

    def _end(self, connection: Any) -> None:
        """A ``COMMIT`` or ``ROLLBACK``: sent outside autocommit, and in autocommit when a transaction was
        opened by an explicit ``BEGIN`` (``DriverStatement.rows_beginning``: psycopg sends it because the
        server reports the transaction open)."""
        driver = connection.connection.driver_connection
        status = getattr(getattr(driver, "info", None), "transaction_status", 0)  # psycopg's; 0: idle
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT" or status != 0:
            self.count += 1


@dataclass
class _ClientResult:
    latencies_s: list[float]
    cpu_s: float
    round_trips: int


def _setup(db: Database, hsm: SoftHsm, clients: int) -> list[list[AuthorizationRequest]]:
    """Bank, product and funded cards; per client, a list of purchase requests with real ARQCs."""
    service = IssuerService(lambda: db.unit_of_work(IssuerUnitOfWork), hsm, time.time_ns)
    service.add_bank(AddBank("BENCH", "benchmark bank"))
    service.add_bin_range(AddBinRange("BENCH", "622000"))
    service.add_product(AddProduct("BENCH", "debit-ec", "bench", "622000"))
    work: list[list[AuthorizationRequest]] = []
    cards = max(CARDS_PER_CLIENT, GROUP)  # a group's requests are of distinct cards
    serial = 0
    for client in range(clients):
        pans = []
        for _ in range(cards):
            (card,) = service.issue_cards(
                IssueCards("BENCH", "debit-ec", holder_name=f"Holder {serial}", id_number=_id_number(serial))
            )
            service.activate(ActivateCard(card.pan))
            service.deposit(Deposit(card.pan, 10**11, f"dep-{serial}"))
            pans.append(card.pan)
            serial += 1
        requests = []
        for n in range(REQUESTS_PER_CLIENT):
            pan = pans[n % cards]
            atc = n // cards + 1
            f55 = _field55(hsm, pan, atc, 100, client * REQUESTS_PER_CLIENT + n)
            requests.append(
                AuthorizationRequest(f"c{client}-{n}", AuthorizationKind.PURCHASE, pan, "01", 100, f55)
            )
        work.append(requests)
    return work


def _client(
    schema: str,
    hsm: SoftHsm,
    requests: list[AuthorizationRequest],
    seconds: float,
    barrier: Barrier,
    out: Connection,
) -> None:
    db = Database.open(POSTGRES_URL, schema=schema)
    try:
        service = IssuerService(lambda: db.unit_of_work(IssuerUnitOfWork), hsm, time.time_ns)
        service.authorize(requests[0])  # warm: connection, caches (bank, keys), compiled statements
        counter = RoundTripCounter(db.engine)
        latencies = []
        barrier.wait()
        cpu0 = time.process_time()
        deadline = time.perf_counter() + seconds
        rest = requests[1:]
        for at in range(0, len(rest) - GROUP + 1, GROUP):
            start = time.perf_counter()
            group = rest[at : at + GROUP]
            answers = [service.authorize(group[0])] if GROUP == 1 else service.authorize_many(group)
            end = time.perf_counter()
            for answer in answers:
                assert not isinstance(answer, Exception) and answer.approved, answer
            latencies.extend([end - start] * len(answers))
            if end >= deadline:
                break
        out.send(_ClientResult(latencies, time.process_time() - cpu0, counter.count))
    finally:
        out.close()
        db.close()


@dataclass
class _AuthRow:
    clients: int
    auths_per_s: float
    p50_ms: float
    p99_ms: float
    round_trips: float
    cpu_ms: float


def _authorizations(clients: int, seconds: float) -> _AuthRow:
    schema = f"bench_auth_{uuid.uuid4().hex[:10]}"
    migrate(POSTGRES_URL, schema=schema)
    try:
        db = Database.open(POSTGRES_URL, schema=schema)
        hsm = SoftHsm(os.urandom(32))
        try:
            work = _setup(db, hsm, clients)
            if HISTORY:
                make_history(db, HISTORY)
        finally:
            db.close()
        context = multiprocessing.get_context("fork")
        barrier = context.Barrier(clients + 1)
        pipes, processes = [], []
        for requests in work:
            receive, send = context.Pipe(duplex=False)
            p = context.Process(target=_client, args=(schema, hsm, requests, seconds, barrier, send))
            p.start()
            send.close()
            pipes.append(receive)
            processes.append(p)
        barrier.wait()
        start = time.perf_counter()
        results: list[_ClientResult] = [pipe.recv() for pipe in pipes]
        wall = time.perf_counter() - start
        for p in processes:
            p.join()
            assert p.exitcode == 0, p.exitcode
        db = Database.open(POSTGRES_URL, schema=schema)
        try:
            with db.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
                assert uow.ledger.totals().balanced
        finally:
            db.close()
    finally:
        drop_schema(POSTGRES_URL, schema)
    latencies = sorted(x for r in results for x in r.latencies_s)
    done = len(latencies)
    return _AuthRow(
        clients,
        done / wall,
        latencies[done // 2] * 1000,
        latencies[min(done - 1, int(done * 0.99))] * 1000,
        sum(r.round_trips for r in results) / done,
        sum(r.cpu_s for r in results) / done * 1000,
    )


def _pgbench_args() -> tuple[list[str], str]:
    """(connection options for psql/pgbench, the server's database name) from the test URL."""
    url = make_url(POSTGRES_URL)
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    return args, url.database or "postgres"


def _pgbench(clients: int, seconds: float, database: str) -> float:
    args, _ = _pgbench_args()
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as script:
        script.write(
            f"\\set aid random(1, {PGBENCH_ROWS})\n"
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :aid;\n"
        )
        script.flush()
        run = subprocess.run(
            [
                "pgbench",
                *args,
                "-n",
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-T",
                str(round(seconds)),
                "-f",
                script.name,
                database,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    assert match, run.stdout
    return float(match.group(1))


def _with_pgbench_database(body: Any) -> Any:
    args, maintenance = _pgbench_args()
    database = f"pgbench_citycard_{uuid.uuid4().hex[:10]}"
    psql = ["psql", *args, "-q", "-v", "ON_ERROR_STOP=1", "-d", maintenance, "-c"]
    subprocess.run([*psql, f'CREATE DATABASE "{database}"'], check=True, capture_output=True)
    try:
        subprocess.run(["pgbench", *args, "-i", "-q", "-s", "1", database], check=True, capture_output=True)
        return body(database)
    finally:
        subprocess.run([*psql, f'DROP DATABASE IF EXISTS "{database}"'], check=True, capture_output=True)


def main() -> None:
    counts = [int(x) for x in os.environ.get("CITYCARD_BENCH_CLIENTS", "1,4").split(",")]
    seconds = float(os.environ.get("CITYCARD_BENCH_SECONDS", "5"))

    def measure(database: str) -> list[tuple[_AuthRow, float, float]]:
        rows = []
        for clients in counts:
            before = _pgbench(clients, seconds, database)
            row = _authorizations(clients, seconds)
            after = _pgbench(clients, seconds, database)
            rows.append((row, before, after))
        return rows

    rows = _with_pgbench_database(measure)
    print(
        f"purchase authorizations on PostgreSQL ({POSTGRES_URL.split('@')[-1]}),"
        f" {seconds:g} s per measurement; {GROUP} request(s) per transaction; history {HISTORY} rows a table;"
    )
    print("baseline: pgbench, one-row UPDATE per transaction, same clients, before and after")
    header = (
        f"{'clients':>7} {'auth/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'round trips':>11} {'CPU ms':>7}"
        f" {'pgbench tx/s (before/after)':>28} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for row, before, after in rows:
        baseline = (before + after) / 2
        pg = f"{before:,.0f} / {after:,.0f}"
        print(
            f"{row.clients:>7} {row.auths_per_s:>8,.0f} {row.p50_ms:>7.2f} {row.p99_ms:>7.2f}"
            f" {row.round_trips:>11.1f} {row.cpu_ms:>7.2f} {pg:>28} {row.auths_per_s / baseline:>6.3f}"
        )
    print("(round trips and CPU ms per authorization, CPU of the client processes only)")


if __name__ == "__main__":
    main()
