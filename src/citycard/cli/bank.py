"""``citycard bank``: the issuing banks (their keys in the HSM, their books in the ledger, BINs, products).

Also :func:`open_issuer`, which every issuer command uses: the issuer service that ``citycard.bootstrap``
builds from the settings (the composition root: database, HSM, card folders), with each failure to build it
or to carry out a command as one ``error:`` line and an exit status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from citycard.bootstrap import DirectorySink, HomeFolderError, Issuer, safe_url
from citycard.codec.money import parse_yuan
from citycard.config import settings
from citycard.files import atomic_write
from citycard.hsm.api import HsmError, KeyNotFoundError, KeyStoreError
from citycard.issuer.commands import AddBank, AddBinRange, AddProduct, MalformedRequest
from citycard.issuer.model import AlreadyExists, Bank, BinOverlap, IssuerError, NotFound

from .output import JsonFlag, amount_column, print_json, yuan

if TYPE_CHECKING:  # the storage adapter (SQLAlchemy) is imported only by the commands that open the database
    from sqlalchemy.exc import SQLAlchemyError


__all__ = ["DirectorySink", "Issuer", "app", "fail", "first_line", "open_issuer", "refused", "yuan"]

app = typer.Typer(help="Issuing banks: keys, books, BIN ranges and card products.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal


def fail(message: str, status: int = 1) -> typer.Exit:
    """Print ``error: message`` as one line on stderr; ``raise fail(...)`` ends the command with ``status``:
    2 when the input is refused (malformed, or naming a bank or card that does not exist), 1 when the
    command cannot be carried out (the state of the card or bank forbids it, the database or HSM fails)
    or 2 again for a configuration that cannot be used."""
    errors.print(f"[red]error:[/red] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(status)


def refused(exc: Exception) -> typer.Exit:
    """``fail`` for an exception of the domain, with its status: 2 for bad input (malformed, or naming a bank,
    card or HSM key that does not exist), 1 otherwise."""
    return fail(str(exc), 2 if isinstance(exc, (ValueError, NotFound, KeyNotFoundError)) else 1)


def _say(message: str) -> None:
    """Print a notice of the composition root (a key file or a schema created) on stdout."""
    console.print(message, soft_wrap=True, highlight=False)


@contextmanager
def open_issuer(*, bureau_kek: str | None = None, set_up: bool = False) -> Iterator[Issuer]:
    """The issuer service on the configured database and HSM (``citycard.bootstrap.open_issuer``); every
    refusal and a database that cannot be reached become one ``error:`` line (exit status 1), not a
    traceback; an unusable HSM master key or key block, home folder, database URL or schema revision one
    ``error:`` line with exit status 2. ``set_up`` (``bank add``) may create the default HSM master key."""
    from sqlalchemy.exc import SQLAlchemyError

    from citycard import bootstrap
    from citycard.db import DatabaseUrlError, SchemaRevisionError

    s = settings()  # a SettingsError reaches citycard.cli.main: one line, exit status 2
    try:
        with bootstrap.open_issuer(s, bureau_kek=bureau_kek, create_key=set_up, say=_say) as issuer:
            yield issuer
    except (KeyStoreError, DatabaseUrlError, HomeFolderError) as exc:
        raise fail(str(exc), status=2) from None
    except SchemaRevisionError as exc:
        raise fail(f"database {safe_url(s.db_url)}: {exc}", status=2) from None
    except (IssuerError, MalformedRequest, HsmError) as exc:
        raise refused(exc) from None
    except SQLAlchemyError as exc:
        raise fail(f"database {safe_url(s.db_url)}: {first_line(exc)}") from None


def first_line(exc: SQLAlchemyError) -> str:
    """The driver's own message, first line (without SQLAlchemy's statement dump and link)."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__


@app.command("add")
def add(
    code: Annotated[str, typer.Argument(help="bank code, e.g. ICBC")],
    name: Annotated[str, typer.Option("--name", help="display name")] = "",
    institution: Annotated[
        str | None,
        typer.Option(
            "--institution",
            help="institution id, 8 digits (ISO 8583 field 32); default: the next free of 01000001, ...",
        ),
    ] = None,
    bin_: Annotated[str, typer.Option("--bin", help="BIN (issuer identification number), 6-8 digits")] = "",
    pan_length: Annotated[int, typer.Option(help="PAN length of the BIN range")] = 19,
    products: Annotated[bool, typer.Option(help="also create the products debit-ec and anon-ec")] = True,
    ec_limit: Annotated[
        str, typer.Option(help="EC balance limit (9F77) of the products, yuan, e.g. 1000.00")
    ] = "1000.00",
) -> None:
    """Add a bank: its keys in the HSM, its books in the ledger, a BIN range and the standard products.

    Each step is its own transaction; run again after a failed step (say, a mistyped BIN) and the steps
    already done are kept ("exists already") while the rest is added."""
    try:
        ec_limit_fen = parse_yuan(ec_limit)
    except ValueError as exc:
        raise fail(f"--ec-limit: {exc}", 2) from None
    try:  # every value is checked before anything is added
        bank_cmd = AddBank(code, name or f"{code} city branch", institution)
        bin_cmd = AddBinRange(code, bin_, pan_length) if bin_ else None
        product_cmds = [
            AddProduct(code, product, label, bin_, registered, ec_limit_fen, ec_single_limit_fen=ec_limit_fen)
            for product, label, registered in (_STANDARD_PRODUCTS if bin_cmd and products else ())
        ]
    except MalformedRequest as exc:
        raise fail(str(exc), 2) from None
    with open_issuer(set_up=True) as issuer:
        service = issuer.service
        if bin_cmd is not None:
            _check_bin_is_free(issuer, bin_cmd)  # before the bank is created
        steps: list[tuple[str, Callable[[], object]]] = [
            (f"bank {code}", partial(service.add_bank, bank_cmd))
        ]
        if bin_cmd is not None:
            steps.append((f"BIN {bin_} (PAN length {pan_length})", partial(service.add_bin_range, bin_cmd)))
        steps += [(f"product {p.code}: {p.name}", partial(service.add_product, p)) for p in product_cmds]
        for what, step in steps:
            try:
                done = step()
                if isinstance(done, Bank):
                    what += f" (institution {done.institution_id})"
                console.print(
                    f"added {what}" + ("; its keys generated in the HSM" if what.startswith("bank") else "")
                )
            except AlreadyExists:
                console.print(f"kept {what}: exists already")


_STANDARD_PRODUCTS = (
    ("debit-ec", "Citizen card: debit with electronic cash", True),
    ("anon-ec", "Unregistered electronic cash card", False),
)


def _check_bin_is_free(issuer: Issuer, cmd: AddBinRange) -> None:
    """Refuse a BIN that another bank's range overlaps (``add_bin_range`` checks again as it adds it)."""
    with issuer.unit_of_work(read_only=True) as uow:
        overlap = uow.banks.overlapping_bin(cmd.bin)
    if overlap is not None and overlap.bin == cmd.bin and overlap.bank_code != cmd.bank_code:
        raise BinOverlap(f"BIN {cmd.bin} belongs to bank {overlap.bank_code}")
    if overlap is not None and overlap.bin != cmd.bin:
        raise BinOverlap(f"BIN {cmd.bin} overlaps BIN {overlap.bin} of bank {overlap.bank_code}")


@app.command("list")
def list_banks(as_json: JsonFlag = False) -> None:
    """Banks, their products, BINs and EC balance limits."""
    with open_issuer() as issuer:
        with issuer.unit_of_work(read_only=True) as uow:
            banks = uow.banks.list()
            products = uow.products.list()
        if as_json:
            print_json(
                {
                    "banks": [
                        {
                            "code": bank.code,
                            "name": bank.name,
                            "institution_id": bank.institution_id,
                            "products": [
                                {
                                    "code": p.code,
                                    "name": p.name,
                                    "bin": p.bin,
                                    "registered": p.registered,
                                    "ec_balance_limit_fen": p.ec_balance_limit_fen,
                                    "ec_single_limit_fen": p.ec_single_limit_fen,
                                    "issue_fee_fen": p.issue_fee_fen,
                                    "annual_fee_fen": p.annual_fee_fen,
                                    "validity_years": p.validity_years,
                                }
                                for p in products
                                if p.bank_code == bank.code
                            ],
                        }
                        for bank in banks
                    ]
                }
            )
            return
        table = Table("bank", "name", "institution", "product", "BIN", "registered")
        amount_column(table, "EC limit")
        for bank in banks:
            mine = [p for p in products if p.bank_code == bank.code]
            for p in mine:
                registered = "yes" if p.registered else "no"
                table.add_row(
                    bank.code,
                    bank.name,
                    bank.institution_id,
                    p.code,
                    p.bin,
                    registered,
                    yuan(p.ec_balance_limit_fen),
                )
            if not mine:
                table.add_row(bank.code, bank.name, bank.institution_id, "-", "-", "-", "-")
        console.print(table)


@app.command("keys")
def keys(as_json: JsonFlag = False) -> None:
    """The HSM's keys: label, usage, algorithm, mode, KCV (never the keys)."""
    with open_issuer() as issuer:
        hsm = issuer.service.hsm
        handles = [hsm.get(label) for label in hsm.labels()]
        if as_json:
            rows = [
                {
                    "label": h.label,
                    "usage": h.usage.value,
                    "algorithm": h.algorithm.value,
                    "mode": h.mode,
                    "exportable": h.exportable,
                    "kcv": h.kcv,
                }
                for h in handles
            ]
            print_json({"keys": rows})
            return
        table = Table("label", "usage", "algorithm", "mode", "exportable", "KCV")
        for h in handles:
            table.add_row(
                h.label, h.usage.value, h.algorithm.value, h.mode, "yes" if h.exportable else "no", h.kcv
            )
        console.print(table)


@app.command("import-kek")
def import_kek(
    label: Annotated[str, typer.Argument(help="HSM label, e.g. bureau-kek")],
    component: Annotated[list[str], typer.Option("--component", help="hex AES key component (repeat)")],
) -> None:
    """Enter an AES key-encryption key (K0) as clear components (key ceremony), e.g. a card bureau's."""
    from citycard.hsm.api import Algorithm, KeyUsage

    try:
        parts = [bytes.fromhex(c) for c in component]
    except ValueError:
        raise fail("components must be hexadecimal", 2) from None
    with open_issuer() as issuer:
        handle = issuer.service.hsm.import_components(label, KeyUsage.KEK, parts, algorithm=Algorithm.AES)
        console.print(f"KEK {handle.label} imported, KCV {handle.kcv}")


@app.command("annual-fees")
def annual_fees(
    bank: Annotated[str, typer.Option("--bank")],
    period: Annotated[str, typer.Option("--period", help="e.g. 2026; charged once per card and period")],
) -> None:
    """Charge the products' annual fees to the holders' accounts."""
    from citycard.issuer.commands import ChargeAnnualFees
    from citycard.issuer.model import mask_pan

    with open_issuer() as issuer:
        charged, unpaid = issuer.service.charge_annual_fees(ChargeAnnualFees(bank, period))
        console.print(f"charged {yuan(charged)}; {len(unpaid)} card(s) could not pay")
        for pan in unpaid[:20]:
            console.print(f"  unpaid: {mask_pan(pan)}")


@app.command("expire")
def expire(bank: Annotated[str, typer.Option("--bank")]) -> None:
    """Mark cards past their expiry month as expired (renew them with ``card renew``)."""
    from citycard.issuer.commands import ExpireCards

    with open_issuer() as issuer:
        console.print(f"{len(issuer.service.expire_cards(ExpireCards(bank)))} card(s) expired")


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=1, ensure_ascii=False).encode() + b"\n")
