"""``citycard demo`` (what ``make run`` runs): a bank's registered card through the real network.

Each step is an ordinary ``citycard`` command, printed before it runs so that the reader can repeat it by
hand. Once per home it opens the bank ICBC (its keys in the HSM, its books, BIN 621226, card products) and
registers a supermarket with a POS terminal and a bus line with a validator (their terminal master keys
injected). Every run then issues a new registered card with the bank's own keys (not the demo keys) and a
PIN, deposits 500.00 into its account at the counter, starts the platform in this process on free loopback
ports — an issuer front end per bank, the switch and the acquirer, through
:func:`citycard.bootstrap.start_platform` as ``citycard up`` does — and takes the card through it: the
terminal signs on (PIK and MAK under its TMK), an EC load (圈存) of 100.00 from the deposit account online
(the chip's EC balance and the issuer's EC float move together), a contact EC purchase of 12.50 offline
traced APDU for APDU, a 2.00 bus fare at the validator (qPBOC, fDDA), an online purchase of 200.00 with the
PIN (enciphered under the PIK, translated to the bank's ZPK), an online balance inquiry, a cash load of
50.00 onto a new anonymous card, the offline purchases uploaded (0320), and the card and the bank's books
afterwards. The platform stops with the demo.
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

from citycard.codec import commands
from citycard.codec.commands import PSE_NAME
from citycard.config import settings
from citycard.net.loop import new_event_loop

__all__ = ["BANK", "BUS_TERMINAL", "PIN", "SHOP_TERMINAL", "demo", "holder_id_number"]

console = Console()
HomeOpt = typer.Option(None, "--home", help="where the demo files go (default $CITYCARD_HOME)")
BANK, BIN = "ICBC", "621226"
SHOP_MERCHANT, SHOP_TERMINAL = "CITYMART0000001", "SHOP0001"
BUS_MERCHANT, BUS_TERMINAL = "CITYBUSLINE0001", "BUS00001"
PIN = "123456"
T = TypeVar("T")

VALIDATOR_CONFIG = f"""# The bus validator of 'citycard demo': its identity; an unattended terminal's type.
[terminal]
type = "26"
terminal_id = "{BUS_TERMINAL}"
merchant_id = "{BUS_MERCHANT}"
merchant_name = "CITY BUS LINE 1"
"""


def holder_id_number(serial: int) -> str:
    """A resident ID number (GB 11643-1999, its MOD 11-2 check character) for the demo's holder ``serial``:
    one card per holder and product, so each run's new card has a new holder."""
    body = f"110105{19900101 + serial // 1000:08d}{serial % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


class _Steps:
    """Numbered steps: each prints its title and command, then runs it; a failing one ends the demo."""

    def __init__(self) -> None:
        self.number = 0

    def run(self, title: str, argv: list[str]) -> None:
        from citycard.cli import run

        self.number += 1
        console.print(Rule(f"[bold]{self.number}  {title}"))
        console.print(f"[dim]$ citycard {shlex.join(argv)}[/dim]", highlight=False, soft_wrap=True)
        status = run(argv)  # a failing step prints its one error line, and the demo stops there
        if status:
            raise typer.Exit(status)

    def note(self, text: str) -> None:
        console.print(f"[dim]{text}[/dim]", highlight=False)


def _seed(steps: _Steps) -> None:
    """The bank, the merchants and the terminals: added when absent (a second demo finds and keeps them)."""
    from citycard import bootstrap

    s = settings()
    bank = False
    merchants: set[str] = set()
    terminals: set[str] = set()
    if s.database_url or (s.home / "citycard.db").exists():
        with bootstrap.open_issuer(s) as issuer, issuer.unit_of_work(read_only=True) as uow:
            bank = uow.banks.get(BANK) is not None
        with bootstrap.open_center(s) as center, center.unit_of_work(read_only=True) as cuow:
            merchants = {m for m in (SHOP_MERCHANT, BUS_MERCHANT) if cuow.merchants.get(m) is not None}
            terminals = {t for t in (SHOP_TERMINAL, BUS_TERMINAL) if cuow.terminals.get(t) is not None}
    if bank:
        steps.note(f"(bank {BANK}, BIN {BIN}: kept from an earlier demo)")
    else:
        steps.run(
            f"Open the bank {BANK}: its keys in the HSM, its books, BIN {BIN} and card products",
            ["bank", "add", BANK, "--name", "ICBC city branch", "--bin", BIN],
        )
    registry = [
        (SHOP_MERCHANT, "City supermarket", "5411", SHOP_TERMINAL, "pos"),
        (BUS_MERCHANT, "City bus line 1", "4131", BUS_TERMINAL, "validator"),
    ]
    for merchant, name, mcc, terminal, kind in registry:
        if merchant in merchants:
            steps.note(f"(merchant {merchant}: kept from an earlier demo)")
        else:
            steps.run(
                f"Register the merchant '{name}', acquired by {BANK}",
                [
                    *("merchant", "add", merchant, "--name", name, "--mcc", mcc),
                    *("--district", "Downtown", "--bank", BANK),
                ],
            )
        if terminal in terminals:
            steps.note(f"({kind} terminal {terminal}: kept from an earlier demo)")
        else:
            steps.run(
                f"Register its {kind} terminal {terminal}: its master key injected into the platform HSM "
                "and the terminal's own",
                [
                    *("terminal", "add", terminal, "--merchant", merchant, "--kind", kind),
                    *(("--line", "1", "--vehicle", "L1-1") if kind == "validator" else ()),
                ],
            )


def _cards_of_bank() -> int:
    from citycard import bootstrap
    from citycard.issuer.views import CardSearch, find_cards

    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        return find_cards(uow, issuer.hsm, CardSearch(bank_code=BANK), limit=1).total


def _card_of(id_number: str) -> str:
    """The PAN of the bank's card of the holder with ``id_number`` (just issued)."""
    from citycard import bootstrap
    from citycard.issuer.views import CardSearch, find_cards

    search = CardSearch(bank_code=BANK, id_number=id_number)
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        (card,) = find_cards(uow, issuer.hsm, search, limit=1).cards
    return card.pan


def _newest_card() -> str:
    """The PAN of the card the bank issued last (its highest: PANs are given in order)."""
    from citycard import bootstrap
    from citycard.issuer.views import CardSearch, find_cards

    search = CardSearch(bank_code=BANK)
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        total = find_cards(uow, issuer.hsm, search, limit=1).total
        (card,) = find_cards(uow, issuer.hsm, search, limit=1, offset=total - 1).cards
    return card.pan


class _Loop:
    """An event loop in a background thread: the platform serves there while the steps run here."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="citycard-platform", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextmanager
def _platform() -> Iterator[str]:
    """The platform (``citycard up``) on free loopback ports in a background thread; yields the acquirer's
    HOST:PORT. Stopped on exit: the acquirer first, then the switch, then the issuer front ends."""
    from citycard import bootstrap

    s = settings()
    free = ("127.0.0.1", 0)
    with bootstrap.open_issuer(s) as issuer:
        loop = _Loop()
        try:
            platform = loop.run(bootstrap.start_platform(s, issuer, acquirer=free, switch=free))
            try:
                fronts = ", ".join(f"{code} {h}:{p}" for code, (h, p) in sorted(platform.issuers.items()))
                acquirer = "{}:{}".format(*platform.acquirer)
                console.print(
                    f"The platform runs in this process (what 'citycard up' starts): issuer front ends "
                    f"{fronts}, switch {'{}:{}'.format(*platform.switch)}, acquirer {acquirer}. To repeat "
                    "a step by hand, run 'citycard up' in another terminal and give its acquirer "
                    "(--acquirer 127.0.0.1:9583).",
                    highlight=False,
                )
                yield acquirer
            finally:
                loop.run(platform.stop())
        finally:
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
    """A bank's card online and offline through the acquirer, switch and issuer (what make run shows).

    Once per home: the bank ICBC, a supermarket with a POS terminal, a bus line with a validator. Each run:
    a new registered card with a deposit, the platform on free loopback ports, and the card through it."""
    if home is not None and home.exists() and not home.is_dir():
        raise typer.BadParameter(f"{home} is a file, not a folder", param_hint="--home")
    given = home is not None
    home = (home or settings().home).absolute()
    home.mkdir(parents=True, exist_ok=True)
    with _home(home):
        if given:
            console.print(f"[dim]export CITYCARD_HOME={shlex.quote(str(home))}[/dim]", highlight=False)
        _run_demo(home)


def _run_demo(home: Path) -> None:
    steps = _Steps()
    _seed(steps)
    id_number = holder_id_number(_cards_of_bank())
    steps.run(
        f"Issue a registered citizen card of {BANK} (the bank's keys; PIN {PIN})",
        ["card", "issue", "--bank", BANK, "--holder", "LI/MING", "--id-number", id_number, "--pin", PIN],
    )
    pan = _card_of(id_number)
    steps.run("Deposit 500.00 into its account at the bank's counter", ["card", "deposit", pan, "500.00"])
    steps.run(
        f"Issue an anonymous EC card of {BANK} (no holder, no account; PIN {PIN})",
        ["card", "issue", "--bank", BANK, "--product", "anon-ec"],
    )
    anonymous = _newest_card()
    validator = home / "validator.toml"
    validator.write_text(VALIDATOR_CONFIG, encoding="utf-8")
    with _platform() as acquirer:
        shop = ["--terminal", SHOP_TERMINAL, "--acquirer", acquirer]
        bus = ["--terminal", BUS_TERMINAL, "--acquirer", acquirer]
        card = ["--card", pan]
        steps.run(
            f"The shop's terminal {SHOP_TERMINAL} signs on: PIK and MAK under its master key (0800/0810)",
            ["pos", "signon", *shop],
        )
        steps.run(
            "EC load (圈存) of 100.00 from the deposit account, online: the ARQC to the bank, its ARPC and "
            "the PUT DATA 9F79 script back to the chip",
            ["pos", "load", *card, "--amount", "100.00", "--pin", PIN, *shop],
        )
        steps.run(
            "The bank's books: the deposit account paid 100.00 into the card's EC float",
            ["ledger", "balance", "--pan", pan],
        )
        steps.run(
            "Contact EC purchase of 12.50 at the shop, offline: every APDU, decoded",
            ["pos", "purchase", *card, "--amount", "12.50", "--trace", *shop],
        )
        steps.run(
            f"Bus fare of 2.00 at the validator {BUS_TERMINAL} (contactless qPBOC, fDDA, no PIN, offline)",
            ["pos", "validate", *card, "--fare", "2.00", "--config", str(validator)],
        )
        steps.run(
            "Online purchase of 200.00 with the PIN (more than the EC balance: from the deposit account)",
            ["pos", "purchase", *card, "--amount", "200.00", "--pin", PIN, *shop],
        )
        steps.run(
            "Balance inquiry online (0200 310000): the account's balance from the bank",
            ["pos", "balance", *card, "--online", "--pin", PIN, *shop],
        )
        steps.run(
            "Cash load (现金充值) of 50.00 onto the anonymous card at the shop's counter, online",
            ["pos", "load", "--cash", "--card", anonymous, "--amount", "50.00", "--pin", PIN, *shop],
        )
        steps.run(
            "The shop uploads its offline EC purchase (0320 with the TC), for clearing",
            ["pos", "upload", *shop],
        )
        steps.run("The validator uploads its fare", ["pos", "upload", *bus])
    steps.run("The card afterwards", ["card", "show", pan])
    steps.run(
        "The card's accounts at the bank (the EC float falls when the offline purchases are cleared)",
        ["ledger", "balance", "--pan", pan],
    )
    steps.run(
        "The bank's books: its own accounts (the first three) and its totals",
        ["ledger", "balance", "--bank", BANK, "--limit", "3"],
    )
    console.print(Rule())
    select_pse = commands.select(PSE_NAME).hex().upper()
    console.print(
        f"Demo files are in {home}/. Try: [bold]citycard card apdu {pan} {select_pse}[/bold], or "
        "[bold]citycard up[/bold] and the steps above by hand.",
        highlight=False,
    )
