"""``citycard demo`` (what ``make run`` runs): issue a demo card and take it through the terminal.

Each step is an ordinary ``citycard`` command, printed before it runs so that the reader can repeat it by
hand: a new registered card with 100.00 yuan of electronic cash, a contact EC purchase traced APDU for APDU
(SELECT … GET PROCESSING OPTIONS with ``9F7A`` … READ RECORD … GENERATE AC → TC), a contactless bus fare
(qPBOC with fDDA), and the card as it is afterwards. Online transactions (EC load, online purchase) go
through the acquirer to the card's issuing bank (docs/terminal.md "Going online"): the demo card is made with
the demo keys, which no bank knows, so the demo stays offline.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.console import Console
from rich.rule import Rule

from citycard.config import settings

__all__ = ["demo"]

console = Console()
HomeOpt = typer.Option(None, "--home", help="where the demo files go (default $CITYCARD_HOME)")


def _steps(card: Path, home: Path) -> list[tuple[str, list[str]]]:
    keys = str(home / "demo-keys.json")
    journal = str(home / "pos-journal.db")
    common = ["--keys", keys, "--journal", journal]
    return [
        (
            "Issue a registered citizen card with 100.00 yuan of electronic cash",
            [
                "card",
                "new",
                "--out",
                str(card),
                "--keys",
                keys,
                "--holder",
                "LI/MING",
                "--ec-balance",
                "100.00",
                "--force",  # the demo's own card: a new one each run (make run, again)
            ],
        ),
        (
            "Contact EC purchase of 12.50 at a shop: every APDU, decoded",
            ["pos", "purchase", "--card", str(card), "--amount", "12.50", "--trace", *common],
        ),
        (
            "Bus fare of 2.00 at a validator (contactless qPBOC, fDDA, no PIN)",
            ["pos", "validate", "--card", str(card), "--fare", "2.00", *common],
        ),
        ("The card afterwards", ["card", "show", str(card)]),
    ]


def demo(home: Path | None = HomeOpt) -> None:
    """Issue a demo card and run an EC purchase and a bus fare against it."""
    from citycard.cli import run

    if home is not None and home.exists() and not home.is_dir():
        raise typer.BadParameter(f"{home} is a file, not a folder", param_hint="--home")
    home = home or settings().home
    home.mkdir(parents=True, exist_ok=True)
    card = home / "demo-card.json"
    steps = _steps(card, home)
    for number, (title, argv) in enumerate(steps, start=1):
        console.print(Rule(f"[bold]{number}/{len(steps)}  {title}"))
        console.print(f"[dim]$ citycard {shlex.join(argv)}[/dim]", highlight=False)
        status = run(argv)  # a failing step prints its one error line, and the demo stops there
        if status:
            raise typer.Exit(status)
    console.print(Rule())
    select_pse = "00A404000E315041592E5359532E444446303100"
    console.print(f"Demo files are in {home}/. Try: [bold]citycard card apdu {card} {select_pse}[/bold]")
