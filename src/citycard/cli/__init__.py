"""The ``citycard`` command (Typer + Rich). Each area registers its own sub-application here.

Sub-applications are imported lazily: :data:`COMMANDS` names each top-level command with its one-line help
and a loader, and :class:`LazyGroup` lists them from that table (``citycard --help`` imports none of them)
but imports a sub-application only when its command is invoked, so that ``citycard pos validate`` never pays
for SQLAlchemy and Alembic, which only the issuer's commands need. Help pages and usage errors are plain
text (Typer's ``rich_markup_mode=None``): Typer's Rich help alone imports Markdown and Pygments (about
0.1 s). ``benchmarks/bench_startup.py`` measures the start-up times.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any

import typer
from typer._click import exceptions as click  # typer 0.29 (pinned) carries its own click
from typer.core import TyperCommand, TyperGroup

__all__ = ["COMMANDS", "LazyGroup", "app", "main", "refuse", "run", "usage_message"]


@dataclass(frozen=True, slots=True)
class Lazy:
    """A top-level command: its one-line help (shown by ``citycard --help``) and ``module:attribute`` of
    its Typer application, or of a function that returns one."""

    help: str
    target: str


COMMANDS: dict[str, Lazy] = {
    "bank": Lazy("Issuing banks: keys, books, BIN ranges and card products.", "citycard.cli.bank:app"),
    "ledger": Lazy("The double-entry ledger: balances and journal.", "citycard.cli.ledger:app"),
    "denylist": Lazy(
        "Deny lists (hot lists) of lost, blocked and closed cards.", "citycard.cli.denylist:app"
    ),
    "merchant": Lazy(
        "Merchants accepting the card (field 42) and their acquiring banks.",
        "citycard.cli.registry:merchant_app",
    ),
    "terminal": Lazy(
        "POS terminals and validators (field 41) and their master keys.", "citycard.cli.registry:terminal_app"
    ),
    "card": Lazy("Emulated PBOC citizen cards: personalise, show, send APDUs.", "citycard.cli:_card_app"),
    "pos": Lazy("POS terminal and bus validator (PBOC level-2 kernel).", "citycard.cli.pos:app"),
    "serve": Lazy(
        "Network services over ISO 8583 (acquirer, switch, issuer front ends); an emulated card for vpcd.",
        "citycard.cli.servers:app",
    ),
    "acquirer": Lazy(
        "The acquirer's store-and-forward queue of reversals and advices: queue, retry.",
        "citycard.cli.acquirer:app",
    ),
    "records": Lazy(
        "The data key sealing the acquirer's stored messages and PANs: show, rotate, reseal.",
        "citycard.cli.records:app",
    ),
    "zone": Lazy("Zone keys of the host-to-host links: show, rotate.", "citycard.cli.zone:app"),
    "up": Lazy(
        "The whole platform in one process (network, clearing, web); --demo seeds and runs a city.",
        "citycard.cli:_up_app",
    ),
    "transit": Lazy("The bus network: lines, stops and fare tables.", "citycard.cli.transit:app"),
    "calc": Lazy(
        "Calculators: key derivation, cryptograms, ARPC, MAC, KCV, PIN block, TLV, DOL (hex in, hex out).",
        "citycard.cli.calc:app",
    ),
    "settlement": Lazy(
        "Settlement of cleared days: net positions, postings, payouts, files, reports.",
        "citycard.cli.settlement:app",
    ),
    "clearing": Lazy(
        "Clearing: the end of the business day, and its exception queue.",
        "citycard.cli.clearing:app",
    ),
    "db": Lazy("The database schema: upgrade it, show its revision.", "citycard.cli.db:app"),
    "public": Lazy(
        "Public services on the card: inquiries, industry applications, industry reports.",
        "citycard.cli.public:app",
    ),
    "web": Lazy("The web console: serve it alone, add its staff users.", "citycard.cli.web:app"),
    "demo": Lazy(
        "A bank's card online and offline through the acquirer, switch and issuer (what make run shows).",
        "citycard.cli:_demo_app",
    ),
}
"""Every top-level command, in the order ``citycard --help`` lists them."""


def _card_app() -> typer.Typer:
    """``citycard card``: the chip's commands, the issuer's card commands and ``card serve``."""
    from . import card, card_issuer, serve

    card_issuer.register(card.app)
    card.app.command("serve")(serve.serve)
    return card.app


def _up_app() -> typer.Typer:
    from . import up

    single = typer.Typer()
    single.command("up")(up.up)
    return single


def _demo_app() -> typer.Typer:
    from . import demo

    single = typer.Typer()
    single.command("demo")(demo.demo)
    return single


@cache
def load_command(name: str) -> Any:
    """The click command of top-level command ``name``, imported now (once per process)."""
    module_name, _, attribute = COMMANDS[name].target.partition(":")
    found: Any = getattr(importlib.import_module(module_name), attribute)
    sub_app = found if isinstance(found, typer.Typer) else found()
    command = typer.main.get_command(sub_app)
    command.name = name
    _plain_help(command)
    return command


def _plain_help(command: Any) -> None:
    """Help and usage errors of ``command`` and its sub-commands as plain text (module docstring)."""
    command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


class LazyGroup(TyperGroup):
    """A Typer group whose sub-commands are :data:`COMMANDS`, imported only when one is invoked."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in COMMANDS if name not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command if loaded, else a stand-in that carries only its help (for the help page)."""
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name].help)
        return command

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """Import the invoked command's sub-application, then resolve as usual."""
        if args and args[0] in COMMANDS and args[0] not in self.commands:
            self.commands[args[0]] = load_command(args[0])
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="citycard",
    help="A city's citizen card programme: chip, terminals, issuers, network, clearing.",
    no_args_is_help=True,
    add_completion=False,
    cls=LazyGroup,
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"citycard {version('citycard')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_show_version),
    ] = False,
) -> None:
    pass


def _register() -> None:
    """Nothing to do any more: :class:`LazyGroup` finds the sub-applications in :data:`COMMANDS` itself.
    Kept so that callers written before the lazy registry (``_register(); app(...)``) still work."""


def run(args: Sequence[str] | None = None) -> int:
    """Run the ``citycard`` command line on ``args`` (default ``sys.argv[1:]``) and return its exit status.

    Help and normal output are click's; every refusal is exactly one line ``error: <reason>`` on stderr,
    never a usage box or a traceback. Exit status 2: the input was refused (a usage error, an option or
    value that cannot be used, a bad ``CITYCARD_*`` setting); 1: the command could not be carried out (a
    business refusal, a file the system could not read or write); 0: done.
    """
    from citycard.config import SettingsError

    try:
        status = app(args=args, prog_name="citycard", standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # ``citycard card``: the group's help, as click shows it
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:  # wrong options or values (click's and our BadParameter)
        return refuse(usage_message(exc), 2)
    except click.ClickException as exc:
        return refuse(exc.format_message(), exc.exit_code)
    except typer.Abort:
        return refuse("aborted", 1)
    except SettingsError as exc:
        return refuse(str(exc), 2)
    except OSError as exc:  # the file system refused (a read-only folder, a full disk): not a bug
        return refuse(os_message(exc), 1)
    return status if isinstance(status, int) else 0


def usage_message(exc: click.UsageError) -> str:
    """The reason of a usage error; ``--option: reason`` when our code named the option."""
    if isinstance(exc, click.BadParameter) and isinstance(exc.param_hint, str):
        return f"{exc.param_hint}: {exc.message}"
    if isinstance(exc, click.BadParameter) and exc.param is None and exc.param_hint is None:
        return exc.message  # our own refusal naming no option: its reason, without "Invalid value:"
    return exc.format_message()


def os_message(exc: OSError) -> str:
    """``what: file`` for an operating-system error, without Python's ``[Errno n]``."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename is not None else reason


def refuse(message: str, status: int) -> int:
    """Print ``error: message`` on stderr as one line (line breaks become spaces); return ``status``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return status


def main() -> None:
    """The ``citycard`` console script."""
    raise SystemExit(run())
