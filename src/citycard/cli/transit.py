"""``citycard transit``: the bus network's fare table (docs/transit.md) — check and install it, list the
lines, show a line's fares; and :func:`fare_hook`, what ``citycard pos validate --line`` decides fares with.

The installed fare table is ``$CITYCARD_HOME/fares.toml`` (``transit load FILE`` checks it first and
replaces it atomically); ``--fares FILE`` reads another one without installing it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from citycard.config import settings
from citycard.durable import atomic_write
from citycard.transit import FareHook, Network, NetworkError, Tap, parse_network

from .output import JsonFlag, amount_column, print_json, yuan

__all__ = ["app", "fare_hook", "installed_path", "read_network"]

app = typer.Typer(help="The bus network: lines, stops and fare tables.", no_args_is_help=True)
console = Console()

FileArg = Annotated[Path, typer.Argument(help="the fare table to check and install")]
FaresOpt = typer.Option(None, "--fares", help="a fare table (TOML) instead of the installed one")


def installed_path() -> Path:
    return settings().home / "fares.toml"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def read_network(path: Path | None) -> Network:
    """The fare table at ``path`` (else the installed one), checked; one ``error:`` line and exit 1 if not."""
    path = path or installed_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "" if path != installed_path() else " (install one with: citycard transit load FILE)"
        raise _fail(f"no fare table at {path}{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    try:
        return parse_network(text)
    except NetworkError as exc:
        raise _fail(f"{path}: {exc}") from None


def fare_hook(
    network: Network, line_id: int, stop: str | None, tap_out: bool, terminal_id: str, now: dt.datetime
) -> FareHook:
    """One tap's fare decision for ``citycard pos validate``; a line or stop not in the table is a usage
    error (exit 2)."""
    line = network.line(line_id)
    if line is None:
        known = ", ".join(str(n) for n in sorted(network.lines))
        raise typer.BadParameter(
            f"line {line_id} is not in the fare table (lines: {known})", param_hint="--line"
        )
    number = 0
    if line.distance:
        if stop is None:
            raise typer.BadParameter(
                f"line {line_id} charges by distance: give the stop", param_hint="--stop"
            )
        found = line.stop_number(stop)
        if found is None:
            raise typer.BadParameter(f"no stop {stop!r} on line {line_id}", param_hint="--stop")
        number = found
    elif tap_out:
        raise typer.BadParameter(f"line {line_id} has a flat fare: no tap-out", param_hint="--tap-out")
    from citycard.bootstrap import transit_sealer

    sealer = transit_sealer(settings())
    return FareHook(network, Tap(now, line_id, number, tap_out, terminal_id), sealer)


@app.command("load")
def load(file: FileArg) -> None:
    """Check a fare table and install it as the one validators and ``transit lines`` use."""
    network = read_network(file)
    target = installed_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, file.read_bytes())
    console.print(f"installed {network.name!r}: {len(network.lines)} line(s) -> {target}", highlight=False)


@app.command("lines")
def lines(fares: Path | None = FaresOpt, as_json: JsonFlag = False) -> None:
    """The lines of the fare table: flat or distance, stops, fare (the maximum fare of a distance line)."""
    network = read_network(fares)
    if as_json:
        print_json(
            {
                "network": network.name,
                "daily_cap_fen": network.daily_cap_fen,
                "monthly_cap_fen": network.monthly_cap_fen,
                "transfer": {
                    "window_s": network.transfer.window_s,
                    "discount_fen": network.transfer.discount_fen,
                },
                "lines": [
                    {
                        "id": line.id,
                        "name": line.name,
                        "kind": "distance" if line.distance else "flat",
                        "stops": list(line.stops),
                        "max_fare_fen": line.max_fare_fen,
                    }
                    for line in network.lines.values()
                ],
            }
        )
        return
    table = Table(title=network.name)
    table.add_column("line", justify="right")
    table.add_column("name")
    table.add_column("fare")
    table.add_column("stops", justify="right")
    amount_column(table, "max fare")
    for line in network.lines.values():
        table.add_row(
            str(line.id),
            line.name,
            "distance" if line.distance else "flat",
            str(len(line.stops)),
            yuan(line.max_fare_fen),
        )
    console.print(table)
    caps = f"daily cap {yuan(network.daily_cap_fen)}, monthly cap {yuan(network.monthly_cap_fen)}"
    transfer = network.transfer
    console.print(
        f"{caps}; transfer within {transfer.window_s // 60} min: {yuan(transfer.discount_fen)} off",
        highlight=False,
    )


@app.command("fares")
def fares_command(
    line_id: int = typer.Option(..., "--line", help="the line"),
    fares: Path | None = FaresOpt,
    as_json: JsonFlag = False,
) -> None:
    """A line's fares: the flat fare, or the distance fare from every stop to every stop."""
    network = read_network(fares)
    line = network.line(line_id)
    if line is None:
        raise typer.BadParameter(f"line {line_id} is not in the fare table", param_hint="--line")
    n = len(line.stops)
    matrix = (
        [[line.fare_between(a, b) for b in range(1, n + 1)] for a in range(1, n + 1)] if line.distance else []
    )
    if as_json:
        doc = {"line": line.id, "name": line.name, "stops": list(line.stops), "fares_fen": matrix}
        print_json({**doc, "flat_fare_fen": line.fare_fen})
        return
    if not line.distance:
        console.print(f"line {line.id} {line.name}: flat fare CNY {yuan(line.fare_fen)}", highlight=False)
        return
    table = Table(title=f"line {line.id} {line.name}: fare from (row) to (column), CNY")
    table.add_column("from \\ to")
    for number in range(1, n + 1):
        table.add_column(str(number), justify="right")
    for a, row in enumerate(matrix, start=1):
        table.add_row(f"{a} {line.stops[a - 1]}", *(yuan(f) for f in row))
    console.print(table)
