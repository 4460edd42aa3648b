"""Re-sealing the stored sealed values under the newest data key version (issue 8; ``docs/network.md``
"Rotation of the data key").

:data:`SEALED_COLUMNS` lists every column that holds values sealed under the acquirer's data key
(:class:`~citycard.hsm.protection.RecordProtection`), each with the unique key it is walked by and the
associated data of a row: the acquirer's SAF queue and uploads (``sealed``: the whole ISO message), the PAN
sealed alone beside each upload and in clearing's presentment of it (``pan_sealed``,
:func:`~citycard.db.acquirer_repositories.pan_record`, the same for both).

:func:`reseal_rows` walks each column in key order, ``batch`` rows per transaction, and re-seals each value
that names an older data key version (:meth:`~citycard.hsm.protection.RecordProtection.needs_reseal`):
unsealed under its own version, sealed under the newest, written by one
``UPDATE … WHERE <key> AND <column> = <the value read>`` — a row changed meanwhile (its SAF entry answered,
a presentment staged again, a value re-sealed by another pass) is left as it now is, never overwritten with a
stale value, and a crash leaves every value under one version or the other, readable. Only the sealed column
is written (the key version is part of the sealed value: no schema change). A value that does not open is
counted and left alone (it is loud where it is read: the SAF task, clearing). The acquirer's uploads are
walked before clearing's presentments, so a presentment staged again during the pass copies an upload's
PAN already re-sealed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Literal, TypeAlias

from sqlalchemy import Column, Connection, Row, Table, select, tuple_, update

from citycard.hsm.api import SealedDataError
from citycard.hsm.protection import RecordProtection

from .acquirer_repositories import pan_record, saf_record, upload_record
from .acquirer_tables import acquirer_saf, acquirer_uploads
from .clearing_tables import clearing_presentments
from .uow import Database

__all__ = ["SEALED_COLUMNS", "ColumnReport", "ResealReport", "SealedColumn", "reseal_rows", "reseal_value"]

AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"
"""A row of a query of any columns."""
Outcome = Literal["resealed", "current", "unreadable", "changed_meanwhile"]


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A column of values sealed under the data key: its ``table``, the ``column`` itself, the ``key``
    columns (a unique index, walked in this order), the further columns the associated data needs
    (``reads``) and ``record``, the associated data of a row read with those."""

    table: Table
    column: str
    key: tuple[str, ...]
    record: Callable[[AnyRow], bytes]
    reads: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """``table.column``, as the operator's commands print it."""
        return f"{self.table.name}.{self.column}"

    @property
    def sealed(self) -> Column[Any]:
        return self.table.c[self.column]


def _by_upload_key(record: Callable[[str, int, int], bytes]) -> Callable[[AnyRow], bytes]:
    return lambda r: record(r.terminal_id, r.batch, r.stan)


_UPLOAD_KEY = ("terminal_id", "batch", "stan")

SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(acquirer_saf, "sealed", ("id",), lambda r: saf_record(r.kind, r.rrn), ("kind", "rrn")),
    SealedColumn(acquirer_uploads, "sealed", _UPLOAD_KEY, _by_upload_key(upload_record)),
    SealedColumn(acquirer_uploads, "pan_sealed", _UPLOAD_KEY, _by_upload_key(pan_record)),
    SealedColumn(clearing_presentments, "pan_sealed", ("ref",), _by_upload_key(pan_record), _UPLOAD_KEY),
)
"""Every column sealed under the acquirer's data key, in the order :func:`reseal_rows` walks them."""


@dataclass(frozen=True, slots=True)
class ColumnReport:
    """What a pass did to one column (``table.column``): values re-sealed, values already under the newest
    version, values that did not open, and values changed by someone else between the read and the write
    (left as they were made)."""

    name: str
    resealed: int = 0
    current: int = 0
    unreadable: int = 0
    changed_meanwhile: int = 0


@dataclass(frozen=True, slots=True)
class ResealReport:
    """What a pass did, column by column (in :data:`SEALED_COLUMNS`' order), and in total."""

    columns: tuple[ColumnReport, ...] = ()

    def _total(self, outcome: Outcome) -> int:
        return sum(getattr(c, outcome) for c in self.columns)

    @property
    def resealed(self) -> int:
        return self._total("resealed")

    @property
    def current(self) -> int:
        return self._total("current")

    @property
    def unreadable(self) -> int:
        return self._total("unreadable")

    @property
    def changed_meanwhile(self) -> int:
        return self._total("changed_meanwhile")

    def column(self, name: str) -> ColumnReport:
        """The report of the column ``name`` (``table.column``)."""
        (found,) = (c for c in self.columns if c.name == name)
        return found


def reseal_rows(
    database: Database,
    protection: RecordProtection,
    *,
    batch: int = 500,
    columns: Iterable[SealedColumn] = SEALED_COLUMNS,
) -> ResealReport:
    """Re-seal every older-version value of ``columns`` (module docstring), ``batch`` rows per transaction."""
    assert 0 < batch <= 10_000
    return ResealReport(tuple(_reseal_column(database, protection, c, batch) for c in columns))


def _reseal_column(
    database: Database, protection: RecordProtection, sealed: SealedColumn, batch: int
) -> ColumnReport:
    """One column, walked by its key a batch per transaction."""
    counts: dict[str, int] = dict.fromkeys((f.name for f in fields(ColumnReport) if f.name != "name"), 0)
    key = tuple_(*(sealed.table.c[k] for k in sealed.key))
    wanted = [sealed.table.c[k] for k in (*sealed.key, *sealed.reads)]
    after: tuple[Any, ...] | None = None
    while True:
        query = select(*wanted, sealed.sealed).where(sealed.sealed.is_not(None))
        if after is not None:
            query = query.where(key > tuple_(*after))
        with database.engine.begin() as connection:
            rows = connection.execute(query.order_by(*key.clauses).limit(batch)).all()
            for row in rows:
                counts[reseal_value(connection, protection, sealed, row)] += 1
        if not rows:
            return ColumnReport(sealed.name, **counts)
        after = tuple(getattr(rows[-1], k) for k in sealed.key)


def reseal_value(
    connection: Connection, protection: RecordProtection, sealed: SealedColumn, row: AnyRow
) -> Outcome:
    """One row of ``sealed`` as read (its key, ``reads`` and sealed value): re-sealed by a compare-and-set
    update on the value read, or found current, unreadable, or changed since it was read."""
    value = bytes(getattr(row, sealed.column))
    record = sealed.record(row)
    try:
        if not protection.needs_reseal(value):
            return "current"
        fresh = protection.seal(protection.unseal(value, record), record)
    except SealedDataError:
        return "unreadable"
    where = [sealed.table.c[k] == getattr(row, k) for k in sealed.key]
    done = connection.execute(
        update(sealed.table).where(*where, sealed.sealed == value).values({sealed.column: fresh})
    )
    return "resealed" if done.rowcount == 1 else "changed_meanwhile"
