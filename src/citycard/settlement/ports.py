"""What settlement needs from storage: the day's cleared items, its accounts, and a place for its record.

``citycard.db.settlement_repositories`` implements these on SQL (PostgreSQL and SQLite, set-based, in
batches); tests may use it on SQLite. Domain code sees only these Protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Protocol, Self

from citycard.ledger.ports import LedgerRepository

from .model import AccountKey, ClearedItem, Payout, Position

__all__ = [
    "BusinessWindow",
    "CapturedDifference",
    "CapturedTotals",
    "DayRecord",
    "FileSink",
    "MerchantRow",
    "SettlementStore",
    "SettlementUnitOfWork",
    "TotalsRow",
]


class FileSink(Protocol):
    """Where the day's files go: each one written in pieces (:meth:`open`), and all of them published
    together (``citycard.durable.StagedFolder``: none of them before all are complete, never a torn one)."""

    def open(self, name: str) -> AbstractContextManager[BinaryIO]: ...


BusinessWindow = Callable[[str, str], tuple[int, int]]
"""(settlement day ``YYYYMMDD``, acquiring bank code or '') → the bank's business day as (start, end] in
ns since the epoch: clearing's calendar (``citycard.clearing.calendar.business_window`` under the bank's
cut-over), which the entry points pass in (a domain package does not import another)."""


@dataclass(frozen=True, slots=True)
class TotalsRow:
    """A row of sums (an industry's, or a (source, kind)'s)."""

    key: str
    item_count: int
    gross_fen: int
    discount_fen: int


@dataclass(frozen=True, slots=True)
class MerchantRow:
    bank: str
    merchant_id: str
    industry: str | None
    item_count: int
    gross_fen: int
    discount_fen: int
    issuer_fee_fen: int
    network_fee_fen: int
    acquirer_fee_fen: int
    balance_fen: int  # the payable's balance after the day's posting (earlier days' carry included)
    payout_fen: int
    payout_date: str

    @property
    def net_fen(self) -> int:
        return self.gross_fen - self.discount_fen


@dataclass(frozen=True, slots=True)
class DayRecord:
    """What a settled day keeps (``settlement_days`` and its rows): enough to write its files again."""

    day: str
    schedule_toml: str  # the fee schedule the day was settled with, as text
    item_count: int
    positions: tuple[Position, ...]
    merchants: tuple[MerchantRow, ...]
    industries: tuple[TotalsRow, ...]
    kinds: tuple[TotalsRow, ...]  # key "source/kind", gross = the unsigned amount
    transfer_count: int
    settled_ns: int

    @property
    def payout_total_fen(self) -> int:
        return sum(m.payout_fen for m in self.merchants)

    def scoped(self, bank: str | None = None, merchant: str | None = None) -> DayRecord:
        """What one bank (its position, the merchants it acquires for) or one merchant (its own row, no
        position) may see of the day: the CLI's ``report --bank/--merchant`` and the web's bank view.
        The industries are summed again over the merchants kept; the day-wide figures (item count, kinds)
        become those of the merchants kept (kinds: none, they are not kept per merchant)."""
        if bank is None and merchant is None:
            return self
        merchants = tuple(
            m
            for m in self.merchants
            if (bank is None or m.bank == bank) and (merchant is None or m.merchant_id == merchant)
        )
        industries: dict[str, list[int]] = {}
        for m in merchants:
            t = industries.setdefault(m.industry or "", [0, 0, 0])
            t[0] += m.item_count
            t[1] += m.gross_fen
            t[2] += m.discount_fen
        return DayRecord(
            self.day,
            self.schedule_toml,
            sum(m.item_count for m in merchants),
            tuple(p for p in self.positions if merchant is None and p.participant == bank),
            merchants,
            tuple(TotalsRow(k, *v) for k, v in sorted(industries.items())),
            (),
            self.transfer_count,
            self.settled_ns,
        )


@dataclass(frozen=True, slots=True)
class CapturedTotals:
    """What the acquirer captured in an acquiring bank's business day (``start_ns``, ``end_ns``]: online
    financial records approved and not reversed, and offline uploads (``source``), count and amount."""

    source: str
    bank: str  # the merchant's acquiring bank, whose cut-over decides the day ('' : none in the registry)
    count: int
    amount_fen: int
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class CapturedDifference:
    """A record captured but not among the day's cleared items, or cleared but captured another day."""

    source: str
    bank: str
    reference: str
    amount_fen: int
    reason: str


class SettlementStore(Protocol):
    def clearing_status(self, day: str) -> str | None:
        """``clearing_runs.status`` of ``day`` ('cleared', 'settled'), None when clearing has not run."""
        ...

    def items(self, day: str, *, by_merchant: bool = False) -> Iterator[ClearedItem]:
        """The day's cleared items in id order (by acquiring bank, merchant, id with ``by_merchant``)."""
        ...

    def network_settlement_accounts(self, banks: Iterable[str]) -> dict[str, int]:
        """Each issuing bank's network settlement account id (``issuer_banks``)."""
        ...

    def ensure_accounts(self, keys: Sequence[AccountKey]) -> dict[AccountKey, int]:
        """The ledger account id of each key, creating (ledger and map) those that do not exist yet."""
        ...

    def payable_balances(self, account_ids: Sequence[int]) -> dict[int, int]:
        """Credit balance of each account."""
        ...

    def save(self, record: DayRecord, payouts: Sequence[Payout]) -> None:
        """Keep the day's record and set ``clearing_runs.status`` to 'settled'."""
        ...

    def load(self, day: str) -> DayRecord | None:
        """The settled day's record (None when the day is not settled)."""
        ...

    def is_settled(self, day: str) -> bool:
        """Whether ``day`` is settled (its record kept), without reading the record."""
        ...

    def captured(
        self,
        day: str,
        window: BusinessWindow | None = None,
        *,
        bank: str | None = None,
        merchant: str | None = None,
    ) -> tuple[list[CapturedTotals], Iterator[CapturedDifference]]:
        """What the acquirer captured in each acquiring bank's business day ``day`` (``window``; None: the
        Beijing calendar day, clearing's default cut-over of midnight) and the differences to the day's
        cleared items (streamed: read them inside the unit of work); with ``bank`` / ``merchant``, only the
        records of that acquiring bank's merchants / of that merchant, and of a bank also the EC loads from
        another account it paid or received at other banks' terminals (each a difference: captured by the
        other bank)."""
        ...

    def cleared_kinds(
        self, day: str, *, bank: str | None = None, merchant: str | None = None
    ) -> tuple[TotalsRow, ...]:
        """The day's items by ``source/kind`` (count, unsigned amount; discount 0) of the merchants of
        ``bank`` (acquiring; and the EC loads from another account in which ``bank`` is the payer's bank or
        the EC card's, wherever made) / of ``merchant``: a scoped reconciliation's cleared rows."""
        ...

    def item_count(self, day: str) -> int:
        """How many cleared items ``day`` has (a progress bar's total)."""
        ...

    def fares_by_line(self, day: str, merchant_id: str) -> list[tuple[int, int, int]]:
        """A bus company's fares cleared on ``day`` by bus line: (line, fares, gross fen), by line; the
        fares without a line (uploaded before it was carried) are left out."""
        ...

    def fares_by_lines(self, day: str, merchant_ids: Iterable[str]) -> list[tuple[str, int, int, int]]:
        """:meth:`fares_by_line` of several bus companies in one query: (merchant, line, fares, gross fen),
        by merchant and line."""
        ...

    def merchant_days(
        self, merchant_id: str, limit: int, day: str | None = None
    ) -> list[tuple[str, MerchantRow]]:
        """A merchant's rows of the settled days, newest first, at most ``limit`` days (only ``day``'s when
        given): (settlement date, row)."""
        ...

    def participant_days(self, participant: str, limit: int) -> list[tuple[str, Position]]:
        """A participant's net positions of the settled days, newest first, at most ``limit`` days."""
        ...


class SettlementUnitOfWork(Protocol):
    @property
    def ledger(self) -> LedgerRepository: ...

    @property
    def settlement(self) -> SettlementStore: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...
