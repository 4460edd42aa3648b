"""``citycard settlement run | report``: settle a cleared day; show (or write as CSV) what it settled.

``run --date D`` settles the day clearing finished (``citycard clearing run --date D`` calls the same
:func:`run_settlement` after clearing): ledger postings on each bank's books, merchant payouts (T+1), and
the day's files in ``$CITYCARD_HOME/settlement/YYYYMMDD/`` (docs/settlement.md). A day settled already
posts nothing and its files are written again, byte for byte the same.

``report --date D [--bank CODE] [--merchant ID] [--csv DIR] [--json]``: the net positions, the merchants'
totals and payouts, a bar chart of the discount by industry and the reconciliation (captured vs cleared vs
settled vs paid); ``--csv DIR`` writes that day's files (only the bank's or the merchant's with those
options) into DIR. Bad input is one ``error:`` line, exit status 2, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from citycard.config import settings
from citycard.durable import StagedFolder
from citycard.settlement import (
    CENTER,
    DayRecord,
    FeeSchedule,
    FeeScheduleError,
    SettlementError,
    SettleResult,
    clearing_date,
    parse_schedule,
    settle_day,
)
from citycard.settlement.fees import default_schedule
from citycard.settlement.files import write_day_files
from citycard.settlement.ports import BusinessWindow

from .bank import fail, first_line
from .output import JsonFlag, amount_column, print_json, yuan

if TYPE_CHECKING:
    from citycard.db import Database

__all__ = ["SettledDay", "app", "business_days", "run_settlement", "settlement_folder"]

app = typer.Typer(
    help="Settlement of cleared days: net positions, postings, payouts, files, reports.",
    no_args_is_help=True,
)
console = Console()

DateOpt = Annotated[str, typer.Option("--date", help="the settlement (clearing) date, YYYY-MM-DD")]


def settlement_folder(home: Path, day: str) -> Path:
    """Where a settled day's files are kept: ``HOME/settlement/YYYYMMDD``."""
    return home / "settlement" / day


def business_days() -> BusinessWindow:
    """Each acquiring bank's business day under the configured cut-overs (``CITYCARD_CLEARING_CUTOVER``,
    clearing's calendar), for the reconciliation's captured column."""
    from datetime import date

    from citycard.clearing import business_window, parse_cutovers

    try:
        cutovers = parse_cutovers(settings().clearing_cutover)
    except ValueError as exc:
        raise fail(f"CITYCARD_CLEARING_CUTOVER: {exc}", 2) from None

    def window(day: str, bank: str) -> tuple[int, int]:
        return business_window(date(int(day[:4]), int(day[4:6]), int(day[6:])), cutovers.of(bank))

    return window


def run_settlement(
    database: Database,
    day: str,
    *,
    home: Path,
    schedule: FeeSchedule | None = None,
    progress: Any = None,
    files_progress: Any = None,
) -> SettleResult:
    """Settle ``day`` on ``database`` and write its files under ``home`` (what ``settlement run`` and
    ``clearing run`` do after clearing): staged beside the day's folder and published together."""
    import time

    from citycard.db.settlement_repositories import SettlementUnitOfWork

    day = clearing_date(day)

    def uow() -> SettlementUnitOfWork:
        return database.unit_of_work(SettlementUnitOfWork)

    window = business_days()
    with StagedFolder(settlement_folder(home, day)) as folder:
        return settle_day(
            uow,
            day,
            clock=time.time_ns,
            schedule=schedule,
            sink=folder,
            progress=progress,
            window=window,
            files_progress=files_progress,
        )


class SettledDay:
    """What ``clearing run`` shows of the settlement it ran after clearing."""

    def __init__(self, result: SettleResult, home: Path) -> None:
        self.result = result
        self.folder = settlement_folder(home, result.record.day)

    def as_json(self) -> dict[str, Any]:
        return {**_record_json(self.result.record), "posted": self.result.posted, "folder": str(self.folder)}

    def show(self) -> None:
        _say_settled(self.result, self.folder)


def _say_settled(result: SettleResult, folder: Path) -> None:
    record = result.record
    verb = "settled" if result.posted else "already settled; files written again"
    console.print(
        f"{_dashed(record.day)} {verb}: {record.item_count} items, {record.transfer_count} transfers, "
        f"payouts {yuan(record.payout_total_fen)}; {len(result.files)} files in {folder}",
        highlight=False,
        soft_wrap=True,
    )
    _print_positions(record)


@contextmanager
def _database() -> Iterator[Database]:
    from sqlalchemy.exc import SQLAlchemyError

    from citycard import bootstrap
    from citycard.db import DatabaseUrlError, SchemaRevisionError

    s = settings()
    try:
        database = bootstrap.build_database(s)
    except (DatabaseUrlError, bootstrap.HomeFolderError, SchemaRevisionError) as exc:
        raise fail(str(exc), 2) from None
    except SQLAlchemyError as exc:
        raise fail(f"database {bootstrap.safe_url(s.db_url)}: {first_line(exc)}") from None
    try:
        yield database
    except SQLAlchemyError as exc:
        raise fail(f"database {bootstrap.safe_url(s.db_url)}: {first_line(exc)}") from None
    finally:
        database.close()


def _day(text: str) -> str:
    try:
        return clearing_date(text)
    except SettlementError as exc:
        raise fail(str(exc), 2) from None


def _schedule(path: Path | None) -> FeeSchedule:
    if path is None:
        return default_schedule()
    try:
        return parse_schedule(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"--fees {path}: cannot read it ({exc})", 2) from None
    except FeeScheduleError as exc:
        raise fail(f"--fees {path}: {exc}", 2) from None


def _dashed(day: str) -> str:
    return f"{day[:4]}-{day[4:6]}-{day[6:]}"


@app.command("run")
def run(
    date: DateOpt,
    fees: Annotated[Path | None, typer.Option("--fees", help="a fee schedule (TOML, as fees.toml)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Settle a cleared day: postings, payouts (T+1) and the day's files (again, the same, if settled)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from citycard.db.settlement_repositories import SettlementUnitOfWork

    day = _day(date)
    schedule = _schedule(fees)
    s = settings()
    with _database() as database:
        with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
            total = uow.settlement.item_count(day)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=True, console=console) as bar:
            folding = bar.add_task(f"settling {_dashed(day)}", total=total)
            writing = bar.add_task("writing the files", total=total, visible=False)

            def progress(n: int) -> None:
                bar.update(folding, completed=n)

            def files_progress(n: int) -> None:
                bar.update(folding, completed=total)
                bar.update(writing, completed=n, visible=True)

            try:
                result = run_settlement(
                    database,
                    day,
                    home=s.home,
                    schedule=schedule,
                    progress=progress,
                    files_progress=files_progress,
                )
            except SettlementError as exc:
                raise fail(str(exc), 2 if isinstance(exc, ValueError) else 1) from None
    folder = settlement_folder(s.home, day)
    if as_json:
        print_json(
            {
                **_record_json(result.record),
                "posted": result.posted,
                "folder": str(folder),
                "files": result.files,
            }
        )
        return
    _say_settled(result, folder)


def _record_json(record: DayRecord) -> dict[str, Any]:
    return {
        "date": _dashed(record.day),
        "items": record.item_count,
        "transfers": record.transfer_count,
        "positions": [
            {
                "participant": p.participant,
                "issued_gross_fen": p.issued_gross_fen,
                "issuer_fee_fen": p.issuer_fee_fen,
                "acquired_net_fen": p.acquired_net_fen,
                "acquirer_fee_fen": p.acquirer_fee_fen,
                "network_fee_fen": p.network_fee_fen,
                "net_fen": p.net_fen,
            }
            for p in record.positions
        ],
        "merchants": [
            {
                "bank": m.bank,
                "merchant_id": m.merchant_id,
                "industry": m.industry,
                "items": m.item_count,
                "gross_fen": m.gross_fen,
                "discount_fen": m.discount_fen,
                "net_fen": m.net_fen,
                "payout_fen": m.payout_fen,
                "payout_date": _dashed(m.payout_date),
            }
            for m in record.merchants
        ],
        "industries": [
            {
                "industry": t.key or None,
                "items": t.item_count,
                "gross_fen": t.gross_fen,
                "discount_fen": t.discount_fen,
            }
            for t in record.industries
        ],
        "payout_total_fen": record.payout_total_fen,
    }


def _print_positions(record: DayRecord, *, total: bool = True) -> None:
    table = Table(title=f"net positions {_dashed(record.day)}")
    table.add_column("who", no_wrap=True)
    for header in ("issued", "iss. fee", "merchants", "acq. fee", "network", "net"):
        amount_column(table, header)
    for p in record.positions:
        table.add_row(
            p.participant,
            yuan(p.issued_gross_fen),
            yuan(p.issuer_fee_fen),
            yuan(p.acquired_net_fen),
            yuan(p.acquirer_fee_fen),
            yuan(p.network_fee_fen),
            yuan(p.net_fen),
        )
    if total:
        table.add_row("total", *[""] * 5, yuan(sum(p.net_fen for p in record.positions)))
    console.print(table)


def _print_merchants(record: DayRecord) -> None:
    table = Table(title="merchants")
    table.add_column("bank", no_wrap=True)
    table.add_column("merchant", no_wrap=True, min_width=15)
    table.add_column("industry", no_wrap=True, max_width=11)
    table.add_column("items", justify="right")
    for header in ("gross", "discount", "payout"):
        amount_column(table, header)
    table.add_column("paid on", no_wrap=True)
    for m in record.merchants:
        table.add_row(
            m.bank,
            m.merchant_id,
            m.industry or "-",
            str(m.item_count),
            yuan(m.gross_fen),
            yuan(m.discount_fen),
            yuan(m.payout_fen),
            _dashed(m.payout_date),
        )
    console.print(table)


def _print_lines(lines: list[tuple[int, int, int]]) -> None:
    table = Table("bus line", title="fares by bus line")
    table.add_column("fares", justify="right")
    amount_column(table, "gross")
    for line, count, fen in lines:
        table.add_row(str(line), str(count), yuan(fen))
    console.print(table)


def _print_industries(record: DayRecord) -> None:
    from rich.bar import Bar

    table = Table("industry", title="gross by industry")
    table.add_column("items", justify="right")
    amount_column(table, "gross")
    amount_column(table, "discount")
    table.add_column("share", justify="right")
    table.add_column("", min_width=30)
    total = sum(max(t.gross_fen, 0) for t in record.industries) or 1
    for t in sorted(record.industries, key=lambda t: (-t.gross_fen, t.key)):
        share = max(t.gross_fen, 0)
        table.add_row(
            t.key or "unknown",
            str(t.item_count),
            yuan(t.gross_fen),
            yuan(t.discount_fen),
            f"{share * 100 // total}%",
            Bar(total, 0, share, width=30),
        )
    console.print(table)


@app.command("report")
def report(
    date: DateOpt,
    bank: Annotated[
        str | None, typer.Option("--bank", help="only this bank's position, merchants and file")
    ] = None,
    merchant: Annotated[str | None, typer.Option("--merchant", help="only this merchant (ID)")] = None,
    csv_dir: Annotated[
        Path | None, typer.Option("--csv", help="write the day's CSV files into this folder")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """A settled day: net positions, merchants and payouts, shares by industry, reconciliation."""
    from citycard.db.settlement_repositories import SettlementUnitOfWork

    day = _day(date)
    with _database() as database:
        with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
            record = uow.settlement.load(day)
            status = uow.settlement.clearing_status(day)
        if record is None:
            why = (
                "has not been cleared"
                if status is None
                else "is cleared but not settled: run 'citycard settlement run'"
            )
            raise fail(f"{_dashed(day)} {why}", 2)
        banks = [p.participant for p in record.positions if p.participant != CENTER]
        if bank is not None and bank not in banks:
            raise fail(
                f"--bank {bank!r}: took no part in the settlement of {_dashed(day)} ({', '.join(banks)})", 2
            )
        if merchant is not None and all(m.merchant_id != merchant for m in record.merchants):
            raise fail(f"--merchant {merchant!r}: had nothing settled on {_dashed(day)}", 2)
        if csv_dir is not None and csv_dir.exists() and not csv_dir.is_dir():
            raise fail(f"--csv {csv_dir}: is not a folder", 2)
        window = business_days()
        whole_day = bank is None and merchant is None
        files: list[str] = []
        scoped = record.scoped(bank, merchant)
        with database.unit_of_work(SettlementUnitOfWork, read_only=True) as uow:
            # the report lists every difference (of the day, or of the bank's merchants / the merchant)
            totals, differences = uow.settlement.captured(day, window, bank=bank, merchant=merchant)
            captured: Any = (totals, list(differences))
            if not whole_day:
                scoped = replace(
                    scoped, kinds=uow.settlement.cleared_kinds(day, bank=bank, merchant=merchant)
                )
            if csv_dir is not None:
                with StagedFolder(csv_dir) as stage:
                    files = write_day_files(
                        stage,
                        record,
                        parse_schedule(record.schedule_toml),
                        uow.settlement.items(day, by_merchant=True),
                        captured,
                        bank=bank,
                        merchant=merchant,
                        scoped=None if whole_day else scoped,
                    )
            lines: list[tuple[int, int, int]] = []
            if merchant is not None:  # a bus company: its fares by line (field 63 of the validators' uploads)
                lines = uow.settlement.fares_by_line(day, merchant)
    if as_json:
        body = _record_json(scoped)
        if merchant is not None:
            body["fares_by_line"] = [{"line": n, "fares": c, "gross_fen": f} for n, c, f in lines]
        body["reconciliation"] = _reconciliation_json(captured)
        body["files"] = files
        print_json(body)
        return
    if merchant is None:
        _print_positions(scoped, total=whole_day)
    _print_merchants(scoped)
    if lines:
        _print_lines(lines)
    if merchant is None:
        _print_industries(scoped)
    _print_reconciliation(scoped, captured, scoped=not whole_day)
    if csv_dir is not None:
        console.print(f"{len(files)} files written in {csv_dir}", highlight=False, soft_wrap=True)


def _reconciliation_json(captured: Any) -> dict[str, Any]:
    totals, differences = captured
    return {
        "captured": [
            {
                "source": c.source,
                "bank": c.bank,
                "count": c.count,
                "amount_fen": c.amount_fen,
                "business_day_ns": [c.start_ns, c.end_ns],
            }
            for c in totals
        ],
        "differences": [
            {
                "source": d.source,
                "bank": d.bank,
                "reference": d.reference,
                "amount_fen": d.amount_fen,
                "reason": d.reason,
            }
            for d in differences
        ],
    }


def _print_reconciliation(record: DayRecord, captured: Any, *, scoped: bool = False) -> None:
    """Captured vs cleared vs settled vs paid, of the day or (``scoped``: ``record`` is the scoped one with
    its cleared kinds) of one bank's merchants or one merchant, whose settled gross is theirs."""
    totals, differences = captured
    if scoped:
        gross = sum(m.gross_fen for m in record.merchants)
    else:
        gross = sum(p.issued_gross_fen for p in record.positions)
    discount = sum(m.discount_fen for m in record.merchants)
    table = Table("stage", "what", title="reconciliation")
    table.add_column("count", justify="right")
    amount_column(table, "amount")
    for c in totals:
        table.add_row("captured", f"{c.source} {c.bank or '-'}", str(c.count), yuan(c.amount_fen))
    for k in record.kinds:
        table.add_row("cleared", k.key, str(k.item_count), yuan(k.gross_fen))
    table.add_row("settled", "net of refunds", str(record.item_count), yuan(gross))
    table.add_row("settled", "merchant discount", "", yuan(discount))
    table.add_row(
        "paid",
        "payouts (T+1)",
        str(sum(1 for m in record.merchants if m.payout_fen)),
        yuan(record.payout_total_fen),
    )
    console.print(table)
    if differences:
        diff = Table("source", "bank", "reference", title="captured vs cleared: differences")
        amount_column(diff, "amount")
        diff.add_column("reason")
        for d in differences:
            diff.add_row(d.source, d.bank or "-", d.reference, yuan(d.amount_fen), d.reason)
        console.print(diff)
    for m in record.merchants:
        if m.payout_fen != m.net_fen:
            console.print(
                f"{m.bank}/{m.merchant_id}: net {yuan(m.net_fen)}, paid {yuan(m.payout_fen)} "
                f"(payable {yuan(m.balance_fen)} after the day: earlier balance or carried to the next day)",
                highlight=False,
                soft_wrap=True,
            )
