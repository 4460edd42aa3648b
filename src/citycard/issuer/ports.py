"""The issuer's ports: repositories and the unit of work its handlers are given (Cosmic Python ch. 2, 6).

``citycard.db.issuer_repositories`` implements them on SQLAlchemy; the domain never imports it. Every
repository works inside the unit of work's one transaction; ``get(..., for_update=True)`` locks the row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite takes the write lock at ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from citycard.ledger.ports import LedgerRepository

from .model import (
    Bank,
    BinRange,
    Card,
    Cardholder,
    DenyListEntry,
    Merchant,
    Product,
    RegisteredTerminal,
    TerminalStatus,
)

__all__ = [
    "Authorizations",
    "Banks",
    "Cardholders",
    "Cards",
    "Clock",
    "DenyList",
    "IdAllocator",
    "IssuerUnitOfWork",
    "Products",
    "StoredAuthorization",
    "Terminals",
]

Clock = Callable[[], int]
"""Nanoseconds since the epoch (``time.time_ns`` in production, a counter in tests)."""


class Banks(Protocol):
    def add(self, bank: Bank) -> None: ...
    def get(self, code: str) -> Bank | None: ...
    def list(self) -> list[Bank]: ...
    def add_bin(self, bin_range: BinRange) -> None: ...
    def get_bin(self, bin: str) -> BinRange | None: ...
    def overlapping_bin(self, bin: str) -> BinRange | None:
        """A BIN range that ``bin`` would overlap: the same BIN, a prefix of it, or one it is a prefix of."""
        ...

    def take_serials(self, bin: str, count: int) -> int:
        """Reserve ``count`` account serials in the BIN range; return the first (locks the range row)."""
        ...


class Products(Protocol):
    def add(self, product: Product) -> None: ...
    def get(self, bank_code: str, code: str) -> Product | None: ...
    def list(self, bank_code: str | None = None) -> list[Product]: ...


class Cardholders(Protocol):
    def add(
        self, name: str, id_hash: str, id_last4: str, phone: str, deposit_account_id: int
    ) -> Cardholder: ...
    def get(self, holder_id: int) -> Cardholder | None: ...
    def by_id_hash(self, id_hash: str) -> Cardholder | None: ...


class Cards(Protocol):
    def add(self, card: Card) -> None: ...
    def get(self, pan: str, *, for_update: bool = False) -> Card | None: ...
    def update(self, card: Card) -> None: ...
    def by_holder(self, holder_id: int) -> list[Card]: ...
    def list(self, bank_code: str | None = None, *, limit: int = 1000) -> list[Card]: ...


@dataclass(frozen=True, slots=True)
class StoredAuthorization:
    """What the issuer answered to one request id (for idempotent retries and reversals)."""

    request_id: str
    pan: str
    kind: str
    fingerprint: str  # hash of the request's content: a reused id with other content is refused
    response_code: str
    amount_fen: int
    response: bytes  # the encoded response (views.encode_response)
    transfer_ids: tuple[int, ...]
    created_ns: int
    reversed_by: str | None = None
    terminal_id: str = ""  # field 41 of the request: a follow-up (reversal) must come from the same terminal
    merchant_id: str = ""  # field 42


class Authorizations(Protocol):
    def get(self, request_id: str, *, for_update: bool = False) -> StoredAuthorization | None: ...
    def add(self, record: StoredAuthorization) -> bool:
        """Store the answer; False, writing nothing, when the request id is stored already (a simultaneous
        first attempt with the same id committed first)."""
        ...

    def mark_reversed(self, request_id: str, by: str) -> None: ...
    def seen_unpredictable_number(self, pan: str, un: bytes) -> bool: ...
    def add_unpredictable_number(self, pan: str, un: bytes, atc: int) -> None: ...


class DenyList(Protocol):
    def add(self, entry: DenyListEntry) -> int:
        """Add or refresh an entry and bump the bank's deny-list version; return the new version."""
        ...

    def remove(self, bank_code: str, pan: str, now_ns: int) -> int: ...
    def entries(self, bank_code: str) -> list[DenyListEntry]: ...
    def version(self, bank_code: str) -> tuple[int, int]:
        """(version, updated_ns) of the bank's deny list; (0, 0) when it never changed."""
        ...


class Terminals(Protocol):
    """The merchant and terminal registry (fields 42 and 41)."""

    def add_merchant(self, merchant: Merchant) -> None: ...
    def get_merchant(self, merchant_id: str) -> Merchant | None: ...
    def add(self, terminal: RegisteredTerminal) -> None: ...
    def get(self, terminal_id: str) -> RegisteredTerminal | None: ...
    def set_status(self, terminal_id: str, status: TerminalStatus) -> None: ...
    def in_use(self) -> bool:
        """Whether any terminal is registered (an empty registry checks nothing)."""
        ...


class IdAllocator(Protocol):
    def allocate(self, count: int) -> Sequence[int]:
        """``count`` fresh ledger account ids (unique across the database)."""
        ...


class IssuerUnitOfWork(Protocol):
    """The ledger and the issuer's repositories in one transaction. The repositories are read-only
    properties here, so an implementation may declare them with its own (conforming) classes."""

    @property
    def ledger(self) -> LedgerRepository: ...
    @property
    def banks(self) -> Banks: ...
    @property
    def products(self) -> Products: ...
    @property
    def cardholders(self) -> Cardholders: ...
    @property
    def cards(self) -> Cards: ...
    @property
    def authorizations(self) -> Authorizations: ...
    @property
    def deny_list(self) -> DenyList: ...
    @property
    def terminals(self) -> Terminals: ...
    @property
    def ids(self) -> IdAllocator: ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
