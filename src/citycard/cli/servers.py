"""``citycard serve``: the programme's network services, each in the foreground until Ctrl-C or SIGTERM.

- ``citycard serve acquirer [--port 9583] [--switch HOST:PORT]``: the acquirer terminals connect to
  (sign-on, MAC, registry, RRNs, PIN translation, store-and-forward of reversals and advices, offline
  uploads); it listens on ``CITYCARD_ACQUIRER`` and forwards to ``CITYCARD_SWITCH`` unless told otherwise,
  and what is still queued when it stops stays on disk for the next start;
- ``citycard serve switch [--port 9584] --issuer CODE=HOST:PORT ...``: the switch (routes the acquirers'
  requests by BIN to each bank's issuer front end); it listens on ``CITYCARD_SWITCH`` unless told otherwise;
- ``citycard serve issuer --bank CODE [--port 9585]``: one issuing bank's front end (its cards' requests
  to the issuer service);
- ``citycard serve card CARD --vpcd ...``: an emulated card into a PC/SC reader list (also ``citycard card
  serve``).

Each prints where it listens, then serves; Ctrl-C or SIGTERM stops it cleanly (no new request is taken,
those in flight finish, the database is closed). A stop that hangs (a database that stopped answering) ends
the process after ``--stop-timeout`` or at a second signal (:mod:`.stopping`). Everything is built by
``citycard.bootstrap``; what each service does, its limits and timeouts: ``docs/network.md``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from citycard.config import parse_address, settings
from citycard.logs import configure as configure_logging
from citycard.net.loop import run as run_loop
from citycard.net.loop import server_heap

from . import serve as card_serve
from .bank import fail, open_issuer
from .output import JsonFlag, print_json
from .stopping import STOP_TIMEOUT_S, StopDeadline

if TYPE_CHECKING:
    from citycard.hosts.reports import ServiceReporter

__all__ = ["app", "parse_issuer", "serve_acquirer", "serve_issuer", "serve_switch"]

app = typer.Typer(
    help="Network services over ISO 8583 (acquirer, switch, issuer front ends); an emulated card for vpcd.",
    no_args_is_help=True,
)

ISSUER_PORT = 9585


class _Service(Protocol):
    @property
    def port(self) -> int: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def status(self) -> str: ...


def parse_issuer(text: str) -> tuple[str, tuple[str, int]]:
    """``CODE=HOST:PORT`` (or ``CODE=PORT`` on 127.0.0.1) → (code, (host, port)); ValueError saying why."""
    code, sep, address = text.partition("=")
    if not sep or not code:
        raise ValueError(f"{text!r} is not CODE=HOST:PORT")
    return code.upper(), parse_address(address, f"--issuer {code.upper()}")


async def report_status(status: Callable[[], str], every_s: float) -> None:
    """Every ``every_s``, a service's status line (its ``status()``), with the time, when it changed since
    the last one printed: traffic moved, a link went down or came back. Quiet while nothing happens."""
    last = status()
    while True:
        await asyncio.sleep(every_s)
        line = status()
        if line != last:
            typer.echo(f"{time.strftime('%H:%M:%S')} {line}")
            sys.stdout.flush()  # a log file or a pipe reads it now
            last = line


async def _serve(
    service: _Service,
    banner: str,
    status_every_s: float = 0.0,
    reporter: ServiceReporter | None = None,
    host: str = "127.0.0.1",
    stop_timeout_s: float | None = None,
) -> None:
    """Start ``service``, print ``banner`` (its port filled in), serve until SIGINT or SIGTERM, stop;
    meanwhile its status line every ``status_every_s`` when it changed (0: never), and its reports to the
    center by ``reporter`` (listening on ``host``), the last one once it stopped. With ``stop_timeout_s``
    (the commands': this is the process), a stop that takes longer (0: no bound) or a second signal ends
    the process (:mod:`.stopping`); None (a caller in a process that goes on): a signal only stops."""
    stopping = asyncio.Event()
    deadline = None if stop_timeout_s is None else StopDeadline(stopping, stop_timeout_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set if deadline is None else deadline.on_signal)
    reload = getattr(service, "reload_routing", None)  # the switch and the issuer front ends
    reloads: set[asyncio.Task[bool]] = set()
    if reload is not None:  # SIGHUP: read the routing table now (it is read every few seconds anyway)

        def hangup() -> None:
            task = loop.create_task(reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        await service.start()
        try:
            typer.echo(banner.format(port=service.port))
            tasks = []
            if status_every_s > 0:
                tasks.append(asyncio.create_task(report_status(service.status, status_every_s)))
            if reporter is not None:
                tasks.append(asyncio.create_task(reporter.run(f"{host}:{service.port}", service.status)))
            try:
                with server_heap():
                    await stopping.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            typer.echo("stopping: no new requests; those in flight finish")
        finally:
            await service.stop()
            if reporter is not None:
                await reporter.stopped(service.status())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if deadline is not None:
            deadline.outlive_loop()
    typer.echo("stopped")


def _logging(verbose: bool) -> None:
    configure_logging(verbose=verbose, fmt="%(name)s: %(message)s")


HostOpt = Annotated[str, typer.Option("--host", help="address to listen on")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="log every request (never a PAN)")]
StatusOpt = Annotated[
    float,
    typer.Option(
        "--status-every",
        help="seconds between status lines (counters, links), printed when they changed; 0: none",
        min=0,
    ),
]
ReportOpt = Annotated[
    float,
    typer.Option(
        "--report-every",
        help="seconds between reports to the center (the console's network page, citycard serve status):"
        " where it listens, since when, its status line; 0: none",
        min=0,
    ),
]
StopOpt = Annotated[
    float,
    typer.Option(
        "--stop-timeout",
        help="seconds a stop may take (requests in flight finishing, the last report, the database closed)"
        " before the process exits anyway, status 1, saying what still waited; 0: no bound. A second"
        " Ctrl-C or SIGTERM exits at once",
        min=0,
    ),
]
SilentOpt = Annotated[
    float | None,
    typer.Option(
        "--silent-after",
        help="seconds requests may wait with nothing received before the next hop is probed by an echo test,"
        " and taken as silent (answered 91 at once) if that goes unanswered too; 0: never  [default: 2, the"
        " service's own]",
        min=0,
        show_default=False,
    ),
]


@app.command("acquirer")
def serve_acquirer(
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="port terminals connect to (default CITYCARD_ACQUIRER's, 9583)", min=0, max=65535
        ),
    ] = None,
    switch: Annotated[
        str | None, typer.Option("--switch", help="the switch's HOST:PORT (default CITYCARD_SWITCH, 9584)")
    ] = None,
    silent_after: SilentOpt = None,
    verbose: VerboseOpt = False,
    status_every: StatusOpt = 60.0,
    report_every: ReportOpt = 10.0,
    stop_timeout: StopOpt = STOP_TIMEOUT_S,
) -> None:
    """The acquirer: terminals sign on and MAC their requests; they are forwarded to the switch."""
    from sqlalchemy.exc import SQLAlchemyError

    from citycard import bootstrap
    from citycard.db import DatabaseUrlError, SchemaRevisionError
    from citycard.hosts.acquirer import AcquirerConfig
    from citycard.hsm.api import KeyStoreError

    s = settings()
    host, default_port = parse_address(s.acquirer)
    try:
        switch_host, switch_port = parse_address(switch or s.switch, "--switch")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--switch") from None
    _logging(verbose)
    config = AcquirerConfig(
        host=host,
        port=default_port if port is None else port,
        switch_host=switch_host,
        switch_port=switch_port,
    )
    if silent_after is not None:  # else the acquirer's own default
        config = replace(config, link_limits=replace(config.link_limits, silent_after_s=silent_after))
    banner = f"acquirer listening on {host}:{{port}}, switch {switch_host}:{switch_port}; Ctrl-C to stop"
    try:
        with (
            bootstrap.open_acquirer(s, config=config, say=typer.echo) as acquirer,
            bootstrap.open_reports(s, report_every) as reporter_of,
        ):
            reporter = None if reporter_of is None else reporter_of("acquirer")
            run_loop(_serve(acquirer, banner, status_every, reporter, host, stop_timeout))
            typer.echo(f"{acquirer.queued()} reversal(s) and advice(s) queued for the next start")
    except (KeyStoreError, DatabaseUrlError, bootstrap.HomeFolderError) as exc:
        raise fail(str(exc), 2) from None
    except SchemaRevisionError as exc:
        raise fail(f"database {bootstrap.safe_url(s.db_url)}: {exc}", 2) from None
    except SQLAlchemyError as exc:
        raise fail(f"database {bootstrap.safe_url(s.db_url)}: {type(exc).__name__}") from None
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{config.port}: {exc.strerror or exc}") from None


@app.command("switch")
def serve_switch(
    issuer: Annotated[
        list[str] | None,
        typer.Option(
            "--issuer",
            help="a bank's issuer front end, CODE=HOST:PORT (repeat for each bank); the other banks' are"
            " their routes (citycard serve route), followed while it runs",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", help="port the acquirers connect to (default CITYCARD_SWITCH's, 9584)", min=0, max=65535
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="address to listen on (default CITYCARD_SWITCH's host)")
    ] = None,
    hop_timeout: Annotated[
        float,
        typer.Option(
            "--hop-timeout",
            help="seconds to wait for an issuer's answer (then 91); below the acquirer's 10",
            min=0.1,
        ),
    ] = 8.0,
    silent_after: SilentOpt = None,
    verbose: VerboseOpt = False,
    status_every: StatusOpt = 60.0,
    report_every: ReportOpt = 10.0,
    stop_timeout: StopOpt = STOP_TIMEOUT_S,
) -> None:
    """Route acquirers' requests by BIN to the issuing banks' front ends, translating PIN blocks."""
    from citycard.bootstrap import NoFrontEnd, UnknownBank, build_switch
    from citycard.hosts.switch import SwitchLimits

    addresses: dict[str, tuple[str, int]] = {}
    for text in issuer or []:
        try:
            code, address = parse_issuer(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--issuer") from None
        if code in addresses:
            raise typer.BadParameter(f"bank {code} given twice", param_hint="--issuer")
        addresses[code] = address
    default_host, default_port = parse_address(settings().switch)  # a bad CITYCARD_* setting: refused now
    host = default_host if host is None else host
    port = default_port if port is None else port
    limits = SwitchLimits(hop_timeout_s=hop_timeout)
    if silent_after is not None:  # else the switch's own default
        limits = replace(limits, silent_after_s=silent_after)
    _logging(verbose)
    with open_issuer() as platform:
        try:
            switch = build_switch(
                platform, addresses, host=host, port=port, limits=limits, follow_routes=True
            )
        except (UnknownBank, NoFrontEnd) as exc:
            raise fail(str(exc), 2) from None
        given = [f"{code} -> {h}:{p}" for code, (h, p) in sorted(addresses.items())]
        routed = [
            f"{m.bank_code} -> {m.front_end[0]}:{m.front_end[1]} (route)"
            for m in switch.table.members
            if m.front_end is not None and m.bank_code not in addresses
        ]
        routes = ", ".join(given + routed) or "no bank routed yet: citycard serve route"
        bins = len(switch.table.bins)
        banner = f"switch listening on {host}:{{port}} ({bins} BIN ranges; {routes}); Ctrl-C to stop"
        _listen(switch, banner, host, port, status_every, ("switch", report_every), stop_timeout)


@app.command("issuer")
def serve_issuer(
    bank: Annotated[str, typer.Option("--bank", help="the bank whose cards this front end answers for")],
    port: Annotated[int, typer.Option("--port", help="port the switch connects to", min=0, max=65535)] = (
        ISSUER_PORT
    ),
    host: HostOpt = "127.0.0.1",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="database transactions at once (threads; each a group of requests)",
            min=1,
            max=64,
        ),
    ] = 1,
    verbose: VerboseOpt = False,
    status_every: StatusOpt = 60.0,
    report_every: ReportOpt = 10.0,
    stop_timeout: StopOpt = STOP_TIMEOUT_S,
) -> None:
    """Answer the switch's requests for one bank's cards with the issuer service."""
    from citycard.bootstrap import UnknownBank, build_issuer_front_end

    settings()
    _logging(verbose)
    code = bank.upper()
    with open_issuer() as platform:
        try:
            front = build_issuer_front_end(platform, code, host=host, port=port, workers=workers)
        except UnknownBank as exc:
            raise fail(str(exc), 2) from None
        banner = f"issuer front end of {code} listening on {host}:{{port}}; Ctrl-C to stop"
        _listen(front, banner, host, port, status_every, (f"issuer {code}", report_every), stop_timeout)


def _listen(
    service: _Service,
    banner: str,
    host: str,
    port: int,
    status_every_s: float,
    report: tuple[str, float],
    stop_timeout_s: float,
) -> None:
    """Serve until stopped, reporting to the center as ``report`` says (name, seconds between reports; 0:
    none), the stop bounded by ``stop_timeout_s``; a port that cannot be listened on is one ``error:`` line
    (exit status 1)."""
    from citycard import bootstrap

    try:
        name, every_s = report
        with bootstrap.open_reports(settings(), every_s) as reporter_of:
            reporter = None if reporter_of is None else reporter_of(name)
            run_loop(_serve(service, banner, status_every_s, reporter, host, stop_timeout_s))
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


app.command("card")(card_serve.serve)


@app.command("route")
def serve_route(
    bank: Annotated[str, typer.Argument(help="the bank's code")],
    address: Annotated[
        str | None, typer.Argument(help="HOST:PORT where its issuer front end listens (none: show it)")
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="forget the bank's route")] = False,
) -> None:
    """Where the switch reaches a bank's issuer front end. A running ``citycard serve switch`` follows it
    within seconds (a bank added to the network, a front end moved, a route removed: its link closed)
    unless its ``--issuer`` names the bank."""
    from citycard.bootstrap import routing_table
    from citycard.db.switch_repositories import MAX_HOST, SwitchUnitOfWork

    code = bank.upper()
    with open_issuer() as platform:
        table = routing_table(platform, with_routes=True)
        if table.member(code) is None:
            known = ", ".join(m.bank_code for m in table.members) or "none yet: 'citycard bank add'"
            raise fail(f"no bank {code} (banks: {known})", 2)
        if address is None and not remove:
            front = table.member(code).front_end  # type: ignore[union-attr]
            typer.echo(f"{code} -> {front[0]}:{front[1]}" if front else f"{code}: no route")
            return
        if address is not None and remove:
            raise typer.BadParameter("give an address or --remove, not both")
        with platform.database.unit_of_work(SwitchUnitOfWork) as uow:
            if remove:
                had = uow.routes.remove(code)
            else:
                assert address is not None
                try:
                    host, port = parse_address(address, "the address")
                except ValueError as exc:
                    raise typer.BadParameter(str(exc), param_hint="ADDRESS") from None
                if not host or len(host) > MAX_HOST or port == 0:
                    raise typer.BadParameter(f"{address!r} is not HOST:PORT", param_hint="ADDRESS")
                had = uow.routes.set(code, host, port, time.time_ns())
            uow.commit()
    if remove:
        typer.echo(f"{code}: route forgotten" if had else f"{code}: had no route")
    else:
        typer.echo(f"{code} -> {host}:{port}" + (" (replaced its route)" if had else ""))


@app.command("routes")
def serve_routes(as_json: JsonFlag = False) -> None:
    """Each bank and where the switch reaches its issuer front end (``citycard serve route``)."""
    from citycard.bootstrap import routing_table

    with open_issuer() as platform:
        table = routing_table(platform, with_routes=True)
    rows = [
        {
            "bank": m.bank_code,
            "front_end": None if m.front_end is None else f"{m.front_end[0]}:{m.front_end[1]}",
        }
        for m in table.members
    ]
    if as_json:
        print_json({"routes": rows})
        return
    for row in rows:
        typer.echo(f"{row['bank']:<8} {row['front_end'] or 'no route'}")


@app.command("status")
def serve_status(as_json: JsonFlag = False) -> None:
    """The network services' last reports to the center (each ``citycard serve acquirer|switch|issuer``
    reports every ``--report-every`` seconds): running, not reporting (killed, hung, cut off) or stopped."""
    from citycard.center.views import service_json, service_reports

    from .registry import open_center

    with open_center() as center:
        reports, now = service_reports(center.unit_of_work(read_only=True))
    rows = [service_json(r, now) for r in reports]
    if as_json:
        print_json({"services": rows})
        return
    if not rows:
        typer.echo(
            "no service has reported: citycard serve acquirer|switch|issuer and citycard up report every 10 s"
        )
        return
    for row in rows:  # a line for the service, its status line under it (as long as the service prints it)
        if row["stopped"]:
            since = f"stopped {row['stopped']}"
        else:
            since = f"last report {row['last_report']} ago, up since {row['started']}"
        head = f"{row['name']:<12} {row['address']} on {row['hostname']} (pid {row['pid']}): {row['health']}"
        typer.secho(f"{head}; {since}", fg="red" if row["attention"] else None)
        typer.echo(f"    {row['status']}")


@app.command("forget")
def serve_forget(
    name: Annotated[str, typer.Argument(help="the service: acquirer, switch or 'issuer CODE'")],
    host: Annotated[str | None, typer.Option("--host", help="only its reports from this machine")] = None,
    address: Annotated[str | None, typer.Option("--address", help="only those at this HOST:PORT")] = None,
) -> None:
    """Forget a service's reports that are not running (stopped, or not reporting: killed or moved for good),
    so that ``citycard serve status`` and the console no longer list them; a running one is kept."""
    from citycard.center.views import forget_reports

    from .registry import open_center

    with open_center() as center:
        forgotten, running = forget_reports(center.unit_of_work(), name, host, address)
    for r in forgotten:
        typer.echo(f"forgot {r.name} at {r.address} on {r.hostname} (pid {r.pid})")
    for r in running:
        typer.echo(f"kept {r.name} at {r.address} on {r.hostname} (pid {r.pid}): it is running")
    if not forgotten and not running:
        where = (f" on {host}" if host else "") + (f" at {address}" if address else "")
        raise fail(f"no report of {name!r}{where}", 2)
