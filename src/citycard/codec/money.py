"""Money in the platform's one unit, the integer fen (分, 1/100 yuan): its text and its BCD, both ways.

No float ever holds an amount. The one place where:

- text typed by a person becomes fen (:func:`parse_yuan`: ``"12.5"`` → 1250, exactly);
- fen become text for a person (:func:`format_amount`: 1250 → ``"12.50"``, ``-`` before a negative amount,
  ``1,234.50`` with ``grouping``);
- fen become the BCD of an EMV or ISO 8583 numeric amount and back (:func:`bcd_amount`, n12 by default:
  ``9F02``, ``9F03``, ``9F79``, ``9F77``; :func:`amount_from_bcd`).

REVIEW.md, "say it once": these had been written out in some eight helpers in six files.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["YUAN_WHOLE_DIGITS", "amount_from_bcd", "bcd_amount", "format_amount", "parse_yuan"]

YUAN_WHOLE_DIGITS: Final = 10
"""The most digits before the decimal point :func:`parse_yuan` takes by default (n12 holds 10)."""

_YUAN: Final = re.compile(r"([0-9]+)(?:\.([0-9]{1,2}))?")


def parse_yuan(text: str, *, max_whole_digits: int = YUAN_WHOLE_DIGITS) -> int:
    """``"100.00"`` → 10000 fen, exactly: digits, then at most two decimals (surrounding blanks ignored);
    ``ValueError`` saying so for anything else (a sign, a comma, a third decimal, more than
    ``max_whole_digits`` whole digits)."""
    assert max_whole_digits > 0
    match = _YUAN.fullmatch(text.strip())
    if match is None or len(match.group(1)) > max_whole_digits:
        raise ValueError(f"{text!r} is not an amount in yuan with at most two decimals (e.g. 100.00)")
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)


def format_amount(fen: int, *, grouping: bool = False) -> str:
    """Fen as yuan with two decimals (``-12.50``; ``1,234.50`` with ``grouping``), without floats."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}" if grouping else f"{sign}{whole}.{cents:02d}"


def bcd_amount(fen: int, length: int = 6) -> bytes:
    """An amount in fen as ``length`` bytes of BCD (n12 for the default 6 bytes); ``ValueError`` when it
    is negative or does not fit."""
    if fen < 0 or fen >= 10 ** (2 * length):
        raise ValueError(f"amount {fen} does not fit n{2 * length}")
    return bytes.fromhex(f"{fen:0{2 * length}d}")


def amount_from_bcd(value: bytes) -> int:
    """The integer amount (fen) of a BCD numeric field; ``ValueError`` on a nibble that is not a digit, or
    on no byte at all."""
    digits = value.hex()
    if not digits.isdigit():  # "" is not digits either: an empty amount is refused
        raise ValueError(f"amount {digits.upper() or '(empty)'} is not BCD")
    return int(digits)
