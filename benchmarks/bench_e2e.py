"""End to end (issue 8's yardstick): purchase authorizations from N simulated terminals over TCP through the
acquirer, the switch and the issuer front end to the issuer on PostgreSQL, beside pgbench's one-row-update
rate measured on the same server just before and just after, in the same run.

``python -m benchmarks e2e``. Environment: ``CITYCARD_BENCH_TERMINALS`` (default 20; a list such as
``1,10,20,60`` runs each count in turn, each between its own pgbench runs, and ends with the load curve: a
line per count, then drawn — throughput and p99 as bars with issue 8's targets marked, and the targets each
count meets), ``CITYCARD_BENCH_SECONDS`` (default 10), ``CITYCARD_BENCH_LAYOUT`` (``processes``, the
default: acquirer, switch and issuer front end each in a process of its own, forked after the set-up, as
``citycard serve`` runs them; ``one``: all three in one process and event loop, as ``citycard up`` runs
them),
``CITYCARD_BENCH_WORKERS`` (the issuer front end's worker threads, by default its own default,
``hosts.issuer.DEFAULT_WORKERS``), ``CITYCARD_BENCH_HISTORY`` (default 100 000: see "History" below; 0, a
fresh database), ``CITYCARD_TEST_POSTGRES_URL``, ``CITYCARD_BENCH_PROFILE`` (a directory:
layout ``processes`` only, each host process runs under cProfile — its event loop and, in the issuer front
end, every worker thread — and writes ``<host>.prof`` there when it is stopped; the CPU figures then
include the profiler's own cost).

The hosts are built by ``citycard.bootstrap`` (``build_issuer_front_end``, ``build_switch``,
``build_acquirer``), the one composition root, exactly as ``citycard serve`` and ``citycard up`` build them:
field 64 under the zone MAC keys on both host-to-host legs (made and checked at each hop), the acquirer's
stored messages sealed, the routing table read again every 5 s.

Set-up (not timed): a bank with N funded cards, a merchant acquired by that bank and N terminals in the
center's registry (their TMKs in the platform HSM and in the terminals' own key store), every ARQC made
beforehand in ATC order.

History (set-up, not timed, ``benchmarks/history.py``): the tables an authorization looks up and grows — the
issuer's stored authorizations (a retry's request id) and unpredictable numbers (a replay), the acquirer's
records — start with ``CITYCARD_BENCH_HISTORY`` rows each of earlier traffic (other cards, terminals and
request ids, so none meets the run's) and the database is then analyzed, as on a platform that has been
running, so that the hosts' prepared statements are planned on tables of a running platform's size, not on a
fresh database's near-empty ones (docs/performance.md, "a fresh database's plans"). 0 measures that fresh
start.

Each terminal signs on to the acquirer (PIK and MAK under its TMK), then sends purchases of its own card back
to back (one in flight per terminal: a terminal waits for its answer), each MACed under its MAK in its own
HSM; the acquirer checks the MAC and the registry, takes an RRN, forwards, records the answer and MACs it.
Every answer must be an approval, its field 64 the MAC under the terminal's MAK (checked, as a terminal checks
it, after its latency is taken). Reported: authorizations/s over the measured seconds (after a warm-up of
2 s), latency p50 / p99 as each terminal sees it, the requests per database transaction of each host's group
commit over the run (the issuer front end's authorizations, the acquirer's records begun and answers recorded:
what sets a host's cost per request under load; read from each host process on SIGUSR1), the client processes'
CPU, and the ratio to pgbench (``-c 4 -j 4``, 5 s, a scratch database; the mean of the runs before and after).
A second baseline in the same run: the CPU of a bare round trip between two processes over loopback TCP (a
forked echo, blocking sockets), the floor under each of the chain's three hops. And after each count, the
floor of the chain's transport (:mod:`.relay_floor`): the same number of terminals through three forked hops
on the same event loop, framing and per-request task, future and timeout, doing no work (no codec, MAC,
database): the chain's CPU per authorization minus the floor's per round trip is the hosts' work per message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from citycard.bootstrap import Issuer, build_acquirer, build_issuer_front_end, build_switch
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.handlers import handle
from citycard.center.model import tmk_label
from citycard.center.ports import CenterDeps
from citycard.codec.iso8583 import (
    AuthorizationRequest,
    Field60,
    IccData,
    Message,
    SignOnKeys,
    Tpdu,
    mac_matches,
    with_mac,
)
from citycard.codec.iso8583.messages import NetworkManagementRequest
from citycard.config import settings
from citycard.db import Database
from citycard.db.acquirer_repositories import AcquirerUnitOfWork
from citycard.db.center_repositories import CenterUnitOfWork
from citycard.hosts.acquirer import AcquirerConfig
from citycard.hosts.issuer import DEFAULT_WORKERS
from citycard.hosts.zone import ACQUIRER_LINK, ZoneMac
from citycard.hsm import KeyUsage
from citycard.hsm.api import KeyHandle
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import SoftHsm
from citycard.net.link import Iso8583Link
from citycard.net.loop import run as run_loop
from citycard.net.loop import server_heap

from .bench_auth import _pgbench, _with_pgbench_database
from .bench_chain import _Cards, _setup
from .bench_issuer import _postgres
from .history import HISTORY, make_history
from .relay_floor import Floor
from .relay_floor import measure as measure_floor
from .timing import process_cpu_s

__all__ = ["main"]

TERMINAL_COUNTS = [int(count) for count in os.environ.get("CITYCARD_BENCH_TERMINALS", "20").split(",")]
"""One run per count (``CITYCARD_BENCH_TERMINALS=1,10,20,60``: the load curve, a summary table at the end)."""
TERMINALS = TERMINAL_COUNTS[0]
"""The count :func:`_measure` runs when it is given none."""
SECONDS = float(os.environ.get("CITYCARD_BENCH_SECONDS", "10"))
LAYOUT = os.environ.get("CITYCARD_BENCH_LAYOUT", "processes")
WORKERS = int(os.environ.get("CITYCARD_BENCH_WORKERS", str(DEFAULT_WORKERS)))
PROFILE = os.environ.get("CITYCARD_BENCH_PROFILE")
WARM_UP_S = 2.0
MOST_PER_S = 2500
"""ARQCs are made beforehand for this rate over all terminals (a terminal that runs out stops early)."""
PGBENCH_CLIENTS = 4
"""The yardstick of the ratio target: pgbench with 4 clients (``-c 4 -j 4``), since the first run."""
MERCHANT = "BENCH0000000001"
TARGET_RATE, TARGET_RATIO, TARGET_P99_MS = 1_500.0, 0.3, 50.0
"""Issue 8's targets, end to end: authorizations/s, the rate over pgbench's one-row-update rate, p99 ms."""
BAR_WIDTH = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _terminal_id(i: int) -> str:
    return f"BT{i:06d}"


@dataclass
class _Platform:
    """What the hosts need, made before any fork (each process takes its copy)."""

    db: Database
    issuer: Issuer
    hsm: SoftHsm
    ports: dict[str, int]


def _register(db: Database, platform: SoftHsm, terminals: int) -> SoftHsm:
    """The merchant (acquired by the benchmark bank) and the terminals; their own HSM (one for all)."""
    own = SoftHsm(os.urandom(32))
    deps = CenterDeps(time.time_ns, platform, lambda _tid: own)
    handle(
        AddMerchant(MERCHANT, "Bench shop", "5411", "Xihu", "BENCH"), db.unit_of_work(CenterUnitOfWork), deps
    )
    for i in range(terminals):
        handle(AddTerminal(_terminal_id(i), MERCHANT), db.unit_of_work(CenterUnitOfWork), deps)
    with db.unit_of_work(AcquirerUnitOfWork) as uow:  # the RRN counter made before the first rush
        uow.rrns.next_value()
        uow.commit()
    return own


Grouped = dict[str, tuple[int, int]]
"""A host's database transactions and the requests they carried, by kind of group (``grouped``)."""
Hosts = dict[str, Callable[[], Grouped]]
"""Each serving host's ``grouped``, by host name, filled in by the ``_serve_*`` functions."""


async def _serve_until_killed() -> None:
    """As ``citycard serve`` serves once its host is up: with the heap settled (``net.loop.server_heap``)."""
    with server_heap():
        await asyncio.Event().wait()


async def _serve_issuer(p: _Platform, hosts: Hosts) -> None:
    """Built by the composition root, as ``citycard serve issuer`` builds it: field 64 on the switch leg."""
    async with build_issuer_front_end(p.issuer, "BENCH", port=p.ports["issuer"], workers=WORKERS) as front:
        hosts["issuer"] = lambda: front.grouped
        await _serve_until_killed()


async def _serve_switch(p: _Platform, hosts: Hosts) -> None:
    """As ``citycard serve switch``: zone MACs on both legs, PIN translation, routing reload."""
    async with build_switch(p.issuer, {"BENCH": ("127.0.0.1", p.ports["issuer"])}, port=p.ports["switch"]):
        await _serve_until_killed()


async def _serve_acquirer(p: _Platform, hosts: Hosts) -> None:
    """As ``citycard serve acquirer``: sealed SAF and uploads, zone MAC on the switch leg."""
    config = AcquirerConfig(host="127.0.0.1", port=p.ports["acquirer"], switch_port=p.ports["switch"])
    async with build_acquirer(settings(), p.hsm, p.db, config=config) as acquirer:
        hosts["acquirer"] = lambda: acquirer.grouped
        await _serve_until_killed()


def _grouped(hosts: Hosts) -> Grouped:
    """Every host's groups, as ``"<host> <kind>"``."""
    return {f"{host} {kind}": counts for host, grouped in hosts.items() for kind, counts in grouped().items()}


def _make_keys(p: _Platform) -> None:
    """The keys the hosts make at their first start, made before the fork (the HSM's key store is in
    memory here: each process must start with the same keys)."""
    for link in (ACQUIRER_LINK, "BENCH"):
        ZoneMac.open(p.hsm, link)
    RecordProtection.open(p.hsm)


Serve = Callable[[_Platform, Hosts], Coroutine[Any, Any, None]]


class _GcClock:
    """The time this process spends in the cyclic garbage collector's collections (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began

    def __enter__(self) -> _GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _in_process(p: _Platform, serve: Serve, report: Connection) -> None:
    """A host process: ``serve`` until killed; on SIGUSR1 its groups so far and the seconds its collections
    of cyclic garbage took since the fork are sent on ``report``."""
    p.db.engine.dispose(close=False)  # the parent's connections stay the parent's
    if PROFILE is not None:
        _profiled(Path(PROFILE) / f"{serve.__name__.removeprefix('_serve_')}.prof")
    hosts: Hosts = {}
    collecting = _GcClock()
    gc.callbacks.append(collecting)  # for the process's life

    async def main() -> None:
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGUSR1, lambda: report.send((_grouped(hosts), collecting.seconds))
        )
        await serve(p, hosts)

    run_loop(main())


def _profiled(out: Path) -> None:
    """Profile this process from now on: the main thread, and each worker thread of an executor (one
    profiler per thread, cProfile being per thread); all written to ``out`` on SIGTERM."""
    import cProfile
    import pstats
    import threading
    from concurrent.futures import ThreadPoolExecutor

    profilers = [cProfile.Profile(time.thread_time)]
    local = threading.local()
    submit = ThreadPoolExecutor.submit

    def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        if not hasattr(local, "profiler"):
            local.profiler = cProfile.Profile(time.thread_time)
            profilers.append(local.profiler)
            local.profiler.enable()
        return fn(*args)

    def profiled_submit(
        self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        return submit(self, in_thread, partial(fn, **kwargs), *args)

    ThreadPoolExecutor.submit = profiled_submit  # type: ignore[method-assign,assignment]

    def dump(_signum: int, _frame: object) -> None:
        for profiler in profilers:
            profiler.disable()
        stats = pstats.Stats(profilers[0])
        for profiler in profilers[1:]:
            stats.add(profiler)
        stats.dump_stats(out)
        os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    profilers[0].enable()


class _Terminal:
    def __init__(self, index: int, own: SoftHsm, link: Iso8583Link, pan: str) -> None:
        self.id, self.own, self.link, self.pan = _terminal_id(index), own, link, pan
        self.stan = 0
        self.mak: KeyHandle | None = None
        """The MAK this terminal's sign-on imported (:meth:`sign_on`)."""

    def _next_stan(self) -> int:
        self.stan += 1
        return self.stan

    async def sign_on(self) -> None:
        answer = await self.link.request(
            NetworkManagementRequest(
                mti="0800",
                stan=self._next_stan(),
                terminal_id=self.id,
                merchant_id=MERCHANT,
                field60=Field60("00", 1, "003"),
            )
        )
        assert answer.approved and answer.private62 is not None, answer
        keys = SignOnKeys.decode(answer.private62)
        tmk = self.own.get(tmk_label(self.id))
        self.mak = self.own.import_working_key(
            f"{self.id}/mak", tmk, KeyUsage.MAC_X9_19, keys.mak_under_tmk, keys.mak_check_value, replace=True
        )

    def answer_verifies(self, answer: Message) -> bool:
        """Whether field 64 of ``answer`` is there and is its MAC under the MAK, as a terminal checks it
        (``hosts.terminal``: an approval without a MAC that verifies is not believed)."""
        mak = self.mak
        assert mak is not None, "signed on"
        return answer.mac is not None and mac_matches(
            answer.to_bytes(), lambda block: self.own.pos_mac(mak, block)
        )

    def purchase(self, f55: bytes) -> AuthorizationRequest:
        """The 0200 as the terminal sends it, MACed."""
        message = AuthorizationRequest(
            mti="0200",
            pan=self.pan,
            processing_code="000000",
            amount_fen=100,
            stan=self._next_stan(),
            pos_entry_mode="051",
            card_sequence_number="001",
            condition_code="00",
            terminal_id=self.id,
            merchant_id=MERCHANT,
            currency="156",
            icc=IccData.from_bytes(f55),
            field60=Field60("22", 1),
            mac=bytes(8),
        )
        mak = self.mak
        assert mak is not None, "signed on"
        if hasattr(message, "signed"):  # encoded once (absent in code before it: a baseline)
            return message.signed(lambda block: self.own.pos_mac(mak, block))
        mac = with_mac(message.to_bytes(), lambda block: self.own.pos_mac(mak, block))[-8:]
        return dataclasses.replace(message, mac=mac)


async def _terminals(
    port: int, own: SoftHsm, pans: list[str], f55s: list[list[bytes]]
) -> tuple[list[float], int]:
    """Every terminal sends until the deadline: the latencies of the authorizations in the measured window,
    and how many were made in all (warm-up included)."""
    latencies: list[float] = []
    made = 0
    start = time.perf_counter()
    measure_from, deadline = start + WARM_UP_S, start + WARM_UP_S + SECONDS

    async def run(index: int) -> None:
        async with Iso8583Link("127.0.0.1", port, tpdu=Tpdu(6, 1)) as link:
            terminal = _Terminal(index, own, link, pans[index])
            await terminal.sign_on()
            for f55 in f55s[index]:
                message = terminal.purchase(f55)
                sent = time.perf_counter()
                if sent >= deadline:
                    return
                answer = await link.request(message)
                done = time.perf_counter()
                assert answer.approved, answer
                assert terminal.answer_verifies(answer), f"the answer's MAC does not verify: {answer}"
                nonlocal made
                made += 1
                if sent >= measure_from and done <= deadline:
                    latencies.append(done - sent)
            raise AssertionError(f"more than {MOST_PER_S}/s: make more ARQCs beforehand")

    await asyncio.gather(*(run(i) for i in range(len(pans))))
    return latencies, made


async def _all_in_one(
    p: _Platform, own: SoftHsm, pans: list[str], f55s: list[list[bytes]]
) -> tuple[list[float], int, Grouped]:
    hosts: Hosts = {}
    serving = (_serve_issuer, _serve_switch, _serve_acquirer)
    tasks = [asyncio.create_task(serve(p, hosts)) for serve in serving]
    await asyncio.sleep(0.5)
    try:
        latencies, made = await _terminals(p.ports["acquirer"], own, pans, f55s)
        return latencies, made, _grouped(hosts)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True)
class _Row:
    rate: float
    p50_ms: float
    p99_ms: float
    grouped: Grouped
    """The hosts' database transactions and the requests they carried over the whole run (warm-up
    included), by ``"<host> <kind of group>"``."""
    cpu_ms: dict[str, float]
    """CPU per authorization (ms) by process: user + system time over the whole run of the terminals
    (warm-up included) ÷ the authorizations made in it. ``postgres``: every PostgreSQL server process,
    other sessions on the server included (an upper bound on a shared machine)."""
    gc_ms: dict[str, float]
    """Of which the cyclic garbage collector's collections (``gc.callbacks``), by Python process: the
    terminals' over their run, each host's from its fork to the end of the run."""


def _cpu_now(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process named, and of PostgreSQL's (``postgres``)."""
    return {name: process_cpu_s(pid) for name, pid in pids.items()} | {"postgres": _postgres_cpu_s()}


def _postgres_cpu_s() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += process_cpu_s(int(entry.name))
            except OSError:  # ended meanwhile
                continue
    return total


BARE_ROUND_TRIPS = 20_000
BARE_MESSAGE = 300
"""A chip purchase's frame is about this size."""


def _echo(listener: socket.socket, report: Connection) -> None:
    """Echo what comes until the peer closes; then report the CPU this process spent from the first
    message on (its own clock: ``/proc``'s tick-sampled figures miss much of a process that sleeps between
    bursts shorter than a tick)."""
    connection, _ = listener.accept()
    with connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = None
        while data := connection.recv(65_536):
            if started is None:
                started = time.process_time()
            connection.sendall(data)
    report.send(time.process_time() - (started or 0.0))


def _bare_round_trip_us() -> float:
    """CPU (µs, both processes) of one bare round trip between two processes over loopback TCP: a message
    sent, echoed by a forked process, received — plain blocking sockets, no event loop, no codec. The floor
    of any hop: the chain makes three such round trips per authorization (terminal–acquirer,
    acquirer–switch, switch–issuer) besides its database round trips."""
    fork = multiprocessing.get_context("fork")
    theirs, report = fork.Pipe(duplex=False)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        child = fork.Process(target=_echo, args=(listener, report), daemon=True)
        child.start()
        with socket.create_connection(listener.getsockname()) as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            message = bytes(BARE_MESSAGE)
            mine = time.process_time()
            for _ in range(BARE_ROUND_TRIPS):
                connection.sendall(message)
                received = 0
                while received < BARE_MESSAGE:
                    received += len(connection.recv(65_536))
            mine = time.process_time() - mine
        used = mine + float(theirs.recv())
        child.join(10)
    return used / BARE_ROUND_TRIPS * 1e6


def _measure(
    open_db: Callable[[], tuple[Database, Callable[[], None]]] = _postgres, terminals: int | None = None
) -> _Row:
    """One run of ``terminals`` (default :data:`TERMINALS`) on a database of its own."""
    terminals = TERMINALS if terminals is None else terminals
    db, cleanup = open_db()
    try:
        service, hsm, pans, _ = _setup_cards(db, terminals)
        own = _register(db, hsm, terminals)
        if HISTORY:
            make_history(db, HISTORY)
        cards = _Cards(hsm, pans)
        per_terminal = int(MOST_PER_S * (WARM_UP_S + SECONDS) / terminals) + 1
        f55s = [[cards.field55(pan) for _ in range(per_terminal)] for pan in pans]
        ports = {name: _free_port() for name in ("issuer", "switch", "acquirer")}
        p = _Platform(db, Issuer(service, db, Path(".")), hsm, ports)
        _make_keys(p)
        mine = "terminals" if LAYOUT != "one" else "all hosts and terminals"
        pids = {mine: os.getpid()}
        collected_s: dict[str, float] = {}
        if LAYOUT == "one":
            before = _cpu_now(pids)
            with _GcClock() as collecting:
                latencies, made, grouped = run_loop(_all_in_one(p, own, pans, f55s))
            collected_s[mine] = collecting.seconds
        else:
            fork = multiprocessing.get_context("fork")
            reports = [fork.Pipe(duplex=False) for _ in range(3)]
            children = [
                fork.Process(target=_in_process, args=(p, serve, sending), daemon=True)
                for serve, (_, sending) in zip(
                    (_serve_issuer, _serve_switch, _serve_acquirer), reports, strict=True
                )
            ]
            for child in children:
                child.start()
            for name, child in zip(("issuer", "switch", "acquirer"), children, strict=True):
                assert child.pid is not None
                pids[name] = child.pid
            time.sleep(1.5)  # listening by then
            try:
                before = _cpu_now(pids)
                with _GcClock() as collecting:
                    latencies, made = run_loop(_terminals(ports["acquirer"], own, pans, f55s))
                after = _cpu_now(pids)
                collected_s[mine] = collecting.seconds
                grouped = {}
                for name, child, (receiving, _) in zip(
                    ("issuer", "switch", "acquirer"), children, reports, strict=True
                ):
                    assert child.pid is not None
                    os.kill(child.pid, signal.SIGUSR1)
                    assert receiving.poll(10), "a host did not report its groups"
                    groups, collected_s[name] = receiving.recv()
                    grouped |= groups
            finally:
                for child in children:
                    child.terminate()
                    child.join()
        if LAYOUT == "one":
            after = _cpu_now(pids)
        latencies.sort()
        return _Row(
            len(latencies) / SECONDS,
            latencies[len(latencies) // 2] * 1e3,
            latencies[int(len(latencies) * 0.99)] * 1e3,
            grouped,
            {name: (after[name] - before[name]) / made * 1e3 for name in after},
            {name: seconds / made * 1e3 for name, seconds in collected_s.items()},
        )
    finally:
        db.close()
        cleanup()


def _setup_cards(db: Database, terminals: int) -> tuple[Any, SoftHsm, list[str], str]:
    import benchmarks.bench_chain as chain

    old = chain.CARDS
    chain.CARDS = terminals
    try:
        return _setup(db)
    finally:
        chain.CARDS = old


def main() -> None:
    rows = [(terminals, *_run(terminals)) for terminals in TERMINAL_COUNTS]
    bare_us = _bare_round_trip_us()
    print(
        f"baseline: a bare round trip between two processes over loopback TCP costs {bare_us:.0f} µs of CPU"
        f" (blocking sockets, no event loop); the chain's three per authorization {3 * bare_us / 1e3:.2f} ms"
    )
    if len(rows) > 1:
        _summary(rows)


def _run(terminals: int) -> tuple[_Row, float, float, Floor]:
    """One count's run between two pgbench runs, then pgbench with one client, then the same count through
    hops that do no work (:mod:`.relay_floor`), printed; the row, pgbench's rate (the mean of the two
    runs of :data:`PGBENCH_CLIENTS`), the one client's and the floor."""
    load = os.getloadavg()[0]
    before = _with_pgbench_database(lambda database: _pgbench(PGBENCH_CLIENTS, 5, database))
    row = _measure(terminals=terminals)
    after = _with_pgbench_database(lambda database: _pgbench(PGBENCH_CLIENTS, 5, database))
    one_client = _with_pgbench_database(lambda database: _pgbench(1, 5, database))
    floor = measure_floor(terminals, warm_up_s=WARM_UP_S, seconds=SECONDS)
    pgbench = (before + after) / 2
    print(
        f"{terminals} terminals, layout {LAYOUT}, issuer workers {WORKERS}, {SECONDS:.0f} s measured,"
        f" history {HISTORY} rows a table, load average {load:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    print(f"{'auth/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'pgbench tx/s':>13} {'ratio':>6}")
    print(
        f"{row.rate:>8.0f} {row.p50_ms:>7.1f} {row.p99_ms:>7.1f} {pgbench:>13.0f} {row.rate / pgbench:>6.3f}"
        f"   (pgbench before {before:.0f}, after {after:.0f})"
    )
    print(f"requests per database transaction: {_per_transaction(row)}")
    print(f"issue 8's targets: {_targets(row, pgbench)}")
    print(
        f"beside pgbench with one client (pgbench's default; the issue's 'bare one-round-trip commit rate',"
        f" 3,400-6,200/s when it was filed): {one_client:.0f} tx/s, the rate"
        f" {row.rate / one_client:.3f} of it (information: the target's yardstick is the 4 clients' above)"
    )
    print(
        "CPU ms per authorization: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in row.cpu_ms.items())
        + f" (total {sum(row.cpu_ms.values()):.2f})",
    )
    print(
        "of which collecting cyclic garbage: "
        + ", ".join(f"{name} {ms:.3f}" for name, ms in row.gc_ms.items())
        + f" (total {sum(row.gc_ms.values()):.3f})"
    )
    print(
        f"floor, the same {terminals} terminals through three hops that do no work"
        f" (benchmarks/relay_floor.py): {floor.rate:.0f} round trips/s, CPU ms per round trip "
        + ", ".join(f"{name} {ms:.3f}" for name, ms in floor.cpu_ms.items())
        + f" (total {sum(floor.cpu_ms.values()):.3f}); the chain's work above it"
        f" {sum(row.cpu_ms.values()) - sum(floor.cpu_ms.values()):.2f} ms per authorization",
        flush=True,
    )
    return row, pgbench, one_client, floor


def _per_transaction(row: _Row) -> str:
    return ", ".join(
        f"{name} {items / groups:.1f}" for name, (groups, items) in row.grouped.items() if groups
    )


def _summary(rows: list[tuple[int, _Row, float, float, Floor]]) -> None:
    """The load curve: one line per count of terminals (``ratio``: to pgbench's 4 clients, the target's
    yardstick; ``1 client``: to pgbench's one, for information)."""
    print()
    heads = ("terminals", "auth/s", "p50 ms", "p99 ms", "ratio", "1 client", "CPU ms/auth", "floor ms")
    print(" ".join(f"{head:>11}" for head in heads) + "  requests per database transaction")
    for terminals, row, pgbench, one_client, floor in rows:
        cells = (
            f"{terminals}",
            f"{row.rate:.0f}",
            f"{row.p50_ms:.1f}",
            f"{row.p99_ms:.1f}",
            f"{row.rate / pgbench:.3f}",
            f"{row.rate / one_client:.3f}",
            f"{sum(row.cpu_ms.values()):.2f}",
            f"{sum(floor.cpu_ms.values()):.3f}",
        )
        print(" ".join(f"{cell:>11}" for cell in cells) + f"  {_per_transaction(row)}")
    _chart(rows)


def _met(row: _Row, pgbench: float) -> dict[str, bool]:
    """Which of issue 8's targets this count's run meets."""
    return {
        f"≥ {TARGET_RATE:,.0f} auth/s": row.rate >= TARGET_RATE,
        f"≥ {TARGET_RATIO:g} of pgbench": row.rate / pgbench >= TARGET_RATIO,
        f"p99 ≤ {TARGET_P99_MS:g} ms": row.p99_ms <= TARGET_P99_MS,
    }


def _targets(row: _Row, pgbench: float) -> str:
    measured = (f"{row.rate:.0f}", f"{row.rate / pgbench:.3f}", f"{row.p99_ms:.1f}")
    return ", ".join(
        f"{target} {'met' if ok else 'not met'} ({value})"
        for (target, ok), value in zip(_met(row, pgbench).items(), measured, strict=True)
    )


def _bar(value: float, top: float, target: float, width: int = BAR_WIDTH) -> str:
    """``value`` as a bar of ``width`` cells on a scale up to ``top``, the cell where ``target`` falls
    marked ``|`` (over the bar where the value reaches it)."""
    assert top > 0 and 0 <= target <= top and width > 1
    filled = min(width, round(max(value, 0.0) / top * width))
    cells = ["#" if cell < filled else "." for cell in range(width)]
    cells[min(width - 1, round(target / top * width))] = "|"
    return "".join(cells)


def _chart(rows: list[tuple[int, _Row, float, float, Floor]]) -> None:
    """The load curve drawn: throughput and p99 by count of terminals, each bar with its target marked,
    and the targets each count meets."""
    top_rate = max(TARGET_RATE, *(row.rate for _, row, *_ in rows)) * 1.05
    top_p99 = max(TARGET_P99_MS, *(row.p99_ms for _, row, *_ in rows)) * 1.05
    print()
    print(
        "the load curve against issue 8's targets"
        f" (| marks the target: {TARGET_RATE:,.0f} auth/s, p99 {TARGET_P99_MS:g} ms)"
    )
    print(f"{'terminals':>9}  {'auth/s':<{BAR_WIDTH + 7}}  {'p99 ms':<{BAR_WIDTH + 7}}  targets met")
    everywhere: list[int] = []
    for terminals, row, pgbench, *_ in rows:
        verdicts = _met(row, pgbench)
        met = [target for target, ok in verdicts.items() if ok]
        if len(met) == len(verdicts):
            everywhere.append(terminals)
        print(
            f"{terminals:>9}  {_bar(row.rate, top_rate, TARGET_RATE)} {row.rate:>6.0f}"
            f"  {_bar(row.p99_ms, top_p99, TARGET_P99_MS)} {row.p99_ms:>6.1f}"
            f"  {', '.join(met) or 'none'}"
        )
    print(
        f"all three targets met at: {', '.join(map(str, everywhere))} terminals"
        if everywhere
        else "all three targets met together at no count of terminals"
    )
