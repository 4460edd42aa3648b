"""``citycard public``: public services on the card (docs/public-services.md).

- ``public inquire --terminal TID --card PAN``: at a self-service terminal, the holder's card and PIN are
  verified online through the real chain (a 0200 balance inquiry with the PIN block, acquirer → switch →
  issuer), then the service center serves the records of the card's registered holder from its back end;
- ``public seed``: the simulated government back end gives every registered cardholder records;
- ``public apps list|enable|disable``: the industry applications and their state on a card;
- ``public report``: merchants, terminals and volumes by industry and district (also ``merchant report``).

A payment at a public-service counter is ``citycard pos purchase --service-ref HR-… --terminal TID``.
Refusals are one ``error:`` line: exit 2 for input that can never be right or names nothing, 1 for what
the state refuses (a declined PIN, a verification used twice, an application not on the card).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from citycard.bootstrap import HomeFolderError, PublicServices, safe_url
from citycard.codec.pan import mask_pan
from citycard.config import settings
from citycard.pos.terminal import self_service_config
from citycard.public.commands import DisableApplication, EnableApplication, Inquire, SeedRecords
from citycard.public.model import APPLICATIONS, CitizenRecords, MalformedInput, NotFound, PublicError

from .bank import fail, first_line
from .output import JsonFlag, print_json, yuan

__all__ = ["app", "apps_of_card", "industry_report_command", "open_public"]

app = typer.Typer(help="Public services on the card: inquiries, industry applications, industry reports.",
                  no_args_is_help=True)  # fmt: skip
apps_app = typer.Typer(help="Industry applications on cards (transit concession, library, health).",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(apps_app, name="apps")
console = Console()


@contextmanager
def open_public() -> Iterator[PublicServices]:
    """The public services on the configured database; each refusal one ``error:`` line."""
    from sqlalchemy.exc import SQLAlchemyError

    from citycard import bootstrap
    from citycard.db import DatabaseUrlError, SchemaRevisionError

    s = settings()
    try:
        with bootstrap.open_public(s) as public:
            yield public
    except (DatabaseUrlError, HomeFolderError, MalformedInput) as exc:
        raise fail(str(exc), status=2) from None
    except SchemaRevisionError as exc:
        raise fail(f"database {safe_url(s.db_url)}: {exc}", status=2) from None
    except PublicError as exc:
        raise fail(str(exc), status=2 if isinstance(exc, NotFound) else 1) from None
    except SQLAlchemyError as exc:
        raise fail(f"database {safe_url(s.db_url)}: {first_line(exc)}") from None


def _checked(build: Any, *args: Any) -> Any:
    try:
        return build(*args)
    except MalformedInput as exc:
        raise fail(str(exc), status=2) from None


# --- information inquiry --------------------------------------------------------------------------------


@app.command("inquire")
def inquire(
    terminal: Annotated[str, typer.Option("--terminal", help="the self-service terminal (field 41)")],
    card: Annotated[Path, typer.Option("--card", help="emulated card image, or the PAN of an issued card")],
    pin: Annotated[str | None, typer.Option("--pin", help="PIN (else prompted)")] = None,
    journal: Annotated[Path | None, typer.Option("--journal", help="the terminal's journal")] = None,
    acquirer: Annotated[str | None, typer.Option("--acquirer", help="HOST:PORT of the acquirer")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The holder's public-service records: card and PIN verified online by the issuer first."""
    from citycard.cli import pos as pos_cli
    from citycard.public.handlers import inquire as serve

    config = self_service_config(pos_cli._config(None, None))
    with pos_cli._online(config, journal, acquirer, terminal) as (pos, client):
        client.open()
        with pos_cli._transport(card, None, False) as transmit:
            result = pos.balance_inquiry(transmit, pin=pos_cli._pin(pos_cli._pin_option(pin)))
        pos_cli._report_unreachable(client)
    answer = client.answers.get(result.entry.txn_id) if result.entry is not None else None
    if not result.approved or answer is None or not answer.rrn:
        raise fail(f"card not verified: {result.outcome.reason or 'declined'}")
    command = _checked(Inquire, pos_cli._identity(config, terminal)[1].terminal_id, answer.rrn)
    with open_public() as public:
        records = serve(command, public.unit_of_work(), public.clock)
    _show_records(records, as_json)


def _records_json(records: CitizenRecords) -> dict[str, Any]:
    ss, mi = records.social_security, records.medical_insurance
    return {
        "social_security": None
        if ss is None
        else {
            "insured_since": ss.insured_since,
            "contribution_months": ss.contribution_months,
            "last_paid": ss.last_paid,
            "base_fen": ss.base_fen,
        },
        "medical_insurance": None
        if mi is None
        else {
            "scheme": mi.scheme,
            "account_balance_fen": mi.account_balance_fen,
            "spent_this_year_fen": mi.spent_this_year_fen,
        },
        "library_loans": [{"title": x.title, "borrowed": x.borrowed, "due": x.due} for x in records.loans],
    }


def _show_records(records: CitizenRecords, as_json: bool) -> None:
    if as_json:
        print_json(_records_json(records))
        return
    ss, mi = records.social_security, records.medical_insurance
    if ss is None and mi is None and not records.loans:
        console.print("no public-service records for this holder (citycard public seed)", highlight=False)
        return
    table = Table("record", "value", title="public-service records")
    if ss is not None:
        table.add_row("social security: insured since", ss.insured_since)
        table.add_row("social security: contribution months", str(ss.contribution_months))
        table.add_row("social security: last month paid", ss.last_paid)
        table.add_row("social security: contribution base", yuan(ss.base_fen))
    if mi is not None:
        table.add_row("medical insurance: scheme", mi.scheme)
        table.add_row("medical insurance: account balance", yuan(mi.account_balance_fen))
        table.add_row("medical insurance: spent this year", yuan(mi.spent_this_year_fen))
    for loan in records.loans:
        table.add_row("library loan", f"{loan.title} (due {loan.due})")
    console.print(table)


@app.command("seed")
def seed(
    seed_value: Annotated[int, typer.Option("--seed", min=0, help="the back end's seed (replayable)")] = 1,
) -> None:
    """The simulated government back end: records for every registered cardholder that has none."""
    from citycard.public.handlers import seed_records, today

    with open_public() as public:
        command = _checked(SeedRecords, seed_value, today(public.clock))
        done = seed_records(command, public.unit_of_work(), public.clock)
    console.print(f"records seeded for {done} citizens", highlight=False)


# --- industry applications ------------------------------------------------------------------------------


@apps_app.command("list")
def apps_list(
    card: Annotated[str | None, typer.Option("--card", help="PAN: the applications on this card")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The applications that may be put on a card and the data each keeps; with --card, their state."""
    if card is None:
        if as_json:
            print_json(
                {
                    code: {"name": a.name, "provider": a.provider, "fields": list(a.field_names())}
                    for code, a in APPLICATIONS.items()
                }
            )
            return
        table = Table("application", "name", "provider", "data kept", title="industry applications")
        for code, a in APPLICATIONS.items():
            table.add_row(code, a.name, a.provider, ", ".join(f"{f.name} ({f.meaning})" for f in a.fields))
        console.print(table)
        return
    with open_public() as public:
        states = apps_of_card(public, _checked(_pan, card))
    if as_json:
        print_json(states)
        return
    table = Table(
        "application", "state", "on the chip", "data", title=f"applications on card {mask_pan(card)}"
    )
    for code, state in states.items():
        data = ", ".join(f"{k}={v}" for k, v in state["data"].items())
        table.add_row(code, state["status"], state.get("chip", "-"), data)
    console.print(table)


def _pan(text: str) -> str:
    from citycard.public.model import check_pan

    return check_pan(text, "--card")


def apps_of_card(public: PublicServices, pan: str) -> dict[str, dict[str, Any]]:
    """Each application's state on the card (``not enabled`` for those never put on it)."""
    from citycard.public.handlers import applications_of

    found = applications_of(pan, public.unit_of_work(read_only=True))
    return {
        code: {"status": app.status.value, "data": dict(app.data), "chip": app.chip}
        if app is not None
        else {"status": "not enabled", "data": {}}
        for code, app in found.items()
    }


def _data(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise fail(f"--data: {item!r} is not NAME=VALUE", 2)
        out[name] = value
    return out


@apps_app.command("enable")
def apps_enable(
    card: Annotated[str, typer.Option("--card", help="PAN")],
    application: Annotated[str, typer.Option("--app", help=f"one of {', '.join(APPLICATIONS)}")],
    data: Annotated[list[str] | None, typer.Option("--data", help="NAME=VALUE, one per datum kept")] = None,
) -> None:
    """Put an application on a card with its data (the service center's operator)."""
    from citycard.public.handlers import enable_application

    command = _checked(EnableApplication, card, application, _data(data or []))
    with open_public() as public:
        enable_application(command, public.unit_of_work(), public.clock)
    console.print(f"{application} enabled on card {mask_pan(card)}", highlight=False)


@apps_app.command("disable")
def apps_disable(
    card: Annotated[str, typer.Option("--card", help="PAN")],
    application: Annotated[str, typer.Option("--app", help=f"one of {', '.join(APPLICATIONS)}")],
) -> None:
    """Take an application off a card (its data is kept, for enabling it again)."""
    from citycard.public.handlers import disable_application

    command = _checked(DisableApplication, card, application)
    with open_public() as public:
        disable_application(command, public.unit_of_work(), public.clock)
    console.print(f"{application} disabled on card {mask_pan(card)}", highlight=False)


# --- industry report ------------------------------------------------------------------------------------


@app.command("report")
def report(as_json: JsonFlag = False) -> None:
    """Merchants, terminals and volumes by industry and district/county, with a bar chart."""
    industry_report_command(as_json)


_BAR = 16


def industry_report_command(as_json: bool) -> None:
    from citycard.db.public_repositories import industry_report

    with open_public() as public, public.unit_of_work(read_only=True) as uow:
        rows = industry_report(uow.session)
    if as_json:
        print_json(
            [
                {
                    "industry": r.industry,
                    "district": r.district,
                    "merchants": r.merchants,
                    "terminals": r.terminals,
                    "transactions": r.transactions,
                    "volume_fen": r.volume_fen,
                }
                for r in rows
            ]
        )
        return
    from rich.bar import Bar
    from rich.text import Text

    top = max((r.volume_fen for r in rows), default=0) or 1
    table = Table("industry", "district", "merch.", "term.", "txns", title="industries by district/county")
    table.add_column("volume (CNY)", justify="right", no_wrap=True)
    table.add_column("", width=_BAR)
    for r in rows:
        bar = Bar(size=top, begin=0, end=max(r.volume_fen, 0), width=_BAR)
        table.add_row(
            Text(r.industry or "(none)", no_wrap=True),
            r.district or "-",
            str(r.merchants),
            str(r.terminals),
            str(r.transactions),
            yuan(r.volume_fen),
            bar,
        )
    console.print(table)
