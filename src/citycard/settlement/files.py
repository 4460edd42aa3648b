"""The settled day's files (CSV, UTF-8, ``\\n`` line ends, amounts in integer fen, PANs masked).

Every file is a function of the day's record and items alone (no clock, no host name), so writing them
again gives the same bytes. Layouts (docs/settlement.md, "Files"): every row starts with a record type,
``H`` header, ``D`` detail, ``T`` total, ``P`` payout.

- ``positions.csv``: each participant's net position (the banks, then ``CENTER``), and their total (zero);
- ``bank-CODE.csv``: the bank's clearing file: each item it took part in, as issuer (``I``), acquirer
  (``A``) or both (``IA``), with its fees and the item's effect on the bank's position, then its position;
- ``merchant-ID.csv``: the merchant's statement: each item with its discount and net, the day's totals and
  the payout (T+1);
- ``industries.csv``: items, gross and discount by industry;
- ``reconciliation.csv``: captured vs cleared vs settled vs paid, each difference with its reason;
- ``MANIFEST``: the SHA-256 of every other file (``sha256sum -c`` reads it).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from citycard.codec.pretty import mask_pan

from .fees import FeeSchedule, ItemFees
from .model import CENTER, ClearedItem, Position
from .ports import CapturedDifference, CapturedTotals, DayRecord, MerchantRow

__all__ = ["iso_ns", "masked", "render_files"]

Captured = tuple[list[CapturedTotals], list[CapturedDifference]]
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
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1_000_000:03d}Z"


def masked(pan: str) -> str:
    """A PAN as files show it: masked (first 6, last 4) even if a row came in clear."""
    return mask_pan(pan) if pan.isdigit() else pan


class _Csv:
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")

    def row(self, *values: object) -> None:
        self.writer.writerow(["" if v is None else v for v in values])

    def data(self) -> bytes:
        return self.buffer.getvalue().encode()


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


def _positions(record: DayRecord) -> bytes:
    out = _Csv()
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
    return out.data()


def _bank_effect(bank: str, item: ClearedItem, fees: ItemFees) -> int:
    """The item's effect on ``bank``'s net position (+ it receives, − it pays)."""
    effect = 0
    if item.issuer_bank == bank:
        effect -= item.signed_fen - fees.issuer_fen
    if item.acquirer_bank == bank:
        effect += item.signed_fen - fees.issuer_fen - fees.network_fen
    return effect


def _industries(record: DayRecord) -> bytes:
    out = _Csv()
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
    return out.data()


def _reconciliation(record: DayRecord, captured: Captured) -> bytes:
    out = _Csv()
    totals, differences = captured
    gross = sum(p.issued_gross_fen for p in record.positions)
    discount = sum(m.discount_fen for m in record.merchants)
    out.row("H", "settlement_date", record.day)
    out.row("record", "stage", "what", "count", "amount_fen", "reason")
    for c in totals:
        out.row("D", "captured", c.source, c.count, c.amount_fen, "captured by the acquirer for the day")
    for d in differences:
        out.row("X", "captured-cleared", f"{d.source}:{d.reference}", 1, d.amount_fen, d.reason)
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
    out.row("D", "settled", "gross", record.item_count, gross, "net positions of the banks, issuer side")
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
    return out.data()


def _merchant_file(record: DayRecord, m: MerchantRow, lines: list[list[object]]) -> bytes:
    out = _Csv()
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
    for line in lines:
        out.row("D", *line)
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
    return out.data()


def _bank_file(record: DayRecord, bank: str, lines: list[list[object]]) -> bytes:
    out = _Csv()
    out.row("H", "settlement_date", record.day, "bank", bank)
    out.row("record", "role", *ITEM_HEADER, "bank_effect_fen")
    for line in lines:
        out.row("D", *line)
    position = next(p for p in record.positions if p.participant == bank)
    out.row("T", *POSITION_HEADER)
    out.row("T", *_position_values(position))
    return out.data()


def render_files(
    record: DayRecord,
    schedule: FeeSchedule,
    items_by_merchant: Iterable[ClearedItem],
    captured: Captured,
    *,
    bank: str | None = None,
    merchant: str | None = None,
) -> list[tuple[str, bytes]]:
    """The day's files as (name, bytes), in name order; with ``bank`` or ``merchant`` only theirs."""
    merchants = {(m.bank, m.merchant_id): m for m in record.merchants}
    banks = [p.participant for p in record.positions if p.participant != CENTER]
    bank_lines: dict[str, list[list[object]]] = {b: [] for b in banks}
    files: dict[str, bytes] = {}
    current: tuple[str, str] | None = None
    lines: list[list[object]] = []
    for item in _with_end(items_by_merchant):
        key = None if item is None else (item.acquirer_bank, item.merchant_id)
        if key != current and current is not None:
            files[f"merchant-{current[1]}.csv"] = _merchant_file(record, merchants[current], lines)
            lines = []
        if item is None:
            break
        current = key
        fees = schedule.fees(item.kind, item.sign, item.amount_fen, item.industry, item.mcc)
        values = _item_values(item, fees)
        lines.append([*values, item.signed_fen - fees.discount_fen])
        for b in sorted({item.issuer_bank, item.acquirer_bank}):
            role = ("I" if item.issuer_bank == b else "") + ("A" if item.acquirer_bank == b else "")
            bank_lines[b].append([role, *values, _bank_effect(b, item, fees)])
    for b in banks:
        files[f"bank-{b}.csv"] = _bank_file(record, b, bank_lines[b])
    files["positions.csv"] = _positions(record)
    files["industries.csv"] = _industries(record)
    files["reconciliation.csv"] = _reconciliation(record, captured)
    if bank is not None or merchant is not None:
        keep = {"positions.csv"} if merchant is None else set()
        keep |= {f"bank-{bank}.csv"} if bank is not None and merchant is None else set()
        keep |= {
            f"merchant-{m.merchant_id}.csv"
            for m in record.merchants
            if (bank is None or m.bank == bank) and (merchant is None or m.merchant_id == merchant)
        }
        return sorted((n, d) for n, d in files.items() if n in keep)
    manifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
    )
    files["MANIFEST"] = manifest.encode()
    return sorted(files.items())


def _with_end(items: Iterable[ClearedItem]) -> Iterator[ClearedItem | None]:
    yield from items
    yield None
