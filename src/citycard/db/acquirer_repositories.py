"""The acquirer's repositories and unit of work on SQLAlchemy (SQLite and PostgreSQL).

Implements :mod:`citycard.acquirer.ports`. Inserts that may race with a retry of the same terminal
transaction are ``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL waits for the other transaction, then
skips; the caller reads the stored row). RRNs: on PostgreSQL the sequence ``acquirer_rrn`` (migration
0020), which no transaction holds locked, so concurrent purchases do not queue on it; a new record takes its
number in its own ``INSERT … SELECT … WHERE NOT EXISTS`` (one round trip; a key stored already takes no
number). On SQLite one counter row of ``acquirer_sequences`` moved on by ``INSERT … ON CONFLICT DO UPDATE …
RETURNING`` under the database's one write lock. Either way a number is never given twice; numbers taken by
a transaction that rolls back are skipped. A purchase's statements are built once and run on psycopg
(``citycard.db.driver``).

**PANs at rest** (``docs/network.md``): the SAF queue and the upload store hold their ISO messages sealed
in the HSM (:class:`~citycard.hsm.protection.RecordProtection`), with the record's identity as the
associated data (:func:`saf_record`, :func:`upload_record`), so a sealed message moved onto another row does
not open; the domain sees clear messages only (sealed on the way in, unsealed on the way out). A unit of
work that stores or reads messages needs the protection (:func:`acquirer_unit_of_work`); without it, those
calls raise :class:`ProtectionMissing` and nothing is written in clear.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from collections.abc import Sequence as Sequence_
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Sequence,
    Text,
    bindparam,
    cast,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from citycard.acquirer import ports
from citycard.acquirer.model import (
    AcquirerTransaction,
    FollowUps,
    OfflineUpload,
    SafEntry,
    SafKind,
    SafStatus,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    format_rrn,
)
from citycard.clearing.tc import TcDataError, parse_tc
from citycard.codec.iso8583 import BatchUpload, Iso8583Error, decode_message, parse
from citycard.hsm.api import SealedDataError
from citycard.hsm.protection import RecordProtection

from .acquirer_tables import acquirer_saf, acquirer_sequences, acquirer_transactions, acquirer_uploads
from .driver import DriverStatement, array_literal, int_array, text_array
from .settlement_batch import SqlBatchTotals
from .uow import Database, RepositoryFactory, SqlUnitOfWork

__all__ = [
    "CARD_SHARDS",
    "AcquirerUnitOfWork",
    "ProtectionMissing",
    "SqlOfflineUploads",
    "SqlRrns",
    "SqlSafQueue",
    "SqlTransactions",
    "acquirer_unit_of_work",
    "card_shard",
    "fill_upload_columns",
    "pan_record",
    "saf_record",
    "seal_clear_rows",
    "sealed_pan",
    "upload_columns",
    "upload_record",
]


class ProtectionMissing(RuntimeError):
    """A message was to be stored or read by a unit of work without the HSM's record protection."""


def saf_record(kind: str, rrn: str) -> bytes:
    """The associated data of a SAF entry's sealed message: the table, its kind and RRN (unique)."""
    return f"citycard/acquirer_saf/{kind}/{rrn}".encode("ascii")


def upload_record(terminal_id: str, batch: int, stan: int) -> bytes:
    """The associated data of an upload's sealed message: the table and its key."""
    return f"citycard/acquirer_uploads/{terminal_id}/{int(batch)}/{int(stan)}".encode("ascii")


def pan_record(terminal_id: str, batch: int, stan: int) -> bytes:
    """The associated data of an offline record's PAN sealed alone (``pan_sealed``): the record's key, the
    same in the acquirer's upload and in clearing's presentment of it, so clearing copies the sealed PAN as it
    is and it opens for that record only."""
    return f"citycard/pan/{terminal_id}/{int(batch)}/{int(stan)}".encode("ascii")


CARD_SHARDS = 64
"""Shards of the cards (:func:`card_shard`): the unit of work a clearing process takes."""


def card_shard(fingerprint: str) -> int:
    """The card's shard: the first 32 bits of its PAN's keyed fingerprint modulo :data:`CARD_SHARDS` (spread,
    stable across processes and runs, and telling nothing of the PAN without the fingerprint key)."""
    return int(fingerprint[:8], 16) % CARD_SHARDS


def sealed_pan(
    protection: RecordProtection, pan: str, terminal_id: str, batch: int, stan: int
) -> dict[str, Any]:
    """An offline record's PAN as the acquirer and clearing keep it (migration 0022): its keyed fingerprint
    (``pan_fingerprint``), the PAN sealed alone for the record (``pan_sealed``, :func:`pan_record`) and the
    card's shard (``card_shard``, :func:`card_shard`) — column name → value."""
    fingerprint = protection.pan_fingerprint(pan)
    return {
        "pan_fingerprint": fingerprint,
        "pan_sealed": protection.seal(pan.encode("ascii"), pan_record(terminal_id, batch, stan)),
        "card_shard": card_shard(fingerprint),
    }


def upload_columns(protection: RecordProtection, key: TransactionKey, message: bytes) -> dict[str, Any]:
    """What clearing stages of an upload (migration 0022), decoded once from its 0320 ``message``: the PSN,
    field 55, the TC's values (None where field 55 holds no usable TC: clearing decides it ``tc_invalid``),
    the PAN's fingerprint, the PAN sealed alone (:func:`pan_record`) and the card's shard. A message that does
    not decode as a 0320 gives empty columns (``field55`` ``b""``): clearing never pays it."""
    values: dict[str, Any] = {
        "psn": "", "field55": b"", "pan_sealed": None, "pan_fingerprint": None, "card_shard": None,
        "tc_atc": None, "tc_amount_fen": None, "tc_date": None, "tc_cryptogram": None, "tc_ac_data": None,
        "tc_gpo_ac_data": None,
    }  # fmt: skip
    try:
        decoded = parse(decode_message(message))
    except Iso8583Error:
        return values
    if not isinstance(decoded, BatchUpload):
        return values
    pan = decoded.pan
    if pan:
        values |= sealed_pan(protection, pan, key.terminal_id, key.batch, key.stan)
    values["psn"] = (decoded.card_sequence_number or "")[-2:]
    field55 = decoded.icc.raw if decoded.icc is not None else b""
    values["field55"] = field55
    try:
        tc = parse_tc(field55)
    except TcDataError:
        return values
    return values | {
        "tc_atc": tc.atc,
        "tc_amount_fen": tc.amount_fen,
        "tc_date": tc.txn_date.strftime("%Y%m%d"),
        "tc_cryptogram": tc.cryptogram,
        "tc_ac_data": tc.ac_data,
        "tc_gpo_ac_data": tc.gpo_ac_data,
    }


def _protected(protection: RecordProtection | None) -> RecordProtection:
    if protection is None:
        raise ProtectionMissing("the acquirer's messages are sealed: open its unit of work with the HSM")
    return protection


def _open(protection: RecordProtection | None, sealed: Any, clear: Any, record: bytes) -> bytes:
    """A stored message: ``sealed`` unsealed, or the clear ``message`` of a row from before 0016."""
    if sealed is None:
        assert clear is not None, "a row holds its message sealed or (before 0019) clear"
        return bytes(clear)
    return _protected(protection).unseal(bytes(sealed), record)


def _pan_of(message: bytes) -> str | None:
    """The PAN of an encoded message (2, else the PAN of 35), or None."""
    try:
        decoded = parse(decode_message(message))
    except Iso8583Error:
        return None
    if decoded.pan is not None:
        return decoded.pan
    if decoded.track2 is not None:
        return decoded.track2.split("D", 1)[0]
    return None


def _insert(session: Session, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":  # imported here: see issuer_repositories
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    return sqlite_insert(table)


class _Repo:
    def __init__(self, session: Session, protection: RecordProtection | None = None) -> None:
        self.session = session
        self.protection = protection


RRN_SEQUENCE = Sequence("acquirer_rrn")
"""PostgreSQL's RRN sequence (made by migration 0020, not by the metadata: SQLite has none)."""


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


_LITERAL_OF = {c.key: array_literal(c.type) for c in acquirer_transactions.c}
"""PostgreSQL: each column's values as one array literal (``citycard.db.driver``), not a Python list that
psycopg dumps element by element."""


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
    add_numbered_many: DriverStatement | None
    """PostgreSQL: :attr:`add_numbered` of many records, their columns as arrays."""
    update: DriverStatement
    move: DriverStatement
    move_many: DriverStatement | None
    """PostgreSQL: :meth:`SqlTransactions.move_many` in one statement, the keys and codes as arrays."""


_MOVE_MANY = """UPDATE acquirer_transactions AS t
SET status = :v_status, response_code = v.code, updated_ns = :v_updated_ns
FROM unnest(CAST(:terminal_ids AS VARCHAR[]), CAST(:batches AS INTEGER[]), CAST(:stans AS INTEGER[]),
            CAST(:codes AS VARCHAR[])) AS v(terminal_id, batch, stan, code)
WHERE t.terminal_id = v.terminal_id AND t.batch = v.batch AND t.stan = v.stan
  AND t.status = ANY(CAST(:from_statuses AS VARCHAR[]))
RETURNING {columns}"""


@cache
def _statements(dialect: str) -> _Statements:
    if dialect == "postgresql":  # imported here: see issuer_repositories
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        insert_: Any = postgresql_insert
    else:
        insert_ = sqlite_insert
    t, get = acquirer_sequences, select(acquirer_transactions).where(_KEY_IS)
    columns: dict[str, Any] = {c.key: bindparam(f"v_{c.key}") for c in acquirer_transactions.c}
    add_numbered = add_numbered_many = move_many = None
    if dialect == "postgresql":
        next_rrn = DriverStatement(select(RRN_SEQUENCE.next_value().label("next_value")))
        returned = ", ".join(f"t.{c.name}" for c in acquirer_transactions.c)
        move_many = DriverStatement(
            text(_MOVE_MANY.format(columns=returned)).columns(*acquirer_transactions.c)
        )
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
        v = (
            func.unnest(
                *(
                    cast(bindparam(f"a_{n}"), ARRAY(acquirer_transactions.c[n].type))
                    for n in names
                    if n != "rrn"
                )
            )
            .table_valued(*(n for n in names if n != "rrn"))
            .render_derived(name="v")
        )
        stored = exists().where(
            (_TX.terminal_id == v.c.terminal_id) & (_TX.batch == v.c.batch) & (_TX.stan == v.c.stan)
        )
        add_numbered_many = DriverStatement(
            insert_(acquirer_transactions)
            .from_select(names, select(*(rrn if n == "rrn" else v.c[n] for n in names)).where(~stored))
            .on_conflict_do_nothing(index_elements=["terminal_id", "batch", "stan"])
            .returning(_TX.terminal_id, _TX.batch, _TX.stan, _TX.rrn)
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
        add_numbered_many=add_numbered_many,
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
        move_many=move_many,
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

    def add_numbered_many(
        self, records: Sequence_[AcquirerTransaction]
    ) -> dict[TransactionKey, AcquirerTransaction]:
        assert len(records) <= ports.MAX_MOVES and len({r.key for r in records}) == len(records)
        if not records:  # every purchase of the group refused: nothing to insert
            return {}
        statement = _statements(_dialect(self.session)).add_numbered_many
        if statement is None:  # SQLite: one writer at a time; a statement per record
            added = (self.add_numbered(record) for record in records)
            return {record.key: record for record in added if record is not None}
        rows = [_record_values(record) for record in records]
        columns = [name for name in rows[0] if name != "rrn"]
        params = {f"a_{name}": _LITERAL_OF[name]([row[name] for row in rows]) for name in columns}
        numbered = {
            TransactionKey(row.terminal_id, int(row.batch), int(row.stan)): row.rrn
            for row in statement.rows(self.session.connection(), params)
        }
        return {r.key: replace(r, rrn=numbered[r.key]) for r in records if r.key in numbered}

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

    def move_many(
        self,
        codes: Mapping[TransactionKey, str],
        from_statuses: Collection[TransactionStatus],
        *,
        status: TransactionStatus,
        updated_ns: int,
    ) -> dict[TransactionKey, AcquirerTransaction]:
        assert len(codes) <= ports.MAX_MOVES, len(codes)
        if not codes:
            return {}
        statement = _statements(_dialect(self.session)).move_many
        if statement is None:  # SQLite: one writer at a time; a statement per key in the one transaction
            moved = (
                self.move(key, from_statuses, status=status, response_code=code, updated_ns=updated_ns)
                for key, code in codes.items()
            )
            return {record.key: record for record in moved if record is not None}
        keys = list(codes)
        params = {
            "v_status": status.value,
            "v_updated_ns": updated_ns,
            "terminal_ids": text_array([key.terminal_id for key in keys]),
            "batches": int_array([key.batch for key in keys]),
            "stans": int_array([key.stan for key in keys]),
            "codes": text_array([codes[key] for key in keys]),
            "from_statuses": text_array([s.value for s in from_statuses]),
        }
        records = map(_record, statement.rows(self.session.connection(), params))
        return {record.key: record for record in records}

    def update(self, record: AcquirerTransaction) -> None:
        values = _record_values(record)
        params = {f"v_{name}": values[name] for name in (*_UPDATED, "updated_ns")} | _key(record.key)
        rows = _statements(_dialect(self.session)).update.rows(self.session.connection(), params)
        assert len(rows) == 1, (record.key, len(rows))

    def by_rrn(self, rrn: str) -> AcquirerTransaction | None:
        row = self.session.execute(select(acquirer_transactions).where(_TX.rrn == rrn)).first()
        return None if row is None else _record(row)

    def follow_ups(self, original_rrn: str) -> list[FollowUps]:
        by = (_TX.kind, _TX.status, _TX.response_code)
        query = (
            select(*by, func.count(), func.coalesce(func.sum(_TX.amount_fen), 0), func.min(_TX.rrn))
            .where(_TX.original_rrn == original_rrn)
            .group_by(*by)
        )
        return [
            FollowUps(TransactionKind(kind), TransactionStatus(status), code, int(count), int(fen), rrn)
            for kind, status, code, count, fen, rrn in self.session.execute(query)
        ]


_SAF = acquirer_saf.c


def _entry(row: Any, protection: RecordProtection | None) -> SafEntry:
    return SafEntry(
        id=int(row.id),
        kind=SafKind(row.kind),
        rrn=row.rrn,
        message=_open(protection, row.sealed, row.message, saf_record(row.kind, row.rrn)),
        status=SafStatus(row.status),
        attempts=int(row.attempts),
        next_attempt_ns=int(row.next_attempt_ns),
        response_code=row.response_code,
        created_ns=int(row.created_ns),
    )


class SqlSafQueue(_Repo):
    def add(self, entry: SafEntry) -> SafEntry | None:
        sealed = _protected(self.protection).seal(entry.message, saf_record(entry.kind.value, entry.rrn))
        statement = (
            _insert(self.session, acquirer_saf)
            .values(
                kind=entry.kind.value,
                rrn=entry.rrn,
                sealed=sealed,
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
        return None if row is None else _entry(row, self.protection)

    def find(self, kind: SafKind, rrn: str) -> SafEntry | None:
        row = self.session.execute(
            select(acquirer_saf).where(_SAF.kind == kind.value, _SAF.rrn == rrn)
        ).first()
        return None if row is None else _entry(row, self.protection)

    def due(self, now_ns: int, limit: int) -> list[SafEntry]:
        return self._pending(limit, _SAF.next_attempt_ns <= now_ns)

    def pending(self, limit: int) -> list[SafEntry]:
        return self._pending(limit)

    def _pending(self, limit: int, *conditions: ColumnElement[bool]) -> list[SafEntry]:
        """Pending entries (and ``conditions``), the next due first, at most ``limit``."""
        assert 0 < limit <= 10_000
        query = (
            select(acquirer_saf)
            .where(_SAF.status == SafStatus.PENDING.value, *conditions)
            .order_by(_SAF.next_attempt_ns, _SAF.id)
            .limit(limit)
        )
        return [_entry(row, self.protection) for row in self.session.execute(query)]

    def make_due(self, now_ns: int) -> int:
        result = self.session.execute(
            update(acquirer_saf)
            .where(_SAF.status == SafStatus.PENDING.value, _SAF.next_attempt_ns > now_ns)
            .values(next_attempt_ns=now_ns)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

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
        protection = _protected(self.protection)
        key = upload.key
        sealed = protection.seal(upload.message, upload_record(key.terminal_id, key.batch, key.stan))
        columns = upload_columns(protection, key, upload.message)
        if columns["pan_fingerprint"] is None:  # a 0320 without field 2: the PAN of 35, if any
            pan = _pan_of(upload.message)
            columns["pan_fingerprint"] = None if pan is None else protection.pan_fingerprint(pan)
        statement = (
            _insert(self.session, acquirer_uploads)
            .values(
                terminal_id=upload.key.terminal_id,
                batch=upload.key.batch,
                stan=upload.key.stan,
                merchant_id=upload.merchant_id,
                amount_fen=upload.amount_fen,
                pan_masked=upload.pan_masked,
                sealed=sealed,
                received_ns=upload.received_ns,
                service_ref=upload.service_ref,
                **columns,
                bus_line=upload.bus_line,
                vehicle=upload.vehicle,
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
            _open(
                self.protection, row.sealed, row.message, upload_record(key.terminal_id, key.batch, key.stan)
            ),
            int(row.received_ns),
            row.service_ref,
            None if row.bus_line is None else int(row.bus_line),
            row.vehicle,
        )

    def count(self) -> int:
        return int(self.session.execute(select(func.count()).select_from(acquirer_uploads)).scalar_one())

    def keys_of_card(self, pan: str) -> list[TransactionKey]:
        """The uploads of the card ``pan``, by its keyed fingerprint (the store has no clear PAN)."""
        fingerprint = _protected(self.protection).pan_fingerprint(pan)
        query = (
            select(_UP.terminal_id, _UP.batch, _UP.stan)
            .where(_UP.pan_fingerprint == fingerprint)
            .order_by(_UP.terminal_id, _UP.batch, _UP.stan)
        )
        return [TransactionKey(r.terminal_id, int(r.batch), int(r.stan)) for r in self.session.execute(query)]


class AcquirerUnitOfWork(SqlUnitOfWork):
    """The acquirer's repositories in one transaction. ``protection`` (the HSM's record protection) seals
    and unseals the stored messages: :func:`acquirer_unit_of_work` sets it."""

    protection: RecordProtection | None = None
    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        "rrns": lambda uow: SqlRrns(uow.session),
        "transactions": lambda uow: SqlTransactions(uow.session),
        "saf": lambda uow: SqlSafQueue(uow.session, getattr(uow, "protection", None)),
        "uploads": lambda uow: SqlOfflineUploads(uow.session, getattr(uow, "protection", None)),
        "batches": lambda uow: SqlBatchTotals(uow.session),
    }
    rrns: SqlRrns
    transactions: SqlTransactions
    saf: SqlSafQueue
    uploads: SqlOfflineUploads
    batches: SqlBatchTotals

    def each_statement_commits(self) -> None:
        """The port's contract: on PostgreSQL the session's connection in autocommit (psycopg then sends
        no ``BEGIN``, and ``commit`` is nothing to send); on SQLite one transaction as before. Before the
        first statement only (SQLAlchemy refuses it once the transaction has begun)."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def acquirer_unit_of_work(
    database: Database, protection: RecordProtection, *, read_only: bool = False
) -> AcquirerUnitOfWork:
    """A unit of work of the acquirer on ``database`` whose stored messages are sealed by ``protection``."""
    uow = database.unit_of_work(AcquirerUnitOfWork, read_only=read_only)
    uow.protection = protection
    return uow


def seal_clear_rows(database: Database, protection: RecordProtection, *, batch: int = 500) -> int:
    """Seal the messages of rows written before migration ``0019_acquirer_sealed`` (``message`` clear):
    ``sealed`` (and an upload's PAN fingerprint) written and ``message`` set to NULL, ``batch`` rows per
    transaction; returns how many. Run by the acquirer at start; a crash leaves rows clear or sealed, never
    half (each row in one UPDATE), and the next start goes on. The clear bytes may stay in the database's
    free pages until it is vacuumed (SQLite ``VACUUM``, PostgreSQL ``VACUUM FULL``)."""
    assert 0 < batch <= 10_000
    sealed = 0
    while True:
        with database.engine.begin() as connection:
            rows = connection.execute(
                select(_SAF.id, _SAF.kind, _SAF.rrn, _SAF.message)
                .where(_SAF.message.is_not(None), _SAF.sealed.is_(None))
                .limit(batch)
            ).all()
            for r in rows:
                connection.execute(
                    update(acquirer_saf)
                    .where(_SAF.id == r.id)
                    .values(sealed=protection.seal(bytes(r.message), saf_record(r.kind, r.rrn)), message=None)
                )
            uploads = connection.execute(
                select(_UP.terminal_id, _UP.batch, _UP.stan, _UP.message)
                .where(_UP.message.is_not(None), _UP.sealed.is_(None))
                .limit(batch)
            ).all()
            for u in uploads:
                message = bytes(u.message)
                pan = _pan_of(message)
                connection.execute(
                    update(acquirer_uploads)
                    .where(_UP.terminal_id == u.terminal_id, _UP.batch == u.batch, _UP.stan == u.stan)
                    .values(
                        sealed=protection.seal(message, upload_record(u.terminal_id, u.batch, u.stan)),
                        pan_fingerprint=None if pan is None else protection.pan_fingerprint(pan),
                        message=None,
                    )
                )
        sealed += len(rows) + len(uploads)
        if not rows and not uploads:
            return sealed


def fill_upload_columns(
    database: Database,
    protection: RecordProtection,
    *,
    batch: int = 500,
    where: Any = None,
) -> int:
    """Fill what clearing stages (:func:`upload_columns`) in the uploads stored before migration 0022
    (``field55`` NULL), ``batch`` rows per transaction, each row in one UPDATE; returns how many. Run by the
    acquirer at start (after :func:`seal_clear_rows`) and by clearing before it stages a day (``where``: the
    day's uploads only). A row whose sealed message does not open gets empty columns (clearing never pays it)
    and keeps its sealed message for audit."""
    assert 0 < batch <= 10_000
    filled = 0
    while True:
        with database.engine.begin() as connection:
            query = select(_UP.terminal_id, _UP.batch, _UP.stan, _UP.message, _UP.sealed).where(
                _UP.field55.is_(None)
            )
            if where is not None:
                query = query.where(where)
            rows = connection.execute(query.limit(batch)).all()
            for u in rows:
                key = TransactionKey(u.terminal_id, int(u.batch), int(u.stan))
                try:
                    message = _open(
                        protection, u.sealed, u.message, upload_record(key.terminal_id, key.batch, key.stan)
                    )
                except SealedDataError:
                    message = b""
                columns = upload_columns(protection, key, message)
                if columns["pan_fingerprint"] is None:
                    columns.pop("pan_fingerprint")  # keep one found from field 35 before
                connection.execute(
                    update(acquirer_uploads)
                    .where(_UP.terminal_id == u.terminal_id, _UP.batch == u.batch, _UP.stan == u.stan)
                    .values(**columns)
                )
        filled += len(rows)
        if len(rows) < batch:
            return filled


if TYPE_CHECKING:  # mypy checks that the SQL unit of work implements the acquirer's port

    def _is_acquirer_unit_of_work(uow: AcquirerUnitOfWork) -> ports.AcquirerUnitOfWork:
        return uow
