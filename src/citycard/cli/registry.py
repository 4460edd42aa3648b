"""``citycard merchant`` and ``citycard terminal``: the service center's registry of merchants (field 42) and
terminals (field 41), see docs/registry.md.

The registry is built by ``citycard.bootstrap.open_center`` from the settings; every refusal is one
``error:`` line (:func:`open_center` here): exit status 2 for input that can never be right or names what
does not exist (a malformed ID, an unknown bank or merchant), 1 for what the registry's state refuses (an ID
registered already, a closed merchant or terminal) or a database that fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from citycard.bootstrap import Center, HomeFolderError, safe_url, terminal_home
from citycard.center.commands import AddMerchant, AddTerminal, CloseMerchant, CloseTerminal
from citycard.center.model import CenterError, Industry, MalformedCommand, NotFound, TerminalKind
from citycard.center.ports import MerchantQuery
from citycard.config import settings
from citycard.hsm.api import HsmError, KeyStoreError

from .bank import fail, first_line
from .output import JsonFlag, print_json

__all__ = ["merchant_app", "open_center", "terminal_app"]

merchant_app = typer.Typer(help="Merchants accepting the card (field 42) and their acquiring banks.",
                           no_args_is_help=True)  # fmt: skip
terminal_app = typer.Typer(help="POS terminals and validators (field 41) and their master keys.",
                           no_args_is_help=True)  # fmt: skip
console = Console()
T = TypeVar("T")


def _say(message: str) -> None:
    console.print(message, soft_wrap=True, highlight=False)


@contextmanager
def open_center(*, with_hsm: bool = False) -> Iterator[Center]:
    """The registry on the configured database (and the platform HSM for ``terminal add``); each refusal
    one ``error:`` line with its exit status (module docstring)."""
    from sqlalchemy.exc import SQLAlchemyError

    from citycard import bootstrap
    from citycard.db import DatabaseUrlError, SchemaRevisionError

    s = settings()
    try:
        with bootstrap.open_center(s, with_hsm=with_hsm, say=_say) as center:
            yield center
    except (KeyStoreError, DatabaseUrlError, HomeFolderError, MalformedCommand) as exc:
        raise fail(str(exc), status=2) from None
    except SchemaRevisionError as exc:
        raise fail(f"database {safe_url(s.db_url)}: {exc}", status=2) from None
    except (CenterError, HsmError) as exc:
        raise fail(str(exc), status=2 if isinstance(exc, NotFound) else 1) from None
    except SQLAlchemyError as exc:
        raise fail(f"database {safe_url(s.db_url)}: {first_line(exc)}") from None


def _industry(value: str | None, option: str = "--industry") -> Industry | None:
    if value is None:
        return None
    try:
        return Industry(value)
    except ValueError:
        names = ", ".join(i.value for i in Industry)
        raise fail(f"{option}: {value!r} is not one of {names}", 2) from None


def _checked(build: type[T], *args: object) -> T:
    try:
        return build(*args)
    except MalformedCommand as exc:
        raise fail(str(exc), 2) from None


def _time(ns: int) -> str:
    from citycard.center.views import registered_time

    return registered_time(ns) or "-"


# --- merchants -------------------------------------------------------------------------------------------
@merchant_app.command("add")
def merchant_add(
    merchant_id: Annotated[str, typer.Argument(help="merchant ID, field 42: 15 characters 0-9 A-Z")],
    name: Annotated[str, typer.Option("--name", help="name, 1-40 characters")],
    mcc: Annotated[str, typer.Option("--mcc", help="merchant category code (ISO 18245), 4 digits")],
    district: Annotated[str, typer.Option("--district", help="district or county")],
    bank: Annotated[str, typer.Option("--bank", help="acquiring bank code (citycard bank list)")],
    industry: Annotated[
        str | None,
        typer.Option("--industry", help="one of the ten industries; default: the one the MCC's group names"),
    ] = None,
) -> None:
    """Register a merchant with its acquiring bank."""
    cmd = _checked(AddMerchant, merchant_id, name, mcc, district, bank, _industry(industry))
    with open_center() as center:
        merchant = center.handle(cmd)
    industry_name = merchant.industry.value if merchant.industry else "-"
    console.print(
        f"added merchant {merchant.merchant_id} ({merchant.name}, {industry_name}, {merchant.district}), "
        f"acquired by {merchant.bank_code}",
        soft_wrap=True,
        highlight=False,
    )


@merchant_app.command("list")
def merchant_list(
    bank: Annotated[str | None, typer.Option("--bank", help="only this acquiring bank's")] = None,
    industry: Annotated[str | None, typer.Option("--industry", help="only this industry's")] = None,
    district: Annotated[
        str | None, typer.Option("--district", help="only this district's or county's")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Merchants in ID order (closed ones too)."""
    from citycard.center.views import list_merchants, merchant_json

    query = MerchantQuery(bank, _industry(industry), district)
    with open_center() as center:
        merchants = list_merchants(center.unit_of_work(read_only=True), query)
    if as_json:
        print_json({"merchants": [merchant_json(m) for m in merchants]})
        return
    table = Table("merchant", "name", "MCC", "industry", "district", "bank", "status", "created")
    for m in merchants:
        industry_name = m.industry.value if m.industry else "-"
        table.add_row(m.merchant_id, m.name, m.mcc, industry_name, m.district or "-", m.bank_code or "-",
                      m.status.value, _time(m.created_ns))  # fmt: skip
    console.print(table)


@merchant_app.command("close")
def merchant_close(
    merchant_id: Annotated[str, typer.Argument(help="merchant ID (field 42)")],
) -> None:
    """Close a merchant and its terminals (final: the ID is never given again)."""
    cmd = _checked(CloseMerchant, merchant_id)
    with open_center() as center:
        merchant, count = center.handle(cmd)
    console.print(f"closed merchant {merchant.merchant_id} and {count} terminal(s) of it", highlight=False)


# --- terminals -------------------------------------------------------------------------------------------
@terminal_app.command("add")
def terminal_add(
    terminal_id: Annotated[str, typer.Argument(help="terminal ID, field 41: 8 characters 0-9 A-Z")],
    merchant: Annotated[str, typer.Option("--merchant", help="merchant ID (field 42) it belongs to")],
    kind: Annotated[str, typer.Option("--kind", help="pos or validator")] = "pos",
    line: Annotated[
        int | None, typer.Option("--line", help="a validator: the bus line it runs (the fare table's id)")
    ] = None,
    vehicle: Annotated[
        str | None, typer.Option("--vehicle", help="a validator: its bus (1-16 characters 0-9 A-Z -)")
    ] = None,
) -> None:
    """Register a terminal and inject its master key (TMK) into the platform HSM and the terminal's own
    key store (the demo's key injection, docs/registry.md); print the TMK's check value. A validator is
    registered with its bus line and vehicle (--line, --vehicle), which it reads from here."""
    try:
        terminal_kind = TerminalKind(kind)
    except ValueError:
        raise fail(f"--kind: {kind!r} is not pos or validator", 2) from None
    if terminal_kind is TerminalKind.VALIDATOR and (line is None or vehicle is None):
        raise fail("a validator needs its bus line and vehicle: --line N --vehicle ID", 2)
    cmd = _checked(AddTerminal, terminal_id, merchant, terminal_kind, line, vehicle or "")
    with open_center(with_hsm=True) as center:
        terminal = center.handle(cmd)
        store = terminal_home(center.settings, terminal.terminal_id) / "keys"
    bus = f" on line {terminal.line}, vehicle {terminal.vehicle}" if terminal.line is not None else ""
    what = f"{terminal.kind.value} terminal {terminal.terminal_id} of merchant {terminal.merchant_id}{bus}"
    console.print(
        f"added {what}; TMK KCV {terminal.tmk_kcv}; its key store: {store}",
        soft_wrap=True,
        highlight=False,
    )


@terminal_app.command("list")
def terminal_list(
    merchant: Annotated[str | None, typer.Option("--merchant", help="only this merchant's")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Terminals in ID order (closed ones too), with their TMK check values."""
    from citycard.center.views import list_terminals, terminal_json

    with open_center() as center:
        terminals = list_terminals(center.unit_of_work(read_only=True), merchant)
    if as_json:
        print_json({"terminals": [terminal_json(t) for t in terminals]})
        return
    table = Table("terminal", "merchant", "kind", "line", "vehicle", "status", "TMK KCV", "created")
    for t in terminals:
        line = "-" if t.line is None else str(t.line)
        table.add_row(t.terminal_id, t.merchant_id, t.kind.value, line, t.vehicle or "-", t.status.value,
                      t.tmk_kcv or "-", _time(t.created_ns))  # fmt: skip
    console.print(table)


@terminal_app.command("close")
def terminal_close(
    terminal_id: Annotated[str, typer.Argument(help="terminal ID (field 41)")],
) -> None:
    """Close a terminal: its messages are declined (58) from now on (final)."""
    cmd = _checked(CloseTerminal, terminal_id)
    with open_center() as center:
        terminal = center.handle(cmd)
    console.print(f"closed terminal {terminal.terminal_id}", highlight=False)


@merchant_app.command("report")
def merchant_report(as_json: JsonFlag = False) -> None:
    """Merchants, terminals and volumes by industry and district/county (``citycard public report``)."""
    from .public import industry_report_command

    industry_report_command(as_json)
