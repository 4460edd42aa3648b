"""The acquirer's ports: the repositories and the unit of work its handlers are given (Cosmic Python).

``citycard.db.acquirer_repositories`` implements them on SQLAlchemy (SQLite and PostgreSQL); the domain
never imports it. Every repository works inside the unit of work's one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Final, Protocol, Self

from citycard.codec.iso8583.totals import BatchTotals

from .model import (
    AcquirerTransaction,
    FollowUps,
    OfflineUpload,
    SafEntry,
    SafKind,
    SafStatus,
    TransactionKey,
    TransactionStatus,
)

__all__ = ["MAX_MOVES", "AcquirerUnitOfWork", "Clock", "OfflineUploads", "Rrns", "SafQueue", "Transactions"]

Clock = Callable[[], int]
"""Nanoseconds since the epoch."""

MAX_MOVES: Final = 256
"""The most records :meth:`Transactions.move_many` moves at once (a group of answers, ``hosts.groups``)."""


class Rrns(Protocol):
    def next_value(self) -> int:
        """The next value of the persisted RRN sequence (1, 2, ...; never given twice once committed)."""
        ...


class Transactions(Protocol):
    def get(self, key: TransactionKey, *, for_update: bool = False) -> AcquirerTransaction | None: ...
    def add(self, record: AcquirerTransaction) -> bool:
        """Store a new record; False (nothing written) when its key is stored already."""
        ...

    def add_numbered(self, record: AcquirerTransaction) -> AcquirerTransaction | None:
        """Store a new record numbered with the next RRN of the sequence (``record.rrn`` is ignored) and
        return it as stored; None when its key is stored already (then no RRN is taken, nothing written)."""
        ...

    def add_numbered_many(
        self, records: Sequence[AcquirerTransaction]
    ) -> dict[TransactionKey, AcquirerTransaction]:
        """:meth:`add_numbered` of records of distinct keys (at most :data:`MAX_MOVES`), one statement where
        the store allows; the records stored, by key (a key stored already is left out and takes no RRN)."""
        ...

    def move(
        self,
        key: TransactionKey,
        from_statuses: Collection[TransactionStatus],
        *,
        status: TransactionStatus,
        response_code: str | None,
        updated_ns: int,
    ) -> AcquirerTransaction | None:
        """Set status, response code and time of ``key``'s record if its status is one of
        ``from_statuses``; the record as stored then, or None when nothing moved."""
        ...

    def move_many(
        self,
        codes: Mapping[TransactionKey, str],
        from_statuses: Collection[TransactionStatus],
        *,
        status: TransactionStatus,
        updated_ns: int,
    ) -> dict[TransactionKey, AcquirerTransaction]:
        """:meth:`move` of every key of ``codes`` to ``status`` with its response code, at most
        :data:`MAX_MOVES` keys (one statement where the database allows); the records moved, by key."""
        ...

    def update(self, record: AcquirerTransaction) -> None: ...
    def by_rrn(self, rrn: str) -> AcquirerTransaction | None: ...
    def follow_ups(self, original_rrn: str) -> list[FollowUps]:
        """The voids and refunds that name the transaction of RRN ``original_rrn``, summed by kind, status
        and response code."""
        ...


class SafQueue(Protocol):
    def add(self, entry: SafEntry) -> SafEntry | None:
        """Store a new entry and return it with its id; None when (kind, rrn) is queued already."""
        ...

    def get(self, entry_id: int) -> SafEntry | None: ...
    def find(self, kind: SafKind, rrn: str) -> SafEntry | None: ...
    def due(self, now_ns: int, limit: int) -> list[SafEntry]:
        """Pending entries whose next attempt is due, oldest first."""
        ...

    def pending(self, limit: int) -> list[SafEntry]:
        """At most ``limit`` pending entries, due or not, the next due first (what an operator reads)."""
        ...

    def make_due(self, now_ns: int) -> int:
        """Every pending entry due at ``now_ns`` (its next attempt brought forward, its attempts kept);
        returns how many were brought forward."""
        ...

    def set_result(
        self,
        entry_id: int,
        *,
        status: SafStatus,
        attempts: int,
        next_attempt_ns: int,
        response_code: str | None,
    ) -> None: ...
    def count(self, status: SafStatus) -> int: ...


class OfflineUploads(Protocol):
    def add(self, upload: OfflineUpload) -> bool:
        """Store it; False (nothing written) when its key is stored already (a repeated upload)."""
        ...

    def get(self, key: TransactionKey) -> OfflineUpload | None: ...
    def count(self) -> int: ...


class BatchTotalsSource(Protocol):
    def totals(self, terminal_id: str, batch: int) -> BatchTotals:
        """The acquirer's own totals of the terminal's batch (0500; ``citycard.db.settlement_batch``);
        :class:`~citycard.codec.iso8583.Iso8583Error` when they do not fit field 48."""
        ...

    def settled(self, terminal_id: str | None = None, *, since_ns: int | None = None) -> dict[str, int]:
        """Each terminal's last batch settled balanced (only ``terminal_id``'s when given; only those
        settled at ``since_ns`` or later when given; a terminal that never settled is absent)."""
        ...

    def record_settled(self, terminal_id: str, batch: int, now_ns: int) -> int:
        """The terminal's ``batch`` settled balanced (a 0500 answered 00); its last settled batch now (a
        repeated or older settlement leaves a later one as it was)."""
        ...


class AcquirerUnitOfWork(Protocol):
    """The acquirer's repositories in one transaction (read-only properties, so that an implementation may
    declare them with its own conforming classes)."""

    @property
    def rrns(self) -> Rrns: ...
    @property
    def transactions(self) -> Transactions: ...
    @property
    def saf(self) -> SafQueue: ...
    @property
    def uploads(self) -> OfflineUploads: ...
    @property
    def batches(self) -> BatchTotalsSource: ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def commit(self) -> None: ...
    def each_statement_commits(self) -> None:
        """Called first in the unit of work: each statement may commit on its own (no ``BEGIN`` and
        ``COMMIT`` round trips), for work whose every statement stands alone — a single conditional
        write, or writes each atomic by itself that rely on no lock or read held across them."""
        ...
