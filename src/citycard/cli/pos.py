"""``citycard pos``: a POS terminal and a bus validator on the command line, over an emulated card image
(``--card card.json``, saved after every command) or a card in a PC/SC reader (``--reader NAME``).

Online transactions (a purchase the card sends online, ``pos load``, ``pos void``, ``pos refund``) go to
the acquirer over ISO 8583 (``--acquirer HOST:PORT``, default ``CITYCARD_ACQUIRER``), which routes them
through the switch to the card's issuer (docs/terminal.md "Going online"); the terminal signs on first when it
has no working keys, and its PIN pad enciphers PINs under its PIK in the terminal's own HSM. Amounts are
yuan with at most two decimals, parsed exactly into fen. ``--trace`` prints every APDU with its decoded TLV.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from citycard.codec import tlv
from citycard.codec.apdu import sw_meaning
from citycard.codec.money import format_amount, parse_yuan
from citycard.codec.pan import mask_pan
from citycard.codec.pretty import command_hex, format_tlv, transaction_type_name
from citycard.config import settings
from citycard.demokeys import DEMO_DATA_KEY, DemoKeyError, DemoKeys
from citycard.files import BusyError, CardFile, exclusive_lock, is_pan
from citycard.kernel.config import CaPublicKey, ConfigError, TerminalConfig, parse_capks, parse_config
from citycard.kernel.denylist import (
    DenyListError,
    DenyListFile,
    TrustedKeys,
    load_deny_list,
    parse_trusted_kcv,
)
from citycard.kernel.events import Outcome, OutcomeKind, PinEntry, RequestPin
from citycard.kernel.kernel import TransactionKind
from citycard.kernel.runner import Trace
from citycard.pos.journal import JournalEntry, State
from citycard.pos.receipt import render_receipt
from citycard.pos.terminal import AlreadyVoided, Interface, NotThisBatch, PosTerminal, inquiry

if TYPE_CHECKING:
    from citycard.hosts.terminal import AcquirerClient
    from citycard.hsm.api import Hsm
    from citycard.pos.online import TerminalIdentity
from citycard.sqlite_journal import JournalUnavailable, SqliteJournal

from .card import card_file, hold_card, log_record
from .output import JsonFlag, amount_column, print_json, yuan

__all__ = ["app"]

app = typer.Typer(help="POS terminal and bus validator (PBOC level-2 kernel).", no_args_is_help=True)
console = Console()


CardOpt = typer.Option(None, "--card", help="emulated card image (JSON), or the PAN of an issued card")
ReaderOpt = typer.Option(None, "--reader", help="PC/SC reader name (substring) instead of --card")
ConfigOpt = typer.Option(None, "--config", help="terminal configuration (TOML, docs/terminal.example.toml)")
TraceOpt = typer.Option(False, "--trace", help="print every APDU with decoded TLV")
JournalOpt = typer.Option(
    None,
    "--journal",
    help="journal database (default $CITYCARD_HOME/terminals/<TID>/journal.db for a registered terminal, "
    "else $CITYCARD_HOME/pos-journal.db)",
)
KeysOpt = typer.Option(None, "--keys", help="demo key file (default $CITYCARD_HOME/demo-keys.json)")
RevealOpt = typer.Option(False, "--reveal", help="show PANs in full in traces")
ExportOpt = typer.Option(None, "--export", help="write the upload queue to this directory")
CloseBatchOpt = typer.Option(False, "--close-batch", help="after the export, start a new batch")
CapksOpt = typer.Option(
    None, "--capks", help="CA public key file (TOML capk tables, SHA-1 checksums verified)"
)
DenyListOpt = typer.Option(
    None, "--denylist", help="an issuer's signed deny-list file (repeatable; needs --denylist-kcv)"
)
DenyListKcvOpt = typer.Option(
    None,
    "--denylist-kcv",
    help="BANK=KCV: a key you trust to sign that bank's deny list, e.g. ICBC=A1B2C3 (repeatable)",
)
AcquirerOpt = typer.Option(
    None, "--acquirer", help="acquirer HOST:PORT (default $CITYCARD_ACQUIRER, else 127.0.0.1:9583)"
)
TerminalOpt = typer.Option(
    None, "--terminal", help="terminal ID (field 41, 8 characters 0-9 A-Z; default the configuration's 9F1C)"
)
STATES: tuple[str, ...] = get_args(State)
_COMMAND_STACK: ContextVar[ExitStack | None] = ContextVar("_COMMAND_STACK", default=None)
_RECEIPT_NAME: ContextVar[str | None] = ContextVar("_RECEIPT_NAME", default=None)
"""The registry's name of the merchant of ``--terminal``: the receipt's heading (not the configuration's)."""


@dataclass(frozen=True, slots=True)
class _CardOptions:
    """The options every command that talks to a card shares (added to its signature by ``_card_command``)."""

    card: Path | None
    reader: str | None
    config: Path | None
    trace: bool
    keys: Path | None
    reveal: bool
    capks: Path | None
    denylist: list[Path] | None
    denylist_kcv: list[str] | None

    def terminal_config(self) -> TerminalConfig:
        config = _config(self.config, self.keys, self.capks)
        return _with_deny_lists(config, self.config, self.denylist or [], self.denylist_kcv or [])

    def tracer(self) -> Trace | None:
        return _tracer(self.trace, self.reveal)

    def transport(self, contactless: bool) -> AbstractContextManager[Callable[[bytes], bytes]]:
        return _transport(self.card, self.reader, contactless)


_CARD_PARAMETERS = (
    ("card", Path | None, CardOpt),
    ("reader", str | None, ReaderOpt),
    ("config", Path | None, ConfigOpt),
    ("trace", bool, TraceOpt),
    ("keys", Path | None, KeysOpt),
    ("reveal", bool, RevealOpt),
    ("capks", Path | None, CapksOpt),
    ("denylist", list[Path] | None, DenyListOpt),
    ("denylist_kcv", list[str] | None, DenyListKcvOpt),
)


def _card_command(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@app.command(name)`` for a function whose first parameter is a :class:`_CardOptions`: the command
    line gets that function's own options followed by --card, --reader, --config, --trace, --keys, --reveal,
    --capks, --denylist and --denylist-kcv."""

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]
        shared = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for n, a, d in _CARD_PARAMETERS
        ]

        def command(**values: Any) -> None:
            options = _CardOptions(**{n: values.pop(n) for n, _, _ in _CARD_PARAMETERS})
            with ExitStack() as stack:  # what the command holds (its journal) is released when it ends
                token = _COMMAND_STACK.set(stack)
                try:
                    func(options, **values)
                finally:
                    _COMMAND_STACK.reset(token)

        command.__name__, command.__doc__ = func.__name__, func.__doc__
        command.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in (*own, *shared)}
        app.command(name)(command)
        return func

    return decorate


def _amount(text: str, option: str) -> int:
    """A positive amount in yuan, parsed exactly into fen."""
    try:
        fen = parse_yuan(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    if fen <= 0:
        raise typer.BadParameter("the amount must be more than 0.00", param_hint=option)
    return fen


def _keys(path: Path | None) -> DemoKeys:
    target = path or settings().home / "demo-keys.json"
    try:
        return DemoKeys.load_or_create(target)
    except (OSError, DemoKeyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise typer.BadParameter(f"{target}: {reason}", param_hint="--keys") from None


def _config(path: Path | None, keys_path: Path | None, capks: Path | None = None) -> TerminalConfig:
    rid, index, key = _keys(keys_path).ca_public_key()
    base = TerminalConfig(capks=(CaPublicKey(bytes.fromhex(rid), index, key.modulus, key.exponent),))
    if capks is not None:
        try:
            base = base.with_capks(parse_capks(capks.read_text(encoding="utf-8")))
        except (OSError, ConfigError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--capks") from None
    if path is None:
        return base
    try:
        return parse_config(path.read_text(encoding="utf-8"), base=base)
    except (OSError, ConfigError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None


def _deny_list(path: Path, trusted: TrustedKeys, where: str) -> DenyListFile:
    """One signed deny list, verified; any failure is a configuration error naming the file (exit 2)."""
    try:
        return load_deny_list(path.read_bytes(), trusted)
    except (OSError, DenyListError) as exc:
        raise typer.BadParameter(f"deny list {path}: {exc}", param_hint=where) from None


def _with_deny_lists(
    config: TerminalConfig, config_path: Path | None, files: list[Path], kcvs: list[str]
) -> TerminalConfig:
    """Load and verify the deny-list files the configuration names (paths relative to it) and those of
    --denylist (each signed by a key --denylist-kcv trusts for the bank the file names), and merge them
    into the exception file."""
    if files and not kcvs:
        raise typer.BadParameter(
            "give the bank and its signing key's KCV with --denylist-kcv BANK=KCV", param_hint="--denylist"
        )
    base = config_path.parent if config_path is not None else Path()
    loaded = [
        _deny_list(base / source.path, source.trusted, "--config") for source in config.exception_file.pending
    ]
    trusted: dict[str, set[str]] = {}
    for text in kcvs:
        try:
            issuer, kcv = parse_trusted_kcv(text)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--denylist-kcv") from None
        trusted.setdefault(issuer, set()).add(kcv)
    loaded += [_deny_list(path, trusted, "--denylist") for path in files]
    if not loaded and not config.exception_file.pending:
        return config
    return config.with_deny_lists(loaded)


def _open_journal(
    path: Path, terminal_id: str, stack: ExitStack | None = None, *, sync_outcomes: bool = True
) -> SqliteJournal:
    """The terminal's journal, held by this command alone until it ends (``stack`` closes; by default the
    one of the running card command): opening it turns ``pending`` rows into ``torn`` (their terminal
    stopped), which is right only if no other process is in the middle of one. Busy past the timeout: one
    ``error:`` line, exit 1. ``sync_outcomes=False``: a validator's, one fsync per tap (sqlite_journal)."""
    stack = stack or _COMMAND_STACK.get()
    assert stack is not None, "a card command's journal is closed by the command"
    if path == settings().home / "pos-journal.db":
        path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a path that cannot be a journal is refused before its lock file is made (exit 2)
        SqliteJournal.check_path(path)
        lock = path.with_name(f".{path.name}.lock")
        stack.enter_context(exclusive_lock(lock, f"terminal journal {path}", settings().lock_timeout_s))
        journal = SqliteJournal(path, terminal_id, sync_outcomes=sync_outcomes)
    except BusyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except JournalUnavailable as exc:
        raise typer.BadParameter(str(exc), param_hint="--journal") from None
    stack.callback(journal.close)
    return journal


def _terminal(config: TerminalConfig, journal: Path | None, *, validator: bool = False) -> PosTerminal:
    terminal_id = config.terminal_id.decode("ascii", "replace")
    path = journal or _default_journal(terminal_id)
    opened = _open_journal(path, terminal_id, sync_outcomes=not validator)
    return PosTerminal(config, opened, data_key=DEMO_DATA_KEY)


def _fail(message: str) -> typer.Exit:
    """One ``error:`` line; the command could not be carried out (exit 1)."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(1)


def _identity(config: TerminalConfig, terminal: str | None) -> tuple[TerminalConfig, TerminalIdentity]:
    """The terminal's identity: ``--terminal`` (else the configuration's 9F1C) and its merchant, from the
    registry's binding of that terminal (``citycard terminal add``) when there is one, else the
    configuration's 9F16; the kernel's configuration made to agree."""
    from citycard.pos.online import TerminalIdentity

    tid = terminal or config.terminal_id.decode("ascii", "replace")
    registered = _registered_merchant(tid) if terminal else None
    merchant = registered[0] if registered else config.merchant_id.decode("ascii", "replace")
    try:
        identity = TerminalIdentity(tid, merchant)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--terminal" if terminal else "--config") from None
    changed = replace(config, terminal_id=tid.encode("ascii"), merchant_id=merchant.encode("ascii"))
    _RECEIPT_NAME.set(registered[1] if registered else None)  # a run in the same process starts afresh
    if registered is not None:
        name = registered[1]
        if name.isascii():  # 9F4E is ans: a name in Chinese characters stays on the receipt only
            changed = replace(changed, merchant_name=name.encode("ascii"))
    return changed, identity


def _registered_merchant(tid: str) -> tuple[str, str] | None:
    """(merchant id, name) of the merchant the registry binds terminal ``tid`` to, if this platform has a
    database with it."""
    s = settings()
    if not s.database_url and not (s.home / "citycard.db").exists():
        return None  # a terminal without the platform's database beside it: its configuration says
    from citycard.bootstrap import open_center
    from citycard.center.views import terminal_binding

    with open_center(s) as center:
        binding = terminal_binding(center.unit_of_work(read_only=True), tid)
    return None if binding is None else (binding.merchant.merchant_id, binding.merchant.name)


def _registered_bus(tid: str) -> tuple[int, str] | None:
    """A validator's bus line and vehicle as the registry has them (``citycard terminal add --kind
    validator --line --vehicle``), if this platform has a database with that terminal registered so."""
    s = settings()
    if not s.database_url and not (s.home / "citycard.db").exists():
        return None
    from citycard.bootstrap import open_center
    from citycard.center.model import MalformedCommand
    from citycard.center.views import terminal_binding

    try:
        with open_center(s) as center:
            binding = terminal_binding(center.unit_of_work(read_only=True), tid)
    except MalformedCommand:  # not a registry terminal ID: nothing registered under it
        return None
    if binding is None or binding.terminal.line is None:
        return None
    return binding.terminal.line, binding.terminal.vehicle


def _terminal_hsm(tid: str) -> Callable[[], Hsm]:
    """The terminal's own HSM (its PED), the key store ``citycard terminal add`` injected its TMK into,
    opened when first needed (an offline sale needs no key)."""

    def open_hsm() -> Hsm:
        from citycard import bootstrap
        from citycard.hosts.terminal import OnlineError
        from citycard.hsm.api import HsmError

        try:
            return bootstrap.terminal_hsm(settings(), tid)
        except (HsmError, OSError) as exc:
            raise OnlineError(
                f"terminal {tid} has no key store ({exc}): run 'citycard terminal add'"
            ) from None

    return open_hsm


@contextmanager
def _online(
    config: TerminalConfig, journal: Path | None, acquirer: str | None, terminal: str | None
) -> Iterator[tuple[PosTerminal, AcquirerClient]]:
    """The terminal with its way online (connected on first use); an unreachable acquirer or a refused
    sign-on is one ``error:`` line, exit 1."""
    from citycard.hosts.terminal import AcquirerClient, OnlineError, parse_address

    config, identity = _identity(config, terminal)
    address = acquirer or settings().acquirer
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--acquirer") from None
    path = journal or _default_journal(identity.terminal_id)
    stack = ExitStack()
    jr = _open_journal(path, identity.terminal_id, _COMMAND_STACK.get() or stack)
    client = AcquirerClient(
        host,
        port,
        identity=identity,
        hsm=_terminal_hsm(identity.terminal_id),
        journal=jr,
        data_key=DEMO_DATA_KEY,
        timeout_s=settings().acquirer_timeout_s,
    )
    pos = PosTerminal(config, jr, data_key=DEMO_DATA_KEY, host=client, pin_pad=client.pin_pad)
    try:
        yield pos, client
    except (OnlineError, AlreadyVoided, NotThisBatch) as exc:
        raise _fail(str(exc)) from None
    except typer.Exit as stop:  # a decline shown: say why it could not go online, if that is why
        if stop.exit_code and client.failure is not None:
            raise _fail(str(client.failure)) from None
        raise
    finally:
        if client.batch_closed is not None:  # 77: told after the receipt, whatever the command's end
            closed, now = client.batch_closed
            console.print(
                f"the acquirer had settled batch {closed}: signed on again, now batch {now}",
                highlight=False,
                soft_wrap=True,
            )
        client.close()
        stack.close()


def _default_journal(tid: str) -> Path:
    """A registered terminal (``citycard terminal add`` made ``$CITYCARD_HOME/terminals/<TID>``) keeps its
    journal there, so every command of that terminal shares one STAN counter and batch; otherwise the
    home's ``pos-journal.db``."""
    folder = settings().home / "terminals" / tid
    return folder / "journal.db" if folder.is_dir() else settings().home / "pos-journal.db"


def _report_unreachable(client: AcquirerClient) -> None:
    if client.failure is not None:
        raise _fail(str(client.failure))


@contextmanager
def _transport(
    card: Path | None, reader: str | None, contactless: bool
) -> Iterator[Callable[[bytes], bytes]]:
    if (card is None) == (reader is None):
        raise typer.BadParameter("give exactly one of --card and --reader")
    if reader is not None:
        from citycard.pcsc.reader import PcscReader, ReaderError

        try:
            with PcscReader(reader) as connection:
                yield connection.transmit
        except ReaderError as exc:
            raise typer.BadParameter(str(exc), param_hint="--reader") from None
        return
    assert card is not None
    held = hold_card(card_file(card))  # a PAN names the image the issuer made
    try:
        yield from _emulated(held, contactless)
    finally:
        held.__exit__(None, None, None)


def _emulated(held: CardFile, contactless: bool) -> Iterator[Callable[[bytes], bytes]]:
    """The emulated card of a held image, saved after every command that changed it. A save that fails
    (ENOSPC, I/O error) means the card did not durably process that command: the transport fails from then
    on (the kernel sees the card removed, and a debit sent is journaled ``torn``, to be resolved from the
    card's log on the next tap) and the problem is one ``warning:`` line — never a crash after the sale."""
    from citycard.chip.card import Card

    emulated = Card(held.image, os.urandom)
    emulated.power_on("contactless" if contactless else "contact")
    failed: list[OSError] = []

    def transmit(apdu: bytes) -> bytes:
        if failed:
            raise OSError(f"card image not saved: {failed[0].strerror or failed[0]}")
        response = emulated.transmit(apdu)
        try:
            held.save()
        except OSError as exc:
            failed.append(exc)
            raise
        return response

    yield transmit
    emulated.power_off()
    if not failed:
        try:
            held.save()
        except OSError as exc:
            failed.append(exc)
    if failed:
        typer.echo(
            f"warning: card image {held.path} could not be saved ({failed[0].strerror or failed[0]}); "
            "the card on disk is as it was before that command",
            err=True,
        )


_SENSITIVE_TAGS = frozenset({"5A", "57", "9F1F", "9F6B", "9F61", "5F20"})
"""PAN, track 2 and 1 data, cardholder ID number and name: masked in the raw hex of a trace too."""


def _sensitive_values(data: bytes) -> list[str]:
    try:
        objects = tlv.decode(data)
    except ValueError:
        return []
    return [
        o.value.hex().upper()
        for o in tlv.iter_flat(objects)
        if o.children is None and o.tag in _SENSITIVE_TAGS and len(o.value) >= 5
    ]


def _mask_hex(text: str, values: Iterable[str]) -> str:
    for value in values:
        text = text.replace(value, value[:6] + "*" * (len(value) - 10) + value[-4:])
    return text


def _tracer(enabled: bool, reveal: bool) -> Trace | None:
    if not enabled:
        return None
    seen: set[str] = set()  # sensitive values met so far, masked wherever they appear again

    def trace(purpose: str, command: bytes, response: bytes) -> None:
        if not reveal:
            seen.update(_sensitive_values(response[:-2]))
        hide = (lambda text: text) if reveal else (lambda text: _mask_hex(text, seen))
        console.print(
            f"[bold]> {purpose}[/bold]  {hide(command_hex(command))}", highlight=False, soft_wrap=True
        )
        if not response:
            console.print("< (no response: card removed)", highlight=False)
            return
        data, sw = response[:-2], int.from_bytes(response[-2:], "big")
        console.print(
            f"< {hide(data.hex().upper())} {sw:04X} ({sw_meaning(sw)})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        if data:
            console.print(
                format_tlv(data, rid="A000000333", mask=not reveal),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    return trace


def _interactive() -> bool:
    """Whether someone is at the keyboard to type a PIN again."""
    return sys.stdin.isatty()


def _pin_option(text: str | None) -> str | None:
    """``--pin`` as typed: 4 to 12 decimal digits (ISO 9564-1 PIN length), refused before the card is
    touched so that a mistyped PIN costs none of the card's tries."""
    if text is not None and not (text.isascii() and text.isdigit() and 4 <= len(text) <= 12):
        raise typer.BadParameter("a PIN is 4 to 12 digits", param_hint="--pin")
    return text


def _pin(given: str | None) -> Callable[[RequestPin], str | PinEntry | None]:
    """The PIN pad of one transaction. ``--pin`` answers the first request only: a PIN the card refused is
    never sent again (each VERIFY burns one of the card's tries). Asked again — the card said "wrong PIN",
    or another PIN method follows a failed one — it prompts at a terminal, and otherwise cancels: the
    transaction ends with the card's remaining tries in its reason."""
    used = False

    def ask(request: RequestPin) -> str | PinEntry | None:
        nonlocal used
        if request.wrong_pin:
            left = f": {request.tries_left} tries left" if request.tries_left is not None else ""
            console.print(f"wrong PIN{left}", highlight=False)
        if given is not None and not used:
            used = True
            return given
        if given is not None and not _interactive():
            return PinEntry(None, cancel=True)
        tries = f" ({request.tries_left} tries left)" if request.tries_left is not None else ""
        text = typer.prompt(
            f"PIN for CNY {format_amount(request.amount_fen)}{tries}", hide_input=True, default=""
        )
        return text or None

    return ask


def _show(
    pos: PosTerminal, outcome: Outcome, entry: JournalEntry | None, amount_fen: int, title: str
) -> None:
    console.print(
        render_receipt(
            pos.config, outcome, entry, amount_fen=amount_fen, title=title, merchant_name=_RECEIPT_NAME.get()
        ),
        markup=False,
    )
    if entry is not None and entry.state == "refund":
        console.print(
            f"the card paid CNY {format_amount(entry.amount_fen)} before the terminal declined: "
            f"{entry.txn_id} is queued for upload so that the issuer refunds it",
            markup=False,
            soft_wrap=True,
        )
    if outcome.kind is OutcomeKind.TERMINATED or not outcome.approved:
        raise typer.Exit(1 if outcome.kind is not OutcomeKind.COMPLETED else 0)


@_card_command("purchase")
def purchase(
    opts: _CardOptions,
    amount: str = typer.Option(..., "--amount", help="amount in yuan, e.g. 12.50"),
    contactless: bool = typer.Option(False, "--contactless", help="qPBOC instead of contact"),
    pin: str | None = typer.Option(None, "--pin", help="PIN (else prompted when the card asks)"),
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
    service_ref: str | None = typer.Option(
        None,
        "--service-ref",
        help="a public service's reference, e.g. HR-202612030017 (field 48; a registered counter)",
    ),
) -> None:
    """A purchase: EC offline, or debit/credit authorized online by the issuer through the acquirer.
    With --service-ref: a fee paid at a public-service counter (docs/public-services.md).

    Contactless "try another interface": an emulated card (--card) is inserted and the purchase runs again
    over contact; a card in a reader (--reader) must be inserted by hand and the command run again.
    """
    fen, pin = _amount(amount, "--amount"), _pin_option(pin)
    reference = _service_counter(service_ref, terminal) if service_ref is not None else ""
    with _online(opts.terminal_config(), journal, acquirer, terminal) as (pos, client):
        _purchase(opts, pos, client.journal, fen, pin, contactless, reference)
        _report_unreachable(client)


def _service_counter(text: str, terminal: str | None) -> str:
    """``--service-ref`` checked before anything moves: a reference of a known kind, taken at a registered
    terminal whose merchant is of an industry that service is paid at (docs/public-services.md)."""
    from citycard.codec.iso8583.service import ServiceReference, ServiceReferenceError
    from citycard.public.model import PublicError, check_counter

    try:
        reference = ServiceReference.parse(text)
    except ServiceReferenceError as exc:
        raise typer.BadParameter(str(exc), param_hint="--service-ref") from None
    s = settings()
    if terminal is None or (not s.database_url and not (s.home / "citycard.db").exists()):
        raise typer.BadParameter("a public-service fee is taken at a registered terminal (--terminal TID)")
    from citycard.bootstrap import open_center
    from citycard.center.views import terminal_binding

    with open_center(s) as center:
        binding = terminal_binding(center.unit_of_work(read_only=True), terminal)
    if binding is None:
        raise typer.BadParameter(f"terminal {terminal} is not registered", param_hint="--terminal")
    merchant = binding.merchant
    try:
        check_counter(
            reference.kind, merchant.industry.value if merchant.industry else None, merchant.merchant_id
        )
    except PublicError as exc:
        raise typer.BadParameter(str(exc), param_hint="--service-ref") from None
    return reference.text


def _purchase(
    opts: _CardOptions,
    pos: PosTerminal,
    journal: SqliteJournal,
    fen: int,
    pin: str | None,
    contactless: bool,
    service_ref: str = "",
) -> None:
    ask = _pin(pin)
    interface: Interface = "contactless" if contactless else "contact"
    with opts.transport(contactless) as transmit:
        result = pos.purchase(
            transmit, fen, interface=interface, pin=ask, trace=opts.tracer(), service_ref=service_ref
        )
    _say_settled(journal, result.recovered)
    if result.outcome.kind is OutcomeKind.TRY_ANOTHER_INTERFACE:
        console.print(
            f"try another interface ({result.outcome.reason}): please insert the card",
            soft_wrap=True,
            markup=False,
        )
        if opts.card is not None:
            console.print("card inserted (contact)")
            with opts.transport(False) as transmit:
                result = pos.purchase(
                    transmit,
                    fen,
                    interface="contact",
                    pin=_pin(pin),
                    trace=opts.tracer(),
                    service_ref=service_ref,
                )
    if result.entry is not None and result.entry.service_ref:
        console.print(f"service reference: {result.entry.service_ref}", highlight=False)
    _show(pos, result.outcome, result.entry, fen, "SALE")


@_card_command("load")
def load(
    opts: _CardOptions,
    amount: str = typer.Option(..., "--amount", help="amount to load in yuan"),
    pin: str | None = typer.Option(None, "--pin"),
    cash: bool = typer.Option(
        False, "--cash", help="cash paid at the counter (现金充值) instead of the account"
    ),
    from_account: str | None = typer.Option(
        None,
        "--from-account",
        help="load from another account (非指定账户圈存): the number of a card of that account, any bank",
    ),
    from_pin: str | None = typer.Option(
        None, "--from-pin", help="that account's PIN (else prompted); with --from-account"
    ),
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
) -> None:
    """EC load (圈存) over contact, online: from the cardholder's account (or --cash, or another account
    with --from-account and its PIN); the issuer answers with its ARPC and the script PUT DATA 9F79 that
    sets the card's new balance."""
    fen, pin = _amount(amount, "--amount"), _pin_option(pin)
    source = _source_account(from_account, from_pin, cash)
    title = "CASH LOAD" if cash else "EC LOAD" if source is None else "EC LOAD (OTHER ACCOUNT)"
    with _online(opts.terminal_config(), journal, acquirer, terminal) as (pos, client):
        client.open()
        with opts.transport(False) as transmit:
            result = pos.load(
                transmit, fen, pin=_pin(pin), trace=opts.tracer(), cash=cash, from_account=source
            )
        _report_unreachable(client)
        _say_settled(client.journal, result.recovered)
        _show(pos, result.outcome, result.entry, fen, title)


def _say_settled(journal: SqliteJournal, settled: Iterable[JournalEntry]) -> None:
    """The torn transactions a tap settled by the card's log, a line each. A torn EC load not on the card's
    load log says whether its reversal has reached the issuer (sent ahead of this tap's online message) or
    waits in the queue, and a cash load's that the clerk gives the cash back: the reversal takes it off the
    issuer's books."""
    for entry in settled:
        if entry.kind != "ec_load":
            console.print(f"recovered torn transaction {entry.txn_id} (charged per the card's log)")
            continue
        if entry.state == "recovered":
            console.print(f"recovered torn load {entry.txn_id} (on the card's load log)")
            continue
        amount = format_amount(entry.amount_fen)
        reversal = journal.advice_for(entry.txn_id, "reversal")
        where = (
            "reversed at the issuer"
            if reversal is not None and reversal.response_code
            else "its reversal is queued for the issuer (sent at the next online message; citycard pos flush)"
        )
        cash = f"; give the holder back CNY {amount} in cash" if entry.funding == "cash" else ""
        console.print(
            f"torn load {entry.txn_id} of CNY {amount} is not on the card's load log: {where}{cash}",
            soft_wrap=True,
            highlight=False,
        )


def _source_account(number: str | None, pin: str | None, cash: bool) -> tuple[str, str] | None:
    """``--from-account`` and ``--from-pin`` checked before the card is touched (a PIN prompted when
    not given)."""
    if number is None:
        if pin is not None:
            raise typer.BadParameter("--from-pin goes with --from-account", param_hint="--from-pin")
        return None
    if cash:
        raise typer.BadParameter("a cash load takes no account", param_hint="--from-account")
    if not is_pan(number):
        raise typer.BadParameter("a card number is 12 to 19 digits", param_hint="--from-account")
    if pin is None:
        pin = typer.prompt("PIN of the account to load from", hide_input=True, default="") or None
    if pin is None or not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        raise typer.BadParameter("a PIN is 4 to 12 digits", param_hint="--from-pin")
    return number, pin


@_card_command("balance")
def balance(
    opts: _CardOptions,
    contactless: bool = typer.Option(False, "--contactless"),
    as_json: JsonFlag = False,
    online: bool = typer.Option(
        False,
        "--online",
        help="the account balance, asked of the issuer (0200 310000) instead of the chip's EC",
    ),
    pin: str | None = typer.Option(None, "--pin", help="PIN (with --online; else prompted when asked)"),
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
) -> None:
    """EC balance and limits (GET DATA 9F79, 9F77, 9F78, 9F6D); --online: the account's, from the issuer."""
    if online:
        _online_balance(opts, _pin_option(pin), contactless, as_json, journal, acquirer, terminal)
        return
    config = opts.terminal_config()
    with opts.transport(contactless) as transmit:
        out = inquiry(config, transmit, TransactionKind.EC_BALANCE, _interface(contactless), opts.tracer())
    if out.kind is not OutcomeKind.COMPLETED or out.ec_balance_fen is None:
        console.print(f"balance inquiry failed: {out.reason}", markup=False)
        raise typer.Exit(1)
    if as_json:
        limits = {
            key: int(out.data[tag].hex())
            for tag, key in (
                ("9F77", "ec_balance_limit_fen"),
                ("9F78", "ec_single_limit_fen"),
                ("9F6D", "ec_reset_threshold_fen"),
            )
            if tag in out.data and out.data[tag].hex().isdigit()
        }
        print_json({"label": out.label, "ec_balance_fen": out.ec_balance_fen, **limits})
        return
    table = Table(title=f"EC balance — {out.label}")
    table.add_column("item")
    table.add_column("CNY", justify="right")
    table.add_row("balance (9F79)", format_amount(out.ec_balance_fen))
    for tag, name in (
        ("9F77", "balance limit"),
        ("9F78", "single transaction limit"),
        ("9F6D", "reset threshold"),
    ):
        if tag in out.data:
            table.add_row(f"{name} ({tag})", _render("9F02", out.data[tag]))
    console.print(table)


def _online_balance(
    opts: _CardOptions,
    pin: str | None,
    contactless: bool,
    as_json: bool,
    journal: Path | None,
    acquirer: str | None,
    terminal: str | None,
) -> None:
    from citycard.pos.online import balances

    with _online(opts.terminal_config(), journal, acquirer, terminal) as (pos, client):
        client.open()
        with opts.transport(contactless) as transmit:
            result = pos.balance_inquiry(
                transmit, pin=_pin(pin), interface=_interface(contactless), trace=opts.tracer()
            )
        _report_unreachable(client)
        if not as_json:
            _say_settled(client.journal, result.recovered)
    answer = client.answers.get(result.entry.txn_id) if result.entry is not None else None
    found: dict[str, int] = {}
    if answer is not None and answer.balance:
        try:
            found = balances(answer.balance)
        except ValueError as exc:
            raise _fail(f"the issuer's balance (field 54) cannot be read: {exc}") from None
    if not result.approved or not found:
        reason = result.outcome.reason or "no balance in the answer"
        raise _fail(f"balance inquiry declined: {reason}")
    available = found.get("02", next(iter(found.values())))
    if as_json:
        settled = {e.txn_id: e.state for e in result.recovered}  # torn loads settled by the load log
        print_json({"available_fen": available, "balances_fen": found, "torn_settled": settled})
        return
    console.print(f"account balance: CNY {format_amount(available)} available", highlight=False)


def _interface(contactless: bool) -> Interface:
    return "contactless" if contactless else "contact"


_LOG_NAMES = {
    "9A": "date", "9F21": "time", "9F02": "amount", "9F03": "other", "9F1A": "country", "5F2A": "currency",
    "9F4E": "merchant", "9C": "type", "9F36": "ATC", "P1P2": "tag", "BEFORE": "before", "AFTER": "after",
}  # fmt: skip


def _render(tag: str, value: bytes) -> str:
    if tag in ("9F02", "9F03", "BEFORE", "AFTER"):
        return format_amount(int(value.hex()))
    if tag == "9A":
        return f"20{value.hex()[:2]}-{value.hex()[2:4]}-{value.hex()[4:]}"
    if tag == "9F21":
        return f"{value.hex()[:2]}:{value.hex()[2:4]}:{value.hex()[4:]}"
    if tag == "9F4E":
        return value.rstrip(b"\x00").decode("ascii", "replace")
    if tag == "9F36":
        return str(int.from_bytes(value, "big"))
    if tag == "9C" and len(value) == 1:
        return transaction_type_name(value[0])
    return value.hex().upper()


@_card_command("log")
def log(
    opts: _CardOptions,
    load_log: bool = typer.Option(False, "--load", help="the load log (DF4D/DF4F) instead"),
    contactless: bool = typer.Option(False, "--contactless"),
    as_json: JsonFlag = False,
) -> None:
    """The card's transaction log (9F4D/9F4F) or load log (DF4D/DF4F), formatted by its log format."""
    kind = TransactionKind.LOAD_LOG if load_log else TransactionKind.TRANSACTION_LOG
    config = opts.terminal_config()
    with opts.transport(contactless) as transmit:
        out = inquiry(config, transmit, kind, _interface(contactless), opts.tracer())
    if out.kind is not OutcomeKind.COMPLETED:
        console.print(f"log inquiry failed: {out.reason}", markup=False)
        raise typer.Exit(1)
    if as_json:
        records = [log_record(entry.fields) for entry in out.logs]
        print_json({"log": "load" if load_log else "transaction", "label": out.label, "records": records})
        return
    table = Table(title=("load log" if load_log else "transaction log") + f" — {out.label}")
    tags = [t for t, _ in out.logs[0].fields] if out.logs else []
    for tag in tags:
        if tag in ("9F02", "9F03", "BEFORE", "AFTER"):
            amount_column(table, _LOG_NAMES.get(tag, tag))
        else:
            table.add_column(_LOG_NAMES.get(tag, tag), no_wrap=tag in ("9A", "9F21", "9C"))
    for entry in out.logs:
        table.add_row(*(_render(t, v) for t, v in entry.fields))
    console.print(table)


@app.command("journal")
def journal_cmd(
    journal: Path | None = JournalOpt,
    state: str | None = typer.Option(None, "--state", help=f"only this state ({', '.join(STATES)})"),
    export: Path | None = ExportOpt,
    limit: int = typer.Option(50, "--limit", min=1),
    close_batch: bool = CloseBatchOpt,
    config: Path | None = ConfigOpt,
    keys: Path | None = KeysOpt,
    terminal: str | None = TerminalOpt,
    as_json: JsonFlag = False,
) -> None:
    """The terminal's journal; ``--export DIR`` writes captured offline transactions for upload."""
    if state is not None and state not in STATES:
        raise typer.BadParameter(f"{state!r} is not one of {', '.join(STATES)}", param_hint="--state")
    terminal_id = terminal or (
        _config(config, keys).terminal_id.decode("ascii", "replace") if config else "CITY0001"
    )
    path = journal or _default_journal(terminal_id)
    if journal is not None and not journal.exists():  # a view: a mistyped path makes no new journal
        raise typer.BadParameter(f"no journal at {journal}", param_hint="--journal")
    with ExitStack() as stack:
        jr = _open_journal(path, terminal_id, stack)
        if as_json:
            _journal_json(jr, cast(State | None, state), limit, export, close_batch)
            return
        _journal_table(jr, path, state, export, limit, close_batch)


def _journal_table(
    jr: SqliteJournal, path: Path, state: str | None, export: Path | None, limit: int, close_batch: bool
) -> None:
    if export is not None:
        for file in jr.export(export):
            console.print(f"wrote {file}", soft_wrap=True, highlight=False)
    if close_batch:
        console.print(f"batch {jr.current_batch()} closed; now batch {jr.close_batch()}")
    table = Table(title=f"journal {path} — batch {jr.current_batch()}")
    for col in ("STAN", "time", "state", "kind"):
        table.add_column(col, no_wrap=True)
    amount_column(table, "amount")
    for col in ("card", "AC"):
        table.add_column(col, no_wrap=True)
    kinds = {"purchase": "sale", "ec_load": "load"}
    for e in jr.entries(cast(State | None, state), limit):
        table.add_row(
            f"{e.stan:06d}", e.created.strftime("%m-%d %H:%M:%S"), e.state, kinds.get(e.kind, e.kind),
            format_amount(e.amount_fen), e.pan_masked[-8:], e.cryptogram[:8],
        )  # fmt: skip
    console.print(table)


def _journal_json(
    jr: SqliteJournal, state: State | None, limit: int, export: Path | None, close_batch: bool
) -> None:
    exported = [str(file) for file in jr.export(export)] if export is not None else []
    closed = jr.current_batch() if close_batch else None
    if close_batch:
        jr.close_batch()
    entries = [
        {
            "txn_id": e.txn_id,
            "stan": e.stan,
            "batch": e.batch,
            "time": e.created.isoformat(),
            "state": e.state,
            "kind": e.kind,
            "interface": e.interface,
            "amount_fen": e.amount_fen,
            "card": e.pan_masked,
            "cryptogram": e.cryptogram,
            "atc": e.atc,
            "outcome": e.outcome,
            "ec_balance_fen": e.ec_balance_fen,
        }
        for e in jr.entries(state, limit)
    ]
    batch = jr.current_batch()
    print_json({"batch": batch, "closed_batch": closed, "exported": exported, "entries": entries})


FaresOpt = typer.Option(None, "--fares", help="fare table (default: the installed one)")


@_card_command("validate")
def validate(
    opts: _CardOptions,
    fare: str | None = typer.Option(None, "--fare", help="fixed fare in yuan, e.g. 2.00 (without --line)"),
    line: int | None = typer.Option(
        None, "--line", help="the bus line (else [validator] line in --config): fares by the fare table"
    ),
    stop: str | None = typer.Option(None, "--stop", help="distance lines: the stop, by number or name"),
    tap_out: bool = typer.Option(False, "--tap-out", help="distance lines: the rider alights (tap-out)"),
    fares: Path | None = FaresOpt,
    journal: Path | None = JournalOpt,
) -> None:
    """Bus validator: one qPBOC fare, offline, no PIN; deny list checked; torn fares recovered. With a line,
    the fare table decides from the card's trip record (docs/transit.md); else the fixed --fare."""
    config = opts.terminal_config()
    setup = _validator_setup(opts.config)
    registered = None if fare is not None else _registered_bus(config.terminal_id.decode("ascii", "replace"))
    if registered is not None:  # the registry's line and vehicle win over the configuration's
        setup["line"], setup["vehicle"] = registered
    line = line if line is not None else setup.get("line")
    if (fare is None) == (line is None):
        raise typer.BadParameter("give either --fare or --line (or [validator] line in --config)")
    hook = None
    if line is not None:
        from citycard.cli import transit  # the fare table only when a line is given

        network = transit.read_network(fares or setup.get("fares"))
        terminal_id = config.terminal_id.decode("ascii", "replace")
        hook = transit.fare_hook(network, line, stop, tap_out, terminal_id, dt.datetime.now())
    pos = _terminal(config, journal, validator=True)
    fen = _amount(fare, "--fare") if fare is not None else 0
    start = dt.datetime.now()
    with opts.transport(True) as transmit:
        bus = (line, str(setup.get("vehicle", ""))) if line is not None else None
        result = pos.validate(transmit, fen, trace=opts.tracer(), extension=hook, bus=bus)
    elapsed_ms = (dt.datetime.now() - start).total_seconds() * 1000
    out = result.outcome
    charged = result.entry.amount_fen if result.entry is not None else fen
    light = "[green]GO[/green]" if out.approved else "[red]STOP[/red]"
    balance = f"  balance CNY {format_amount(out.ec_balance_fen)}" if out.ec_balance_fen is not None else ""
    card_text = mask_pan(out.pan) if out.pan else ""
    console.print(f"{light}  fare CNY {format_amount(charged)}  {card_text}{balance}  ({elapsed_ms:.0f} ms)")
    if hook is not None and hook.fare is not None and not hook.fare.refused:
        vehicle = f"vehicle {setup['vehicle']}, " if "vehicle" in setup else ""
        console.print(f"  {vehicle}{hook.fare.reason}", markup=False)
    if not out.approved:
        console.print(f"  {out.kind.value}: {out.reason}", markup=False)
        if result.entry is not None and result.entry.state == "refund":
            console.print(f"  the card paid; {result.entry.txn_id} is queued for a refund", markup=False)
        raise typer.Exit(1)


def _validator_setup(config: Path | None) -> dict[str, Any]:
    """The ``[validator]`` table of the terminal configuration: ``line`` (int), ``vehicle`` and ``fares``
    (a path, relative to the configuration file)."""
    if config is None:
        return {}
    try:
        table = tomllib.loads(config.read_text(encoding="utf-8")).get("validator", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # the kernel's configuration reader has already said what is wrong with the file
    out: dict[str, Any] = {}
    if "line" in table:
        if not isinstance(table["line"], int) or isinstance(table["line"], bool):
            raise _fail(f"{config}: validator.line must be an integer")
        out["line"] = table["line"]
    if "fares" in table:
        if not isinstance(table["fares"], str):
            raise _fail(f"{config}: validator.fares must be a path")
        out["fares"] = config.parent / table["fares"]
    if "vehicle" in table:
        out["vehicle"] = str(table["vehicle"])
    return out


@app.command("signon")
def signon(
    config: Path | None = ConfigOpt,
    keys: Path | None = KeysOpt,
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
) -> None:
    """Sign on (0800): new working keys (PIK, MAK) from the acquirer, under the terminal master key."""
    with _online(_config(config, keys), journal, acquirer, terminal) as (_, client):
        pik, mak = client.sign_on()
        console.print(
            f"signed on to {client.address} as {client.identity.terminal_id}: PIK KCV {pik}, MAK KCV {mak}",
            highlight=False,
        )


@app.command("flush")
def flush(
    config: Path | None = ConfigOpt,
    keys: Path | None = KeysOpt,
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
) -> None:
    """Send the queued reversals (0400, then 0420) and refund advices (0220) until answered."""
    with _online(_config(config, keys), journal, acquirer, terminal) as (_, client):
        result = client.flush()
        for advice in result.answered:
            console.print(
                f"{advice.kind} of {advice.txn_id} (reason {advice.reason}) answered {advice.response_code}",
                highlight=False,
            )
        held = f", {result.held} held for the card's load log (torn EC loads)" if result.held else ""
        console.print(f"{len(result.answered)} sent, {result.pending} still queued{held}", highlight=False)
        listed = client.held_reversals(_HELD_LISTED) if result.held else []
        for txn_id in listed:
            _say_held(client.journal.get(txn_id))
        if result.held > len(listed):
            console.print(f"  and {result.held - len(listed)} older held", highlight=False)
        _report_unreachable(client)
        if result.pending:
            raise typer.Exit(1)


_HELD_LISTED = 50
"""The most held reversals ``pos flush`` names (the newest); the count covers them all."""


def _say_held(entry: JournalEntry) -> None:
    """One torn EC load whose reversal is held: which card, how much, paid how, since when."""
    paid = {"cash": " in cash", "other account": " from another account"}.get(entry.funding, "")
    console.print(
        f"  held: EC load of CNY {format_amount(entry.amount_fen)}{paid} to {entry.pan_masked or 'a card'}, "
        f"torn {entry.created:%Y-%m-%d %H:%M} (batch {entry.batch}, STAN {entry.stan:06d}): settled at that "
        "card's next load here (or its next contact tap within the hour of the tear)",
        highlight=False,
        soft_wrap=True,
    )


@app.command("upload")
def upload(
    config: Path | None = ConfigOpt,
    keys: Path | None = KeysOpt,
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
    as_json: JsonFlag = False,
) -> None:
    """Upload the offline EC purchases (0320 with the TC in field 55), each acknowledged (0330) once."""
    with _online(_config(config, keys), journal, acquirer, terminal) as (_, client):
        client.open()
        result = client.upload()
        if as_json:
            print_json(
                {
                    "acknowledged": list(result.acknowledged),
                    "failed": [{"txn_id": t, "reason": r} for t, r in result.failed],
                }
            )
        else:
            console.print(
                f"uploaded {len(result.acknowledged)} offline purchase(s) to {client.address}",
                highlight=False,
            )
            for txn_id, reason in result.failed:
                console.print(f"  {txn_id}: not acknowledged ({reason})", highlight=False)
        if result.failed:
            raise typer.Exit(1)


@app.command("settle")
def settle(
    config: Path | None = ConfigOpt,
    keys: Path | None = KeysOpt,
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
    as_json: JsonFlag = False,
) -> None:
    """Batch settlement (批结算): upload the offline purchases, send the batch's totals (0500); when the
    acquirer balances them (00) the batch is closed. When not (95) the batch's online transactions are
    uploaded (批上送) and the batch is closed out of balance, the acquirer's records ruling (exit status 1:
    its log names each difference)."""
    with _online(_config(config, keys), journal, acquirer, terminal) as (_, client):
        client.open()
        done = client.settle()

        def figures(t: Any) -> dict[str, int] | None:
            if t is None:
                return None
            return {
                "debit_fen": t.debit_fen,
                "debit_count": t.debit_count,
                "credit_fen": t.credit_fen,
                "credit_count": t.credit_count,
            }

        if as_json:
            print_json(
                {
                    "batch": done.batch,
                    "response_code": done.response_code,
                    "balanced": done.response_code == "00",
                    "terminal": figures(done.totals),
                    "acquirer": figures(done.host_totals),
                    "new_batch": done.new_batch,
                    "uploaded": len(done.upload.acknowledged),
                    "batch_upload": done.batch_upload,
                }
            )
        else:
            t = done.totals
            console.print(
                f"batch {done.batch}: debits {t.debit_count} for {yuan(t.debit_fen)}, credits "
                f"{t.credit_count} for {yuan(t.credit_fen)}; acquirer answered {done.response_code}",
                highlight=False,
            )
            if done.response_code == "00":  # closed: the next batch begins
                console.print(
                    f"balanced: batch {done.batch} closed; now batch {done.new_batch}", highlight=False
                )
            else:
                h = done.host_totals
                theirs = "-"
                if h is not None:
                    theirs = f"debits {h.debit_count} for {yuan(h.debit_fen)}, "
                    theirs += f"credits {h.credit_count} for {yuan(h.credit_fen)}"
                if done.new_batch is not None:
                    where = (
                        f"its {done.batch_upload} online transaction(s) uploaded (批上送); batch "
                        f"{done.batch} closed out of balance (对账不平): the acquirer's records rule; "
                        f"now batch {done.new_batch}"
                    )
                elif done.response_code == "95":
                    where = "the batch upload was not acknowledged; the batch stays open (settle again)"
                else:
                    where = "the batch stays open"
                console.print(f"out of balance: the acquirer has {theirs}; {where}", highlight=False)
        if done.response_code != "00":
            raise typer.Exit(1)


def _original(client: AcquirerClient, rrn: str | None, trace: int | None, batch: int | None) -> JournalEntry:
    """The original online purchase, by its RRN (field 37 of its answer) or its trace (STAN) and batch."""
    if (rrn is None) == (trace is None):
        raise typer.BadParameter("give exactly one of --rrn and --stan")
    journal = client.journal
    if rrn is not None:
        record = journal.online_record(rrn=rrn)
        entry = journal.get(record.txn_id) if record is not None else None
        where = f"RRN {rrn}"
    else:
        assert trace is not None
        number = batch or journal.current_batch()
        entry = journal.find(number, trace)
        where = f"trace {trace:06d} of batch {number:06d}"
    if entry is None or entry.kind != "purchase" or entry.outcome != "approved online":
        raise typer.BadParameter(f"no online purchase approved here with {where}", param_hint="--rrn/--stan")
    return entry


def _refund(
    rrn: str | None,
    trace: int | None,
    batch: int | None,
    amount: str | None,
    config: Path | None,
    keys: Path | None,
    journal: Path | None,
    acquirer: str | None,
    terminal: str | None,
) -> None:
    with _online(_config(config, keys), journal, acquirer, terminal) as (_, client):
        original = _original(client, rrn, trace, batch)
        fen = original.amount_fen if amount is None else _amount(amount, "--amount")
        if fen > original.amount_fen:
            raise typer.BadParameter(
                f"more than the original's CNY {format_amount(original.amount_fen)}", param_hint="--amount"
            )
        client.open()
        entry, code = client.refund(original, fen)
        _report_unreachable(client)
    console.print(
        f"refund of {original.txn_id}: CNY {format_amount(fen)} {entry.state} ({code}) as {entry.txn_id}",
        highlight=False,
    )
    if entry.state != "approved":
        raise typer.Exit(1)


RrnOpt = typer.Option(None, "--rrn", help="the original's retrieval reference number (field 37)")
TraceNoOpt = typer.Option(None, "--stan", min=1, max=999_999, help="the original's STAN (its trace number)")
BatchOpt = typer.Option(None, "--batch", min=1, max=999_999, help="with --stan: its batch (default: current)")


@_card_command("void")
def void(
    opts: _CardOptions,
    rrn: str | None = RrnOpt,
    trace_number: int | None = TraceNoOpt,
    batch: int | None = BatchOpt,
    pin: str | None = typer.Option(None, "--pin", help="PIN (else prompted when the card asks)"),
    contactless: bool = typer.Option(False, "--contactless"),
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
) -> None:
    """Void (消费撤销) a purchase approved online here today, the card present: its ARQC for the whole
    amount, 0200 200000 with 61 = the purchase's batch, trace and date."""
    pin = _pin_option(pin)
    with _online(opts.terminal_config(), journal, acquirer, terminal) as (pos, client):
        original = _original(client, rrn, trace_number, batch)
        client.open()
        with opts.transport(contactless) as transmit:
            result = pos.void(
                transmit, original, pin=_pin(pin), interface=_interface(contactless), trace=opts.tracer()
            )
        _report_unreachable(client)
        _show(pos, result.outcome, result.entry, original.amount_fen, "VOID")


@app.command("refund")
def refund(
    rrn: str | None = RrnOpt,
    trace: int | None = TraceNoOpt,
    batch: int | None = BatchOpt,
    amount: str | None = typer.Option(None, "--amount", help="yuan (default: the whole purchase)"),
    config: Path | None = ConfigOpt,
    keys: Path | None = KeysOpt,
    journal: Path | None = JournalOpt,
    acquirer: str | None = AcquirerOpt,
    terminal: str | None = TerminalOpt,
) -> None:
    """Refund (退货) all or part of an online purchase: 0220 200000 advice, 61 = its batch, trace, date."""
    _refund(rrn, trace, batch, amount, config, keys, journal, acquirer, terminal)
