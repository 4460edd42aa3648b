"""``citycard up``: the whole network of the programme in one process (issue 10's first step; no web yet).

On the configured database (the embedded SQLite file of ``$CITYCARD_HOME`` by default, PostgreSQL by
``CITYCARD_DATABASE_URL``) it starts an issuer front end for every bank, the switch routing to them by BIN
and the acquirer the terminals connect to, through :func:`citycard.bootstrap.start_platform` (what
``citycard serve issuer|switch|acquirer`` run one at a time), prints where each listens, and serves until
Ctrl-C or SIGTERM: then no new request is taken, those in flight are answered, and what the acquirer still
has to deliver (reversals, advices) stays queued on disk for the next start. Addresses: ``--acquirer``
(default ``CITYCARD_ACQUIRER``, 127.0.0.1:9583), ``--switch`` (``CITYCARD_SWITCH``, 127.0.0.1:9584),
``--issuer CODE=HOST:PORT`` (default a free port); a port of 0 is a free one. ``docs/network.md``.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from citycard.config import Settings, parse_address, settings

from .bank import fail, open_issuer

if TYPE_CHECKING:
    from citycard.bootstrap import Issuer

__all__ = ["parse_listen", "up"]


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
) -> None:
    """The platform in one process: an issuer front end per bank, the switch and the acquirer.

    Serves until Ctrl-C or SIGTERM; then those in flight are answered, the acquirer's queue stays on disk."""
    from citycard.bootstrap import UnknownBank

    s = settings()
    acquirer_at = parse_listen(acquirer, "--acquirer") if acquirer else parse_address(s.acquirer)
    switch_at = parse_listen(switch, "--switch") if switch else parse_address(s.switch)
    issuers: dict[str, tuple[str, int]] = {}
    for text in issuer or []:
        code, sep, address = text.partition("=")
        if not sep or not code:
            raise typer.BadParameter(f"{text!r} is not CODE=HOST:PORT", param_hint="--issuer")
        issuers[code.upper()] = parse_listen(address, "--issuer")
    with open_issuer() as platform_issuer:
        try:
            asyncio.run(_serve(s, platform_issuer, acquirer_at, switch_at, issuers))
        except UnknownBank as exc:
            raise fail(str(exc), 2) from None
        except OSError as exc:
            raise fail(f"cannot start the platform: {exc.strerror or exc}") from None


async def _serve(
    s: Settings,
    platform_issuer: Issuer,
    acquirer: tuple[str, int],
    switch: tuple[str, int],
    issuers: dict[str, tuple[str, int]],
) -> None:
    from citycard.bootstrap import safe_url, start_platform

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        platform = await start_platform(s, platform_issuer, acquirer=acquirer, switch=switch, issuers=issuers)
        try:
            for code, (host, port) in sorted(platform.issuers.items()):
                typer.echo(f"issuer front end of {code} listening on {host}:{port}")
            if not platform.issuers:
                typer.echo("no issuing banks yet ('citycard bank add'): the switch answers 15 to every card")
            host, port = platform.switch
            typer.echo(f"switch listening on {host}:{port} ({platform.bin_ranges} BIN ranges)")
            host, port = platform.acquirer
            typer.echo(f"acquirer listening on {host}:{port} (citycard pos ... --acquirer {host}:{port})")
            typer.echo(f"database {safe_url(s.db_url)}; Ctrl-C to stop")
            await stopping.wait()
            typer.echo("stopping: no new requests; those in flight finish")
        finally:
            await platform.stop()
        typer.echo(f"{platform.queued()} reversal(s) and advice(s) queued for the next start")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    typer.echo("stopped")
