"""``citycard up [--demo] [--for SECONDS]``: the whole platform of the programme in one process.

On the configured database (the embedded SQLite file of ``$CITYCARD_HOME`` by default, PostgreSQL by
``CITYCARD_DATABASE_URL``) it starts an issuer front end for every bank, the switch routing to them by BIN
and the acquirer the terminals connect to, through :func:`citycard.bootstrap.start_platform` (what
``citycard serve issuer|switch|acquirer`` run one at a time), the clearing schedule, and the web console on
``--web`` (http://127.0.0.1:8000) when this build has it — all in one event loop
(:func:`citycard.city.runner.serve`). It prints where each listens, then each service's status line with the
time whenever it changed (checked every ``--status-every`` seconds, 60; 0: none; as ``citycard serve``
prints it), reports each service to the center as ``citycard serve`` does (every ``--report-every`` seconds,
10; ``citycard serve status``), and serves until Ctrl-C or SIGTERM (or
``--for SECONDS``): then no new request is taken, those in flight are answered, and what the acquirer still
has to deliver (reversals, advices) stays queued on disk for the next start. Addresses: ``--acquirer``
(default ``CITYCARD_ACQUIRER``, 127.0.0.1:9583), ``--switch`` (``CITYCARD_SWITCH``, 127.0.0.1:9584),
``--issuer CODE=HOST:PORT`` (default a free port), ``--web``; a port of 0 is a free one. ``docs/network.md``.

``--demo`` first seeds the demo city (:mod:`citycard.city.seed`: two banks, 360 merchants, 477 POS terminals,
bus lines with validators, 10,100 cards; a second run finds it and adds nothing) with progress bars, then
runs the simulated terminals (:mod:`citycard.city.traffic`) against the platform so that the figures move,
and closes the demo's first business day a couple of minutes after the start (``--demo-closes-in``,
:func:`citycard.city.runner.demo_clearing`) so that the session's records are cleared and settled.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from citycard.config import Settings, parse_address, settings
from citycard.logs import configure as configure_logging
from citycard.net.loop import run as run_loop
from citycard.net.loop import server_heap

from .bank import fail, open_issuer
from .servers import ReportOpt, StatusOpt, StopOpt, report_status
from .stopping import STOP_TIMEOUT_S, StopDeadline

if TYPE_CHECKING:
    from citycard.bootstrap import Center, Issuer
    from citycard.hosts.reports import ServiceReporter

__all__ = ["parse_listen", "up"]

console = Console()


def parse_listen(text: str, option: str) -> tuple[str, int]:
    """``[HOST:]PORT`` to listen on, port 0 (a free one) allowed; ``typer.BadParameter`` naming ``option``."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise typer.BadParameter(f"{text!r} is not [HOST:]PORT with a port of 0-65535", param_hint=option)
    return host or "127.0.0.1", int(port)


def up(
    acquirer: Annotated[
        str | None,
        typer.Option("--acquirer", help="HOST:PORT terminals connect to (default CITYCARD_ACQUIRER, 9583)"),
    ] = None,
    switch: Annotated[
        str | None, typer.Option("--switch", help="HOST:PORT of the switch (default CITYCARD_SWITCH, 9584)")
    ] = None,
    issuer: Annotated[
        list[str] | None,
        typer.Option("--issuer", help="CODE=HOST:PORT of a bank's issuer front end (default: a free port)"),
    ] = None,
    web: Annotated[
        str, typer.Option("--web", help="[HOST:]PORT of the web console (port 0: a free one)")
    ] = "127.0.0.1:8000",
    no_web: Annotated[bool, typer.Option("--no-web", help="serve the network only")] = False,
    demo: Annotated[
        bool, typer.Option("--demo", help="seed the demo city (once) and run simulated terminals")
    ] = False,
    for_s: Annotated[
        float | None,
        typer.Option("--for", help="stop by itself after SECONDS (default: serve until Ctrl-C)", min=0.1),
    ] = None,
    pace: Annotated[
        float,
        typer.Option(
            "--pace", help="mean seconds between two transactions of a simulated terminal", min=0.01
        ),
    ] = 1.0,
    demo_closes_in: Annotated[
        float,
        typer.Option(
            "--demo-closes-in",
            help="--demo: the demo's first business day closes SECONDS after the start, to the next whole "
            "minute, then it is cleared and settled (chosen once per home; a configured cut-over wins)",
            min=0.0,
        ),
    ] = 120.0,
    status_every: StatusOpt = 60.0,
    report_every: ReportOpt = 10.0,
    stop_timeout: StopOpt = STOP_TIMEOUT_S,
) -> None:
    """The whole platform in one process (network, clearing, web); --demo seeds and runs a city.

    An issuer front end per bank, the switch, the acquirer, clearing on a schedule and the web console.
    --demo seeds a demo city first (once) and runs simulated terminals. Serves until Ctrl-C or SIGTERM (or
    --for SECONDS); then those in flight are answered, the acquirer's queue stays on disk."""
    from citycard.bootstrap import UnknownBank

    configure_logging(verbose=False, fmt="%(message)s")  # the services' warnings, PANs masked
    s = settings()
    acquirer_at = parse_listen(acquirer, "--acquirer") if acquirer else parse_address(s.acquirer)
    switch_at = parse_listen(switch, "--switch") if switch else parse_address(s.switch)
    web_at = None if no_web else parse_listen(web, "--web")
    issuers: dict[str, tuple[str, int]] = {}
    for text in issuer or []:
        code, sep, address = text.partition("=")
        if not sep or not code:
            raise typer.BadParameter(f"{text!r} is not CODE=HOST:PORT", param_hint="--issuer")
        issuers[code.upper()] = parse_listen(address, "--issuer")
    with open_issuer(set_up=demo) as platform_issuer:
        center, logins = None, ""
        if demo:
            from citycard.bootstrap import Center

            center = Center(s, platform_issuer.database, platform_issuer.hsm)
            logins = _seed(platform_issuer, center)
        try:
            run_loop(
                _serve(
                    s,
                    platform_issuer,
                    center,
                    acquirer_at,
                    switch_at,
                    issuers,
                    web_at,
                    for_s,
                    pace,
                    logins,
                    demo_closes_in,
                    status_every,
                    report_every,
                    stop_timeout,
                )
            )
        except UnknownBank as exc:
            raise fail(str(exc), 2) from None
        except OSError as exc:
            raise fail(f"cannot start the platform: {exc.strerror or exc}") from None


def _seed(issuer: Issuer, center: Center) -> str:
    """The demo city, with a progress bar per step; says how long it took and what it added. Returns the
    line of demo web logins to print beside the console's address ("" without a web console)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from citycard.city.seed import seed_city

    columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:

        def step(label: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(label, total=total)
            return lambda n: progress.advance(task, n)

        report = seed_city(issuer, center, step)
    if report.added:
        cards = sum(report.cards.values())
        console.print(
            f"demo city seeded in {report.seconds:.1f} s: {report.banks} bank(s), "
            f"{report.merchants} merchants, {report.terminals} terminals, {cards} cards "
            f"({report.activated} activated)",
            highlight=False,
            soft_wrap=True,  # one line at any width (read by programs; over 9.9 s it wrapped at 80)
        )
    else:
        console.print(
            f"demo city found as seeded before (checked in {report.seconds:.1f} s)",
            highlight=False,
            soft_wrap=True,
        )
    return _demo_logins(issuer)


def _demo_logins(issuer: Issuer) -> str:
    from citycard.city.runner import web_available
    from citycard.city.seed import DEMO_PASSWORD, demo_users

    if web_available() is not None:
        return ""
    users = demo_users(issuer.database)
    others = ", ".join(f"{name} ({role} {scope})" for name, role, scope in users[1:])
    return f"demo operator login: user operator, password {DEMO_PASSWORD} (the same password for {others})"


async def _serve(
    s: Settings,
    platform_issuer: Issuer,
    center: Center | None,
    acquirer: tuple[str, int],
    switch: tuple[str, int],
    issuers: dict[str, tuple[str, int]],
    web: tuple[str, int] | None,
    for_s: float | None,
    pace: float,
    logins: str,
    demo_closes_in: float,
    status_every_s: float,
    report_every_s: float,
    stop_timeout_s: float,
) -> None:
    from citycard.bootstrap import open_reports, safe_url
    from citycard.city.runner import Running, serve

    stopping = asyncio.Event()
    deadline = StopDeadline(stopping, stop_timeout_s)  # a stop that hangs ends the process (.stopping)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, deadline.on_signal)
    watching = loop.create_task(deadline.watch())  # the stop --for begins

    heap = ExitStack()
    reports: list[asyncio.Task[None]] = []
    reporter_of = heap.enter_context(open_reports(s, report_every_s))
    reporting: list[tuple[ServiceReporter, Callable[[], str]]] = []

    def started(running: Running) -> None:
        heap.enter_context(server_heap())
        platform = running.platform
        for code, (host, port) in sorted(platform.issuers.items()):
            say(f"issuer front end of {code} listening on {host}:{port}")
        if not platform.issuers:
            say("no issuing banks yet ('citycard bank add'): the switch answers 15 to every card")
        host, port = platform.switch
        say(f"switch listening on {host}:{port} ({platform.bin_ranges} BIN ranges)")
        host, port = platform.acquirer
        say(f"acquirer listening on {host}:{port} (citycard pos ... --acquirer {host}:{port})")
        for note in running.notes:
            say(note)
        if running.web is not None:
            say(f"web console on http://{running.web[0]}:{running.web[1]}/")
            if logins:
                say(logins)
        if running.traffic is not None:
            say(
                f"{len(running.traffic.terminals)} simulated terminals pay, load and ride with "
                f"{len(running.traffic.cards)} cards through the acquirer"
            )
        until = f"for {for_s:g} s (or Ctrl-C)" if for_s is not None else "until Ctrl-C"
        say(f"database {safe_url(s.db_url)}; serving {until}")
        for service in platform.services:
            follow(*service)

    def follow(name: str, address: tuple[str, int], status: Callable[[], str]) -> None:
        """A service's line, when it changed, as `citycard serve` prints it; and its reports to the center,
        as `citycard serve` reports (`citycard serve status`)."""
        if status_every_s > 0:
            reports.append(loop.create_task(report_status(status, status_every_s)))
        if reporter_of is not None:
            reporter = reporter_of(name)
            reporting.append((reporter, status))
            reports.append(loop.create_task(reporter.run(f"{address[0]}:{address[1]}", status)))

    try:
        running = await serve(
            s,
            platform_issuer,
            center,
            stopping,
            acquirer=acquirer,
            switch=switch,
            issuers=issuers,
            web=web,
            for_s=for_s,
            pace_s=pace,
            demo_closes_in_s=demo_closes_in,
            on_started=started,
            on_service=follow,  # a bank's front end started while it runs
            say=say,
        )
        if running.traffic is not None:
            say(running.traffic.stats.line())
        say(f"{running.platform.queued()} reversal(s) and advice(s) queued for the next start")
    finally:
        for report in reports:
            report.cancel()
        await asyncio.gather(*reports, return_exceptions=True)
        for reporter, status in reporting:  # the services stopped: the last report of each
            await reporter.stopped(status())
        heap.close()
        watching.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        deadline.outlive_loop()
    say("stopped")


def say(message: str) -> None:
    """One line on stdout, flushed (a log read by another process sees it at once)."""
    typer.echo(message)
    sys.stdout.flush()
