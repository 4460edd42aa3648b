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
from typing import Any, ClassVar, Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from citycard.ledger.ports import Clock

from .engine import make_engine, make_session_factory
from .repositories import SqlLedgerRepository

__all__ = ["Database", "RepositoryFactory", "SqlUnitOfWork"]

RepositoryFactory = Callable[["SqlUnitOfWork"], Any]


class SqlUnitOfWork:
    """A :class:`~citycard.ledger.ports.UnitOfWork` on SQLAlchemy sessions."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        "ledger": lambda uow: SqlLedgerRepository(uow.session, uow.clock),
    }
    ledger: SqlLedgerRepository
    session: Session
    clock: Clock

    def __init__(self, session_factory: sessionmaker[Session], *, clock: Clock = time.time_ns) -> None:
        self.session_factory = session_factory
        self.clock = clock

    def __enter__(self) -> Self:
        self.session = self.session_factory()
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

    def unit_of_work(
        self, cls: type[SqlUnitOfWork] = SqlUnitOfWork, *, clock: Clock = time.time_ns
    ) -> SqlUnitOfWork:
        return cls(self.session_factory, clock=clock)

    def close(self) -> None:
        self.engine.dispose()
