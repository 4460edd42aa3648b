"""SQL implementations of the issuer's ports (``citycard.issuer.ports``) and its unit of work.

``IssuerUnitOfWork`` extends :class:`citycard.db.uow.SqlUnitOfWork` with the issuer repositories, so the
ledger and the issuer's rows change in one transaction. Rows locked ``for_update`` use ``SELECT … FOR
UPDATE`` (PostgreSQL); SQLite serialises writers at ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Select,
    String,
    Table,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from citycard.chip.pboc import TRANSIT_SFI
from citycard.codec.appfile import APP_FILE_SFI, APP_NUMBERS, encode_record
from citycard.codec.transitfile import Category, Concession
from citycard.issuer import ports
from citycard.issuer.model import (
    Bank,
    BankAccount,
    BinRange,
    Card,
    Cardholder,
    CardRecord,
    CardStatus,
    CardType,
    DenyListEntry,
    PendingScript,
    Product,
    RecordState,
    RegisteredTerminal,
    TerminalStatus,
)
from citycard.issuer.ports import AccountOwner, AuthorizationStart, CardQuery, StoredAuthorization
from citycard.ledger.engine import Totals
from citycard.ledger.model import Account, Transfer

from .center_tables import center_terminals
from .driver import DriverStatement, UnnestRows, copy_rows, execute_driver_sql, run_together, text_array
from .issuer_tables import (
    ISSUER_ID_BASE,
    PAN_LAST4,
    issuer_authorizations,
    issuer_banks,
    issuer_bin_ranges,
    issuer_card_transit,
    issuer_cardholders,
    issuer_cards,
    issuer_deny_list,
    issuer_deny_list_versions,
    issuer_products,
    issuer_sequences,
    issuer_unpredictable_numbers,
)
from .public_tables import public_card_applications
from .repositories import SqlLedgerRepository, account_balances, account_from_row, transfer_from_row
from .tables import ledger_transfers
from .uow import RepositoryFactory, SqlUnitOfWork

__all__ = [
    "IssuerUnitOfWork",
    "SqlAuthorizations",
    "SqlBanks",
    "SqlBooks",
    "SqlCardholders",
    "SqlCards",
    "SqlDenyList",
    "SqlIdAllocator",
    "SqlProducts",
    "SqlTerminals",
]

_MAX_BATCH = 100_000


_V = TypeVar("_V")
_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _values(value: Any) -> dict[str, Any]:
    """A domain dataclass as column values: each field is the column of the same name (enums by value)."""
    out = {}
    for name in _field_names(type(value)):
        item = getattr(value, name)
        out[name] = item.value if isinstance(item, enum.Enum) else item
    return out


_COPY_FROM = 16
"""Rows from which :func:`_insert_rows` sends a ``COPY`` on PostgreSQL."""


def _insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """``rows`` (dicts with the same keys, columns of ``table``) in one statement: on PostgreSQL from
    :data:`_COPY_FROM` rows a ``COPY`` (psycopg formats the rows in C, the server parses no statement per
    row), fewer as an ``executemany`` (a ``COPY`` waits for the server's answer to start it: one round
    trip more, for the card issued at the counter); on SQLite an ``executemany`` of one prepared insert."""
    if connection.dialect.driver == "psycopg" and len(rows) >= _COPY_FROM:
        copy_rows(connection, table.name, tuple(rows[0]), [tuple(r.values()) for r in rows])
    else:
        connection.execute(insert(table), rows)


def _from_row(cls: type[_V], row: Any, **converted: Any) -> _V:
    """The dataclass ``cls`` from a row with a column per field; ``converted`` gives fields that need it."""
    names = _field_names(cls)
    return cls(**{name: getattr(row, name) for name in names if name not in converted}, **converted)


def _bound(table: Table, prefix: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``column: bindparam(prefix + column)`` for every column of ``table`` but ``skip``."""
    return {c.key: bindparam(prefix + c.key) for c in table.c if c.key not in skip}


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in values.items()}


# Statements of the authorization path, built once (SQLAlchemy then caches their compiled form).
_CARD = select(issuer_cards).where(issuer_cards.c.pan == bindparam("pan"))
_CARD_FOR_UPDATE = _CARD.with_for_update()
_PANS_BETWEEN = DriverStatement(
    select(issuer_cards.c.pan).where(issuer_cards.c.pan.between(bindparam("low"), bindparam("high")))
)
_AUTHORIZATION = select(issuer_authorizations).where(
    issuer_authorizations.c.request_id == bindparam("request_id")
)
_AUTHORIZATION_FOR_UPDATE = _AUTHORIZATION.with_for_update()
_UN_SEEN = select(issuer_unpredictable_numbers.c.atc).where(
    issuer_unpredictable_numbers.c.pan == bindparam("pan"),
    issuer_unpredictable_numbers.c.un == bindparam("un"),
)
_TERMINAL_IN_USE = select(center_terminals.c.terminal_id).limit(1)
_TERMINAL = select(
    center_terminals.c.terminal_id, center_terminals.c.merchant_id, center_terminals.c.status
).where(center_terminals.c.terminal_id == bindparam("terminal_id"))
_CT = center_terminals.c
_START = (
    select(
        issuer_cards,
        exists()
        .where(issuer_authorizations.c.request_id == bindparam("request_id"))
        .label("request_id_stored"),
        exists(select(_CT.terminal_id).limit(1)).label("registry_in_use"),
        select(_CT.merchant_id)
        .where(_CT.terminal_id == bindparam("terminal_id"))
        .scalar_subquery()
        .label("t_merchant"),
        select(_CT.status)
        .where(_CT.terminal_id == bindparam("terminal_id"))
        .scalar_subquery()
        .label("t_status"),
    )
    .where(issuer_cards.c.pan == bindparam("pan"))
    .with_for_update(of=issuer_cards)
)
"""An authorization's first read (``SqlAuthorizations.start``): the card locked, the request id, the
terminal registry, as one statement."""
_EC_BALANCES = account_balances()
_UN_SEEN_AND_EC = select(
    exists()
    .where(
        issuer_unpredictable_numbers.c.pan == bindparam("pan"),
        issuer_unpredictable_numbers.c.un == bindparam("un"),
    )
    .label("seen"),
    select(_EC_BALANCES.c.credits_posted - _EC_BALANCES.c.debits_posted)
    .where(_EC_BALANCES.c.id == bindparam("ec_id"))
    .scalar_subquery()
    .label("ec_balance"),
)
_START_D = DriverStatement(_START)
_UN_SEEN_AND_EC_D = DriverStatement(_UN_SEEN_AND_EC)


@cache
def _start_ahead() -> DriverStatement:
    """PostgreSQL: :data:`_START` and :data:`_UN_SEEN_AND_EC` for a group's requests in one statement
    (``SqlAuthorizations.prefetch``): the requests as arrays unnested, their cards locked in PAN order (the
    lock is taken on the sorted rows)."""
    v = (
        func.unnest(
            *(cast(bindparam(name), ARRAY(String)) for name in ("pans", "request_ids", "terminal_ids", "uns"))
        )
        .table_valued("pan", "request_id", "terminal_id", "un")
        .render_derived(name="v")
    )
    un = issuer_unpredictable_numbers.c
    return DriverStatement(
        select(
            issuer_cards,
            v.c.request_id.label("v_request_id"),
            v.c.terminal_id.label("v_terminal_id"),
            exists().where(issuer_authorizations.c.request_id == v.c.request_id).label("request_id_stored"),
            exists(select(_CT.terminal_id).limit(1)).label("registry_in_use"),
            _CT.merchant_id.label("t_merchant"),
            _CT.status.label("t_status"),
            exists().where(un.pan == v.c.pan, un.un == v.c.un).label("un_seen"),
            select(_EC_BALANCES.c.credits_posted - _EC_BALANCES.c.debits_posted)
            .where(_EC_BALANCES.c.id == issuer_cards.c.ec_float_account_id)
            .scalar_subquery()
            .label("ec_balance"),
        )
        .select_from(
            v.join(issuer_cards, issuer_cards.c.pan == v.c.pan).outerjoin(
                center_terminals, _CT.terminal_id == v.c.terminal_id
            )
        )
        .order_by(issuer_cards.c.pan)
        .with_for_update(of=issuer_cards)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Ahead:
    """A request's start and unpredictable-number answers read ahead (``SqlAuthorizations.prefetch``)."""

    request_id: str
    terminal_id: str
    start: AuthorizationStart
    un: bytes | None
    un_seen: bool
    ec_balance: int | None


_DEFERRABLE: dict[str, Any] = {
    "card": update(issuer_cards)
    .where(issuer_cards.c.pan == bindparam("c_w_pan"))
    .values(_bound(issuer_cards, "c_", skip=("pan",))),
    "un": insert(issuer_unpredictable_numbers).values(_bound(issuer_unpredictable_numbers, "u_")),
}
"""Writes nobody waits for (see :class:`_Writes`), by kind; parameters prefixed ``c_`` / ``u_``."""
_ROWCOUNT = {"preserve_rowcount": True}


@cache
def _authorization_insert(dialect: str, deferred: tuple[str, ...]) -> DriverStatement:
    """``INSERT … ON CONFLICT (request_id) DO NOTHING RETURNING request_id`` of an authorization
    (parameters ``a_*``); on PostgreSQL with the ``deferred`` writes as data-modifying CTEs of the same
    statement, each returning its row count after the request id."""
    if dialect == "postgresql":  # imported here: the dialect's import costs every SQLite command
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement: Any = postgresql_insert(issuer_authorizations)
    else:
        assert not deferred
        statement = sqlite_insert(issuer_authorizations)
    counts = [
        select(func.count())
        .select_from(_DEFERRABLE[kind].returning(literal_column("1")).cte(f"w_{kind}"))
        .scalar_subquery()
        for kind in deferred
    ]
    return DriverStatement(
        statement.values(_bound(issuer_authorizations, "a_"))
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(issuer_authorizations.c.request_id, *counts)
    )


class _Writes:
    """Writes of the issuer's repositories whose results nobody waits for — a card's new state, a seen
    unpredictable number — held until the next statement of those repositories or the commit, whichever
    comes first, so that reads see them. On PostgreSQL the authorization's insert carries them in the same
    statement (one round trip instead of three). The ledger's tables are never among them."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def defer(self, kind: str, params: dict[str, Any]) -> None:
        assert kind in _DEFERRABLE, kind
        self.pending.append((kind, params))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        pending, self.pending = self.pending, []
        return pending

    def flush(self) -> None:
        """Write what is held back: each kind's rows in one statement (on PostgreSQL one of fixed text,
        :func:`_write_unnested`; on SQLite an ``executemany``), the kinds touching tables of their own."""
        if self.pending:
            self.write(self.take())

    def write(self, writes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        connection = self.session.connection()
        for kind, rows in _by_kind(writes).items():
            if connection.dialect.driver == "psycopg":
                _write_unnested(connection, kind, rows)
            elif len(rows) == 1:
                result = connection.execute(_DEFERRABLE[kind], rows[0], execution_options=_ROWCOUNT)
                assert result.rowcount == 1, (kind, result.rowcount)
            else:
                connection.execute(_DEFERRABLE[kind], rows)

    def split(self) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
        """What is held back, as (the last write of each kind, the earlier ones), taken."""
        last: dict[str, tuple[str, dict[str, Any]]] = {}
        earlier = []
        for write in self.take():
            if write[0] in last:
                earlier.append(last[write[0]])
            last[write[0]] = write
        return list(last.values()), earlier


def _by_kind(writes: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Held-back writes by kind, each kind's rows in order."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for kind, params in writes:
        by_kind.setdefault(kind, []).append(params)
    return by_kind


_UNNESTED_CARDS = UnnestRows(list(issuer_cards.c), prefix="c_", keys={"pan": "c_w_pan"})
_UNNESTED_UNS = UnnestRows(list(issuer_unpredictable_numbers.c), prefix="u_")
_UNNESTED_AUTHORIZATIONS = UnnestRows(list(issuer_authorizations.c), prefix="a_")


@cache
def _unnested_sql(kind: str) -> str:
    """PostgreSQL: each kind of :data:`_DEFERRABLE`, and ``"authorizations"`` (a group's authorizations,
    the request ids stored returned), for any number of rows in one statement of fixed text."""
    if kind == "card":
        assignments = ", ".join(f"{n} = v.{n}" for n in _UNNESTED_CARDS.names if n != "pan")
        return f"""UPDATE issuer_cards AS c SET {assignments}
FROM {_UNNESTED_CARDS.source} WHERE c.pan = v.pan RETURNING c.pan"""
    if kind == "un":
        return f"""INSERT INTO issuer_unpredictable_numbers ({", ".join(_UNNESTED_UNS.names)})
SELECT * FROM {_UNNESTED_UNS.source} RETURNING pan"""
    assert kind == "authorizations", kind
    return f"""INSERT INTO issuer_authorizations ({", ".join(_UNNESTED_AUTHORIZATIONS.names)})
SELECT * FROM {_UNNESTED_AUTHORIZATIONS.source}
ON CONFLICT (request_id) DO NOTHING RETURNING request_id"""


def _unnested_write(kind: str, rows: list[dict[str, Any]]) -> tuple[str, dict[str, str], int]:
    """``rows`` of the write ``kind`` as one statement (:func:`_unnested_sql`): its text, its parameters and
    the number of rows it must return. A card's row is written whole from the card's state, so of several
    writes of one card only the last counts: the earlier ones are left out (an ``UPDATE … FROM`` would apply
    one of them, not all in order)."""
    if kind == "card":
        rows = list({row["c_w_pan"]: row for row in rows}.values())
        unnested = _UNNESTED_CARDS
    else:
        unnested = _UNNESTED_UNS
    return _unnested_sql(kind), unnested.params(rows), len(rows)


def _write_unnested(connection: Connection, kind: str, rows: list[dict[str, Any]]) -> None:
    """``rows`` of the write ``kind`` in one statement (:func:`_unnested_write`)."""
    sql, params, count = _unnested_write(kind, rows)
    written = execute_driver_sql(connection, sql, params)
    assert len(written) == count, (kind, len(written), count)


class _Repo:
    def __init__(self, session: Session, writes: _Writes | None = None) -> None:
        self.session = session
        self.writes = writes if writes is not None else _Writes(session)

    def _execute(self, statement: Any, params: Any = None) -> Any:
        """Run ``statement`` (Core, on the session's connection) after the writes held back."""
        self.writes.flush()
        return self.session.connection().execute(statement, params)

    def _one(self, query: Any, params: Any = None) -> Any:
        return self._execute(query, params).first()


class SqlBanks(_Repo):
    def add(self, bank: Bank) -> None:
        self._execute(insert(issuer_banks).values(**_values(bank)))

    def bin_ranges(self) -> list[BinRange]:
        """Every BIN range of every bank, by BIN (the switch's routing table is built from them)."""
        query = select(issuer_bin_ranges).order_by(issuer_bin_ranges.c.bin)
        return [_from_row(BinRange, r) for r in self.session.execute(query)]

    def get(self, code: str) -> Bank | None:
        row = self._one(select(issuer_banks).where(issuer_banks.c.code == code))
        return _from_row(Bank, row) if row else None

    def bank_by_institution(self, institution_id: str) -> Bank | None:
        row = self._one(select(issuer_banks).where(issuer_banks.c.institution_id == institution_id))
        return _from_row(Bank, row) if row else None

    def list(self) -> list[Bank]:
        query = select(issuer_banks).order_by(issuer_banks.c.code)
        return [_from_row(Bank, r) for r in self._execute(query)]

    def add_bin(self, bin_range: BinRange) -> None:
        self._execute(insert(issuer_bin_ranges).values(**_values(bin_range)))

    def get_bin(self, bin: str) -> BinRange | None:
        row = self._one(select(issuer_bin_ranges).where(issuer_bin_ranges.c.bin == bin))
        return _from_row(BinRange, row) if row else None

    def overlapping_bin(self, bin: str) -> BinRange | None:
        t = issuer_bin_ranges
        prefixes = [bin[:n] for n in range(1, len(bin) + 1)]
        query = select(t).where(or_(t.c.bin.in_(prefixes), t.c.bin.startswith(bin, autoescape=True)))
        row = self._one(query.order_by(t.c.bin).limit(1))
        return _from_row(BinRange, row) if row else None

    def take_serials(self, bin: str, count: int) -> int:
        assert 0 < count <= _MAX_BATCH
        t = issuer_bin_ranges
        row = self._one(select(t.c.next_serial).where(t.c.bin == bin).with_for_update())
        assert row is not None, bin
        self._execute(update(t).where(t.c.bin == bin).values(next_serial=row.next_serial + count))
        return int(row.next_serial)


def _product(row: Any) -> Product:
    return _from_row(Product, row, registered=bool(row.registered), card_type=CardType(row.card_type))


class SqlProducts(_Repo):
    def add(self, product: Product) -> None:
        self._execute(insert(issuer_products).values(**_values(product)))

    def get(self, bank_code: str, code: str) -> Product | None:
        t = issuer_products
        row = self._one(select(t).where(t.c.bank_code == bank_code, t.c.code == code))
        return _product(row) if row else None

    def list(self, bank_code: str | None = None) -> list[Product]:
        t = issuer_products
        query = select(t).order_by(t.c.bank_code, t.c.code)
        if bank_code is not None:
            query = query.where(t.c.bank_code == bank_code)
        return [_product(r) for r in self._execute(query)]


class SqlCardholders(_Repo):
    def add(
        self, name: str, id_hash: str, id_last4: str, phone: str, deposit_account_id: int, citizen_key: str
    ) -> Cardholder:
        values = _values(Cardholder(0, name, id_hash, id_last4, phone, deposit_account_id, citizen_key))
        del values["id"]  # the database numbers the holders
        result = self._execute(insert(issuer_cardholders).values(**values).returning(issuer_cardholders.c.id))
        return Cardholder(int(result.scalar_one()), **values)

    def get(self, holder_id: int) -> Cardholder | None:
        row = self._one(select(issuer_cardholders).where(issuer_cardholders.c.id == holder_id))
        return _from_row(Cardholder, row) if row else None

    def by_id_hash(self, id_hash: str) -> Cardholder | None:
        row = self._one(select(issuer_cardholders).where(issuer_cardholders.c.id_hash == id_hash))
        return _from_row(Cardholder, row) if row else None

    def by_id_hashes(self, id_hashes: Sequence[str]) -> list[Cardholder]:
        assert len(id_hashes) <= _MAX_BATCH
        t = issuer_cardholders
        query = select(t).where(t.c.id_hash.in_(list(id_hashes))).order_by(t.c.id)
        return [_from_row(Cardholder, r) for r in self._execute(query)] if id_hashes else []

    def get_many(self, holder_ids: Iterable[int]) -> dict[int, Cardholder]:
        wanted = sorted(set(holder_ids))
        assert len(wanted) <= _MAX_BATCH
        t = issuer_cardholders
        if not wanted:
            return {}
        rows = self._execute(select(t).where(t.c.id.in_(wanted)))
        return {r.id: _from_row(Cardholder, r) for r in rows}


def _card(row: Any) -> Card:
    pin_change = None if row.pending_pin_change is None else bytes(row.pending_pin_change)
    script = None if row.pending_script is None else PendingScript(row.pending_script)
    return _from_row(
        Card, row, status=CardStatus(row.status), pending_pin_change=pin_change, pending_script=script
    )


class SqlCards(_Repo):
    def add(self, card: Card) -> None:
        self._execute(insert(issuer_cards).values(**_values(card)))

    def add_many(self, cards: Sequence[Card]) -> None:
        """In one statement (:func:`_insert_rows`: an issuance batch's 500 cards in a few milliseconds on
        PostgreSQL, where a statement per card cost ~0.5 ms each). A PAN that exists raises
        ``IntegrityError``."""
        assert len(cards) <= _MAX_BATCH
        if not cards:
            return
        self.writes.flush()
        _insert_rows(self.session.connection(), issuer_cards, [_values(card) for card in cards])

    def existing(self, pans: Sequence[str]) -> set[str]:
        """Read as the PANs between the least and the greatest of ``pans`` (an issuance batch's PANs are
        consecutive serials of one BIN: one range of the primary key, normally no row), those that are not
        in ``pans`` left out. A list of PANs (``pan = ANY(…)``, or ``IN`` with 500 values) is planned as a
        sequential scan of the cards on a table without statistics: 60 ms a batch at 40 000 cards, growing
        with the table."""
        assert len(pans) <= _MAX_BATCH
        if not pans:
            return set()
        self.writes.flush()
        rows = _PANS_BETWEEN.rows(self.session.connection(), {"low": min(pans), "high": max(pans)})
        return {row.pan for row in rows} & set(pans)

    def get(self, pan: str, *, for_update: bool = False) -> Card | None:
        row = self._one(_CARD_FOR_UPDATE if for_update else _CARD, {"pan": pan})
        return _card(row) if row else None

    def update(self, card: Card) -> None:
        """Held back until the next statement or the commit (:class:`_Writes`); one row, asserted then."""
        values = _prefixed("c_", _values(card))
        values["c_w_pan"] = values.pop("c_pan")
        self.writes.defer("card", values)

    def by_holder(self, holder_id: int) -> list[Card]:
        query = select(issuer_cards).where(issuer_cards.c.holder_id == holder_id).order_by(issuer_cards.c.pan)
        return [_card(r) for r in self._execute(query)]

    def find(self, query: CardQuery, *, limit: int, offset: int = 0) -> list[Card]:
        assert 0 < limit <= _MAX_BATCH and offset >= 0
        statement = select(issuer_cards).where(*_card_filters(query))
        statement = statement.order_by(issuer_cards.c.pan).limit(limit).offset(offset)
        return [_card(r) for r in self._execute(statement)]

    def count(self, query: CardQuery) -> int:
        statement = select(func.count()).select_from(issuer_cards).where(*_card_filters(query))
        return int(self._execute(statement).scalar_one())

    def list(self, bank_code: str | None = None, *, limit: int = 1000) -> list[Card]:
        assert 0 < limit <= _MAX_BATCH
        query = select(issuer_cards).order_by(issuer_cards.c.pan).limit(limit)
        if bank_code is not None:
            query = query.where(issuer_cards.c.bank_code == bank_code)
        return [_card(r) for r in self._execute(query)]


def _card_filters(q: CardQuery) -> list[ColumnElement[bool]]:
    """SQL conditions for a card query; each served by an index (the PAN suffix by ``PAN_LAST4``)."""
    c = issuer_cards.c
    where: list[ColumnElement[bool]] = []
    if q.bank_code is not None:
        where.append(c.bank_code == q.bank_code)
    if q.pan is not None:
        where.append(c.pan == q.pan)
    if q.pan_suffix is not None:
        assert 4 <= len(q.pan_suffix) <= 19 and q.pan_suffix.isdigit(), "checked by the caller"
        where.append(PAN_LAST4 == q.pan_suffix[-4:])  # noqa: SIM300 (an SQL expression)
        if len(q.pan_suffix) > 4:
            where.append(c.pan.endswith(q.pan_suffix))
    if q.holder_ids is not None:
        where.append(c.holder_id.in_(q.holder_ids) if q.holder_ids else false())
    if q.phone is not None:
        holders = select(issuer_cardholders.c.id).where(issuer_cardholders.c.phone == q.phone)
        where.append(c.holder_id.in_(holders))
    if q.status is not None:
        where.append(c.status == q.status.value)
    if q.product_code is not None:
        where.append(c.product_code == q.product_code)
    return where


class SqlAuthorizations(_Repo):
    def __init__(self, session: Session, writes: _Writes | None = None) -> None:
        super().__init__(session, writes)
        self._ahead: dict[str, _Ahead] = {}  # by PAN, read ahead in the transaction ``_ahead_in``
        self._ahead_in: object = None
        self._next: tuple[str, _Ahead] | None = None  # the card whose start was read ahead, for the UN check

    def prefetch(self, starts: Sequence[ports.StartAhead]) -> None:
        self._ahead, self._next = {}, None
        if self.session.get_bind().dialect.name != "postgresql":
            return  # SQLite: a statement costs little there, each is read when asked
        first: dict[str, ports.StartAhead] = {}
        for start in starts:
            first.setdefault(start.pan, start)  # a card's later requests read after its first one's writes
        if not first:
            return
        wanted = list(first.values())
        params = {  # array literals (citycard.db.driver), not lists psycopg dumps element by element
            "pans": text_array([s.pan for s in wanted]),
            "request_ids": text_array([s.request_id for s in wanted]),
            "terminal_ids": text_array([s.terminal_id for s in wanted]),
            "uns": text_array(
                [
                    None if s.unpredictable_number is None else s.unpredictable_number.hex().upper()
                    for s in wanted
                ]
            ),
        }
        self.writes.flush()
        if self.session.get_transaction() is None:  # the unit of work's first statement: BEGIN sent with it
            connection = self.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            rows = _start_ahead().rows_beginning(connection, params)
        else:
            rows = _start_ahead().rows(self.session.connection(), params)
        for row in rows:
            wanted_un = first[row.pan].unpredictable_number
            self._ahead[row.pan] = _Ahead(
                row.v_request_id,
                row.v_terminal_id,
                _start_of(row, row.v_terminal_id),
                wanted_un,
                bool(row.un_seen),
                None if row.ec_balance is None else int(row.ec_balance),
            )
        self._ahead_in = self.session.get_transaction()

    def _read_ahead(self, pan: str) -> _Ahead | None:
        if not self._ahead:
            return None
        if self.session.get_transaction() is not self._ahead_in:  # another transaction: forget it all
            self._ahead, self._next = {}, None
            return None
        return self._ahead.pop(pan, None)

    def start(self, pan: str, request_id: str, terminal_id: str) -> AuthorizationStart:
        self._next = None
        ahead = self._read_ahead(pan)
        if ahead is not None and (ahead.request_id, ahead.terminal_id) == (request_id, terminal_id):
            self._next = (pan, ahead)
            return ahead.start
        self.writes.flush()
        row = _START_D.first(
            self.session.connection(), {"pan": pan, "request_id": request_id, "terminal_id": terminal_id}
        )
        if row is None:  # no such card: the request id is looked up on its own, the registry is not needed
            return AuthorizationStart(None, True, False, None)
        return _start_of(row, terminal_id)

    def get(self, request_id: str, *, for_update: bool = False) -> StoredAuthorization | None:
        query = _AUTHORIZATION_FOR_UPDATE if for_update else _AUTHORIZATION
        row = self._one(query, {"request_id": request_id})
        if row is None:
            return None
        transfer_ids = tuple(int(x) for x in row.transfer_ids.split(",") if x)
        return _from_row(StoredAuthorization, row, response=bytes(row.response), transfer_ids=transfer_ids)

    def add(self, record: StoredAuthorization) -> bool:
        """Store the answer; False (nothing written) when the request id is stored already, e.g. by a
        simultaneous first attempt that committed first (``INSERT … ON CONFLICT DO NOTHING``: PostgreSQL
        waits for that transaction, then skips the row instead of raising a unique violation). On
        PostgreSQL the writes held back (the card's row, the unpredictable number) go in the same statement;
        when the row is skipped they are written too, and the caller rolls back."""
        self._next = None  # a write: nothing read ahead stands for what follows
        dialect = self.session.get_bind().dialect.name
        params = _authorization_params(record)
        kinds: list[str] = []
        if dialect == "postgresql":  # the last write of each kind in the same statement
            carried, earlier = self.writes.split()
            self.writes.write(earlier)  # a group's earlier ones (one statement a kind)
            for kind, deferred in carried:
                kinds.append(kind)
                params |= deferred
        else:
            self.writes.flush()
        statement = _authorization_insert(dialect, tuple(kinds))
        row = statement.first(self.session.connection(), params)
        if row is None:
            return False
        assert tuple(row)[1:] == (1,) * len(kinds), (kinds, tuple(row))
        return True

    def add_many(self, records: Sequence[StoredAuthorization]) -> bool:
        if len(records) < 2 or self.session.get_bind().dialect.name != "postgresql":
            return all([self.add(record) for record in records])  # every one tried, as one by one
        self._next = None  # a write: nothing read ahead stands for what follows
        # the writes held back (the cards' rows, the unpredictable numbers: one statement a kind) and the
        # authorizations sent together, one wait for all (``driver.run_together``)
        held = [_unnested_write(kind, rows) for kind, rows in _by_kind(self.writes.take()).items()]
        params = _UNNESTED_AUTHORIZATIONS.params([_authorization_params(r) for r in records])
        statements = [(sql, held_params) for sql, held_params, _ in held]
        *written, inserted = run_together(
            self.session.connection(), [*statements, (_unnested_sql("authorizations"), params)]
        )
        for (sql, _, count), rows in zip(held, written, strict=True):
            assert len(rows) == count, (sql, len(rows), count)
        return len(inserted) == len(records)

    def mark_reversed(self, request_id: str, by: str | None) -> None:
        self._next = None  # a write: nothing read ahead stands for what follows
        t = issuer_authorizations
        self._execute(update(t).where(t.c.request_id == request_id).values(reversed_by=by))

    def add_refunded(self, request_id: str, amount_fen: int) -> None:
        self._next = None  # a write: nothing read ahead stands for what follows
        t = issuer_authorizations
        self.session.execute(
            update(t).where(t.c.request_id == request_id).values(refunded_fen=t.c.refunded_fen + amount_fen)
        )

    def seen_unpredictable_number(self, pan: str, un: bytes) -> bool:
        return self._one(_UN_SEEN, {"pan": pan, "un": un.hex().upper()}) is not None

    def seen_with_ec_balance(self, pan: str, un: bytes, ec_float_account_id: int) -> tuple[bool, int]:
        ready, self._next = self._next, None
        if ready is not None:
            card_pan, ahead = ready
            card = ahead.start.card
            if (
                (card_pan, ahead.un) == (pan, un)
                and card is not None
                and card.ec_float_account_id == ec_float_account_id
                and ahead.ec_balance is not None
            ):
                return ahead.un_seen, ahead.ec_balance
        self.writes.flush()
        ((seen, balance),) = _UN_SEEN_AND_EC_D.rows(
            self.session.connection(), {"pan": pan, "un": un.hex().upper(), "ec_id": ec_float_account_id}
        )
        assert balance is not None, ec_float_account_id
        return bool(seen), int(balance)

    def add_unpredictable_number(self, pan: str, un: bytes, atc: int) -> None:
        """Record ``un`` for the card; the caller has checked :meth:`seen_unpredictable_number` first.
        Held back until the next statement or the commit (:class:`_Writes`)."""
        self._next = None  # a write: nothing read ahead stands for what follows
        self.writes.defer("un", {"u_pan": pan, "u_un": un.hex().upper(), "u_atc": atc})


def _authorization_params(record: StoredAuthorization) -> dict[str, Any]:
    """An authorization's row as parameters ``a_*`` (its transfer ids as one comma-separated string)."""
    return _prefixed("a_", _values(record) | {"transfer_ids": ",".join(str(i) for i in record.transfer_ids)})


def _start_of(row: Any, terminal_id: str) -> AuthorizationStart:
    terminal = None
    if row.t_status is not None:
        terminal = RegisteredTerminal(terminal_id, row.t_merchant, TerminalStatus(row.t_status))
    return AuthorizationStart(_card(row), bool(row.request_id_stored), bool(row.registry_in_use), terminal)


class SqlDenyList(_Repo):
    def add(self, entry: DenyListEntry) -> int:
        t = issuer_deny_list
        where = (t.c.bank_code == entry.bank_code, t.c.pan == entry.pan)
        values = _values(replace(entry, removed_ns=None))
        if self._one(select(t.c.pan).where(*where)) is None:
            self._execute(insert(t).values(**values))
        else:
            self._execute(update(t).where(*where).values(**values))
        return self._bump(entry.bank_code, entry.added_ns)

    def remove(self, bank_code: str, pan: str, now_ns: int) -> int:
        t = issuer_deny_list
        self._execute(
            update(t)
            .where(t.c.bank_code == bank_code, t.c.pan == pan, t.c.removed_ns.is_(None))
            .values(removed_ns=now_ns)
        )
        return self._bump(bank_code, now_ns)

    def _bump(self, bank_code: str, now_ns: int) -> int:
        v = issuer_deny_list_versions
        row = self._one(select(v.c.version).where(v.c.bank_code == bank_code).with_for_update())
        if row is None:
            self._execute(insert(v).values(bank_code=bank_code, version=1, updated_ns=now_ns))
            return 1
        version = int(row.version) + 1
        self._execute(update(v).where(v.c.bank_code == bank_code).values(version=version, updated_ns=now_ns))
        return version

    def entries(self, bank_code: str) -> list[DenyListEntry]:
        t = issuer_deny_list
        query = select(t).where(t.c.bank_code == bank_code).order_by(t.c.pan)
        return [_from_row(DenyListEntry, r) for r in self._execute(query)]

    def version(self, bank_code: str) -> tuple[int, int]:
        v = issuer_deny_list_versions
        row = self._one(select(v.c.version, v.c.updated_ns).where(v.c.bank_code == bank_code))
        return (int(row.version), int(row.updated_ns)) if row else (0, 0)


class SqlTerminals(_Repo):
    """The issuer's read of the center's terminal registry (``citycard.db.center_tables``)."""

    def get(self, terminal_id: str) -> RegisteredTerminal | None:
        row = self._one(_TERMINAL, {"terminal_id": terminal_id})
        return _from_row(RegisteredTerminal, row, status=TerminalStatus(row.status)) if row else None

    def in_use(self) -> bool:
        return self._one(_TERMINAL_IN_USE) is not None


class SqlIdAllocator(_Repo):
    NAME = "ledger_account"

    def allocate(self, count: int) -> Sequence[int]:
        assert 0 < count <= _MAX_BATCH
        t = issuer_sequences
        row = self._one(select(t.c.next_value).where(t.c.name == self.NAME).with_for_update())
        first = int(row.next_value) if row else ISSUER_ID_BASE
        if row is None:
            self._execute(insert(t).values(name=self.NAME, next_value=first + count))
        else:
            self._execute(update(t).where(t.c.name == self.NAME).values(next_value=first + count))
        return range(first, first + count)


_BALANCES = account_balances()
_A = _BALANCES.c
_T = ledger_transfers.c
_SYSTEM_ACCOUNTS = (
    ("cash_account_id", BankAccount.CASH),
    ("settlement_account_id", BankAccount.NETWORK_SETTLEMENT),
    ("fee_account_id", BankAccount.FEE_INCOME),
)


def _bank_accounts(bank_code: str) -> Select[Any]:
    """Ids of every ledger account of the bank: its system accounts, its cards' EC floats and its holders'
    deposit accounts (a holder belongs to one bank: the ID number's HMAC is under that bank's key)."""
    b, c = issuer_banks.c, issuer_cards.c
    parts = [select(getattr(b, column)).where(b.code == bank_code) for column, _ in _SYSTEM_ACCOUNTS]
    parts.append(select(c.ec_float_account_id).where(c.bank_code == bank_code))
    parts.append(
        select(c.deposit_account_id).where(c.bank_code == bank_code, c.deposit_account_id.is_not(None))
    )
    return select(union_all(*parts).subquery().c[0])


class SqlBooks(_Repo):
    """:class:`citycard.issuer.ports.Books`: set-based queries over the ledger's tables and the issuer's."""

    def owners(self, account_ids: Iterable[int]) -> dict[int, AccountOwner]:
        wanted = sorted(set(account_ids))
        assert len(wanted) <= _MAX_BATCH
        if not wanted:
            return {}
        owners: dict[int, AccountOwner] = {}
        for bank in SqlBanks(self.session).list():
            for column, kind in _SYSTEM_ACCOUNTS:
                owners[getattr(bank, column)] = AccountOwner(bank.code, kind)
        c = issuer_cards.c
        query = (
            select(c.pan, c.bank_code, c.ec_float_account_id, c.deposit_account_id)
            .where(or_(c.ec_float_account_id.in_(wanted), c.deposit_account_id.in_(wanted)))
            .order_by(c.pan)
        )
        for pan, bank_code, ec_id, deposit_id in self._execute(query):
            owners[ec_id] = AccountOwner(bank_code, BankAccount.CARD_EC_FLOAT, pan)
            if deposit_id is not None:
                owners.setdefault(deposit_id, AccountOwner(bank_code, BankAccount.CARD_DEPOSIT, pan))
        keep = set(wanted)
        return {i: o for i, o in owners.items() if i in keep}

    def balances(
        self,
        *,
        bank_code: str | None = None,
        account_ids: Sequence[int] | None = None,
        after_id: int = 0,
        limit: int = 1000,
    ) -> list[Account]:
        assert 0 < limit <= _MAX_BATCH
        query = select(_BALANCES).where(_A.id > after_id)
        if bank_code is not None:
            query = query.where(_A.id.in_(_bank_accounts(bank_code)))
        if account_ids is not None:
            query = query.where(_A.id.in_(list(account_ids)))
        query = query.order_by(_A.id).limit(limit)
        return [account_from_row(r) for r in self._execute(query)]

    def totals(self, bank_code: str | None = None) -> Totals:
        sums = [
            func.coalesce(func.sum(column), 0)
            for column in (_A.debits_pending, _A.debits_posted, _A.credits_pending, _A.credits_posted)
        ]
        query = select(*sums)
        if bank_code is not None:
            query = query.where(_A.id.in_(_bank_accounts(bank_code)))
        return Totals(*(int(v) for v in self._execute(query).one()))

    def journal(
        self,
        *,
        bank_code: str | None = None,
        account_ids: Sequence[int] | None = None,
        before: tuple[int, int] | None = None,
        limit: int = 50,
    ) -> list[Transfer]:
        assert 0 < limit <= _MAX_BATCH
        query = select(ledger_transfers)
        if bank_code is not None:
            mine = _bank_accounts(bank_code)
            query = query.where(or_(_T.debit_account_id.in_(mine), _T.credit_account_id.in_(mine)))
        if account_ids is not None:
            ids = list(account_ids)
            query = query.where(or_(_T.debit_account_id.in_(ids), _T.credit_account_id.in_(ids)))
        if before is not None:
            before_ns, before_id = before
            query = query.where(
                or_(_T.timestamp_ns < before_ns, and_(_T.timestamp_ns == before_ns, _T.id < before_id))
            )
        query = query.order_by(_T.timestamp_ns.desc(), _T.id.desc()).limit(limit)
        return [transfer_from_row(r) for r in self._execute(query)]


class SqlCardRecords(_Repo):
    """The card records the issuer writes by script: the industry applications file (SFI 22,
    ``citycard.codec.appfile``), one record per application the service center enabled or disabled on the
    card, kept with the service center's own state of it (``public_card_applications``: its chip columns
    are the issuer's; its ``changed_ns`` the record's version); and the concession record of the transit
    file (SFI 21 record 1, ``citycard.codec.transitfile``) in ``issuer_card_transit``, one row per card
    personalised with that file."""

    def of_card(self, pan: str) -> list[CardRecord]:
        t = public_card_applications
        rows = self._execute(select(t).where(t.c.pan == pan).order_by(t.c.app_code))
        records = [
            CardRecord(
                APP_FILE_SFI,
                APP_NUMBERS[r.app_code],
                encode_record(r.app_code, r.status == "enabled", json.loads(r.data)),
                RecordState(r.chip_state),
                int(r.changed_ns),
                None if r.sent_atc is None else int(r.sent_atc),
                int(r.sent_count),
            )
            for r in rows
        ]
        transit = self.transit(pan)
        return records if transit is None else [transit, *records]

    def inherit_apps(self, holder_pans: Sequence[str], new_pan: str) -> list[CardRecord]:
        t = public_card_applications
        query = (
            select(t).where(t.c.pan.in_(list(holder_pans)), t.c.status == "enabled").order_by(t.c.changed_ns)
        )
        latest = {r.app_code: r for r in self._execute(query)}  # the latest change of each application
        if not latest:
            return []
        rows = [
            {**r._asdict(), "pan": new_pan, "chip_state": "written", "sent_atc": None, "sent_count": 0}
            for r in latest.values()
        ]
        self._execute(insert(t), rows)
        return [r for r in self.of_card(new_pan) if r.sfi == APP_FILE_SFI]

    def transit(self, pan: str) -> CardRecord | None:
        t = issuer_card_transit
        r = self._one(select(t).where(t.c.pan == pan))
        if r is None:
            return None
        until = None if r.valid_until is None else dt.datetime.strptime(r.valid_until, "%Y%m%d").date()
        concession = Concession(Category[r.category.upper()], until)
        return CardRecord(
            TRANSIT_SFI,
            1,
            concession.encode(),
            RecordState(r.chip_state),
            int(r.changed_ns),
            None if r.sent_atc is None else int(r.sent_atc),
            int(r.sent_count),
        )

    def add_transit_files(self, records: Sequence[tuple[str, CardRecord]]) -> None:
        """In one statement (:func:`_insert_rows`)."""
        if records:
            rows = [{"pan": pan, **_transit_values(record)} for pan, record in records]
            self.writes.flush()
            _insert_rows(self.session.connection(), issuer_card_transit, rows)

    def put_transit(self, pan: str, record: CardRecord, *, new: bool = False) -> None:
        values = _transit_values(record)
        t = issuer_card_transit
        if new:
            self._execute(insert(t).values(pan=pan, **values))
        else:
            done = self._execute(update(t).where(t.c.pan == pan).values(**values))
            assert done.rowcount == 1, done.rowcount
            if record.state is RecordState.PENDING:  # a change of the concession (SetConcession, Revoke...)
                self._sync_transit_app(pan, record)

    def _sync_transit_app(self, pan: str, record: CardRecord) -> None:
        """The service center's ``transit`` application (``public_card_applications``, SFI 22 record 1) made
        to match a concession the bank granted or revoked, in the same transaction (the other direction is
        ``SqlCardApplications.put``): a concession → enabled with its category and last day; none → an
        enabled application disabled (its data kept, as ``public apps disable`` does); an application that
        says so already, or none to disable, is left alone. A change goes to the chip as pending, by the
        same script as the concession record (the card is marked by the use case)."""
        t = public_card_applications
        concession = Concession.decode(record.data)
        row = self._one(select(t).where(t.c.pan == pan, t.c.app_code == "transit").with_for_update())
        if concession.valid_until is not None:
            status = "enabled"
            data = {
                "category": concession.category.name.lower(),
                "valid_until": concession.valid_until.strftime("%Y%m%d"),
            }
        else:
            if row is None or row.status != "enabled":
                return
            status, data = "disabled", json.loads(row.data)
        if row is not None and row.status == status and json.loads(row.data) == data:
            return
        values = {
            "status": status,
            "data": json.dumps(data, sort_keys=True),
            "changed_ns": record.version if row is None else max(record.version, int(row.changed_ns) + 1),
            "chip_state": RecordState.PENDING.value,
            "sent_atc": None,
            "sent_count": 0,
        }
        if row is None:
            self._execute(insert(t).values(pan=pan, app_code="transit", **values))
        else:
            self._execute(update(t).where(t.c.pan == pan, t.c.app_code == "transit").values(**values))

    def carry_over(self, old_pan: str, new_pan: str) -> list[CardRecord]:
        t = public_card_applications
        rows = self._execute(select(t).where(t.c.pan == old_pan)).all()
        if rows:
            self._execute(
                insert(t),
                [
                    {
                        **r._asdict(),
                        "pan": new_pan,
                        "chip_state": "written",
                        "sent_atc": None,
                        "sent_count": 0,
                    }
                    for r in rows
                ],
            )
        transit = self.transit(old_pan)
        if transit is not None:
            state = dataclasses.replace(transit, state=RecordState.WRITTEN, sent_atc=None, sent_count=0)
            self.put_transit(new_pan, state, new=True)
        return self.of_card(new_pan)

    def update(self, pan: str, records: Sequence[CardRecord]) -> None:
        t = public_card_applications
        codes = {n: code for code, n in APP_NUMBERS.items()}
        for r in records:
            values = {"chip_state": r.state.value, "sent_atc": r.sent_atc, "sent_count": r.sent_count}
            if r.sfi == TRANSIT_SFI:
                assert r.record == 1, r.record
                c = issuer_card_transit.c
                condition = (c.pan == pan) & (c.changed_ns == r.version)
                self._execute(update(issuer_card_transit).where(condition).values(**values))
                continue
            assert r.sfi == APP_FILE_SFI and r.record in codes, (r.sfi, r.record)
            self._execute(
                update(t)
                .where(t.c.pan == pan, t.c.app_code == codes[r.record], t.c.changed_ns == r.version)
                .values(**values)
            )


def _transit_values(record: CardRecord) -> dict[str, Any]:
    """``issuer_card_transit``'s columns of a concession record (all but the PAN)."""
    assert record.sfi == TRANSIT_SFI and record.record == 1, (record.sfi, record.record)
    concession = Concession.decode(record.data)
    return {
        "category": concession.category.name.lower(),
        "valid_until": concession.valid_until.strftime("%Y%m%d") if concession.valid_until else None,
        "changed_ns": record.version,
        "chip_state": record.state.value,
        "sent_atc": record.sent_atc,
        "sent_count": record.sent_count,
    }


def _issuer_repository(cls: type[_Repo]) -> RepositoryFactory:
    return lambda uow: cls(uow.session, _writes_of(uow))


def _writes_of(uow: SqlUnitOfWork) -> _Writes:
    """The unit of work's one :class:`_Writes`, shared by its issuer repositories."""
    assert isinstance(uow, IssuerUnitOfWork)
    if uow.writes is None or uow.writes.session is not uow.session:
        uow.writes = _Writes(uow.session)
    return uow.writes


class IssuerUnitOfWork(SqlUnitOfWork):
    """The ledger and the issuer's repositories in one transaction."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        **SqlUnitOfWork.repository_factories,
        # every purchase credits its bank's network settlement account: sharded, not one hot row
        "ledger": lambda uow: SqlLedgerRepository(
            uow.session, uow.clock, sharded_codes=frozenset({BankAccount.NETWORK_SETTLEMENT})
        ),
        "banks": _issuer_repository(SqlBanks),
        "products": _issuer_repository(SqlProducts),
        "cardholders": _issuer_repository(SqlCardholders),
        "cards": _issuer_repository(SqlCards),
        "authorizations": _issuer_repository(SqlAuthorizations),
        "deny_list": _issuer_repository(SqlDenyList),
        "terminals": _issuer_repository(SqlTerminals),
        "ids": _issuer_repository(SqlIdAllocator),
        "books": _issuer_repository(SqlBooks),
        "card_records": _issuer_repository(SqlCardRecords),
    }
    banks: SqlBanks
    products: SqlProducts
    cardholders: SqlCardholders
    cards: SqlCards
    authorizations: SqlAuthorizations
    deny_list: SqlDenyList
    terminals: SqlTerminals
    ids: SqlIdAllocator
    books: SqlBooks
    card_records: SqlCardRecords
    writes: _Writes | None = None

    def commit(self) -> None:
        if self.writes is not None:
            self.writes.flush()
        super().commit()

    def rollback(self) -> None:
        if self.writes is not None:
            self.writes.take()
        super().rollback()


if TYPE_CHECKING:  # mypy checks that the SQL unit of work implements the issuer's port

    def _is_issuer_unit_of_work(uow: IssuerUnitOfWork) -> ports.IssuerUnitOfWork:
        return uow
