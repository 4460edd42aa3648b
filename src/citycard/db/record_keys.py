"""Re-sealing the acquirer's sealed rows under the newest data key version (issue 8; ``docs/network.md``
"Rotation of the data key").

:func:`reseal_rows` walks ``acquirer_saf`` and ``acquirer_uploads`` in key order, ``batch`` rows per
transaction, and re-seals each ``sealed`` value that names an older data key version
(:meth:`~citycard.hsm.protection.RecordProtection.needs_reseal`): unsealed under its own version, sealed
under the newest, written by one ``UPDATE … WHERE <key> AND sealed = <the value read>`` — a row changed
meanwhile (its SAF entry answered, an upload re-sealed by another pass) is left as it now is, never
overwritten with a stale message, and a crash leaves every row under one version or the other, readable.
Only the ``sealed`` column is written (the key version is part of the sealed value: no schema change). A
value that does not open is counted and left alone (it is loud where it is read: the SAF task, clearing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Table, select, tuple_, update

from citycard.hsm.api import SealedDataError
from citycard.hsm.protection import RecordProtection

from .acquirer_repositories import saf_record, upload_record
from .acquirer_tables import acquirer_saf, acquirer_uploads
from .uow import Database

__all__ = ["ResealReport", "reseal_rows"]

_SAF, _UP = acquirer_saf.c, acquirer_uploads.c


@dataclass(frozen=True, slots=True)
class ResealReport:
    """What a pass did: rows re-sealed, rows already under the newest version, rows that did not open, and
    rows changed by someone else between the read and the write (left as they were made)."""

    resealed: int = 0
    current: int = 0
    unreadable: int = 0
    changed_meanwhile: int = 0


def reseal_rows(database: Database, protection: RecordProtection, *, batch: int = 500) -> ResealReport:
    """Re-seal every older-version row of the acquirer's two sealed tables (module docstring)."""
    assert 0 < batch <= 10_000
    counts = {"resealed": 0, "current": 0, "unreadable": 0, "changed_meanwhile": 0}
    last_id = -1
    while True:  # the SAF queue, by id
        with database.engine.begin() as connection:
            rows = connection.execute(
                select(_SAF.id, _SAF.kind, _SAF.rrn, _SAF.sealed)
                .where(_SAF.sealed.is_not(None), _SAF.id > last_id)
                .order_by(_SAF.id)
                .limit(batch)
            ).all()
            for r in rows:
                where: tuple[ColumnElement[bool], ...] = (_SAF.id == r.id,)
                _one(
                    connection,
                    acquirer_saf,
                    _SAF.sealed,
                    where,
                    bytes(r.sealed),
                    saf_record(r.kind, r.rrn),
                    protection,
                    counts,
                )
        if not rows:
            break
        last_id = rows[-1].id
    last: tuple[str, int, int] = ("", -1, -1)
    key = tuple_(_UP.terminal_id, _UP.batch, _UP.stan)
    while True:  # the offline uploads, by (terminal, batch, STAN)
        with database.engine.begin() as connection:
            uploads = connection.execute(
                select(_UP.terminal_id, _UP.batch, _UP.stan, _UP.sealed)
                .where(_UP.sealed.is_not(None), key > tuple_(*last))
                .order_by(_UP.terminal_id, _UP.batch, _UP.stan)
                .limit(batch)
            ).all()
            for u in uploads:
                where = (_UP.terminal_id == u.terminal_id, _UP.batch == u.batch, _UP.stan == u.stan)
                record = upload_record(u.terminal_id, u.batch, u.stan)
                _one(
                    connection,
                    acquirer_uploads,
                    _UP.sealed,
                    where,
                    bytes(u.sealed),
                    record,
                    protection,
                    counts,
                )
        if not uploads:
            break
        last = (uploads[-1].terminal_id, uploads[-1].batch, uploads[-1].stan)
    return ResealReport(**counts)


def _one(
    connection: Connection,
    table: Table,
    column: Column[Any],
    where: tuple[ColumnElement[bool], ...],
    sealed: bytes,
    record: bytes,
    protection: RecordProtection,
    counts: dict[str, int],
) -> None:
    """One row: re-sealed by a compare-and-set update, or counted as current or unreadable."""
    try:
        if not protection.needs_reseal(sealed):
            counts["current"] += 1
            return
        fresh = protection.seal(protection.unseal(sealed, record), record)
    except SealedDataError:
        counts["unreadable"] += 1
        return
    done = connection.execute(update(table).where(*where, column == sealed).values({column.name: fresh}))
    counts["resealed" if done.rowcount == 1 else "changed_meanwhile"] += 1
