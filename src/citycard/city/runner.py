"""``citycard up``: the whole platform in one process and one event loop, until told to stop.

:func:`serve` starts, on the issuer's database and HSM, the network of :func:`citycard.bootstrap.
start_platform` (an issuer front end per bank, the switch, the acquirer), the clearing schedule
(:func:`clearing_schedule`: the last closed business day cleared and settled at start, every hour and
right after each cut-over),
the web console when this build has it (``citycard.web.create_app`` served by uvicorn on the same loop),
and with ``demo`` the simulated terminals (:mod:`citycard.city.traffic`) and the demo's clearing calendar
(:func:`demo_clearing`: the first business day closes a couple of minutes after the start, so that a
newcomer's session sees its own records cleared and settled).
It serves until ``stopping`` is set (Ctrl-C, SIGTERM) or ``for_s`` seconds have passed, then stops them in
the reverse order: the simulated terminals finish their transaction and upload, the web server closes its
connections, the acquirer takes no new request and answers those in flight, then the switch and the issuer
front ends. A bank added while it runs (``citycard bank add``, the console) gets a front end of its own
within seconds of the switch's reading it, linked to the switch (:func:`new_banks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import importlib.util
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from citycard.bootstrap import Center, Issuer, Platform, start_platform
from citycard.center.model import Industry, TerminalKind
from citycard.config import Settings
from citycard.logs import UVICORN_LOGGERS, mask_handlers
from citycard.transit import Network, NetworkError, parse_network

from .plan import BANKS, BUS_LINES, DISTANCE_LINES, VALIDATORS_PER_LINE, merchants, terminals
from .seed import pool_cards
from .traffic import SimTerminal, Traffic, TrafficCard

__all__ = [
    "DEMO_CUTOVER_FILE",
    "Address",
    "Running",
    "clearing_schedule",
    "demo_clearing",
    "serve",
    "sim_terminals",
    "web_available",
]

Address = tuple[str, int]
Say = Callable[[str], None]
CLEARING_INTERVAL_S = 3600.0
"""How often ``citycard up`` runs the clearing of the current business day."""
STATUS_INTERVAL_S = 30.0
NEW_BANKS_EVERY_S = 5.0
"""How often ``citycard up`` looks for banks added while it runs (as the switch reads its routing table)."""
CUTOVER_GRACE_S = 2.0
"""After a cut-over the schedule waits this long (requests answered just before it are written) and runs."""
DEMO_CLOSES_IN_S = 120.0
"""``citycard up --demo``: the demo's first business day closes this long after the start (or a little more,
to the next whole minute), unless a cut-over is configured."""
DEMO_CUTOVER_FILE = "demo-clearing-cutover"
"""The demo's cut-over, chosen once per home (``$CITYCARD_HOME/demo-clearing-cutover``: ``*=hh:mm``)."""


@dataclass
class Running:
    """What :func:`serve` started, for the caller to print (``on_started``)."""

    platform: Platform
    web: Address | None
    traffic: Traffic | None
    notes: list[str] = field(default_factory=list)


def web_available() -> str | None:
    """None when this build can serve the web console, else why not (one line)."""
    if (
        importlib.util.find_spec("citycard.web") is None
        or importlib.util.find_spec("citycard.web.app") is None
    ):
        return "the web console (citycard.web) is not on this build yet"
    if importlib.util.find_spec("uvicorn") is None:
        return "uvicorn is not installed"
    return None


def sim_terminals(center: Center) -> list[SimTerminal]:
    """The demo city's simulated terminals: the first POS terminal of one merchant of each industry but
    transport's bus lines, and the first validator of two flat and two distance bus lines, as the registry
    has them (with their line and vehicle)."""
    city = merchants()
    plan = {t.terminal_id: t for t in terminals(city)}
    by_id = {m.merchant_id: m for m in city}
    chosen: list[str] = []
    seen: set[Industry] = set()
    for t in plan.values():
        m = by_id[t.merchant_id]
        if t.kind is TerminalKind.POS and m.industry not in seen:
            seen.add(m.industry)
            chosen.append(t.terminal_id)
    lines = [1, 2, DISTANCE_LINES[0], DISTANCE_LINES[1]]  # two flat lines, two distance lines
    chosen += [f"V{(line - 1) * VALIDATORS_PER_LINE + 1:07d}" for line in lines if line <= BUS_LINES]
    out: list[SimTerminal] = []
    with center.unit_of_work(read_only=True) as uow:
        for tid in chosen:
            binding = uow.terminals.binding(tid)
            if binding is None or not binding.terminal.active or not binding.merchant.active:
                continue
            merchant = binding.merchant
            terminal = binding.terminal
            out.append(
                SimTerminal(
                    tid,
                    merchant.merchant_id,
                    merchant.name,
                    merchant.mcc,
                    terminal.kind,
                    terminal.line,
                    terminal.vehicle,
                )
            )
    return out


def _fare_table(s: Settings, say: Say) -> Network | None:
    """The home's installed fare table for the simulated validators (None: the fixed fare, and why)."""
    path = s.home / "fares.toml"
    try:
        return parse_network(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        say(f"traffic: no fare table at {path}; the validators charge a fixed fare")
    except (OSError, UnicodeDecodeError, NetworkError) as exc:
        say(f"traffic: fare table {path} unusable ({exc}); the validators charge a fixed fare")
    return None


ClearingDay = Callable[[], str | None]
"""Clears and settles the last closed business day; returns a one-line summary (None: settled before)."""


def demo_clearing(s: Settings, now_ns: int, *, closes_in_s: float = DEMO_CLOSES_IN_S) -> tuple[Settings, str]:
    """The demo's clearing calendar: ``s`` with the cut-over the demo uses, and a line saying it.

    Clearing clears only closed business days (docs/clearing.md); with the default midnight cut-over a
    newcomer's session would see nothing cleared before midnight in Beijing. So, unless a cut-over is
    configured (``CITYCARD_CLEARING_CUTOVER``, then it is kept), the demo chooses one the first time it runs
    on a home: the Beijing wall-clock minute at least ``closes_in_s`` after now, for every bank, kept in
    :data:`DEMO_CUTOVER_FILE` so that the calendar stays the same on every later start (days never overlap
    or leave a gap). The day in progress then closes within minutes; the clearing schedule clears and
    settles it right after its cut-over, through clearing's and settlement's public APIs; the next days close
    at the same time of day."""
    from citycard.clearing import BEIJING, business_window, clearing_date_of, parse_cutovers
    from citycard.durable import atomic_write

    if s.clearing_cutover.strip():
        return s, f"clearing: business days close at the configured cut-over ({s.clearing_cutover})"
    path = s.home / DEMO_CUTOVER_FILE
    text = path.read_text(encoding="ascii").strip() if path.exists() else ""
    try:
        cut = parse_cutovers(text).default if text else None
    except ValueError:
        cut = None
    if cut is None:
        at = dt.datetime.fromtimestamp(now_ns / 1e9 + closes_in_s, BEIJING)
        minute = (at + dt.timedelta(seconds=59)).replace(second=0, microsecond=0)
        text = f"*={minute:%H:%M}"
        cut = parse_cutovers(text).default
        atomic_write(path, (text + "\n").encode("ascii"))
    closes = business_window(clearing_date_of(now_ns, cut), cut)[1]
    line = (
        f"clearing: the demo's business days close at {cut:%H:%M} Beijing time (the next in "
        f"{max(0, closes - now_ns) / 1e9:.0f} s), then they are cleared and settled ({path})"
    )
    return replace(s, clearing_cutover=text), line


def next_cutover_ns(s: Settings, now_ns: int) -> int:
    """The next instant after ``now_ns`` at which some bank's business day closes."""
    from citycard.clearing import business_window, clearing_date_of, parse_cutovers

    cutovers = parse_cutovers(s.clearing_cutover)
    return min(
        business_window(clearing_date_of(now_ns, cut), cut)[1]
        for cut in (cutovers.default, *cutovers.by_bank.values())
    )


def clearing_job(s: Settings, issuer: Issuer) -> ClearingDay:
    """The clearing of the last closed business day (``citycard.db.clearing_repositories.ClearingEngine``,
    what ``citycard clearing run`` does) and its settlement (``citycard.settlement.settle_day``, files under
    ``$CITYCARD_HOME/settlement/YYYYMMDD``, as ``citycard settlement run``); both are idempotent, so a day
    run twice changes nothing. The last closed day is the one before the business day of now under the
    latest cut-over of any bank (``CITYCARD_CLEARING_CUTOVER``)."""
    from citycard.clearing import (
        ClearingPolicy,
        LostLiability,
        business_window,
        clearing_date_of,
        parse_cutovers,
    )
    from citycard.db.clearing_repositories import ClearingEngine
    from citycard.db.settlement_repositories import SettlementUnitOfWork
    from citycard.durable import StagedFolder
    from citycard.settlement import settle_day

    cutovers = parse_cutovers(s.clearing_cutover)
    policy = ClearingPolicy(cutovers, s.clearing_late_days, LostLiability(s.clearing_lost_liability))
    engine = ClearingEngine(
        issuer.database, issuer.hsm, policy, record_offline_clearing=issuer.service.record_offline_clearing
    )

    def settlement_uow() -> SettlementUnitOfWork:
        return issuer.database.unit_of_work(SettlementUnitOfWork)

    def job() -> str | None:
        now = time.time_ns()
        cuts = [cutovers.default, *cutovers.by_bank.values()]
        day = min(clearing_date_of(now, cut) for cut in cuts) - dt.timedelta(days=1)
        if engine.summary(day).status == "settled":
            return None  # cleared and settled by an earlier run: nothing of a closed day can come in
        summary = engine.run(day)

        def window(d: str, bank: str) -> tuple[int, int]:
            return business_window(dt.date(int(d[:4]), int(d[4:6]), int(d[6:])), cutovers.of(bank))

        with StagedFolder(s.home / "settlement" / summary.day) as folder:
            settled = settle_day(settlement_uow, summary.day, clock=time.time_ns, sink=folder, window=window)
        exceptions = sum(summary.exceptions.values())
        return (
            f"{day:%Y-%m-%d} {summary.status}: {summary.online_count} online and {summary.offline_count} "
            f"offline item(s), {exceptions} exception(s); "
            + ("settled now" if settled.posted else "settled before")
            + f", files in {folder.folder}"
        )

    return job


async def clearing_schedule(
    s: Settings, issuer: Issuer, stopping: asyncio.Event, say: Say, *, interval_s: float = CLEARING_INTERVAL_S
) -> None:
    """At start, every ``interval_s`` and just after each cut-over, the clearing and settlement of the last
    closed business day, in a worker thread (:func:`clearing_job`; a day settled before is not run again);
    a failure is one line, and the next run tries again."""
    try:
        job = clearing_job(s, issuer)
    except ValueError as exc:  # a cut-over setting that cannot be used
        say(f"clearing: not scheduled: {exc}")
        await stopping.wait()
        return
    say(
        f"clearing: the last closed business day is cleared and settled at start, every {interval_s:g} s "
        "and after each cut-over"
    )
    while not stopping.is_set():
        try:
            line = await asyncio.to_thread(job)
            if line is not None:
                say(f"clearing: {line}")
        except Exception as exc:  # reported; the next run tries again
            say(f"clearing: failed: {type(exc).__name__}: {' '.join(str(exc).split())}")
        now = time.time_ns()
        wait_s = min(interval_s, (next_cutover_ns(s, now) - now) / 1e9 + CUTOVER_GRACE_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), max(wait_s, 0.1))


async def _serve_web(
    s: Settings, at: Address, platform: Platform
) -> tuple[Any, asyncio.Task[None], Callable[[], None]]:
    """uvicorn serving ``create_app(build_web_context(s))`` on this loop, with ``platform``'s status lines
    (the console's network page); (server, task, close)."""
    uvicorn: Any = importlib.import_module("uvicorn")  # the web extra's server (not imported otherwise)
    bootstrap: Any = importlib.import_module("citycard.bootstrap")
    web_app: Any = importlib.import_module("citycard.web.app")
    context = bootstrap.build_web_context(s)
    context.network = lambda: [status() for status in platform.statuses]
    try:
        app = web_app.create_app(context)
        config = uvicorn.Config(app, host=at[0], port=at[1], log_level="warning", lifespan="on")
        mask_handlers(*UVICORN_LOGGERS)  # as uvicorn.Config set them: PANs masked
        server = uvicorn.Server(config)
        # our handlers stop it: uvicorn's own (``capture_signals``, since 0.29) would take SIGINT and
        # SIGTERM from the platform while it serves, and raise them again once it stopped, which the
        # platform would take for a second Ctrl-C (``cli.stopping``: exit at once)
        server.capture_signals = contextlib.nullcontext
        task = asyncio.create_task(server.serve(), name="web")
        while not server.started:
            if task.done():
                await task  # raises why it could not start
                raise OSError(f"the web server stopped at once on {at[0]}:{at[1]}")
            await asyncio.sleep(0.05)
    except BaseException:
        context.close()
        raise
    return server, task, context.close


async def serve(
    s: Settings,
    issuer: Issuer,
    center: Center | None,
    stopping: asyncio.Event,
    *,
    acquirer: Address,
    switch: Address,
    issuers: dict[str, Address],
    web: Address | None,
    for_s: float | None = None,
    pace_s: float = 1.0,
    on_started: Callable[[Running], Awaitable[None] | None] = lambda _: None,
    on_service: Callable[[str, Address, Callable[[], str]], None] = lambda *_: None,
    say: Say = lambda _: None,
    clearing_interval_s: float = CLEARING_INTERVAL_S,
    demo_closes_in_s: float = DEMO_CLOSES_IN_S,
    new_banks_every_s: float = NEW_BANKS_EVERY_S,
) -> Running:
    """The platform until ``stopping`` is set or ``for_s`` seconds passed (module docstring). ``center``
    (with the platform HSM) is given for the demo: its simulated terminals run, and its clearing calendar
    (:func:`demo_clearing`, the first day closing ``demo_closes_in_s`` after the start) is used.
    ``on_service(name, address, status)``: a service started after ``on_started`` (a bank's front end)."""
    notes: list[str] = []
    if center is not None:
        s, line = demo_clearing(s, time.time_ns(), closes_in_s=demo_closes_in_s)
        notes.append(line)
    platform = await start_platform(s, issuer, acquirer=acquirer, switch=switch, issuers=issuers)
    running = Running(platform, None, None, notes)
    tasks: list[asyncio.Task[Any]] = []
    web_server: Any = None
    close_web: Callable[[], None] | None = None
    try:
        if web is not None:
            why_not = web_available()
            if why_not is None:
                web_server, web_task, close_web = await _serve_web(s, web, platform)
                tasks.append(web_task)
                running.web = (
                    web[0],
                    web_server.servers[0].sockets[0].getsockname()[1] if web[1] == 0 else web[1],
                )
            else:
                running.notes.append(f"web: {why_not}; the network serves without it")
        tasks.append(
            asyncio.create_task(
                clearing_schedule(s, issuer, stopping, say, interval_s=clearing_interval_s), name="clearing"
            )
        )
        if center is not None:
            cards = [TrafficCard.of(card, s.home) for bank in BANKS for card in pool_cards(issuer, bank.code)]
            if cards:
                running.traffic = Traffic(
                    s,
                    issuer,
                    platform.acquirer,
                    sim_terminals(center),
                    cards,
                    pace_s=pace_s,
                    log=say,
                    network=_fare_table(s, say),
                )
                running.traffic.start()
            else:
                running.notes.append(
                    "traffic: no card of the pool has a chip image here; no simulated terminal"
                )
        result = on_started(running)
        if result is not None:
            await result
        tasks.append(asyncio.create_task(_status(running, stopping, say), name="status"))
        tasks.append(
            asyncio.create_task(
                new_banks(platform, stopping, say, on_service, every_s=new_banks_every_s), name="new-banks"
            )
        )
        if for_s is None:
            await stopping.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), for_s)
        stopping.set()
        say("stopping: no new requests; those in flight finish (the simulated terminals their transaction)")
    finally:
        stopping.set()
        if running.traffic is not None:
            await asyncio.to_thread(running.traffic.stop)
        if web_server is not None:
            web_server.should_exit = True
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 15)
        if close_web is not None:
            close_web()
        await platform.stop()
    return running


async def new_banks(
    platform: Platform,
    stopping: asyncio.Event,
    say: Say,
    on_service: Callable[[str, Address, Callable[[], str]], None],
    *,
    every_s: float = NEW_BANKS_EVERY_S,
) -> None:
    """Every ``every_s`` until ``stopping``: a front end for each bank the switch's routing table has gained
    meanwhile (the switch reads it every few seconds; no read of its own here), linked to the switch
    (``Platform.add_bank``), said and handed to ``on_service``. Until then the switch answers its cards 91.
    A start that fails is said (once while it fails alike) and tried again next time."""
    failing = ""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_s)
        if stopping.is_set():
            return
        try:
            for code in platform.banks_without_front_end():
                if stopping.is_set():
                    return
                host, port = await platform.add_bank(code)
                say(f"issuer front end of {code} listening on {host}:{port} (a bank added while running)")
                on_service(*next(s for s in platform.services if s[0] == f"issuer {code}"))
            failing = ""
        except Exception as exc:  # the database away, a port: the next round tries again
            if str(exc) != failing:
                say(f"a bank added while running has no front end yet: {exc}")
            failing = str(exc)


async def _status(running: Running, stopping: asyncio.Event, say: Say) -> None:
    """A line of what the simulated terminals did, every :data:`STATUS_INTERVAL_S`."""
    if running.traffic is None:
        return
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), STATUS_INTERVAL_S)
        if stopping.is_set():
            return
        say(running.traffic.stats.line())
