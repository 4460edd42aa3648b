"""EMV's compressed numeric format (``citycard.codec.cn``), EMV 4.3 Book 3 §4.3: BCD digits, left-justified,
padded on the right with hexadecimal F."""

from __future__ import annotations

from citycard.codec.cn import cn_digits


def test_a_pan_in_5a_loses_its_f_padding_and_nothing_else() -> None:
    assert cn_digits(bytes.fromhex("6212260000000000018F")) == "6212260000000000018"  # 19 digits, one pad
    assert cn_digits(bytes.fromhex("6212260000000018")) == "6212260000000018"  # 16 digits, no pad
    assert cn_digits(bytes.fromhex("621226FFFF")) == "621226"
    assert cn_digits(b"") == ""


def test_a_nibble_that_is_not_a_digit_stays_for_the_caller_to_refuse() -> None:
    text = cn_digits(bytes.fromhex("62A2"))
    assert text == "62A2" and not text.isdigit()
    assert cn_digits(bytes.fromhex("F0")) == "F0"  # only trailing pads go: an F inside is kept
