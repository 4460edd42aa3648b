"""Data object lists (EMV 4.3 Book 3 §5.4): parsing, the terminal's fill rules per format, the card's split.

The qPBOC PDOL and the log format are the typical PBOC values listed in ../shared/REFERENCE.md; the Visa
PDOL is from a public SELECT response trace (AndroidCrypto "Talk to your Credit Card", GitHub).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.codec.dol import (
    MAX_DOL_ENTRIES,
    MAX_DOL_SIZE,
    DolError,
    build_dol_data,
    dol_data_length,
    encode_dol,
    fit_value,
    parse_dol,
    split_dol_data,
)
from citycard.codec.tags import RID_UNIONPAY, tag_format

H = bytes.fromhex

QPBOC_PDOL = H("9F66049F7A019F02069F03069F1A0295055F2A029A039C019F3704")
LOG_FORMAT_9F4F = H("9A039F21039F02069F03069F1A025F2A029F4E149C019F3602")
VISA_PDOL = H("9F66049F02069F03069F1A0295055F2A029A039C019F3704")


def test_parse_qpboc_pdol() -> None:
    assert parse_dol(QPBOC_PDOL) == [
        ("9F66", 4),
        ("9F7A", 1),
        ("9F02", 6),
        ("9F03", 6),
        ("9F1A", 2),
        ("95", 5),
        ("5F2A", 2),
        ("9A", 3),
        ("9C", 1),
        ("9F37", 4),
    ]
    assert dol_data_length(QPBOC_PDOL) == 34
    assert encode_dol(parse_dol(QPBOC_PDOL)) == QPBOC_PDOL


def test_pboc_log_format_is_45_bytes() -> None:
    assert dol_data_length(LOG_FORMAT_9F4F) == 45
    assert dol_data_length(VISA_PDOL) == 33


def test_build_qpboc_pdol_data() -> None:
    source = {
        "9F66": H("28000000"),
        "9F7A": H("01"),
        "9F02": H("000000000150"),
        "9F03": H("000000000000"),
        "9F1A": H("0156"),
        "95": H("0000000000"),
        "5F2A": H("0156"),
        "9A": H("261125"),
        "9C": H("00"),
        "9F37": H("A1B2C3D4"),
    }
    data = build_dol_data(QPBOC_PDOL, source, rid=RID_UNIONPAY)
    assert data == b"".join(source[tag] for tag, _ in parse_dol(QPBOC_PDOL))
    assert split_dol_data(QPBOC_PDOL, data) == source


def test_absent_and_constructed_objects_are_zeros() -> None:
    dol = H("9F3704 7003 BF0C02 9F0206")
    data = build_dol_data(dol, {"70": H("5A01"), "BF0C": H("AA"), "9F02": H("000000000001")})
    assert data == bytes(4 + 3 + 2) + H("000000000001")


@pytest.mark.parametrize(
    ("tag", "value", "length", "expected"),
    [
        # n: truncate on the left (keep the rightmost digits), pad with leading 00
        ("9F02", "000000012345", 4, "00012345"),
        ("9F02", "0150", 6, "000000000150"),
        ("9A", "20261125", 3, "261125"),
        # cn: truncate on the right, pad with trailing FF
        ("5A", "6234567890123456", 10, "6234567890123456FFFF"),
        ("5A", "6234567890123456", 4, "62345678"),
        # an / ans: truncate on the right, pad with trailing 00
        ("9F1C", "3132333435363738", 10, "31323334353637380000"),
        ("9F4E", "414243", 2, "4142"),
        # b: truncate on the right, pad with trailing 00
        ("9F37", "A1B2C3D4", 2, "A1B2"),
        ("95", "8000", 5, "8000000000"),
        # unknown tag: treated as b
        ("DF7F", "0102", 3, "010200"),
        # exact length: unchanged
        ("9F02", "000000000150", 6, "000000000150"),
    ],
)
def test_fit_rules_per_format(tag: str, value: str, length: int, expected: str) -> None:
    dol = encode_dol([(tag, length)])
    assert build_dol_data(dol, {tag: H(value)}) == H(expected)


def test_format_depends_on_rid() -> None:
    # 9F79 is n12 (EC balance) for UnionPay, and n12 (VLP available funds) for Visa; 9F63 is b for
    # everyone, so fitting 2 bytes into 4 pads on the right.
    dol = encode_dol([("9F79", 4), ("9F63", 4)])
    source = {"9F79": H("000000010000"), "9F63": H("0102")}
    assert build_dol_data(dol, source, rid=RID_UNIONPAY) == H("00010000") + H("01020000")


def test_zero_length_entry() -> None:
    dol = encode_dol([("9F02", 0), ("9F37", 4)])
    assert build_dol_data(dol, {"9F02": H("000000000001"), "9F37": H("01020304")}) == H("01020304")
    assert split_dol_data(dol, H("01020304")) == {"9F02": b"", "9F37": H("01020304")}


def test_entries_as_a_list() -> None:
    entries = [("9f02", 6), ("9F37", 4)]  # lower-case accepted and normalised
    assert build_dol_data(entries, {"9F02": H("000000000001")}) == H("000000000001") + bytes(4)
    assert split_dol_data(entries, bytes(10)) == {"9F02": bytes(6), "9F37": bytes(4)}


@pytest.mark.parametrize(
    ("dol", "reason", "offset"),
    [
        ("9F", "tag runs past the end", 0),
        ("9F0206 9F", "tag runs past the end", 3),
        ("9F02", "length of 9F02 missing", 2),
        ("9F0206 5A", "length of 5A missing", 4),
        ("9F81818101 04", "tag longer than 4 bytes", 0),
        ("00 9F0206", "tag byte 00 is not a tag", 0),
        ("9F0206 FF0101", "tag byte FF is not a tag", 3),
    ],
)
def test_parse_errors(dol: str, reason: str, offset: int) -> None:
    with pytest.raises(DolError) as info:
        parse_dol(H(dol))
    assert info.value.reason == reason
    assert info.value.offset == offset


def test_size_and_entry_bounds() -> None:
    with pytest.raises(DolError, match="exceeds"):
        parse_dol(H("9A03") * (MAX_DOL_SIZE // 2 + 1))
    with pytest.raises(DolError, match="entries"):
        parse_dol(H("9A03") * (MAX_DOL_ENTRIES + 1))
    assert len(parse_dol(H("9A03") * MAX_DOL_ENTRIES)) == MAX_DOL_ENTRIES
    with pytest.raises(DolError, match="entries"):
        build_dol_data([("9A", 3)] * (MAX_DOL_ENTRIES + 1), {})
    with pytest.raises(DolError, match="exceeds"):
        build_dol_data(H("9A03") * (MAX_DOL_SIZE // 2 + 1), {})
    with pytest.raises(DolError, match="exceeds"):
        encode_dol([("DF8101", 20)] * MAX_DOL_ENTRIES)  # 4 bytes each: 256 bytes


def test_list_entry_errors() -> None:
    with pytest.raises(DolError) as info:
        build_dol_data([("9F02", 6), ("9F", 1)], {})
    assert info.value.offset == 1
    with pytest.raises(DolError):
        build_dol_data([("9F02", 256)], {})
    with pytest.raises(DolError):
        build_dol_data([("9F02", -1)], {})


def test_split_length_mismatch() -> None:
    with pytest.raises(DolError) as info:
        split_dol_data(QPBOC_PDOL, bytes(33))
    assert info.value.offset == 33 and "34" in info.value.reason
    with pytest.raises(DolError) as info:
        split_dol_data(QPBOC_PDOL, bytes(35))
    assert info.value.offset == 34


def test_split_duplicate_tag() -> None:
    with pytest.raises(DolError) as info:
        split_dol_data(H("9F3704 9A03 9F3704"), bytes(11))
    assert "twice" in info.value.reason and info.value.offset == 7


def test_fit_value_direct() -> None:
    assert fit_value(H("123456"), 2, "n") == H("3456")
    assert fit_value(H("1234"), 3, "cn") == H("1234FF")
    assert fit_value(b"", 2, "b") == bytes(2)


# --- properties -----------------------------------------------------------------------------------

_tags = st.sampled_from(
    ["9F02", "9F03", "9A", "9C", "5F2A", "95", "9F37", "9F66", "9F7A", "5A", "9F4E", "DF69"]
)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(_tags, st.integers(0, 40)), max_size=12, unique_by=lambda e: e[0]),
    st.data(),
)
def test_build_split_round_trip(entries: list[tuple[str, int]], data: st.DataObject) -> None:
    dol = encode_dol(entries)
    # values of exactly the right length come back unchanged
    source = {tag: data.draw(st.binary(min_size=n, max_size=n)) for tag, n in entries}
    built = build_dol_data(dol, source)
    assert len(built) == dol_data_length(dol)
    assert split_dol_data(dol, built) == source


@settings(max_examples=300)
@given(st.sampled_from(["n", "cn", "an", "ans", "b"]), st.binary(max_size=20), st.integers(0, 20))
def test_fit_value_properties(fmt: str, value: bytes, length: int) -> None:
    fitted = fit_value(value, length, fmt)
    assert len(fitted) == length
    keep = min(len(value), length)
    if fmt == "n":
        assert fitted[length - keep :] == value[len(value) - keep :]  # rightmost digits kept
        assert fitted[: length - keep] == bytes(length - keep)
    else:
        assert fitted[:keep] == value[:keep]  # leftmost bytes kept
        assert set(fitted[keep:]) <= ({0xFF} if fmt == "cn" else {0x00})


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_dol_error(raw: bytes) -> None:
    try:
        entries = parse_dol(raw)
    except DolError as exc:
        assert 0 <= exc.offset <= len(raw)
        return
    assert encode_dol(entries) == raw


@settings(max_examples=300)
@given(
    st.lists(st.tuples(_tags, st.integers(0, 12)), max_size=10, unique_by=lambda e: e[0]),
    st.data(),
)
def test_build_applies_the_rule_of_each_tags_format(
    entries: list[tuple[str, int]], data: st.DataObject
) -> None:
    source = {tag: data.draw(st.binary(max_size=14)) for tag, _ in entries if data.draw(st.booleans())}
    built = build_dol_data(encode_dol(entries), source, rid=RID_UNIONPAY)
    pos = 0
    for tag, length in entries:
        piece = built[pos : pos + length]
        pos += length
        expected = (
            fit_value(source[tag], length, tag_format(tag, RID_UNIONPAY)) if tag in source else bytes(length)
        )
        assert piece == expected, tag
    assert pos == len(built)
