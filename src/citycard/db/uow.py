"""The SQL unit of work: one session, one transaction, the repositories that work in it.

``with SqlUnitOfWork(session_factory) as uow: uow.ledger.create_transfers(...); uow.commit()``; leaving
the block without ``commit`` (or by an exception) rolls back. Repositories are built from
``repository_factories`` (name → factory taking the unit of work); other areas extend it by subclassing::

    class IssuerUnitOfWork(SqlUnitOfWork):
        repository_factories = {
            **SqlUnitOfWork.repository_factories,
            "cards": lambda uow: SqlCards(uow.session),
        }
        cards: SqlCards
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar, overload

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from citycard.ledger.ports import Clock

from .engine import READ_ONLY_OPTION, make_engine, make_session_factory
from .repositories import SqlLedgerRepository

__all__ = [
    "RETRYABLE_SQLSTATES",
    "Database",
    "RepositoryFactory",
    "SqlUnitOfWork",
    "is_retryable",
    "run_in_unit_of_work",
]

RepositoryFactory = Callable[["SqlUnitOfWork"], Any]
U = TypeVar("U", bound="SqlUnitOfWork")
T = TypeVar("T")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL ``serialization_failure`` and ``deadlock_detected``: the transaction may simply be run again."""
MAX_ATTEMPTS = 10


class SqlUnitOfWork:
    """A :class:`~citycard.ledger.ports.UnitOfWork` on SQLAlchemy sessions."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        "ledger": lambda uow: SqlLedgerRepository(uow.session, uow.clock),
    }
    ledger: SqlLedgerRepository
    session: Session
    clock: Clock

    def __init__(
        self, session_factory: sessionmaker[Session], *, clock: Clock = time.time_ns, read_only: bool = False
    ) -> None:
        self.session_factory = session_factory
        self.clock = clock
        self.read_only = read_only

    def __enter__(self) -> Self:
        self.session = self.session_factory()
        if self.read_only:  # must be set before the transaction begins
            self.session.connection(execution_options={READ_ONLY_OPTION: True, "postgresql_readonly": True})
        for name, factory in self.repository_factories.items():
            setattr(self, name, factory(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.session.rollback()  # a no-op after commit
        finally:
            self.session.close()

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


@dataclass(frozen=True)
class Database:
    """An engine and its session factory: ``Database.open(url)``, then ``db.unit_of_work()``."""

    engine: Engine
    session_factory: sessionmaker[Session]

    @classmethod
    def open(cls, url: str | None = None, *, schema: str | None = None, **engine_kwargs: Any) -> Database:
        """Connect to ``url`` (default: the settings' ``db_url``); run :func:`citycard.db.migrate` first."""
        engine = make_engine(url, schema=schema, **engine_kwargs)
        return cls(engine, make_session_factory(engine))

    @overload
    def unit_of_work(self, *, clock: Clock = ..., read_only: bool = ...) -> SqlUnitOfWork: ...

    @overload
    def unit_of_work(self, cls: type[U], *, clock: Clock = ..., read_only: bool = ...) -> U: ...

    def unit_of_work(
        self,
        cls: type[SqlUnitOfWork] = SqlUnitOfWork,
        *,
        clock: Clock = time.time_ns,
        read_only: bool = False,
    ) -> SqlUnitOfWork:
        """A new unit of work of class ``cls`` (a subclass adds repositories) on this database.

        ``read_only=True`` for queries (balances, journal, reports): on SQLite it does not wait for a
        writer, and any write in it fails.
        """
        return cls(self.session_factory, clock=clock, read_only=read_only)

    def close(self) -> None:
        self.engine.dispose()


def is_retryable(error: BaseException) -> bool:
    """A failure that running the same unit of work again may cure (deadlock, serialization, SQLite busy)."""
    original = getattr(error, "orig", None)
    if getattr(original, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return True
    return getattr(original, "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED")


def run_in_unit_of_work(make_uow: Callable[[], U], work: Callable[[U], T], *, attempts: int = 3) -> T:
    """Run ``work(uow)`` in a fresh unit of work and commit; run it again on a retryable failure.

    Within one ``create_transfers`` call accounts are locked in id order, so ledger calls alone do not
    deadlock; a unit of work that makes several calls (or locks other rows) can, and PostgreSQL then aborts
    one of the transactions. ``work`` must be safe to run again (all its effects go through the uow).
    """
    assert 0 < attempts <= MAX_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            with make_uow() as uow:
                result = work(uow)
                uow.commit()
                return result
        except Exception as error:
            if attempt == attempts or not is_retryable(error):
                raise
    raise AssertionError("unreachable")
