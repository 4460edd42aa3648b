"""``citycard card issue --bank B --product P --csv holders.csv``: registered cards in bulk from a CSV file.

The file is UTF-8 (a byte-order mark is allowed), comma-separated, with a header row naming its columns:

=============  ========  =========================================================================
column         required  meaning
=============  ========  =========================================================================
``holder``     yes       the holder's name, 1-64 characters (embossed in ASCII, kept in full)
``id_number``  yes       the 18-character resident ID number (GB 11643-1999; stored only as HMAC)
``phone``      no        the holder's phone number
=============  ========  =========================================================================

Other columns are ignored. At most :data:`MAX_ROWS` rows.

**A bad row does not stop the others.** Every row is checked first (holder, ID number, an ID number given
twice in the file); then each good row is issued in a transaction of its own, with the progress bar of bulk
issuance. A row the bank refuses (the citizen has a live card of the product already, a phone the bank does
not accept, ...) is rejected too, and the cards already issued stay. Rejected rows are printed (row number
as in a spreadsheet, header = row 1, and the reason; ID numbers masked) and written, with their original
columns so that they can be corrected and run again, to the rejects file (``<CSV>.rejects.csv`` unless
``--rejects``; mode 0600, since it holds ID numbers as the input did). A file that cannot be read, without
the required columns, or naming no bank or product that exists, stops everything before any card is issued.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from citycard.bootstrap import Issuer
from citycard.durable import atomic_write
from citycard.issuer import commands as c
from citycard.issuer.model import Card, IssuerError, validate_id_number

from .bank import fail
from .card_issuer import show_cards

__all__ = ["MAX_ROWS", "Rejected", "issue_from_csv", "read_holders"]

MAX_ROWS = 100_000
REQUIRED = ("holder", "id_number")


@dataclass(frozen=True, slots=True)
class Row:
    number: int  # the file's line, as a spreadsheet numbers its rows: the header is row 1
    holder: str
    id_number: str
    phone: str
    original: dict[str, str]


@dataclass(frozen=True, slots=True)
class Rejected:
    row: Row
    reason: str


def read_holders(path: Path) -> tuple[list[str], list[Row], list[Rejected]]:
    """The file's columns, its good rows and its rejected rows; raises ``ValueError`` for a file that
    cannot be used at all (unreadable, not UTF-8, no header with ``holder`` and ``id_number``, too long)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise ValueError(
            f"{path}: the header row must name the columns {', '.join(REQUIRED)} (missing {missing[0]})"
        )
    reader.fieldnames = columns
    good: list[Row] = []
    rejected: list[Rejected] = []
    seen: dict[str, int] = {}
    for record in reader:
        row_number = reader.line_num  # the file's line: a spreadsheet's row number (header = row 1)
        if len(good) + len(rejected) >= MAX_ROWS:
            raise ValueError(f"{path}: more than {MAX_ROWS} rows; split the file")
        original = {k: (v if isinstance(v, str) else "") for k, v in record.items() if k is not None}
        if not any(value.strip() for value in original.values()):
            continue  # a blank line
        row = Row(
            row_number,
            original.get("holder", "").strip(),
            original.get("id_number", "").strip().upper(),
            original.get("phone", "").strip(),
            original,
        )
        reason = _check(row, seen)
        if reason is None:
            seen[row.id_number] = row.number
            good.append(row)
        else:
            rejected.append(Rejected(row, reason))
    return columns, good, rejected


def _check(row: Row, seen: dict[str, int]) -> str | None:
    if not 1 <= len(row.holder) <= 64:
        return "holder: the name is 1-64 characters"
    try:
        validate_id_number(row.id_number, today=date.today())  # the bank checks again with its clock
    except IssuerError as exc:
        return f"id_number: {exc}"
    if row.id_number in seen:
        return f"id_number: the same ID number as row {seen[row.id_number]}"
    return None


def _masked_id(id_number: str) -> str:
    return "****" + id_number[-4:] if len(id_number) >= 4 else "****"


def issue_from_csv(
    issuer: Issuer,
    console: Console,
    bank: str,
    product: str,
    path: Path,
    rejects_path: Path | None,
    activate_now: bool,
    reveal: bool,
) -> list[Card]:
    """Issue a card for each good row; report and write the rejected ones. Returns the cards issued."""
    try:
        columns, rows, rejected = read_holders(path)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    with issuer.unit_of_work(read_only=True) as uow:
        known_bank = uow.banks.get(bank) is not None
        found = uow.products.get(bank, product)
    if not known_bank:
        raise fail(f"no bank {bank}", 2)
    if found is None:
        raise fail(f"no product {product} at {bank}", 2)
    if not found.registered:
        raise fail(f"product {product} is unregistered: a CSV of holders needs a registered product", 2)
    cards: list[Card] = []
    columns_ = (TextColumn("issuing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns_, console=console, disable=len(rows) < 5) as progress:
        task = progress.add_task("issue", total=len(rows))
        for row in rows:
            try:
                command = c.IssueCards(bank, product, 1, row.holder, row.id_number, row.phone)
                (card,) = issuer.service.issue_cards(command)
                if activate_now:
                    card = issuer.service.activate(c.ActivateCard(card.pan))
                cards.append(card)
            except (IssuerError, c.MalformedRequest) as exc:
                rejected.append(Rejected(row, str(exc)))
            progress.advance(task)
    rejected.sort(key=lambda r: r.row.number)
    _report(console, cards, rejected, reveal, bank, path, rejects_path, columns)
    return cards


def _report(
    console: Console,
    cards: list[Card],
    rejected: list[Rejected],
    reveal: bool,
    bank: str,
    path: Path,
    rejects_path: Path | None,
    columns: list[str],
) -> None:
    if cards:
        show_cards(cards, reveal, f"{len(cards)} card(s) issued by {bank} from {path.name}")
    else:
        console.print(f"no card issued from {path}")
    if not rejected:
        console.print("no row rejected")
        return
    table = Table("row", "holder", "ID", "reason", title=f"{len(rejected)} row(s) rejected")
    for r in rejected[:50]:
        table.add_row(str(r.row.number), r.row.holder, _masked_id(r.row.id_number), r.reason)
    console.print(table)
    if len(rejected) > 50:
        console.print(f"… and {len(rejected) - 50} more")
    out = rejects_path or path.with_name(path.stem + ".rejects.csv")
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(["row", "reason", *columns])
    for r in rejected:
        writer.writerow([r.row.number, r.reason, *(r.row.original.get(name, "") for name in columns)])
    try:
        atomic_write(out, buffer.getvalue().encode("utf-8"))
    except OSError as exc:
        raise fail(f"cannot write the rejected rows to {out}: {exc.strerror or exc}") from None
    console.print(f"rejected rows written to {out}", highlight=False, soft_wrap=True)
