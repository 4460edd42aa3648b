"""The card's transit records: round trips, the documented bytes, and any 32 (8) bytes either decode or
raise TripRecordError (never anything else)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.transit import (
    CONCESSION_LENGTH,
    TRIP_LENGTH,
    Category,
    Concession,
    TripRecord,
    TripRecordError,
    TripStatus,
)
from citycard.transit.record import card_identity

trips = st.builds(
    TripRecord,
    status=st.sampled_from(TripStatus),
    line=st.integers(1, 0xFFFF),
    boarding_stop=st.integers(1, 0xFF),
    transfer=st.booleans(),
    tapped_out=st.booleans(),
    boarding_s=st.integers(0, 0x7FFFFFFF),
    last_tap_s=st.just(0x7FFFFFFF),
    terminal_id=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=8),
    day=st.integers(0, 0xFFFF),
    day_fen=st.integers(0, 0xFFFFFF),
    month=st.integers(0, 0xFFFF),
    month_fen=st.integers(0, 0xFFFFFF),
)


@given(trips)
def test_trip_record_round_trip(record):
    data = record.encode()
    assert len(data) == TRIP_LENGTH
    assert TripRecord.decode(data) == record


@given(st.binary(min_size=TRIP_LENGTH, max_size=TRIP_LENGTH))
def test_any_32_bytes_decode_or_raise_the_typed_error(data):
    try:
        record = TripRecord.decode(data)
    except TripRecordError as exc:
        assert str(exc).startswith("transit record ")
    else:
        assert record.encode() == data or data == bytes(TRIP_LENGTH)


@given(st.binary(min_size=CONCESSION_LENGTH, max_size=CONCESSION_LENGTH))
def test_any_8_bytes_decode_as_a_concession_or_raise_the_typed_error(data):
    try:
        concession = Concession.decode(data)
    except TripRecordError:
        return
    assert concession.encode() == data or concession == Concession()


def test_card_identity_record():
    """Record 3: the PAN as 5A padded with F to 10 bytes, then the PSN."""
    assert card_identity(bytes.fromhex("6231000000000000001F01")) == ("6231000000000000001", "01")
    assert card_identity(bytes.fromhex("6231000000000042FFFF00")) == ("6231000000000042", "00")
    with pytest.raises(TripRecordError):
        card_identity(bytes(10))  # not 11 bytes
    with pytest.raises(TripRecordError):
        card_identity(bytes.fromhex("ABCDEF0000000000000001"))  # not BCD


def test_documented_layout():
    record = TripRecord(
        TripStatus.ON_BOARD, 12, 3, True, False, 849_000_000, 849_000_060, "BUS00042", 9825, 300, 322, 4500
    )
    assert record.encode().hex().upper() == (
        "0201000C0301329AB640329AB67C4255533030303432266100012C0142001194"
    )
    assert Concession(Category.STUDENT, dt.date(2027, 6, 30)).encode().hex().upper() == "0102202706300000"


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"\x01" * 31, "trip"),
        (bytes.fromhex("07") + bytes(31), "trip version"),
        (bytes.fromhex("0209") + bytes(30), "trip status"),
        (bytes.fromhex("0202000103F0") + bytes(26), "trip flags"),
        (bytes.fromhex("0202000100") + bytes(9) + b"\x01" + bytes(17), "trip terminal id"),
        (bytes.fromhex("0201000000") + bytes(9) + b"        " + bytes(10), "trip line"),
        (bytes.fromhex("0201000100") + bytes(9) + b"        " + bytes(10), "trip boarding stop"),
        (bytes.fromhex("020200010000000000FF00000000") + b"        " + bytes(10), "trip last tap"),
    ],
)
def test_malformed_trip_records(data, where):
    with pytest.raises(TripRecordError) as info:
        TripRecord.decode(data)
    assert info.value.where == where


@pytest.mark.parametrize(
    ("hex_", "where"),
    [
        ("0105202701010000", "concession category"),
        ("0202202701010000", "concession version"),
        ("0102202713010000", "concession valid until"),
        ("0102000000000000", "concession valid until"),
        ("0102202701010001", "concession RFU"),
        ("01022027010100", "concession"),
    ],
)
def test_malformed_concessions(hex_, where):
    with pytest.raises(TripRecordError) as info:
        Concession.decode(bytes.fromhex(hex_))
    assert info.value.where == where
