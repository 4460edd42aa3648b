"""``citycard card``: make, inspect and drive emulated citizen cards (card images in JSON files).

- ``card new`` personalises a card from product options with the demo keys
  (``$CITYCARD_HOME/demo-keys.json``, created on first use; demo only) and writes its image.
- ``card show`` prints applications, holder, EC balance and limits, counters, lifecycle and logs (dates as
  ``2026-12-03``, transaction types in words; ``--json`` for programs).
- ``card apdu`` powers the card on and sends raw APDUs, printing each response decoded by tag name with the
  status word's meaning; the image is saved (atomically) after every command.

Amounts are yuan with at most two decimals (``100.00``), converted exactly to fen. PANs are masked unless
``--reveal``. Where a card image is asked for, the PAN of a card the issuer made (``card issue``) will do:
its image is found under ``$CITYCARD_HOME/cards`` (``citycard.files.find_card_image``).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from citycard.chip.card import Card
from citycard.chip.image import Application, CardImage, ImageError, cell_key
from citycard.chip.pboc import LOAD_LOG_FORMAT, TXN_LOG_FORMAT
from citycard.chip.personalise import ProductProfile, ProfileError, personalise
from citycard.chip.sequence import out_of_sequence
from citycard.codec.apdu import SW, sw_meaning
from citycard.codec.cn import cn_digits
from citycard.codec.dol import parse_dol, split_dol_data
from citycard.codec.money import parse_yuan
from citycard.codec.pan import mask_pan
from citycard.codec.pretty import command_hex, format_tlv, transaction_type_name
from citycard.config import settings
from citycard.demokeys import DemoKeyError, DemoKeys
from citycard.files import BusyError, CardFile, find_card_image, is_pan, load_card, save_card

from .output import JsonFlag, amount_column, print_json, yuan

__all__ = ["app", "card_file", "hold_card", "log_record"]

app = typer.Typer(help="Emulated PBOC citizen cards: personalise, show, send APDUs.", no_args_is_help=True)
console = Console()


def _amount(text: str, option: str) -> int:
    try:
        return parse_yuan(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _unreadable(path: Path, exc: OSError | ImageError) -> typer.Exit:
    """A card image that cannot be read or is not valid: one line on stderr, exit status 2."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    typer.echo(f"error: cannot read card image {path}: {reason}", err=True)
    return typer.Exit(2)


def card_file(path: Path) -> Path:
    """``path`` itself, or for a PAN that names no file here the image the issuer made of that card."""
    if path.exists() or not is_pan(str(path)):
        return path
    return find_card_image(settings().home / "cards", str(path)) or path


def _load(path: Path) -> CardImage:
    try:
        return load_card(path)
    except (OSError, ImageError) as exc:
        raise _unreadable(path, exc) from None


def hold_card(path: Path) -> CardFile:
    """The card image at ``path`` loaded and locked for this session (:class:`citycard.files.CardFile`;
    leave it with ``__exit__``). Busy: one ``error:`` line, exit 1; unreadable or invalid: exit 2."""
    held = CardFile(path, settings().lock_timeout_s)
    try:
        held.__enter__()
    except BusyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (OSError, ImageError) as exc:
        raise _unreadable(path, exc) from None
    return held


def _save(path: Path, image: CardImage) -> None:
    """Write the image atomically; a file-system failure is one line on stderr and exit status 1."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True)
        save_card(path, image)
    except OSError as exc:
        typer.echo(f"error: cannot write card image {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


@app.command("new")
def new(
    out: Annotated[Path, typer.Option("--out", help="where to write the card image (JSON)")],
    bin_: Annotated[str, typer.Option("--bin", help="issuer BIN (6 to 11 digits)")] = "623456",
    holder: Annotated[
        str, typer.Option("--holder", help="cardholder name: a registered card (none: anonymous)")
    ] = "",
    ec_balance: Annotated[str, typer.Option("--ec-balance", help="opening EC balance, yuan")] = "0.00",
    ec_limit: Annotated[str, typer.Option("--ec-limit", help="EC balance limit, yuan")] = "1000.00",
    ec_single_limit: Annotated[
        str, typer.Option("--ec-single-limit", help="EC single-transaction limit, yuan")
    ] = "",
    contactless: Annotated[
        bool, typer.Option("--contactless/--no-contactless", help="contactless interface")
    ] = True,
    credit: Annotated[
        bool, typer.Option("--credit", help="a credit product (no EC) instead of debit with EC")
    ] = False,
    dual: Annotated[
        bool, typer.Option("--dual", help="both a debit (with EC) and a credit application")
    ] = False,
    cda: Annotated[bool, typer.Option("--cda", help="offer CDA (AIP 7D00)")] = False,
    serial: Annotated[int, typer.Option("--serial", help="PAN serial number (default: random)")] = -1,
    keys_path: Annotated[
        Path | None, typer.Option("--keys", help="demo key file (default: $CITYCARD_HOME/demo-keys.json)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing card image at --out")] = False,
    transit: Annotated[
        bool, typer.Option("--transit", help="with the transit file (SFI 21: trip and concession records)")
    ] = False,
    concession: Annotated[
        str, typer.Option("--concession", help="with --transit: elderly, student or disabled, until DATE")
    ] = "",
    concession_until: Annotated[
        str, typer.Option("--concession-until", help="the concession's last valid day, YYYY-MM-DD")
    ] = "",
) -> None:
    """Personalise a new card and write its image (never over an existing one unless ``--force``)."""
    if out.exists() and not out.is_dir() and not force:
        raise typer.BadParameter(f"{out} exists already (give --force to overwrite it)", param_hint="--out")
    concession_hex = _concession(transit, concession, concession_until)
    limit = _amount(ec_limit, "--ec-limit")
    profile = ProductProfile(
        bin=bin_,
        registered=bool(holder),
        holder_name=holder,
        opening_balance_fen=_amount(ec_balance, "--ec-balance"),
        ec_balance_limit_fen=limit,
        ec_single_limit_fen=_amount(ec_single_limit, "--ec-single-limit") if ec_single_limit else limit,
        contactless=contactless,
        credit=credit,
        dual=dual,
        cda=cda,
        transit=transit,
        concession=concession_hex,
    )
    target = keys_path or settings().home / "demo-keys.json"
    try:
        keys = DemoKeys.load_or_create(target)
    except (OSError, DemoKeyError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise typer.BadParameter(f"{target}: {reason}", param_hint="--keys") from None
    room = profile.pan_length - len(bin_) - 1
    pan_serial = serial if serial >= 0 else secrets.randbelow(10 ** max(room, 1))
    try:
        image = personalise(profile, pan_serial, keys)
    except ProfileError as exc:
        option = _PROFILE_OPTIONS.get(exc.field)
        reason = str(exc).removeprefix(f"{exc.field}: ") if option else str(exc)
        raise typer.BadParameter(reason, param_hint=option) from None
    _save(out, image)
    app0 = image.applications[0]
    pan = cn_digits(app0.data["5A"])
    console.print(f"card {mask_pan(pan)} written to {out} ({app0.label}, demo keys)")


def _concession(transit: bool, category: str, until: str) -> str:
    """The concession record written at issuance (docs/transit.md), hex; empty without a concession."""
    from citycard.transit import Category, Concession

    if not category:
        if until:
            raise typer.BadParameter("give --concession too", param_hint="--concession-until")
        return ""
    if not transit:
        raise typer.BadParameter(
            "a concession is kept in the transit file: give --transit", param_hint="--concession"
        )
    names = [c.name.lower() for c in Category if c is not Category.NONE]
    if category not in names:
        raise typer.BadParameter(f"one of {', '.join(names)}", param_hint="--concession")
    try:
        last = dt.date.fromisoformat(until)
    except ValueError:
        raise typer.BadParameter("a date YYYY-MM-DD", param_hint="--concession-until") from None
    return Concession(Category[category.upper()], last).encode().hex().upper()


_PROFILE_OPTIONS = {
    "bin": "--bin",
    "holder_name": "--holder",
    "opening_balance_fen": "--ec-balance",
    "ec_balance_limit_fen": "--ec-limit",
    "ec_single_limit_fen": "--ec-single-limit",
    "pan_serial": "--serial",
}
"""The ``card new`` option behind each field of the product profile (named in a refusal)."""


def _pan(app: Application) -> str:
    return cn_digits(app.data["5A"])


_LOG_KEYS = {"9A": "date", "9F21": "time", "9F02": "amount_fen", "9F03": "other_amount_fen",
             "9F1A": "country", "5F2A": "currency", "9F4E": "merchant", "9C": "type",
             "9F36": "atc"}  # fmt: skip
_LOG_HEADERS = {"before_fen": "before", "after_fen": "after", "amount_fen": "amount",
                "other_amount_fen": "other", "atc": "ATC"}  # fmt: skip


def _log_value(tag: str, value: bytes) -> Any:
    """A log field as a value: ISO date and time, fen, the transaction type in words, ATC as a number."""
    digits = value.hex()
    if tag == "9A":
        return f"20{digits[:2]}-{digits[2:4]}-{digits[4:6]}"
    if tag == "9F21":
        return f"{digits[:2]}:{digits[2:4]}:{digits[4:6]}"
    if tag in ("9F02", "9F03"):
        return int(digits) if digits.isdigit() else digits.upper()
    if tag == "9F4E":
        return value.decode("ascii", "replace").strip("\x00 ")
    if tag == "9C" and len(value) == 1:
        return transaction_type_name(value[0])
    if tag == "9F36":
        return int.from_bytes(value, "big")
    return digits.upper()


def log_record(fields: Iterable[tuple[str, bytes]]) -> dict[str, Any]:
    """A log record's fields (tag, value) as a dict: ``date``, ``time``, ``amount_fen``, ``type`` in words,
    ``atc``...; a load log's ``BEFORE``/``AFTER`` balances as ``before_fen``/``after_fen``."""
    row: dict[str, Any] = {}
    for tag, value in fields:
        if tag in ("BEFORE", "AFTER"):
            row[f"{tag.lower()}_fen"] = int(value.hex())
        else:
            row[_LOG_KEYS.get(tag, tag)] = _log_value(tag, value)
    return row


def _log_records(records: list[str], fmt: bytes, head: int) -> list[dict[str, Any]]:
    """Log records as dicts; ``head`` bytes precede the format's values (14 in the load log: P1P2, the EC
    balance before and after)."""
    out = []
    for record in records:
        raw = bytes.fromhex(record)
        balances = [("BEFORE", raw[2:8]), ("AFTER", raw[8:14])] if head else []
        out.append(log_record([*balances, *split_dol_data(fmt, raw[head:]).items()]))
    return out


def _log_table(title: str, rows: list[dict[str, Any]], fmt: bytes, head: int) -> Table:
    table = Table(title=title)
    keys = [*(["before_fen", "after_fen"] if head else []), *(_LOG_KEYS.get(t, t) for t, _ in parse_dol(fmt))]
    table.add_column("#", justify="right")
    for key in keys:
        header = _LOG_HEADERS.get(key, key)
        if key.endswith("_fen"):
            amount_column(table, header)
        else:
            table.add_column(header, no_wrap=key in ("date", "time", "type"))
    for i, row in enumerate(rows, start=1):
        cells = [
            yuan(row[k]) if k.endswith("_fen") and isinstance(row[k], int) else str(row[k]) for k in keys
        ]
        table.add_row(str(i), *cells)
    return table


def _cells(image: CardImage, app_: Application) -> dict[str, Any]:
    def cell(name: str) -> int:
        return image.get_int(cell_key(app_.aid, name))

    out: dict[str, Any] = {
        "aid": app_.aid.hex().upper(),
        "label": app_.label,
        "kind": app_.kind,
        "electronic_cash": app_.ec,
        "contactless": app_.contactless,
        "blocked": image.get_bool(cell_key(app_.aid, "blocked")),
        "atc": cell("atc"),
        "last_online_atc": cell("last_online_atc"),
    }
    if app_.ec:
        out["ec_balance_fen"] = cell("ec_balance")
        out["ec_balance_limit_fen"] = cell("ec_limit")
        out["ec_single_limit_fen"] = cell("ec_single_limit")
        out["ec_reset_threshold_fen"] = cell("ec_reset_threshold")
    return out


def _app_table(cells: dict[str, Any]) -> Table:
    table = Table(title=f"application {cells['label']}")
    table.add_column("item")
    table.add_column("value")
    table.add_row("AID", cells["aid"])
    table.add_row("kind", cells["kind"] + (" with electronic cash" if cells["electronic_cash"] else ""))
    table.add_row("contactless", "yes" if cells["contactless"] else "no")
    table.add_row("blocked", "yes" if cells["blocked"] else "no")
    table.add_row("ATC", str(cells["atc"]))
    table.add_row("last online ATC", str(cells["last_online_atc"]))
    if cells["electronic_cash"]:
        table.add_row("EC balance", yuan(cells["ec_balance_fen"]))
        table.add_row("EC balance limit", yuan(cells["ec_balance_limit_fen"]))
        table.add_row("EC single-transaction limit", yuan(cells["ec_single_limit_fen"]))
        table.add_row("EC reset threshold", yuan(cells["ec_reset_threshold_fen"]))
    return table


def _yymmdd(value: bytes) -> str:
    digits = value.hex()
    return f"20{digits[:2]}-{digits[2:4]}-{digits[4:6]}"


def _card_view(image: CardImage, reveal: bool) -> dict[str, Any]:
    """The whole card as plain values (what ``card show --json`` prints)."""
    first = image.applications[0]
    pan = _pan(first)
    holder = first.data.get("5F20")
    applications = []
    for app_ in image.applications:
        cells = _cells(image, app_)
        txn = image.nvm[cell_key(app_.aid, "txn_log")]
        assert isinstance(txn, list)
        cells["transaction_log"] = _log_records(txn, TXN_LOG_FORMAT, 0)
        if app_.ec:
            load = image.nvm[cell_key(app_.aid, "load_log")]
            assert isinstance(load, list)
            cells["load_log"] = _log_records(load, LOAD_LOG_FORMAT, 14)
        applications.append(cells)
    return {
        "pan": pan if reveal else mask_pan(pan),
        "psn": first.data["5F34"].hex(),
        "holder": holder.decode("ascii", "replace") if holder else None,
        "effective": _yymmdd(first.data["5F25"]),
        "expiry": _yymmdd(first.data["5F24"]),
        "card_blocked": image.get_bool("card.blocked"),
        "pin_tries_left": image.get_int("pin.tries"),
        "pin_try_limit": image.pin_try_limit,
        "applications": applications,
    }


@app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="card image (JSON), or the PAN of a card the issuer made")],
    reveal: Annotated[bool, typer.Option("--reveal", help="show the full PAN")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Applications, holder, EC balance and limits, counters, lifecycle and logs."""
    path = card_file(path)
    view = _card_view(_load(path), reveal)
    if as_json:
        print_json(view)
        return
    card = Table(title=f"card {path.name if not is_pan(path.stem) else view['pan']}")
    card.add_column("item")
    card.add_column("value")
    card.add_row("PAN", view["pan"])
    card.add_row("PSN", view["psn"])
    card.add_row("holder", view["holder"] or "(anonymous)")
    card.add_row("valid", f"{view['effective']} to {view['expiry']}")
    card.add_row("card blocked", "yes" if view["card_blocked"] else "no")
    card.add_row("PIN tries left", f"{view['pin_tries_left']} of {view['pin_try_limit']}")
    console.print(card)
    for cells in view["applications"]:
        console.print(_app_table(cells))
    for cells in view["applications"]:
        label = cells["label"]
        title = f"{label}: transaction log (most recent first)"
        console.print(_log_table(title, cells["transaction_log"], TXN_LOG_FORMAT, 0))
        if "load_log" in cells:
            title = f"{label}: load log (most recent first)"
            console.print(_log_table(title, cells["load_log"], LOAD_LOG_FORMAT, 14))


@app.command("apdu")
def apdu(
    path: Annotated[Path, typer.Argument(help="card image (JSON), or the PAN of a card the issuer made")],
    commands: Annotated[list[str], typer.Argument(help="command APDUs in hex")],
    interface: Annotated[str, typer.Option("--interface", help="contact or contactless")] = "contact",
    reveal: Annotated[bool, typer.Option("--reveal", help="show PANs in full")] = False,
) -> None:
    """Power the card on and send APDUs; print each response decoded; save the image after each."""
    if interface not in ("contact", "contactless"):
        raise typer.BadParameter("must be contact or contactless", param_hint="--interface")
    raws: list[bytes] = []
    for number, text in enumerate(commands, start=1):
        try:
            raws.append(bytes.fromhex("".join(text.split())))
        except ValueError:  # not echoed: it may be a VERIFY with a PIN in it
            raise typer.BadParameter(f"command {number} is not hex", param_hint="COMMANDS") from None
    held = hold_card(card_file(path))
    try:
        _apdus(held, raws, interface, reveal)
    finally:
        held.__exit__(None, None, None)


def _apdus(held: CardFile, raws: list[bytes], interface: str, reveal: bool) -> None:
    image = held.image
    card = Card(image, os.urandom)
    atr = card.power_on("contactless" if interface == "contactless" else "contact")
    _save_held(held)
    console.print(f"ATR {atr.hex().upper()}", highlight=False)
    pans = {_pan(app_) for app_ in image.applications}

    def hide(hex_text: str) -> str:
        """The raw hex with the card's PAN digits masked (in 5A, 57 or anywhere else) unless --reveal."""
        for pan in () if reveal else pans:
            hex_text = hex_text.replace(pan, mask_pan(pan))
        return hex_text

    for raw in raws:
        phase = card.phase
        out = card.transmit(raw)
        _save_held(held)
        data, sw = out[:-2], int.from_bytes(out[-2:], "big")
        console.print(f"> {hide(command_hex(raw))}", highlight=False, soft_wrap=True)  # PIN data: never
        console.print(
            f"< {hide(data.hex().upper())} {sw:04X} ({sw_meaning(sw)})", highlight=False, soft_wrap=True
        )
        why = out_of_sequence(raw[1], phase) if sw == SW.CONDITIONS_NOT_SATISFIED and len(raw) > 1 else None
        if why is not None:
            console.print(f"  {why}", highlight=False, markup=False, soft_wrap=True)
        if data:
            console.print(format_tlv(data, rid="A000000333", mask=not reveal), highlight=False, markup=False)
    card.power_off()


def _save_held(held: CardFile) -> None:
    """Save after a command: a file-system failure is one line on stderr and exit status 1 (the command's
    effect is then not on disk: the card is as it was before it)."""
    try:
        held.save()
    except OSError as exc:
        typer.echo(f"error: cannot write card image {held.path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
