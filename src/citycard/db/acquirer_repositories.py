"""The acquirer's repositories and unit of work on SQLAlchemy (SQLite and PostgreSQL).

Implements :mod:`citycard.acquirer.ports`. Inserts that may race with a retry of the same terminal
transaction are ``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL waits for the other transaction, then
skips; the caller reads the stored row). RRNs: on PostgreSQL the sequence ``acquirer_rrn`` (migration
0016), which no transaction holds locked, so concurrent purchases do not queue on it; a new record takes its
number in its own ``INSERT … SELECT … WHERE NOT EXISTS`` (one round trip; a key stored already takes no
number). On SQLite one counter row of ``acquirer_sequences`` moved on by ``INSERT … ON CONFLICT DO UPDATE …
RETURNING`` under the database's one write lock. Either way a number is never given twice; numbers taken by
a transaction that rolls back are skipped. A purchase's statements are built once and run on psycopg
(``citycard.db.driver``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Sequence, Text, bindparam, cast, exists, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from citycard.acquirer import ports
from citycard.acquirer.model import (
    AcquirerTransaction,
    OfflineUpload,
    SafEntry,
    SafKind,
    SafStatus,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    format_rrn,
)

from .acquirer_tables import acquirer_saf, acquirer_sequences, acquirer_transactions, acquirer_uploads
from .driver import DriverStatement
from .settlement_batch import SqlBatchTotals
from .uow import RepositoryFactory, SqlUnitOfWork

__all__ = ["AcquirerUnitOfWork", "SqlOfflineUploads", "SqlRrns", "SqlSafQueue", "SqlTransactions"]


def _insert(session: Session, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":  # imported here: see issuer_repositories
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    return sqlite_insert(table)


class _Repo:
    def __init__(self, session: Session) -> None:
        self.session = session


RRN_SEQUENCE = Sequence("acquirer_rrn")
"""PostgreSQL's RRN sequence (made by migration 0016, not by the metadata: SQLite has none)."""


class SqlRrns(_Repo):
    NAME = "rrn"

    def next_value(self) -> int:
        """The next RRN number. PostgreSQL: ``nextval`` of ``acquirer_rrn`` (nothing stays locked). SQLite:
        one statement that creates the counter or moves it on (``INSERT … ON CONFLICT DO UPDATE …
        RETURNING``), so two first transactions on a fresh database do not both insert it."""
        dialect = _dialect(self.session)
        statement = _statements(dialect).next_rrn
        if dialect == "postgresql":
            return int(statement.first(self.session.connection(), {}).next_value)
        row = statement.first(self.session.connection(), {"s_name": self.NAME})
        return int(row.next_value) - 1


_TX = acquirer_transactions.c


def _record(row: Any) -> AcquirerTransaction:
    return AcquirerTransaction(
        key=TransactionKey(row.terminal_id, int(row.batch), int(row.stan)),
        merchant_id=row.merchant_id,
        rrn=row.rrn,
        kind=TransactionKind(row.kind),
        amount_fen=row.amount_fen,
        pan_masked=row.pan_masked,
        status=TransactionStatus(row.status),
        response_code=row.response_code,
        original_rrn=row.original_rrn,
        created_ns=int(row.created_ns),
        updated_ns=int(row.updated_ns),
        service_ref=row.service_ref,
    )


def _record_values(record: AcquirerTransaction) -> dict[str, Any]:
    return {
        "terminal_id": record.key.terminal_id,
        "batch": record.key.batch,
        "stan": record.key.stan,
        "merchant_id": record.merchant_id,
        "rrn": record.rrn,
        "kind": record.kind.value,
        "amount_fen": record.amount_fen,
        "pan_masked": record.pan_masked,
        "status": record.status.value,
        "response_code": record.response_code,
        "original_rrn": record.original_rrn,
        "created_ns": record.created_ns,
        "updated_ns": record.updated_ns,
        "service_ref": record.service_ref,
    }


def _key(key: TransactionKey) -> dict[str, Any]:
    return {"k_terminal_id": key.terminal_id, "k_batch": key.batch, "k_stan": key.stan}


_KEY_IS = (
    (_TX.terminal_id == bindparam("k_terminal_id"))
    & (_TX.batch == bindparam("k_batch"))
    & (_TX.stan == bindparam("k_stan"))
)
_UPDATED = ("merchant_id", "kind", "amount_fen", "pan_masked", "status", "response_code", "original_rrn")


@dataclass(frozen=True)
class _Statements:
    """The statements of a purchase's two acquirer transactions, built once per dialect and run on the
    driver (``citycard.db.driver``): they run for every authorization."""

    next_rrn: DriverStatement
    get: DriverStatement
    get_for_update: DriverStatement
    add: DriverStatement
    add_numbered: DriverStatement | None
    """PostgreSQL: a new record numbered by the sequence in the insert itself, unless its key is stored."""
    update: DriverStatement
    move: DriverStatement


@cache
def _statements(dialect: str) -> _Statements:
    if dialect == "postgresql":  # imported here: see issuer_repositories
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        insert_: Any = postgresql_insert
    else:
        insert_ = sqlite_insert
    t, get = acquirer_sequences, select(acquirer_transactions).where(_KEY_IS)
    columns: dict[str, Any] = {c.key: bindparam(f"v_{c.key}") for c in acquirer_transactions.c}
    add_numbered = None
    if dialect == "postgresql":
        next_rrn = DriverStatement(select(RRN_SEQUENCE.next_value().label("next_value")))
        names = [c.key for c in acquirer_transactions.c]
        rrn = func.lpad(cast(RRN_SEQUENCE.next_value(), Text), 12, "0")
        typed = {c.key: bindparam(f"v_{c.key}", type_=c.type) for c in acquirer_transactions.c}
        numbered = select(*(rrn if n == "rrn" else typed[n] for n in names)).where(~exists().where(_KEY_IS))
        add_numbered = DriverStatement(
            insert_(acquirer_transactions)
            .from_select(names, numbered)
            .on_conflict_do_nothing(index_elements=["terminal_id", "batch", "stan"])
            .returning(_TX.rrn)
        )
    else:
        next_rrn = DriverStatement(
            insert_(t)
            .values(name=bindparam("s_name"), next_value=2)
            .on_conflict_do_update(index_elements=[t.c.name], set_={"next_value": t.c.next_value + 1})
            .returning(t.c.next_value)
        )
    return _Statements(
        next_rrn=next_rrn,
        get=DriverStatement(get),
        get_for_update=DriverStatement(get.with_for_update()),
        add=DriverStatement(
            insert_(acquirer_transactions)
            .values(columns)
            .on_conflict_do_nothing(index_elements=["terminal_id", "batch", "stan"])
            .returning(_TX.rrn)
        ),
        add_numbered=add_numbered,
        update=DriverStatement(
            update(acquirer_transactions)
            .where(_KEY_IS)
            .values({name: bindparam(f"v_{name}") for name in (*_UPDATED, "updated_ns")})
            .returning(_TX.rrn)
        ),
        move=DriverStatement(
            update(acquirer_transactions)
            .where(_KEY_IS & _TX.status.in_(bindparam("from_statuses", expanding=True)))
            .values(
                status=bindparam("v_status"),
                response_code=bindparam("v_response_code"),
                updated_ns=bindparam("v_updated_ns"),
            )
            .returning(*acquirer_transactions.c),
            arrays={"from_statuses": "VARCHAR[]"},
        ),
    )


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


class SqlTransactions(_Repo):
    def get(self, key: TransactionKey, *, for_update: bool = False) -> AcquirerTransaction | None:
        statements = _statements(_dialect(self.session))
        query = statements.get_for_update if for_update else statements.get
        row = query.first(self.session.connection(), _key(key))
        return None if row is None else _record(row)

    def add(self, record: AcquirerTransaction) -> bool:
        params = {f"v_{name}": value for name, value in _record_values(record).items()}
        row = _statements(_dialect(self.session)).add.first(self.session.connection(), params)
        return row is not None

    def add_numbered(self, record: AcquirerTransaction) -> AcquirerTransaction | None:
        """Store a new record with the next RRN (``record.rrn`` is ignored); None, taking no number and
        writing nothing, when its key is stored already."""
        statements = _statements(_dialect(self.session))
        if statements.add_numbered is None:  # SQLite: one writer at a time, the read cannot go stale
            if self.get(record.key) is not None:
                return None
            numbered = replace(record, rrn=format_rrn(SqlRrns(self.session).next_value()))
            return numbered if self.add(numbered) else None
        params = {f"v_{name}": value for name, value in _record_values(record).items() if name != "rrn"}
        row = statements.add_numbered.first(self.session.connection(), params | _key(record.key))
        return None if row is None else replace(record, rrn=row.rrn)

    def move(
        self,
        key: TransactionKey,
        from_statuses: Collection[TransactionStatus],
        *,
        status: TransactionStatus,
        response_code: str | None,
        updated_ns: int,
    ) -> AcquirerTransaction | None:
        """Set the status, response code and time of ``key``'s record if its status is one of
        ``from_statuses`` (one statement); the record as stored then, or None when nothing was moved."""
        params = _key(key) | {
            "from_statuses": [s.value for s in from_statuses],
            "v_status": status.value,
            "v_response_code": response_code,
            "v_updated_ns": updated_ns,
        }
        row = _statements(_dialect(self.session)).move.first(self.session.connection(), params)
        return None if row is None else _record(row)

    def update(self, record: AcquirerTransaction) -> None:
        values = _record_values(record)
        params = {f"v_{name}": values[name] for name in (*_UPDATED, "updated_ns")} | _key(record.key)
        rows = _statements(_dialect(self.session)).update.rows(self.session.connection(), params)
        assert len(rows) == 1, (record.key, len(rows))

    def by_rrn(self, rrn: str) -> AcquirerTransaction | None:
        row = self.session.execute(select(acquirer_transactions).where(_TX.rrn == rrn)).first()
        return None if row is None else _record(row)


_SAF = acquirer_saf.c


def _entry(row: Any) -> SafEntry:
    return SafEntry(
        id=int(row.id),
        kind=SafKind(row.kind),
        rrn=row.rrn,
        message=bytes(row.message),
        status=SafStatus(row.status),
        attempts=int(row.attempts),
        next_attempt_ns=int(row.next_attempt_ns),
        response_code=row.response_code,
        created_ns=int(row.created_ns),
    )


class SqlSafQueue(_Repo):
    def add(self, entry: SafEntry) -> SafEntry | None:
        statement = (
            _insert(self.session, acquirer_saf)
            .values(
                kind=entry.kind.value,
                rrn=entry.rrn,
                message=entry.message,
                status=entry.status.value,
                attempts=entry.attempts,
                next_attempt_ns=entry.next_attempt_ns,
                response_code=entry.response_code,
                created_ns=entry.created_ns,
            )
            .on_conflict_do_nothing(index_elements=["kind", "rrn"])
            .returning(_SAF.id)
        )
        row = self.session.execute(statement).first()
        if row is None:
            return None
        return SafEntry(
            int(row.id),
            entry.kind,
            entry.rrn,
            entry.message,
            entry.status,
            entry.attempts,
            entry.next_attempt_ns,
            entry.response_code,
            entry.created_ns,
        )

    def get(self, entry_id: int) -> SafEntry | None:
        row = self.session.execute(select(acquirer_saf).where(_SAF.id == entry_id)).first()
        return None if row is None else _entry(row)

    def find(self, kind: SafKind, rrn: str) -> SafEntry | None:
        row = self.session.execute(
            select(acquirer_saf).where(_SAF.kind == kind.value, _SAF.rrn == rrn)
        ).first()
        return None if row is None else _entry(row)

    def due(self, now_ns: int, limit: int) -> list[SafEntry]:
        assert 0 < limit <= 10_000
        query = (
            select(acquirer_saf)
            .where(_SAF.status == SafStatus.PENDING.value, _SAF.next_attempt_ns <= now_ns)
            .order_by(_SAF.next_attempt_ns, _SAF.id)
            .limit(limit)
        )
        return [_entry(row) for row in self.session.execute(query)]

    def set_result(
        self,
        entry_id: int,
        *,
        status: SafStatus,
        attempts: int,
        next_attempt_ns: int,
        response_code: str | None,
    ) -> None:
        self.session.execute(
            update(acquirer_saf)
            .where(_SAF.id == entry_id)
            .values(
                status=status.value,
                attempts=attempts,
                next_attempt_ns=next_attempt_ns,
                response_code=response_code,
            )
        )

    def count(self, status: SafStatus) -> int:
        query = select(func.count()).select_from(acquirer_saf).where(_SAF.status == status.value)
        return int(self.session.execute(query).scalar_one())


_UP = acquirer_uploads.c


class SqlOfflineUploads(_Repo):
    def add(self, upload: OfflineUpload) -> bool:
        statement = (
            _insert(self.session, acquirer_uploads)
            .values(
                terminal_id=upload.key.terminal_id,
                batch=upload.key.batch,
                stan=upload.key.stan,
                merchant_id=upload.merchant_id,
                amount_fen=upload.amount_fen,
                pan_masked=upload.pan_masked,
                message=upload.message,
                received_ns=upload.received_ns,
                service_ref=upload.service_ref,
            )
            .on_conflict_do_nothing(index_elements=["terminal_id", "batch", "stan"])
            .returning(_UP.stan)
        )
        return self.session.execute(statement).first() is not None

    def get(self, key: TransactionKey) -> OfflineUpload | None:
        row = self.session.execute(
            select(acquirer_uploads).where(
                _UP.terminal_id == key.terminal_id, _UP.batch == key.batch, _UP.stan == key.stan
            )
        ).first()
        if row is None:
            return None
        return OfflineUpload(
            key,
            row.merchant_id,
            row.amount_fen,
            row.pan_masked,
            bytes(row.message),
            int(row.received_ns),
            row.service_ref,
        )

    def count(self) -> int:
        return int(self.session.execute(select(func.count()).select_from(acquirer_uploads)).scalar_one())


class AcquirerUnitOfWork(SqlUnitOfWork):
    """The acquirer's repositories in one transaction."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        "rrns": lambda uow: SqlRrns(uow.session),
        "transactions": lambda uow: SqlTransactions(uow.session),
        "saf": lambda uow: SqlSafQueue(uow.session),
        "uploads": lambda uow: SqlOfflineUploads(uow.session),
        "batches": lambda uow: SqlBatchTotals(uow.session),
    }
    rrns: SqlRrns
    transactions: SqlTransactions
    saf: SqlSafQueue
    uploads: SqlOfflineUploads
    batches: SqlBatchTotals


if TYPE_CHECKING:  # mypy checks that the SQL unit of work implements the acquirer's port

    def _is_acquirer_unit_of_work(uow: AcquirerUnitOfWork) -> ports.AcquirerUnitOfWork:
        return uow
