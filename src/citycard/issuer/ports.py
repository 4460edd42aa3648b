"""The issuer's ports: repositories and the unit of work its handlers are given (Cosmic Python ch. 2, 6).

``citycard.db.issuer_repositories`` implements them on SQLAlchemy; the domain never imports it. Every
repository works inside the unit of work's one transaction; ``get(..., for_update=True)`` locks the row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite takes the write lock at ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from citycard.ledger.engine import Totals
from citycard.ledger.model import Account, Transfer
from citycard.ledger.ports import LedgerRepository

from .model import (
    Bank,
    BinRange,
    Card,
    Cardholder,
    CardRecord,
    CardStatus,
    DenyListEntry,
    Product,
    RegisteredTerminal,
)

__all__ = [
    "TOMBSTONE",
    "AccountOwner",
    "AuthorizationStart",
    "Authorizations",
    "Banks",
    "Books",
    "CardQuery",
    "CardRecords",
    "Cardholders",
    "Cards",
    "Clock",
    "DenyList",
    "IdAllocator",
    "IssuerUnitOfWork",
    "Products",
    "StartAhead",
    "StoredAuthorization",
    "Terminals",
]

Clock = Callable[[], int]
"""Nanoseconds since the epoch (``time.time_ns`` in production, a counter in tests)."""


class Banks(Protocol):
    def add(self, bank: Bank) -> None: ...
    def get(self, code: str) -> Bank | None: ...
    def bank_by_institution(self, institution_id: str) -> Bank | None:
        """The bank whose institution id (8 digits, ISO 8583 field 32) is ``institution_id``."""
        ...

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
        self, name: str, id_hash: str, id_last4: str, phone: str, deposit_account_id: int, citizen_key: str
    ) -> Cardholder: ...
    def get(self, holder_id: int) -> Cardholder | None: ...
    def by_id_hash(self, id_hash: str) -> Cardholder | None: ...
    def by_id_hashes(self, id_hashes: Sequence[str]) -> list[Cardholder]: ...
    def get_many(self, holder_ids: Iterable[int]) -> dict[int, Cardholder]: ...


@dataclass(frozen=True, slots=True)
class CardQuery:
    """Which cards a listing wants: every filter given must hold (None: any). ``holder_ids`` are the holders
    an ID number names (its HMAC under each bank's key, looked up first); ``pan_suffix`` is 4-19 digits."""

    bank_code: str | None = None
    pan: str | None = None
    pan_suffix: str | None = None
    holder_ids: tuple[int, ...] | None = None
    phone: str | None = None
    status: CardStatus | None = None
    product_code: str | None = None


class Cards(Protocol):
    def add(self, card: Card) -> None: ...
    def add_many(self, cards: Sequence[Card]) -> None:
        """New cards, written together (one statement however many: an issuance batch)."""
        ...

    def existing(self, pans: Sequence[str]) -> set[str]:
        """Those of ``pans`` that are cards already (one statement)."""
        ...

    def get(self, pan: str, *, for_update: bool = False) -> Card | None: ...
    def update(self, card: Card) -> None: ...
    def by_holder(self, holder_id: int) -> list[Card]: ...
    def find(self, query: CardQuery, *, limit: int, offset: int = 0) -> list[Card]:
        """The cards that match, in PAN order (stable pages), ``limit`` of them after the first ``offset``."""
        ...

    def count(self, query: CardQuery) -> int: ...
    def list(self, bank_code: str | None = None, *, limit: int = 1000) -> list[Card]: ...


TOMBSTONE = "tombstone"
"""``StoredAuthorization.kind`` of the row a reversal leaves under its original's request id when the
original is unknown: the original, if it arrives later, is answered from it (declined, nothing posted)."""


@dataclass(frozen=True, slots=True)
class StoredAuthorization:
    """What the issuer answered to one request id (for idempotent retries and reversals)."""

    request_id: str
    pan: str
    kind: str  # an AuthorizationKind's value, or TOMBSTONE
    fingerprint: str  # hash of the request's content: a reused id with other content is refused
    response_code: str
    amount_fen: int
    response: bytes  # the encoded response (views.encode_response)
    transfer_ids: tuple[int, ...]
    created_ns: int
    reversed_by: str | None = None
    terminal_id: str = ""  # field 41 of the request: a follow-up (reversal) must come from the same terminal
    merchant_id: str = ""  # field 42
    original_request_id: str | None = None  # the request a reversal, void or refund follows up
    refunded_fen: int = 0  # refunded so far against this purchase (REFUND advices, up to amount_fen)
    service_ref: str | None = None  # a public service's reference (field 48 of the purchase), HR-…

    @property
    def tombstone(self) -> bool:
        """A reversal came first: this request id is declined whenever it arrives."""
        return self.kind == TOMBSTONE


@dataclass(frozen=True, slots=True)
class AuthorizationStart:
    """What an authorization reads first, in one go: the card (locked for the transaction), whether the
    request id may be stored already, and the terminal registry's answer for field 41."""

    card: Card | None
    request_id_stored: bool  # True: read the stored answer (a retry, or a card not found: look it up)
    registry_in_use: bool  # any terminal registered (an empty registry checks nothing)
    terminal: RegisteredTerminal | None  # field 41's entry, when registered


@dataclass(frozen=True, slots=True)
class StartAhead:
    """What one request of a group will ask :meth:`Authorizations.start` (and then
    :meth:`Authorizations.seen_with_ec_balance`, with ``unpredictable_number`` from its field 55, None when it
    has none), for :meth:`Authorizations.prefetch`."""

    pan: str
    request_id: str
    terminal_id: str
    unpredictable_number: bytes | None


class Authorizations(Protocol):
    def prefetch(self, starts: Sequence[StartAhead]) -> None:
        """Read ahead, for a group answered in one transaction and before it writes anything, what each
        request's :meth:`start` and the :meth:`seen_with_ec_balance` after it will ask (one round trip where
        the store allows), the group's cards locked in PAN order. An answer read ahead is given once: to the
        first :meth:`start` of its card in this transaction, if it asks for the same request id and
        terminal, and to the :meth:`seen_with_ec_balance` that comes next for the same card and number;
        anything else is read when asked, as without it. A store may read nothing ahead."""
        ...

    def start(self, pan: str, request_id: str, terminal_id: str) -> AuthorizationStart:
        """The card locked for update, whether ``request_id`` is stored and the terminal ``terminal_id`` of
        the registry, read together (one round trip where the store allows). The request-id answer may be
        older than the lock (a simultaneous first attempt that committed while this one waited for the
        card): :meth:`add` then finds the id taken, and the caller answers from the stored row."""
        ...

    def get(self, request_id: str, *, for_update: bool = False) -> StoredAuthorization | None: ...
    def add(self, record: StoredAuthorization) -> bool:
        """Store the answer; False, writing nothing, when the request id is stored already (a simultaneous
        first attempt with the same id committed first)."""
        ...

    def add_many(self, records: Sequence[StoredAuthorization]) -> bool:
        """:meth:`add` of a group's answers (distinct request ids), in as few statements as the store
        allows; False when one request id was stored already (the others may be written: the caller
        rolls back)."""
        ...

    def mark_reversed(self, request_id: str, by: str | None) -> None:
        """Record that ``by`` reversed (or voided) the request; None: that reversal was itself reversed."""
        ...

    def add_refunded(self, request_id: str, amount_fen: int) -> None:
        """Add ``amount_fen`` (negative: a refund reversed) to the purchase's ``refunded_fen``."""
        ...

    def seen_unpredictable_number(self, pan: str, un: bytes) -> bool: ...
    def seen_with_ec_balance(self, pan: str, un: bytes, ec_float_account_id: int) -> tuple[bool, int]:
        """:meth:`seen_unpredictable_number` and the credit balance of the card's EC float account in the
        ledger (``Account.credit_balance_fen``), read together (one round trip where the store allows)."""
        ...

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
    """The terminal registry (field 41 and the merchant of field 42), read-only: the Citizen Card Service
    Center (``citycard.center``) registers and closes terminals; the issuer checks authorizations against
    them."""

    def get(self, terminal_id: str) -> RegisteredTerminal | None: ...
    def in_use(self) -> bool:
        """Whether any terminal is registered (an empty registry checks nothing)."""
        ...


@dataclass(frozen=True, slots=True)
class AccountOwner:
    """Whose a ledger account is: a bank's system account, a card's EC float or a holder's deposit account
    (``pan``: the card, or for a deposit account the holder's first card by PAN)."""

    bank_code: str
    kind: int  # model.BankAccount
    pan: str | None = None


class Books(Protocol):
    """The banks' books as the issuer reads them: the ledger's accounts and transfers by bank and card."""

    def owners(self, account_ids: Iterable[int]) -> dict[int, AccountOwner]: ...
    def balances(
        self,
        *,
        bank_code: str | None = None,
        account_ids: Sequence[int] | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> list[Account]:
        """Accounts in id order (of the bank, of ``account_ids``, or all), after ``after_id``."""
        ...

    def totals(self, bank_code: str | None = None) -> Totals:
        """Sums of the four balances over the bank's accounts (all accounts when None)."""
        ...

    def journal(
        self,
        *,
        bank_code: str | None = None,
        account_ids: Sequence[int] | None = None,
        before: tuple[int, int] | None = None,
        limit: int = 50,
    ) -> list[Transfer]:
        """Transfers newest first (timestamp, id descending) touching the bank's accounts or
        ``account_ids`` (all when neither), older than the ``(timestamp_ns, id)`` ``before``."""
        ...


class IdAllocator(Protocol):
    def allocate(self, count: int) -> Sequence[int]:
        """``count`` fresh ledger account ids (unique across the database)."""
        ...


class CardRecords(Protocol):
    """The records the issuer keeps on cards' proprietary files (:class:`~.model.CardRecord`)."""

    def of_card(self, pan: str) -> list[CardRecord]: ...

    def update(self, pan: str, records: Sequence[CardRecord]) -> None:
        """Store the new states of ``records`` (each only if its version is still the one read)."""
        ...

    def carry_over(self, old_pan: str, new_pan: str) -> list[CardRecord]:
        """The records of ``old_pan`` given to its successor ``new_pan`` as personalised on its chip
        (``written``); returned for the personalisation."""
        ...

    def add_transit_files(self, records: Sequence[tuple[str, CardRecord]]) -> None:
        """Keep each (PAN, concession record) of cards just personalised with the transit file (one
        statement for a batch of issued cards)."""
        ...

    def inherit_apps(self, holder_pans: Sequence[str], new_pan: str) -> list[CardRecord]:
        """A new card of a holder whose other cards are ``holder_pans``: each industry application enabled
        on one of them (the latest change of each) given to ``new_pan`` as personalised on its chip
        (``written``); returned for the personalisation."""
        ...

    def transit(self, pan: str) -> CardRecord | None:
        """The card's concession record (transit file SFI 21, record 1); None: its chip has no transit
        file."""
        ...

    def put_transit(self, pan: str, record: CardRecord, *, new: bool = False) -> None:
        """Keep ``record`` as the card's concession record (its ``version`` the time of the change): added
        (``new``) when the card is personalised with the transit file, replaced when the issuer changes
        it."""
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
    @property
    def books(self) -> Books: ...
    @property
    def card_records(self) -> CardRecords: ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
