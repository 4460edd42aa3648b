"""``citycard demo`` (what ``make run`` runs): a bank, a card it issues, and the card through a terminal
that goes online over the real network.

Each step is an ordinary ``citycard`` command, printed before it runs so that the reader can repeat it by
hand: the bank ICBC with its keys and products (once per home), a merchant and its terminal ``CITY0001``
with a terminal master key injected (once), a new anonymous EC card issued by the bank; then the network —
the bank's issuer front end, the switch and the acquirer, started in this process on loopback ports through
:mod:`citycard.bootstrap` (what ``citycard serve issuer|switch|acquirer`` run) — and the terminal: an EC
load in cash online (the terminal signs on, the issuer answers with its ARPC and the script PUT DATA
9F79), a contact EC purchase offline traced APDU for APDU (SELECT … GET PROCESSING OPTIONS with ``9F7A`` …
READ RECORD … GENERATE AC → TC), a contactless bus fare (qPBOC with fDDA), the offline purchases uploaded
to the acquirer (0320), and the card as it is afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.rule import Rule

from citycard.config import settings

__all__ = ["demo"]

console = Console()
HomeOpt = typer.Option(None, "--home", help="where the demo files go (default $CITYCARD_HOME)")
BANK, BIN = "ICBC", "621226"
MERCHANT, TERMINAL = "CITYMERCHANT001", "CITY0001"
T = TypeVar("T")


def _say(number: int, total: int, title: str, argv: list[str]) -> int:
    """Print and run one step; its exit status (a failing step printed its one error line)."""
    from citycard.cli import run

    console.print(Rule(f"[bold]{number}/{total}  {title}"))
    console.print(f"[dim]$ citycard {shlex.join(argv)}[/dim]", highlight=False)
    return run(argv)


def _set_up_steps() -> list[tuple[str, list[str]]]:
    """The bank, the merchant and the terminal: once per home (a second demo finds them)."""
    from citycard import bootstrap

    s = settings()
    steps: list[tuple[str, list[str]]] = []
    bank = merchant = terminal = False
    if (s.home / "citycard.db").exists() or s.database_url:
        from citycard.center.views import terminal_binding

        with bootstrap.open_issuer(s) as issuer, issuer.unit_of_work(read_only=True) as uow:
            bank = uow.banks.get(BANK) is not None
        if bank:
            with bootstrap.open_center(s) as center:
                binding = terminal_binding(center.unit_of_work(read_only=True), TERMINAL)
            terminal = merchant = binding is not None
    if not bank:
        steps.append(
            (
                "Open the bank ICBC: its keys in the HSM, its books, BIN 621226 and card products",
                ["bank", "add", BANK, "--name", "ICBC city branch", "--bin", BIN],
            )
        )
    if not merchant:
        steps.append(
            (
                "Register a merchant acquired by ICBC",
                [
                    *("merchant", "add", MERCHANT, "--name", "City supermarket", "--mcc", "5411"),
                    *("--district", "Downtown", "--bank", BANK),
                ],
            )
        )
    if not terminal:
        steps.append(
            (
                "Register its POS terminal; inject its master key (the platform HSM and the terminal's own)",
                ["terminal", "add", TERMINAL, "--merchant", MERCHANT],
            )
        )
    return steps


def _newest_card() -> str:
    """The PAN of the card the demo just issued (the bank's highest: PANs are given in order)."""
    from citycard import bootstrap
    from citycard.issuer.views import CardSearch, find_cards

    search = CardSearch(bank_code=BANK)
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        total = find_cards(uow, issuer.hsm, search, limit=1).total
        (card,) = find_cards(uow, issuer.hsm, search, limit=1, offset=total - 1).cards
    return card.pan


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="demo-network", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def _network() -> Iterator[int]:
    """The issuer front end of ICBC, the switch and the acquirer on loopback ports, built by the one
    composition root; yields the acquirer's port. Stopped (in that order: acquirer first) on exit."""
    from citycard import bootstrap
    from citycard.hosts.acquirer import AcquirerConfig

    s = settings()
    with bootstrap.open_issuer(s) as issuer:
        loop = _Loop()
        started: list[Any] = []
        try:
            front = bootstrap.build_issuer_front_end(issuer, BANK)
            loop.run(front.start())
            started.append(front)
            switch = bootstrap.build_switch(issuer, {BANK: ("127.0.0.1", front.port)})
            loop.run(switch.start())
            started.append(switch)
            config = AcquirerConfig(port=0, switch_port=switch.port)
            acquirer = bootstrap.build_acquirer(s, issuer.hsm, issuer.database, config=config)
            loop.run(acquirer.start())
            started.append(acquirer)
            console.print(
                f"issuer front end {BANK} on 127.0.0.1:{front.port}, switch on 127.0.0.1:{switch.port}, "
                f"acquirer on 127.0.0.1:{acquirer.port} (in this process; 'citycard serve' runs each alone)",
                highlight=False,
            )
            yield acquirer.port
        finally:
            for server in reversed(started):
                loop.run(server.stop())
            loop.close()


@contextmanager
def _home(home: Path) -> Iterator[None]:
    """``CITYCARD_HOME`` set to the demo's home while it runs (its steps read the settings)."""
    before = os.environ.get("CITYCARD_HOME")
    os.environ["CITYCARD_HOME"] = str(home)
    try:
        yield
    finally:
        if before is None:
            del os.environ["CITYCARD_HOME"]
        else:
            os.environ["CITYCARD_HOME"] = before


def demo(home: Path | None = HomeOpt) -> None:
    """Open a bank, issue a card, and take it through a terminal online and offline over the network.

    The EC load goes online through the acquirer, the switch and the bank's issuer front end, started in
    this process on loopback ports; the purchase and the bus fare are offline."""
    if home is not None and home.exists() and not home.is_dir():
        raise typer.BadParameter(f"{home} is a file, not a folder", param_hint="--home")
    home = (home or settings().home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    with _home(home):
        _run_demo(home)


def _run_demo(home: Path) -> None:
    setup = _set_up_steps()
    issue = (
        "Issue an anonymous EC card (PIN 123456)",
        ["card", "issue", "--bank", BANK, "--product", "anon-ec"],
    )
    total = len(setup) + 6
    number = 0
    for title, argv in [*setup, issue]:
        number += 1
        if status := _say(number, total, title, argv):
            raise typer.Exit(status)
    pan = _newest_card()
    with _network() as port:
        online = ["--terminal", TERMINAL, "--acquirer", f"127.0.0.1:{port}"]
        steps = [
            (
                "Load 100.00 in cash online: sign-on, ARQC, the issuer's ARPC and PUT DATA 9F79 script",
                ["pos", "load", "--cash", "--card", pan, "--amount", "100.00", "--pin", "123456", *online],
            ),
            (
                "Contact EC purchase of 12.50 at the shop, offline: every APDU, decoded",
                ["pos", "purchase", "--card", pan, "--amount", "12.50", "--trace", *online],
            ),
            (
                "Bus fare of 2.00 at a validator (contactless qPBOC, fDDA, no PIN)",
                ["pos", "validate", "--card", pan, "--fare", "2.00"],
            ),
            (
                "Upload the terminal's offline purchase and fare to the acquirer (0320s with their TCs)",
                ["pos", "upload", *online],
            ),
            ("The card afterwards", ["card", "show", pan]),
        ]
        for title, argv in steps:
            number += 1
            if status := _say(number, total, title, argv):
                raise typer.Exit(status)
    console.print(Rule())
    select_pse = "00A404000E315041592E5359532E444446303100"
    console.print(
        f"Demo files are in {home}/. Try: [bold]citycard card apdu {pan} {select_pse}[/bold]", highlight=False
    )
