"""Rotation of the acquirer's data key at the storage level, on SQLite and PostgreSQL
(``citycard.db.record_keys``): values sealed under version 1 stay readable after the rotation, a re-seal pass
in batches smaller than the tables puts every SAF entry, upload and PAN sealed alone under version 2 and they
read back the same, counted column by column; a value changed between the pass's read and its write is left
as the other writer made it, in every sealed column; a value that does not open is counted and left alone.
(Clearing's presentments: ``tests/clearing/test_record_keys.py``.)"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from citycard.acquirer import SafEntry, SafKind, SafStatus, StoreUpload, TransactionKey, store_upload
from citycard.db import Database
from citycard.db.acquirer_repositories import acquirer_unit_of_work, pan_record
from citycard.db.acquirer_tables import acquirer_uploads
from citycard.db.record_keys import SEALED_COLUMNS, SealedColumn, reseal_rows, reseal_value
from citycard.hsm.protection import RecordProtection

from tests.acquirer.support import MERCHANT, PAN, TERMINAL, platform_hsm
from tests.acquirer.test_pans_at_rest import upload_message

ACQUIRER_COLUMNS = [c for c in SEALED_COLUMNS if c.table.name.startswith("acquirer_")]


def versions(database: Database, columns: list[SealedColumn] = ACQUIRER_COLUMNS) -> dict[str, list[int]]:
    """The data key version of each stored value, by column (``table.column``)."""
    with database.engine.connect() as connection:
        return {
            c.name: [
                RecordProtection.key_version(bytes(sealed))
                for (sealed,) in connection.execute(select(c.sealed).where(c.sealed.is_not(None)))
            ]
            for c in columns
        }


def _fill(database: Database, protection: RecordProtection, stans: range) -> None:
    for stan in stans:
        message = upload_message(stan).to_bytes()
        command = StoreUpload(TransactionKey(TERMINAL, 1, stan), MERCHANT, 200, "x*x", message)
        assert store_upload(command, acquirer_unit_of_work(database, protection), lambda: 1)
        entry = SafEntry(0, SafKind.ADVICE, f"{stan:012d}", message, SafStatus.PENDING, 0, 0, None, 0)
        with acquirer_unit_of_work(database, protection) as uow:
            assert uow.saf.add(entry) is not None
            uow.commit()


def _pans(database: Database, protection: RecordProtection) -> dict[int, str]:
    u = acquirer_uploads.c
    with database.engine.connect() as connection:
        rows = connection.execute(select(u.stan, u.pan_sealed)).all()
    return {
        r.stan: protection.unseal(bytes(r.pan_sealed), pan_record(TERMINAL, 1, r.stan)).decode() for r in rows
    }


def test_every_value_is_resealed_under_the_new_version_and_reads_back_the_same(database: Database) -> None:
    protection = RecordProtection.open(platform_hsm())
    _fill(database, protection, range(1, 8))
    assert versions(database) == dict.fromkeys((c.name for c in ACQUIRER_COLUMNS), [1] * 7)
    assert protection.rotate() == 2
    _fill(database, protection, range(8, 10))  # sealed under version 2 at once
    report = reseal_rows(database, protection, batch=3)
    assert (report.resealed, report.current, report.unreadable, report.changed_meanwhile) == (21, 6, 0, 0)
    for column in ACQUIRER_COLUMNS:  # each column counted on its own; no presentment here
        counts = report.column(column.name)
        assert (counts.resealed, counts.current, counts.unreadable, counts.changed_meanwhile) == (7, 2, 0, 0)
    assert report.column("clearing_presentments.pan_sealed").current == 0
    assert versions(database) == dict.fromkeys((c.name for c in ACQUIRER_COLUMNS), [2] * 9)
    with acquirer_unit_of_work(database, protection, read_only=True) as uow:
        for stan in range(1, 10):
            kept = uow.uploads.get(TransactionKey(TERMINAL, 1, stan))
            assert kept is not None and kept.message == upload_message(stan).to_bytes()
            entry = uow.saf.find(SafKind.ADVICE, f"{stan:012d}")
            assert entry is not None and entry.message == upload_message(stan).to_bytes()
    assert _pans(database, protection) == dict.fromkeys(range(1, 10), PAN)
    again = reseal_rows(database, protection)
    assert (again.resealed, again.current) == (0, 27)


def _stale_row(database: Database, column: SealedColumn):  # type: ignore[no-untyped-def]
    wanted = [column.table.c[k] for k in (*column.key, *column.reads)]
    with database.engine.connect() as connection:
        query = select(*wanted, column.sealed).where(column.sealed.is_not(None))
        return connection.execute(query.order_by(*wanted[: len(column.key)]).limit(1)).one()


@pytest.mark.parametrize("column", ACQUIRER_COLUMNS, ids=lambda c: c.name)
def test_a_value_changed_between_read_and_write_is_left_as_the_other_writer_made_it(
    database: Database, column: SealedColumn
) -> None:
    """The pass read a row's sealed value; before its write, another pass (another process) re-sealed the
    row: the write (compare-and-set on the value read) changes nothing and is counted."""
    hsm = platform_hsm()
    protection = RecordProtection.open(hsm)
    _fill(database, protection, range(1, 3))
    protection.rotate()
    stale = _stale_row(database, column)
    assert reseal_rows(database, RecordProtection.open(hsm)).resealed == 6  # the other writer
    fresh = _stale_row(database, column)
    assert getattr(fresh, column.column) != getattr(stale, column.column)
    with database.engine.begin() as connection:
        assert reseal_value(connection, protection, column, stale) == "changed_meanwhile"
    assert _stale_row(database, column) == fresh
    assert versions(database) == dict.fromkeys((c.name for c in ACQUIRER_COLUMNS), [2] * 2)


def test_a_value_that_does_not_open_is_counted_and_left_alone(database: Database) -> None:
    protection = RecordProtection.open(platform_hsm())
    _fill(database, protection, range(1, 4))
    u = acquirer_uploads.c
    with database.engine.begin() as connection:  # the PAN of upload 2 and the message of upload 3, altered
        damaged = {}
        for stan, column in ((2, u.pan_sealed), (3, u.sealed)):
            value = bytes(connection.execute(select(column).where(u.stan == stan)).scalar_one())
            damaged[column.name] = value[:-1] + bytes([value[-1] ^ 1])
            connection.execute(
                update(acquirer_uploads).where(u.stan == stan).values({column.name: damaged[column.name]})
            )
    protection.rotate()
    report = reseal_rows(database, protection, batch=2)
    assert report.column("acquirer_uploads.pan_sealed").unreadable == 1
    assert report.column("acquirer_uploads.sealed").unreadable == 1
    assert (report.resealed, report.unreadable) == (7, 2)
    with database.engine.connect() as connection:  # left as they were: loud where they are read
        assert (
            bytes(connection.execute(select(u.pan_sealed).where(u.stan == 2)).scalar_one())
            == damaged["pan_sealed"]
        )
        assert (
            bytes(connection.execute(select(u.sealed).where(u.stan == 3)).scalar_one()) == damaged["sealed"]
        )
    assert sorted(versions(database)["acquirer_uploads.pan_sealed"]) == [1, 2, 2]
