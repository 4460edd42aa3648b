"""PANs at rest in the acquirer (docs/network.md, "PANs at rest"): after an offline upload and a queued
reversal no clear PAN is in the database (the SQLite file and its WAL read byte by byte; every row of the
acquirer's tables on PostgreSQL), in ASCII or BCD; the queued reversal still reaches the switch with its
PAN (unsealed in the HSM), the upload is found by the card's keyed fingerprint; a sealed message moved onto
another row does not open; rows kept clear before migration 0019 are sealed at start."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text, update

from citycard.acquirer import SafEntry, SafKind, SafStatus, StoreUpload, TransactionKey, store_upload
from citycard.codec.iso8583 import BatchUpload, Field60, IccData, ResponseCode, ReversalRequest
from citycard.db import Database
from citycard.db.acquirer_repositories import (
    AcquirerUnitOfWork,
    ProtectionMissing,
    acquirer_unit_of_work,
    seal_clear_rows,
)
from citycard.db.acquirer_tables import acquirer_saf, acquirer_uploads
from citycard.hsm import SealedDataError
from citycard.hsm.protection import RecordProtection

from tests.acquirer.support import (
    MERCHANT,
    PAN,
    TERMINAL,
    SwitchDouble,
    acquirer,
    eventually,
    platform_hsm,
    saf_counts,
    switch,
    terminal_link,
)
from tests.net.support import run

TABLES = ("acquirer_saf", "acquirer_uploads", "acquirer_transactions")


def pan_forms(pan: str) -> list[bytes]:
    """How a PAN can appear in stored bytes: ASCII (fields 2/35 of a text encoding, a column), BCD on
    either nibble boundary (field 2 of this profile is packed BCD, 35 too)."""
    forms = [pan.encode("ascii")]
    for start in (0, 1):
        digits = pan[start:]
        digits = digits[: len(digits) // 2 * 2]
        forms.append(bytes.fromhex(digits)[:7])  # 14 digits: long enough never to match by chance
    return forms


def holds_pan(data: bytes, pan: str = PAN) -> bool:
    return any(form in data for form in pan_forms(pan))


def upload_message(stan: int) -> BatchUpload:
    return BatchUpload(
        mti="0320",
        pan=PAN,
        processing_code="000000",
        amount_fen=200,
        stan=stan,
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        currency="156",
        icc=IccData.of([("9F26", bytes(8)), ("9F27", b"\x40")]),
        field60=Field60("36", 1),
        mac=bytes(8),
    )


def stored_bytes(database: Database, tables: Sequence[str] = TABLES) -> bytes:
    """Everything ``tables`` hold (the acquirer's by default), every column of every row, as bytes."""
    out = bytearray()
    with database.engine.connect() as connection:
        for table in tables:
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                for value in row:
                    if isinstance(value, bytes | bytearray | memoryview):
                        out += bytes(value)
                    elif value is not None:
                        out += str(value).encode()
                    out += b"|"
    return bytes(out)


def sqlite_files(database: Database) -> bytes:
    path = Path(str(database.engine.url.database))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_the_detector_sees_a_clear_pan_in_the_messages_the_acquirer_keeps() -> None:
    """The check below can fail: the encoded upload and reversal hold the PAN in a form it finds."""
    assert holds_pan(upload_message(1).to_bytes())
    assert not holds_pan(upload_message(1).to_bytes().replace(bytes.fromhex(PAN[:14]), bytes(7)))
    assert holds_pan(b"x" + PAN.encode() + b"y") and not holds_pan(b"622424******0113")


def test_no_clear_pan_at_rest_after_an_upload_and_a_queued_reversal(database: Database) -> None:
    double = SwitchDouble(mode="silent")
    hsm = platform_hsm()

    async def scenario() -> None:
        async with (
            switch(double) as sw,
            acquirer(database, hsm, sw.port) as host,
            terminal_link(host.port) as terminal,
        ):
            await terminal.sign_on()
            upload = await terminal.send(upload_message(40))
            assert upload.response_code == ResponseCode.APPROVED
            sale = await terminal.send(terminal.purchase(5000))  # no answer: 98, reversal queued
            assert sale.response_code == ResponseCode.ISSUER_TIMEOUT
            assert saf_counts(database)[0] == 1

            at_rest = stored_bytes(database)
            assert b"622424******0113" in at_rest  # the masked PAN is there for display
            assert not holds_pan(at_rest)
            if database.engine.dialect.name == "sqlite":
                assert not holds_pan(await asyncio.to_thread(sqlite_files, database))

            double.mode = "answer"  # the switch is back: the reversal is unsealed and delivered
            await eventually(lambda: saf_counts(database) == (0, 1))
        [reversal] = [m for m in double.received if isinstance(m, ReversalRequest)][-1:]
        assert reversal.pan == PAN

    run(scenario())
    protection = RecordProtection.open(hsm)
    with acquirer_unit_of_work(database, protection, read_only=True) as uow:
        kept = uow.uploads.get(TransactionKey(TERMINAL, 1, 40))
        assert kept is not None and kept.pan_masked == "622424******0113"
        assert holds_pan(kept.message)  # unsealed: the whole 0320 for clearing
        assert uow.uploads.keys_of_card(PAN) == [TransactionKey(TERMINAL, 1, 40)]
        assert uow.uploads.keys_of_card("6224242900000121") == []
    assert not holds_pan(stored_bytes(database))


def test_a_sealed_message_moved_to_another_row_does_not_open_and_none_is_kept_without_the_hsm(
    database: Database,
) -> None:
    protection = RecordProtection.open(platform_hsm())
    for stan in (1, 2):
        message = upload_message(stan)
        command = StoreUpload(TransactionKey(TERMINAL, 1, stan), MERCHANT, 200, "x*x", message.to_bytes())
        assert store_upload(command, acquirer_unit_of_work(database, protection), lambda: 1)
    u = acquirer_uploads.c
    with database.engine.begin() as connection:
        first = connection.execute(select(u.sealed).where(u.stan == 1)).scalar_one()
        connection.execute(update(acquirer_uploads).where(u.stan == 2).values(sealed=first))
    with acquirer_unit_of_work(database, protection, read_only=True) as uow:
        assert uow.uploads.get(TransactionKey(TERMINAL, 1, 1)) is not None
        with pytest.raises(SealedDataError):
            uow.uploads.get(TransactionKey(TERMINAL, 1, 2))
    other = RecordProtection.open(platform_hsm())  # the same label in another HSM is another key
    with acquirer_unit_of_work(database, other, read_only=True) as uow, pytest.raises(SealedDataError):
        uow.uploads.get(TransactionKey(TERMINAL, 1, 1))
    entry = SafEntry(0, SafKind.REVERSAL, "000000000009", b"\x04\x00x", SafStatus.PENDING, 0, 0, None, 0)
    with database.unit_of_work(AcquirerUnitOfWork) as uow, pytest.raises(ProtectionMissing):
        uow.saf.add(entry)  # a unit of work without the HSM's protection keeps nothing
    assert saf_counts(database) == (0, 0)


def test_rows_kept_clear_before_0019_are_sealed_at_start(database: Database) -> None:
    protection = RecordProtection.open(platform_hsm())
    reversal = upload_message(7).to_bytes()  # any message holding the PAN
    with database.engine.begin() as connection:  # as the acquirer wrote them before migration 0019
        connection.execute(
            insert(acquirer_saf).values(
                kind="reversal", rrn="000000000005", message=reversal, status="pending", attempts=0,
                next_attempt_ns=0, created_ns=0,
            )
        )  # fmt: skip
        connection.execute(
            insert(acquirer_uploads).values(
                terminal_id=TERMINAL, batch=1, stan=7, merchant_id=MERCHANT, amount_fen=200,
                pan_masked="622424******0113", message=reversal, received_ns=0,
            )
        )  # fmt: skip
    with acquirer_unit_of_work(database, protection, read_only=True) as uow:  # readable before sealing
        assert uow.uploads.get(TransactionKey(TERMINAL, 1, 7)) is not None
    assert holds_pan(stored_bytes(database))
    assert seal_clear_rows(database, protection, batch=1) == 2
    assert seal_clear_rows(database, protection) == 0  # done: nothing left clear
    assert not holds_pan(stored_bytes(database))
    with acquirer_unit_of_work(database, protection, read_only=True) as uow:
        kept = uow.uploads.get(TransactionKey(TERMINAL, 1, 7))
        entry = uow.saf.find(SafKind.REVERSAL, "000000000005")
        assert kept is not None and kept.message == reversal
        assert entry is not None and entry.message == reversal
        assert uow.uploads.keys_of_card(PAN) == [TransactionKey(TERMINAL, 1, 7)]
