"""What clearing stages of an upload, stored by the acquirer with it (migration 0022, docs/clearing.md): the
PSN, field 55, the TC's values, the PAN's fingerprint, the PAN sealed alone for the record and the card's
shard; an upload stored before 0022 gets the same columns from its sealed 0320 (``fill_upload_columns``); a
0320 whose field 55 is not a TC keeps its field 55 and no TC values."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from citycard.acquirer import StoreUpload, TransactionKey, store_upload
from citycard.clearing import parse_tc
from citycard.codec.iso8583 import BatchUpload, Field60, IccData
from citycard.codec.tlv import encode_many
from citycard.db import Database
from citycard.db.acquirer_repositories import (
    acquirer_unit_of_work,
    card_shard,
    fill_upload_columns,
    pan_record,
)
from citycard.db.acquirer_tables import acquirer_uploads
from citycard.hsm import SealedDataError
from citycard.hsm.protection import RecordProtection

from tests.acquirer.support import MERCHANT, PAN, TERMINAL, platform_hsm

COLUMNS = (
    "psn", "field55", "pan_sealed", "pan_fingerprint", "card_shard", "tc_atc", "tc_amount_fen", "tc_date",
    "tc_cryptogram", "tc_ac_data", "tc_gpo_ac_data",
)  # fmt: skip


def tc_field55(atc: int, amount_fen: int) -> bytes:
    return encode_many(
        [
            ("9F26", bytes.fromhex("1122334455667788")), ("9F27", b"\x40"),
            ("9F10", bytes.fromhex("07010103900000010A01000000500012345678")), ("9F37", b"\x01\x02\x03\x04"),
            ("9F36", atc.to_bytes(2, "big")), ("95", bytes(5)), ("9A", bytes.fromhex("261125")),
            ("9C", b"\x00"),
            ("9F02", bytes.fromhex(f"{amount_fen:012d}")), ("5F2A", bytes.fromhex("0156")),
            ("82", bytes.fromhex("7C00")), ("9F1A", bytes.fromhex("0156")), ("9F03", bytes(6)),
        ]
    )  # fmt: skip


def message(stan: int, field55: bytes) -> bytes:
    return BatchUpload(
        mti="0320", pan=PAN, processing_code="000000", amount_fen=1_234, stan=stan,
        card_sequence_number="001", terminal_id=TERMINAL, merchant_id=MERCHANT, currency="156",
        icc=IccData(field55), field60=Field60("36", 1),
    ).to_bytes()  # fmt: skip


def stored(database: Database, stan: int) -> dict[str, object]:
    u = acquirer_uploads.c
    with database.engine.connect() as c:
        row = c.execute(select(acquirer_uploads).where(u.stan == stan)).one()
    return {name: getattr(row, name) for name in COLUMNS}


def test_the_acquirer_stores_what_clearing_stages_and_fills_older_rows_the_same(database: Database) -> None:
    protection = RecordProtection.open(platform_hsm())
    field55 = tc_field55(0x1234, 1_234)
    for stan in (1, 2):
        command = StoreUpload(TransactionKey(TERMINAL, 1, stan), MERCHANT, 1_234, "x", message(stan, field55))
        assert store_upload(command, acquirer_unit_of_work(database, protection), lambda: 1)
    got = stored(database, 1)
    tc = parse_tc(field55)
    fingerprint = protection.pan_fingerprint(PAN)
    assert {k: v for k, v in got.items() if k != "pan_sealed"} == {
        "psn": "01",
        "field55": field55,
        "pan_fingerprint": fingerprint,
        "card_shard": card_shard(fingerprint),
        "tc_atc": 0x1234,
        "tc_amount_fen": 1_234,
        "tc_date": "20261125",
        "tc_cryptogram": bytes.fromhex("1122334455667788"),
        "tc_ac_data": tc.ac_data,
        "tc_gpo_ac_data": None,
    }
    assert dt.date(2026, 11, 25) == tc.txn_date
    sealed = got["pan_sealed"]
    assert isinstance(sealed, bytes) and PAN.encode() not in sealed
    assert protection.unseal(sealed, pan_record(TERMINAL, 1, 1)) == PAN.encode()
    with pytest.raises(SealedDataError):  # sealed for record 1, it does not open as record 2's
        protection.unseal(sealed, pan_record(TERMINAL, 1, 2))

    # upload 2 as a row stored before 0022 (no staged columns): filled from its sealed 0320, the same
    u = acquirer_uploads.c
    with database.engine.begin() as c:
        c.execute(update(acquirer_uploads).where(u.stan == 2).values(dict.fromkeys(COLUMNS)))
    assert stored(database, 2)["field55"] is None
    assert fill_upload_columns(database, protection, batch=1) == 1
    assert fill_upload_columns(database, protection) == 0  # nothing left to fill
    again = stored(database, 2)
    assert {k: v for k, v in again.items() if k != "pan_sealed"} == {
        k: v for k, v in got.items() if k != "pan_sealed"
    }
    assert protection.unseal(again["pan_sealed"], pan_record(TERMINAL, 1, 2)) == PAN.encode()  # type: ignore[arg-type]


def test_a_field55_that_is_not_a_tc_is_kept_without_tc_values(database: Database) -> None:
    protection = RecordProtection.open(platform_hsm())
    arqc = IccData.of([("9F26", bytes(8)), ("9F27", b"\x80")]).raw  # an ARQC, not a TC
    command = StoreUpload(TransactionKey(TERMINAL, 1, 3), MERCHANT, 1_234, "x", message(3, arqc))
    assert store_upload(command, acquirer_unit_of_work(database, protection), lambda: 1)
    got = stored(database, 3)
    assert got["field55"] == arqc and got["psn"] == "01" and got["pan_fingerprint"] is not None
    assert [got[k] for k in COLUMNS if k.startswith("tc_")] == [None] * 6
