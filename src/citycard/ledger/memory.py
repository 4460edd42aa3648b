"""In-memory ledger repository and unit of work, for tests and deterministic simulations.

They implement the Protocols of :mod:`citycard.ledger.ports` directly on a :class:`LedgerState`, with the
engine's semantics; the unit of work keeps a snapshot so that ``rollback`` (or leaving without ``commit``)
restores the state as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self

from .engine import (
    LedgerState,
    Totals,
    audit,
    check_invariants,
    create_accounts,
    create_transfers,
    expire_pending_transfers,
    journal,
)
from .model import (
    MAX_BATCH,
    Account,
    CreateAccountResult,
    CreateTransferResult,
    MalformedLedgerInput,
    Transfer,
)
from .ports import Clock, LedgerRepository, UnitOfWork

__all__ = ["InMemoryLedger", "InMemoryUnitOfWork"]


class InMemoryLedger:
    """A :class:`~citycard.ledger.ports.LedgerRepository` over one :class:`LedgerState`."""

    def __init__(self, clock: Clock, state: LedgerState | None = None) -> None:
        self.clock = clock
        self.state = state if state is not None else LedgerState()

    def create_accounts(self, accounts: Sequence[Account]) -> list[CreateAccountResult]:
        results, _ = create_accounts(self.state, accounts, self.clock())
        return results

    def create_transfers(self, transfers: Sequence[Transfer]) -> list[CreateTransferResult]:
        results, _ = create_transfers(self.state, transfers, self.clock())
        return results

    def expire_pending_transfers(self, *, limit: int = MAX_BATCH) -> list[int]:
        expired, _ = expire_pending_transfers(self.state, self.clock(), limit=limit)
        return expired

    def lookup_accounts(self, account_ids: Iterable[int]) -> list[Account]:
        found = (self.state.accounts.get(i) for i in sorted(set(account_ids)))
        return [a for a in found if a is not None]

    def lookup_transfers(self, transfer_ids: Iterable[int]) -> list[Transfer]:
        found = (self.state.transfers.get(i) for i in sorted(set(transfer_ids)))
        return [t for t in found if t is not None]

    def balances(
        self, account_ids: Iterable[int] | None = None, *, after_id: int = 0, limit: int = 10_000
    ) -> list[Account]:
        if type(limit) is not int or not 0 < limit <= 100_000:
            raise MalformedLedgerInput("balances.limit", "must be 1..100000")
        ids = sorted(self.state.accounts) if account_ids is None else sorted(set(account_ids))
        chosen = [i for i in ids if i > after_id and i in self.state.accounts]
        return [self.state.accounts[i] for i in chosen[:limit]]

    def journal(
        self,
        *,
        account_id: int | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        after: tuple[int, int] | None = None,
        limit: int = 1000,
    ) -> list[Transfer]:
        return journal(
            self.state.transfers.values(),
            account_id=account_id,
            since_ns=since_ns,
            until_ns=until_ns,
            after=after,
            limit=limit,
        )

    def totals(self) -> Totals:
        return check_invariants(self.state)

    def audit(self) -> list[int]:
        """Accounts whose balances differ from their transfers (empty when the books agree)."""
        return audit(self.state.accounts.values(), self.state.transfers.values(), self.state.expired)


class InMemoryUnitOfWork:
    """A :class:`~citycard.ledger.ports.UnitOfWork` over an :class:`InMemoryLedger`."""

    def __init__(self, ledger: InMemoryLedger) -> None:
        self.ledger = ledger
        self._snapshot: LedgerState | None = None

    def __enter__(self) -> Self:
        self._take_snapshot()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    def _take_snapshot(self) -> None:
        s = self.ledger.state
        self._snapshot = LedgerState(dict(s.accounts), dict(s.transfers), dict(s.resolved), dict(s.expired))

    def commit(self) -> None:
        self._take_snapshot()

    def rollback(self) -> None:
        assert self._snapshot is not None, "rollback outside 'with'"
        s = self.ledger.state
        snapshot = self._snapshot
        s.accounts, s.transfers = dict(snapshot.accounts), dict(snapshot.transfers)
        s.resolved, s.expired = dict(snapshot.resolved), dict(snapshot.expired)


if TYPE_CHECKING:  # mypy checks that the in-memory classes implement the ports

    def _is_repository(ledger: InMemoryLedger) -> LedgerRepository:
        return ledger

    def _is_unit_of_work(uow: InMemoryUnitOfWork) -> UnitOfWork:
        return uow
