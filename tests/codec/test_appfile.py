"""The industry applications file's records (``citycard.codec.appfile``): what the service center keeps
comes back from the 16 bytes unchanged, and bytes of another layout are one typed error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.codec.appfile import (
    APP_NUMBERS,
    APP_RECORD_LENGTH,
    AppFileError,
    decode_record,
    empty_record,
    encode_record,
)

DATA = {
    "transit": st.fixed_dictionaries(
        {"category": st.sampled_from(["elderly", "student", "disabled"]), "valid_until": st.just("20301231")}
    ),
    "library": st.fixed_dictionaries(
        {
            "reader_number": st.from_regex(r"[0-9]{6,12}", fullmatch=True),
            "deposit_fen": st.integers(0, 9_999_999).map(str),
        }
    ),
    "health": st.fixed_dictionaries(
        {
            "insurance_number": st.from_regex(r"[0-9]{10,18}", fullmatch=True),
            "blood_type": st.sampled_from(["A", "B", "AB", "O", "unknown"]),
        }
    ),
}


@given(
    st.sampled_from(list(APP_NUMBERS)).flatmap(lambda app: st.tuples(st.just(app), DATA[app], st.booleans()))
)
def test_a_record_round_trips(case: tuple[str, dict[str, str], bool]) -> None:
    app, data, enabled = case
    raw = encode_record(app, enabled, data)
    assert len(raw) == APP_RECORD_LENGTH and raw[0] == APP_NUMBERS[app]
    record = decode_record(raw)
    assert (record.app, record.state, dict(record.data)) == (app, "enabled" if enabled else "disabled", data)


def test_the_library_record_byte_for_byte() -> None:
    raw = encode_record("library", True, {"reader_number": "12345678", "deposit_fen": "10000"})
    assert raw.hex().upper() == "020112345678FFFF0000000100000000"
    assert decode_record(empty_record("health")).state == "absent"


@given(st.binary(max_size=40))
def test_any_bytes_decode_or_raise_the_typed_error(raw: bytes) -> None:
    try:
        record = decode_record(raw)
    except AppFileError:
        return
    assert record.app in APP_NUMBERS and len(raw) == APP_RECORD_LENGTH


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (bytes(15), "16 bytes"),
        (bytes.fromhex("09") + bytes(15), "byte 1"),
        (bytes.fromhex("0207") + bytes(14), "byte 2"),
        (bytes.fromhex("0201") + bytes.fromhex("1234ABFFFFFF") + bytes(8), "bytes 3-8"),
        (bytes.fromhex("010109") + bytes(13), "byte 3"),
    ],
)
def test_malformed_records_say_where(raw: bytes, where: str) -> None:
    with pytest.raises(AppFileError, match=where):
        decode_record(raw)
