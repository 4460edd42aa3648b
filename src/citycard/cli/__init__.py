"""The ``citycard`` command (Typer + Rich). Each area registers its own sub-application here."""

from __future__ import annotations

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="citycard",
    help="A city's citizen card programme: chip, terminals, issuers, network, clearing.",
    no_args_is_help=True,
    add_completion=False,
)


def _register() -> None:
    """Import the sub-applications (late, so that ``citycard --help`` stays quick)."""
    from . import bank, calc, card, card_issuer, demo, denylist, ledger, pos, serve

    card_issuer.register(card.app)
    card.app.command("serve")(serve.serve)
    app.add_typer(bank.app, name="bank")
    app.add_typer(ledger.app, name="ledger")
    app.add_typer(denylist.app, name="denylist")
    app.add_typer(card.app, name="card")
    app.add_typer(pos.app, name="pos")
    app.add_typer(calc.app, name="calc")
    app.command("demo")(demo.demo)


def main() -> None:
    from citycard.config import SettingsError

    _register()
    try:
        app()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
