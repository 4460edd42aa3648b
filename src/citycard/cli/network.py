"""``citycard serve``: the network services of issue 8 (ISO 8583 over TCP), each until Ctrl-C or SIGTERM.

``citycard serve acquirer [--port 9583] [--switch HOST:PORT]``: the POS centre terminals connect to
(``citycard.hosts.acquirer``, built by ``citycard.bootstrap.open_acquirer``). It listens on
``CITYCARD_ACQUIRER`` (default 127.0.0.1:9583) unless ``--port`` says otherwise, and forwards to
``CITYCARD_SWITCH`` (default 127.0.0.1:9584) unless ``--switch`` does. Stopping finishes the requests in
flight and leaves the store-and-forward queue on disk for the next start. Refusals are one ``error:``
line: 2 for a bad option or configuration, 1 when the service cannot start (port in use, database away).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer

from citycard.config import parse_address, settings

from .bank import _say, fail

if TYPE_CHECKING:
    from citycard.hosts.acquirer import AcquirerHost

__all__ = ["app"]

app = typer.Typer(help="Network services (ISO 8583 over TCP).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Network services (ISO 8583 over TCP), each until Ctrl-C or SIGTERM."""


PortOpt = Annotated[
    int | None,
    typer.Option("--port", min=0, max=65535, help="port to listen on (default from CITYCARD_ACQUIRER, 9583)"),
]
SwitchOpt = Annotated[
    str | None, typer.Option("--switch", help="the switch's HOST:PORT (default CITYCARD_SWITCH, 9584)")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="log every refusal and reversal")]


@app.command("acquirer")
def acquirer(port: PortOpt = None, switch: SwitchOpt = None, verbose: VerboseOpt = False) -> None:
    """The acquirer front end: terminals sign on, MAC their requests, and are forwarded to the switch."""
    from sqlalchemy.exc import SQLAlchemyError

    from citycard import bootstrap
    from citycard.db import DatabaseUrlError, SchemaRevisionError
    from citycard.hosts.acquirer import AcquirerConfig
    from citycard.hsm.api import KeyStoreError

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    s = settings()
    host, default_port = parse_address(s.acquirer)
    try:
        switch_host, switch_port = parse_address(switch or s.switch, "--switch")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--switch") from None
    config = AcquirerConfig(
        host=host,
        port=default_port if port is None else port,
        switch_host=switch_host,
        switch_port=switch_port,
    )
    try:
        with bootstrap.open_acquirer(s, config=config, say=_say) as service:
            asyncio.run(_serve(service))
    except (KeyStoreError, DatabaseUrlError, bootstrap.HomeFolderError) as exc:
        raise fail(str(exc), status=2) from None
    except SchemaRevisionError as exc:
        raise fail(f"database {bootstrap.safe_url(s.db_url)}: {exc}", status=2) from None
    except SQLAlchemyError as exc:
        raise fail(f"database {bootstrap.safe_url(s.db_url)}: {type(exc).__name__}") from None
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{config.port}: {exc.strerror or exc}") from None


async def _serve(service: AcquirerHost) -> None:
    """Run ``service`` until SIGINT or SIGTERM, then stop it cleanly and say what is still queued."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    async with service:
        config = service.config
        typer.echo(
            f"acquirer listening on {config.host}:{service.port}, switch {config.switch_host}:"
            f"{config.switch_port}; Ctrl-C to stop",
            err=True,
        )
        await stop.wait()
        typer.echo("stopping: finishing the requests in flight", err=True)
    pending = await asyncio.to_thread(service.queued)
    typer.echo(f"stopped; {pending} reversal(s) and advice(s) queued for the next start", err=True)
