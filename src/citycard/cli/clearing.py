"""``citycard clearing run | import | exceptions``: the end of the business day (docs/clearing.md).

``clearing run --date D`` clears day D (the online records of the issuers, the offline TCs of the uploads
and of the journal exports given with ``--import DIR``), prints a summary table (``--json``: one document),
and is idempotent: run again, it changes nothing and prints the same. ``clearing exceptions`` lists the
queue; ``--resolve ID --action accept|reject|chargeback`` works one exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from citycard.clearing import ClearingPolicy, ExceptionAction, LostLiability, parse_cutovers
from citycard.config import SettingsError, settings

from .bank import fail, open_issuer
from .output import JsonFlag, amount_column, print_json, yuan

__all__ = ["app"]

app = typer.Typer(
    help="Clearing: the end of the business day, and its exception queue.", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)

DateOpt = Annotated[str, typer.Option("--date", help="the business day YYYY-MM-DD (Beijing)")]


def _date(text: str, option: str = "--date") -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date YYYY-MM-DD", param_hint=option) from None


def policy() -> ClearingPolicy:
    s = settings()
    try:
        cutovers = parse_cutovers(s.clearing_cutover)
    except ValueError as exc:
        raise SettingsError(f"CITYCARD_CLEARING_CUTOVER: {exc}") from None
    return ClearingPolicy(cutovers, s.clearing_late_days, LostLiability(s.clearing_lost_liability))


@contextmanager
def open_clearing(workers: int = 1) -> Iterator[Any]:
    """The clearing engine on the configured database and HSM (errors as ``cli.bank.open_issuer``)."""
    from citycard.db.clearing_repositories import ClearingEngine

    rules = policy()
    with open_issuer() as issuer:
        yield ClearingEngine(
            issuer.database,
            issuer.hsm,
            rules,
            record_offline_clearing=issuer.service.record_offline_clearing,
            workers=workers,
        )


@app.command("run")
def run(
    day: DateOpt,
    import_dir: Annotated[
        Path | None, typer.Option("--import", help="also take the journal exports in this folder")
    ] = None,
    as_json: JsonFlag = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=16,
            help="processes deciding the offline records, each its share of the cards (PostgreSQL)",
        ),
    ] = 1,
) -> None:
    """Clear the day: online authorizations, offline TCs (verified in the HSM), the exception queue."""
    from citycard.db.clearing_repositories import ClearingInputError, ClearingWorkerError

    when = _date(day)
    if import_dir is not None and not import_dir.is_dir():
        raise typer.BadParameter(f"{import_dir} is not a folder", param_hint="--import")
    with open_clearing(workers) as engine:
        if import_dir is not None:
            try:
                engine.import_journal(import_dir, when)
            except ClearingInputError as exc:
                raise fail(str(exc), 2) from None
        columns = (TextColumn("clearing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=errors, disable=as_json, transient=True) as bar:
            task = bar.add_task("clear", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            try:
                summary = engine.run(when, progress=advance)
            except ClearingWorkerError as exc:
                raise fail(str(exc), 1) from None
        settled = _settle(engine.database, summary.status, when)
    if as_json:
        print_json({**summary.as_json(), "settlement": settled and settled.as_json()})
        return
    _show(summary)
    if settled is not None:
        settled.show()


def _settle(database: Any, status: str, when: date) -> Any:
    """Settlement of the day once it is cleared (``citycard.settlement.settle_day``): postings, payouts and
    the day's files; again (the same files, nothing posted) when it was settled before."""
    from citycard.settlement import SettlementError

    from .settlement import SettledDay, run_settlement

    if status not in ("cleared", "settled"):
        return None
    try:
        result = run_settlement(database, when.strftime("%Y%m%d"), home=settings().home)
    except SettlementError as exc:
        raise fail(str(exc), 2 if isinstance(exc, ValueError) else 1) from None
    return SettledDay(result, settings().home)


@app.command("import")
def import_(
    directory: Annotated[Path, typer.Argument(help="a folder of journal exports (pos journal --export)")],
    day: DateOpt,
) -> None:
    """Stage the offline transactions of terminal journal exports for the day's clearing."""
    from citycard.db.clearing_repositories import ClearingInputError

    when = _date(day)
    if not directory.is_dir():
        raise typer.BadParameter(f"{directory} is not a folder", param_hint="DIRECTORY")
    with open_clearing() as engine:
        try:
            count = engine.import_journal(directory, when)
        except ClearingInputError as exc:
            raise fail(str(exc), 2) from None
    console.print(f"{count} journal record(s) staged for {when:%Y-%m-%d}")


@app.command("exceptions")
def exceptions(
    status: Annotated[
        str | None, typer.Option("--status", help="open, reported, accepted, rejected, chargeback, reversed")
    ] = None,
    day: Annotated[str | None, typer.Option("--date", help="opened on this business day")] = None,
    resolve: Annotated[int | None, typer.Option("--resolve", help="the exception to work")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="accept, reject or chargeback (with --resolve)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The exception queue; ``--resolve ID --action ...`` works one."""
    from citycard.db.clearing_repositories import ExceptionNotFound, ExceptionStateError

    statuses = ("open", "reported", "accepted", "rejected", "chargeback", "reversed")
    if status is not None and status not in statuses:
        raise typer.BadParameter(f"{status!r}: one of {', '.join(statuses)}", param_hint="--status")
    when = _date(day) if day is not None else None
    if (resolve is None) != (action is None):
        raise typer.BadParameter("--resolve and --action go together", param_hint="--action")
    chosen = None
    if action is not None:
        try:
            chosen = ExceptionAction(action)
        except ValueError:
            raise typer.BadParameter(
                f"{action!r}: accept, reject or chargeback", param_hint="--action"
            ) from None
    with open_clearing() as engine:
        if resolve is not None and chosen is not None:
            try:
                row = engine.resolve(resolve, chosen)
            except ExceptionNotFound as exc:
                raise fail(str(exc), 2) from None
            except ExceptionStateError as exc:
                raise fail(str(exc), 1) from None
            if as_json:
                print_json(row)
            else:
                console.print(
                    f"exception {row['id']} ({row['reason']}) is {row['status']}"
                    + (": an item of the next clearing run" if row["pending_item"] else "")
                )
            return
        rows = engine.exceptions(status=status, day=when)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} clearing exception(s)")
    for header in ("id", "opened", "reason", "status", "card", "ATC", "terminal"):
        table.add_column(header)
    amount_column(table, "amount")
    table.add_column("detail")
    for r in rows:
        table.add_row(
            str(r["id"]), r["opened_date"], r["reason"], r["status"], r["pan_masked"],
            "" if r["atc"] is None else str(r["atc"]), r["terminal_id"], yuan(r["amount_fen"]), r["detail"],
        )  # fmt: skip
    console.print(table)


def _show(summary: Any) -> None:
    table = Table(title=f"clearing of {summary.day}: {summary.status}")
    table.add_column("kind")
    table.add_column("items", justify="right")
    amount_column(table, "net amount")
    for kind, (count, amount) in sorted(summary.by_kind.items()):
        table.add_row(kind, str(count), yuan(amount))
    table.add_row("online", str(summary.online_count), yuan(summary.online_fen), style="bold")
    table.add_row("offline", str(summary.offline_count), yuan(summary.offline_fen), style="bold")
    table.add_row("returns", str(summary.returns_count), yuan(-summary.returns_fen), style="bold")
    console.print(table)
    if summary.exceptions:
        listed = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.exceptions.items()))
        console.print(f"exceptions opened: {listed} (citycard clearing exceptions)")
