"""The settled day's files (CSV, UTF-8, ``\\n`` line ends, amounts in integer fen, PANs masked).

Every file is a function of the day's record and items alone (no clock, no host name), so writing them
again gives the same bytes. Layouts (docs/settlement.md, "Files"): every row starts with a record type,
``H`` header, ``D`` detail, ``T`` total, ``P`` payout.

- ``positions.csv``: each participant's net position (the banks, then ``CENTER``), and their total (zero);
- ``bank-CODE.csv``: the bank's clearing file: each item it took part in, as issuer (``I``), acquirer
  (``A``) or both (``IA``) — for an EC load from another account, the EC card's bank (``I``) and the bank
  of the account that paid (``P``) — with its fees and the item's effect on the bank's position, then its
  position;
- ``merchant-ID.csv``: the merchant's statement: each item with its discount and net, the day's totals and
  the payout (T+1);
- ``industries.csv``: items, gross and discount by industry;
- ``reconciliation.csv``: captured vs cleared vs settled vs paid, each difference with its reason;
- ``MANIFEST``: the SHA-256 of every other file (``sha256sum -c`` reads it), written last.

Streaming: the items come once, in (acquiring bank, merchant, id) order, from one query; each row goes to
its merchant's statement (one open at a time) and to the clearing file of each bank it concerns (one open
per bank), in writes of :data:`FLUSH_BYTES`; nothing of a file is held but its buffer. The sink publishes
the files together when all are written (``citycard.durable.StagedFolder``).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import lru_cache
from itertools import groupby
from typing import BinaryIO

from citycard.codec.pan import mask_pan

from .fees import FeeSchedule, ItemFees
from .model import CENTER, ClearedItem, Position
from .ports import CapturedDifference, CapturedTotals, DayRecord, FileSink, MerchantRow

__all__ = ["FLUSH_BYTES", "business_day", "iso_ns", "masked", "write_day_files"]

FLUSH_BYTES = 1 << 16
"""A file's rows are handed to the sink in writes of about this size."""
PROGRESS_EVERY = 10_000

Captured = tuple[list[CapturedTotals], Iterable[CapturedDifference]]
ITEM_HEADER = [
    "item_id",
    "source",
    "source_ref",
    "kind",
    "sign",
    "txn_time_utc",
    "terminal_id",
    "pan",
    "rrn",
    "issuer_bank",
    "acquirer_bank",
    "merchant_id",
    "mcc",
    "industry",
    "amount_fen",
    "discount_fen",
    "issuer_fee_fen",
    "network_fee_fen",
    "acquirer_fee_fen",
]


def iso_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC with milliseconds (integer arithmetic, no float)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    return _iso_seconds(seconds) + f".{rest // 1_000_000:03d}Z"


@lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    """A day's items come a hundred a second or more: each second formatted once."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def business_day(c: CapturedTotals) -> str:
    """Where a captured row's business day begins and ends (the bank's cut-over, clearing's calendar)."""
    who = f"{c.bank}'s" if c.bank else "the default"
    return f"captured by the acquirer in {who} business day ({iso_ns(c.start_ns)}, {iso_ns(c.end_ns)}]"


def masked(pan: str) -> str:
    """A PAN as files show it: masked (first 6, last 4) even if a row came in clear."""
    return mask_pan(pan) if pan.isdigit() else pan


class _Csv:
    """CSV rows into a binary file, in writes of about :data:`FLUSH_BYTES`, hashing what it writes."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.sha256 = hashlib.sha256()
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")

    def row(self, *values: object) -> None:
        self.writer.writerow(values)  # None is written as the empty string (the csv module's rule)
        if self.buffer.tell() >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        data = self.buffer.getvalue().encode()
        self.buffer.seek(0)
        self.buffer.truncate()
        self.fh.write(data)
        self.sha256.update(data)


def _item_values(item: ClearedItem, fees: ItemFees) -> list[object]:
    return [
        item.id,
        item.source,
        item.source_ref,
        item.kind,
        item.sign,
        iso_ns(item.txn_ns),
        item.terminal_id,
        masked(item.pan_masked),
        item.rrn,
        item.issuer_bank,
        item.acquirer_bank,
        item.merchant_id,
        item.mcc,
        item.industry,
        item.signed_fen,
        fees.discount_fen,
        fees.issuer_fen,
        fees.network_fen,
        fees.acquirer_fen,
    ]


def _position_values(p: Position) -> list[object]:
    return [
        p.participant,
        p.issued_gross_fen,
        p.issuer_fee_fen,
        p.acquired_net_fen,
        p.acquirer_fee_fen,
        p.network_fee_fen,
        p.net_fen,
    ]


POSITION_HEADER = [
    "participant",
    "issued_gross_fen",
    "issuer_fee_fen",
    "acquired_net_fen",
    "acquirer_fee_fen",
    "network_fee_fen",
    "net_position_fen",
]


def _positions(out: _Csv, record: DayRecord) -> None:
    out.row("H", "settlement_date", record.day, "items", record.item_count)
    out.row("record", *POSITION_HEADER)
    for p in record.positions:
        out.row("D", *_position_values(p))
    out.row(
        "T",
        "total",
        *(
            sum(getattr(p, f) for p in record.positions)
            for f in (
                "issued_gross_fen",
                "issuer_fee_fen",
                "acquired_net_fen",
                "acquirer_fee_fen",
                "network_fee_fen",
                "net_fen",
            )
        ),
    )


def _bank_effect(bank: str, item: ClearedItem, fees: ItemFees) -> int:
    """The item's effect on ``bank``'s net position (+ it receives, − it pays)."""
    effect = 0
    if item.issuer_bank == bank:
        effect -= item.signed_fen - fees.issuer_fen
    if item.payer_bank is not None:  # an EC load from another account: the payer's card spent it
        return effect + (item.signed_fen if item.payer_bank == bank else 0)
    if item.acquirer_bank == bank:
        effect += item.signed_fen - fees.issuer_fen - fees.network_fen
    return effect


def _industries(out: _Csv, record: DayRecord) -> None:
    out.row("H", "settlement_date", record.day)
    out.row("record", "industry", "items", "gross_fen", "discount_fen")
    for t in record.industries:
        out.row("D", t.key or "unknown", t.item_count, t.gross_fen, t.discount_fen)
    out.row(
        "T",
        "total",
        sum(t.item_count for t in record.industries),
        sum(t.gross_fen for t in record.industries),
        sum(t.discount_fen for t in record.industries),
    )


def _reconciliation(out: _Csv, record: DayRecord, captured: Captured, *, scoped: bool = False) -> None:
    """The reconciliation of the day, or (``scoped``) of one bank's merchants or one merchant: ``record``
    is then :meth:`DayRecord.scoped` with the scope's cleared kinds, ``captured`` the scope's, and the
    settled gross is the merchants' (acquiring side) instead of the banks' positions (issuing side)."""
    totals, differences = captured
    if scoped:
        gross = sum(m.gross_fen for m in record.merchants)
        settled_from = "the merchants' statements, acquiring side"
    else:
        gross = sum(p.issued_gross_fen for p in record.positions)
        settled_from = "net positions of the banks, issuer side"
    discount = sum(m.discount_fen for m in record.merchants)
    out.row("H", "settlement_date", record.day)
    out.row("record", "stage", "what", "count", "amount_fen", "reason")
    for c in totals:
        out.row("D", "captured", f"{c.source}/{c.bank or '-'}", c.count, c.amount_fen, business_day(c))
    for d in differences:
        out.row(
            "X", "captured-cleared", f"{d.source}/{d.bank or '-'}:{d.reference}", 1, d.amount_fen, d.reason
        )
    for k in record.kinds:
        out.row("D", "cleared", k.key, k.item_count, k.gross_fen, "")
    out.row(
        "T",
        "cleared",
        "net (purchases and fares less refunds, voids, EC cash loads)",
        record.item_count,
        gross,
        "",
    )
    loads = next((k for k in record.kinds if k.key == "online/ec_account_load"), None)
    if loads is not None:
        out.row(
            "X",
            "cleared-settled",
            "EC loads from another account",
            loads.item_count,
            0,
            f"{loads.gross_fen} fen between issuers, no merchant: each payer bank pays, the EC card's bank "
            "receives (bank files, roles P and I); both at one bank: nothing moves between banks"
            + (
                "; in a bank's scope: the loads at its merchants' terminals and the ones its accounts paid "
                "or its EC cards received at other banks' (its role and effect: its clearing file)"
                if scoped
                else ""
            ),
        )
    out.row("D", "settled", "gross", record.item_count, gross, settled_from)
    out.row(
        "X", "cleared-settled", "merchant discount", "", discount, "fees: issuer, network and acquirer shares"
    )
    out.row("T", "settled", "owed to merchants", len(record.merchants), gross - discount, "")
    carried = 0
    for m in record.merchants:
        if m.payout_fen == m.net_fen:
            continue
        carried += m.net_fen - m.payout_fen
        if m.balance_fen < 0:
            reason = (
                f"payable negative after the day ({m.balance_fen} fen): carried to the next day, nothing paid"
            )
        else:
            reason = f"earlier days' balance carried in ({m.balance_fen - m.net_fen} fen)"
        out.row("X", "settled-paid", f"{m.bank}/{m.merchant_id}", 1, m.net_fen - m.payout_fen, reason)
    paid = record.payout_total_fen
    out.row(
        "T",
        "paid",
        f"payouts value date {record.merchants[0].payout_date if record.merchants else ''}",
        sum(1 for m in record.merchants if m.payout_fen),
        paid,
        "",
    )
    assert gross - discount - carried == paid, "every difference explained"


def _merchant_head(out: _Csv, record: DayRecord, m: MerchantRow) -> None:
    out.row(
        "H",
        "settlement_date",
        record.day,
        "merchant_id",
        m.merchant_id,
        "acquirer_bank",
        m.bank,
        "industry",
        m.industry,
    )
    out.row("record", *ITEM_HEADER, "net_fen")


def _merchant_tail(out: _Csv, m: MerchantRow) -> None:
    out.row(
        "T",
        "items",
        m.item_count,
        "gross_fen",
        m.gross_fen,
        "discount_fen",
        m.discount_fen,
        "net_fen",
        m.net_fen,
    )
    out.row("P", "payout_date", m.payout_date, "payable_fen", m.balance_fen, "payout_fen", m.payout_fen)


def _line_rows(out: _Csv, lines: dict[int, list[int]]) -> None:
    """A bus company's fare revenue by line (``L`` rows after its totals): fares, gross, discount, net."""
    for line in sorted(lines):
        count, gross, discount = lines[line]
        out.row(
            "L", "bus_line", line, "fares", count, "gross_fen", gross, "discount_fen", discount,
            "net_fen", gross - discount,
        )  # fmt: skip


def _bank_tail(out: _Csv, record: DayRecord, bank: str) -> None:
    position = next(p for p in record.positions if p.participant == bank)
    out.row("T", *POSITION_HEADER)
    out.row("T", *_position_values(position))


class _Writer:
    """The files of one run on the sink, with each file's SHA-256 for the MANIFEST."""

    def __init__(self, sink: FileSink) -> None:
        self.sink = sink
        self.digests: dict[str, str] = {}

    def whole(self, name: str, fill: Callable[[_Csv], None]) -> None:
        with self.sink.open(name) as fh:
            out = _Csv(fh)
            fill(out)
            out.flush()
        self.digests[name] = out.sha256.hexdigest()


def _role(bank: str, item: ClearedItem) -> str:
    """``I`` issuer, ``A`` acquirer; for an EC load from another account ``I`` the EC card's bank and ``P``
    the payer's (``IP``: both accounts at the bank, the item moves nothing between banks)."""
    if item.payer_bank is not None:
        return ("I" if item.issuer_bank == bank else "") + ("P" if item.payer_bank == bank else "")
    return ("I" if item.issuer_bank == bank else "") + ("A" if item.acquirer_bank == bank else "")


def _banks_of(item: ClearedItem) -> list[str]:
    """The banks whose clearing file lists the item."""
    other = item.payer_bank if item.payer_bank is not None else item.acquirer_bank
    return sorted({item.issuer_bank, other})


def _by_merchant(item: ClearedItem) -> tuple[str, str]:
    return item.acquirer_bank, item.merchant_id


def write_day_files(
    sink: FileSink,
    record: DayRecord,
    schedule: FeeSchedule,
    items_by_merchant: Iterable[ClearedItem],
    captured: Captured,
    *,
    bank: str | None = None,
    merchant: str | None = None,
    scoped: DayRecord | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Write the day's files to ``sink`` streaming the items once (in acquiring bank, merchant, id order);
    their names, sorted. With ``bank``: its clearing file and its merchants' statements; with ``merchant``:
    that merchant's statement (of ``bank`` if given); either way, with ``scoped`` (the scope's
    :meth:`DayRecord.scoped` record with its cleared kinds, ``captured`` the scope's), the scope's
    ``reconciliation.csv``; else every file and the MANIFEST (written last)."""
    whole_day = bank is None and merchant is None
    merchants = {(m.bank, m.merchant_id): m for m in record.merchants}
    banks = [p.participant for p in record.positions if p.participant != CENTER]
    kept_banks = banks if whole_day else [bank] if bank is not None and merchant is None else []
    files = _Writer(sink)
    done = 0
    with ExitStack() as stack:
        bank_out: dict[str, _Csv] = {}
        for b in kept_banks:
            out = bank_out[b] = _Csv(stack.enter_context(sink.open(f"bank-{b}.csv")))
            out.row("H", "settlement_date", record.day, "bank", b)
            out.row("record", "role", *ITEM_HEADER, "bank_effect_fen")
        for key, items in groupby(items_by_merchant, key=_by_merchant):
            # a merchant whose terminal took only EC loads from another account has no statement
            m = merchants.get(key)
            wanted = (
                m is not None
                and (bank is None or m.bank == bank)
                and (merchant is None or m.merchant_id == merchant)
            )
            with ExitStack() as one:
                statement = None
                lines: dict[int, list[int]] = {}  # a bus company's fares by line: count, gross, discount
                if wanted:
                    assert m is not None
                    statement = _Csv(one.enter_context(sink.open(f"merchant-{m.merchant_id}.csv")))
                    _merchant_head(statement, record, m)
                for item in items:
                    fees = schedule.fees(
                        item.kind,
                        item.sign,
                        item.amount_fen,
                        item.industry,
                        item.mcc,
                        card_type=item.card_type,
                    )
                    values = _item_values(item, fees)
                    if statement is not None and not item.account_load:  # not the merchant's money
                        statement.row("D", *values, item.signed_fen - fees.discount_fen)
                        if item.kind == "fare" and item.bus_line is not None:
                            line = lines.setdefault(item.bus_line, [0, 0, 0])
                            line[0] += 1
                            line[1] += item.signed_fen
                            line[2] += fees.discount_fen
                    for b in _banks_of(item):
                        if b in bank_out:
                            bank_out[b].row("D", _role(b, item), *values, _bank_effect(b, item, fees))
                    done += 1
                    if progress is not None and done % PROGRESS_EVERY == 0:
                        progress(done)
                if statement is not None:
                    assert m is not None
                    _merchant_tail(statement, m)
                    _line_rows(statement, lines)
                    statement.flush()
                    files.digests[f"merchant-{m.merchant_id}.csv"] = statement.sha256.hexdigest()
        for b, out in bank_out.items():
            _bank_tail(out, record, b)
            out.flush()
            files.digests[f"bank-{b}.csv"] = out.sha256.hexdigest()
    if progress is not None:
        progress(done)
    if not whole_day and scoped is not None:
        files.whole("reconciliation.csv", lambda out: _reconciliation(out, scoped, captured, scoped=True))
    if whole_day:
        files.whole("positions.csv", lambda out: _positions(out, record))
        files.whole("industries.csv", lambda out: _industries(out, record))
        files.whole("reconciliation.csv", lambda out: _reconciliation(out, record, captured))
        manifest = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.digests.items()))
        with sink.open("MANIFEST") as fh:
            fh.write(manifest.encode())
        files.digests["MANIFEST"] = ""
    return sorted(files.digests)
