"""The ledger's ports: the repository and unit-of-work Protocols domain services depend on.

Cosmic Python's repository and unit-of-work patterns: a handler takes a unit of work, works through its
repositories, and commits; it never sees SQLAlchemy. ``citycard.db`` provides the SQL implementations
(:class:`citycard.db.SqlLedgerRepository`, :class:`citycard.db.SqlUnitOfWork`), and
:mod:`citycard.ledger.memory` the in-memory ones for tests and simulations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Protocol, Self

from .engine import Totals
from .model import Account, CreateAccountResult, CreateTransferResult, Transfer

__all__ = ["Clock", "LedgerRepository", "UnitOfWork"]

Clock = Callable[[], int]
"""A source of time in nanoseconds since the epoch (``time.time_ns`` in production, a counter in tests)."""


class LedgerRepository(Protocol):
    """Accounts and transfers with the engine's semantics (see :mod:`citycard.ledger.engine`)."""

    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        """Create accounts; one result per account."""
        ...

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]:
        """Apply transfers (linked chains all or nothing); one result per transfer."""
        ...

    def expire_pending_transfers(self, *, limit: int = 8190) -> list[int]:
        """Expire pending transfers whose timeout has passed and release what they reserved; their ids."""
        ...

    def lookup_accounts(self, account_ids: Iterable[int]) -> list[Account]:
        """The accounts that exist among ``account_ids``, in id order."""
        ...

    def lookup_transfers(self, transfer_ids: Iterable[int]) -> list[Transfer]:
        """The transfers that exist among ``transfer_ids``, in id order."""
        ...

    def balances(
        self, account_ids: Iterable[int] | None = None, *, after_id: int = 0, limit: int = 10_000
    ) -> list[Account]:
        """Accounts with their balances in id order: those of ``account_ids`` (all when None) whose id is
        above ``after_id`` (the last id of the previous page), at most ``limit``."""
        ...

    def journal(
        self,
        *,
        account_id: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 1000,
    ) -> list[Transfer]:
        """Transfers in (timestamp, id) order, optionally of one account, within [since, until), after
        the (timestamp_ns, id) of the last transfer of the previous page, at most ``limit``."""
        ...

    def audit(self) -> list[int]:
        """Ids of accounts whose balances differ from what their transfers say (empty: the books agree)."""
        ...

    def totals(self) -> Totals:
        """Sums of the four balances over all accounts (balanced when the ledger sums to zero)."""
        ...


class UnitOfWork(Protocol):
    """One atomic piece of work: ``with uow: ...; uow.commit()``; leaving without commit rolls back."""

    @property
    def ledger(self) -> LedgerRepository:
        """The ledger repository of this unit of work (read-only, so any implementation of it fits)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...
