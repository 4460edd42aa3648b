"""Money as integer fen (``citycard.codec.money``): yuan text both ways, exactly, and the BCD of EMV's and
ISO 8583's numeric amounts (n12: ``9F02`` of EMV 4.3 Book 3 Annex A, field 4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.codec.money import amount_from_bcd, bcd_amount, format_amount, parse_yuan


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("100.00", 10_000),
        ("12.5", 1_250),
        ("0.01", 1),
        ("7", 700),
        (" 3.40 ", 340),
        ("9999999999.99", 999_999_999_999),
    ],
)
def test_yuan_text_becomes_fen_exactly(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text", ["", "-1", "+1", "1,000", "1.234", "1.", ".5", "1e3", "12345678901", "١٢", "nan"]
)
def test_anything_else_is_refused_saying_what_an_amount_is(text: str) -> None:
    with pytest.raises(ValueError, match="is not an amount in yuan"):
        parse_yuan(text)


def test_the_whole_digits_can_be_bounded_tighter() -> None:
    assert parse_yuan("999999999", max_whole_digits=9) == 99_999_999_900
    with pytest.raises(ValueError):
        parse_yuan("1000000000", max_whole_digits=9)


def test_fen_become_text_with_two_decimals_a_sign_and_grouping_when_asked() -> None:
    assert [format_amount(f) for f in (0, 1, 1_250, -1_250, 123_456_789)] == [
        "0.00",
        "0.01",
        "12.50",
        "-12.50",
        "1234567.89",
    ]
    assert format_amount(123_456_789, grouping=True) == "1,234,567.89"
    assert format_amount(-5, grouping=True) == "-0.05"


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_text_and_bcd_both_ways_give_the_amount_back(fen: int) -> None:
    assert parse_yuan(format_amount(fen)) == fen
    assert amount_from_bcd(bcd_amount(fen)) == fen
    assert len(bcd_amount(fen)) == 6


def test_n12_known_answers_and_refusals() -> None:
    assert bcd_amount(1_250) == bytes.fromhex("000000001250")  # CNY 12.50 in 9F02
    assert bcd_amount(99, length=2) == bytes.fromhex("0099")
    for fen in (-1, 10**12):
        with pytest.raises(ValueError, match="does not fit n12"):
            bcd_amount(fen)
    for value in (bytes.fromhex("00000000125A"), b""):
        with pytest.raises(ValueError, match="is not BCD"):
            amount_from_bcd(value)
