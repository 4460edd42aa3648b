"""Rotation of the acquirer's data key at the storage level, on SQLite and PostgreSQL
(``citycard.db.record_keys``): rows sealed under version 1 stay readable after the rotation, a re-seal pass
in batches smaller than the tables puts every SAF entry and upload under version 2 and they read back the
same; a row changed between the pass's read and its write is left as the other writer made it."""

from __future__ import annotations

from sqlalchemy import select

from citycard.acquirer import SafEntry, SafKind, SafStatus, StoreUpload, TransactionKey, store_upload
from citycard.db import Database
from citycard.db.acquirer_repositories import acquirer_unit_of_work, upload_record
from citycard.db.acquirer_tables import acquirer_saf, acquirer_uploads
from citycard.db.record_keys import _one, reseal_rows
from citycard.hsm.protection import RecordProtection

from tests.acquirer.support import MERCHANT, TERMINAL, platform_hsm
from tests.acquirer.test_pans_at_rest import upload_message


def _versions(database: Database) -> list[int]:
    with database.engine.connect() as connection:
        return [
            RecordProtection.key_version(bytes(sealed))
            for table in (acquirer_saf, acquirer_uploads)
            for (sealed,) in connection.execute(select(table.c.sealed))
        ]


def _fill(database: Database, protection: RecordProtection, stans: range) -> None:
    for stan in stans:
        message = upload_message(stan).to_bytes()
        command = StoreUpload(TransactionKey(TERMINAL, 1, stan), MERCHANT, 200, "x*x", message)
        assert store_upload(command, acquirer_unit_of_work(database, protection), lambda: 1)
        entry = SafEntry(0, SafKind.ADVICE, f"{stan:012d}", message, SafStatus.PENDING, 0, 0, None, 0)
        with acquirer_unit_of_work(database, protection) as uow:
            assert uow.saf.add(entry) is not None
            uow.commit()


def test_every_row_is_resealed_under_the_new_version_and_reads_back_the_same(database: Database) -> None:
    protection = RecordProtection.open(platform_hsm())
    _fill(database, protection, range(1, 8))
    assert _versions(database) == [1] * 14
    assert protection.rotate() == 2
    _fill(database, protection, range(8, 10))  # sealed under version 2 at once
    assert sorted(_versions(database)) == [1] * 14 + [2] * 4
    report = reseal_rows(database, protection, batch=3)
    assert (report.resealed, report.current, report.unreadable, report.changed_meanwhile) == (14, 4, 0, 0)
    assert _versions(database) == [2] * 18
    with acquirer_unit_of_work(database, protection, read_only=True) as uow:
        for stan in range(1, 10):
            kept = uow.uploads.get(TransactionKey(TERMINAL, 1, stan))
            assert kept is not None and kept.message == upload_message(stan).to_bytes()
            entry = uow.saf.find(SafKind.ADVICE, f"{stan:012d}")
            assert entry is not None and entry.message == upload_message(stan).to_bytes()
    assert reseal_rows(database, protection).resealed == 0


def test_a_row_changed_between_read_and_write_is_left_as_the_other_writer_made_it(database: Database) -> None:
    """The pass read a row's sealed value; before its write, another pass (another process) re-sealed the
    row: the write (compare-and-set on the value read) changes nothing and is counted."""
    hsm = platform_hsm()
    protection = RecordProtection.open(hsm)
    _fill(database, protection, range(1, 3))
    protection.rotate()
    u = acquirer_uploads.c
    with database.engine.connect() as connection:
        stale = bytes(connection.execute(select(u.sealed).where(u.stan == 1)).scalar_one())
    assert reseal_rows(database, RecordProtection.open(hsm)).resealed == 4  # the other writer
    with database.engine.connect() as connection:
        fresh = bytes(connection.execute(select(u.sealed).where(u.stan == 1)).scalar_one())
    counts = dict.fromkeys(("resealed", "current", "unreadable", "changed_meanwhile"), 0)
    with database.engine.begin() as connection:
        where = (u.terminal_id == TERMINAL, u.batch == 1, u.stan == 1)
        record = upload_record(TERMINAL, 1, 1)
        _one(connection, acquirer_uploads, u.sealed, where, stale, record, protection, counts)
    assert counts == {"resealed": 0, "current": 0, "unreadable": 0, "changed_meanwhile": 1}
    with database.engine.connect() as connection:
        assert bytes(connection.execute(select(u.sealed).where(u.stan == 1)).scalar_one()) == fresh
    assert _versions(database) == [2] * 4
