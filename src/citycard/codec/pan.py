"""Primary account numbers: the Luhn check digit (ISO/IEC 7812-1 Annex B), and PANs masked for display and
for logs (PCI DSS 3.4: at most the first six and the last four digits shown), said once.

:func:`mask_pans` is the log's safety net: whatever text a log line carries (a message, an exception's
text, a URL in an access log), every run of 13 to 19 digits that passes the Luhn check is masked before it
is written. A run that only looks like a PAN (a 15-digit merchant id, a timestamp) is masked too when its
digits happen to pass: a log may lose a digit it did not need, never show a card number.
"""

from __future__ import annotations

import re

__all__ = ["luhn_check_digit", "luhn_valid", "mask_pan", "mask_pans"]

PAN_MIN_DIGITS = 13
PAN_MAX_DIGITS = 19
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")


def luhn_check_digit(digits: str) -> str:
    """The Luhn (ISO/IEC 7812-1 Annex B) check digit for ``digits`` (a PAN without its last digit).

    The one implementation in the project (the issuer's BIN ranges and the card personalisation use it);
    ``ValueError`` unless ``digits`` is a non-empty string of ASCII decimal digits.
    """
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"{digits!r} is not a string of decimal digits")
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str(-total % 10)


def luhn_valid(digits: str) -> bool:
    """Whether ``digits`` (two or more ASCII digits) ends in its Luhn check digit."""
    return (
        len(digits) >= 2
        and digits.isascii()
        and digits.isdigit()
        and (luhn_check_digit(digits[:-1]) == digits[-1])
    )


def mask_pan(digits: str) -> str:
    """A PAN (or any digit string) with all but the first 6 and last 4 digits replaced by ``*``."""
    if len(digits) <= 10:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _masked(match: re.Match[str]) -> str:
    run = match.group(0)
    return mask_pan(run) if luhn_valid(run) else run


def mask_pans(text: str) -> str:
    """``text`` with every PAN in it masked (:func:`mask_pan`): each run of 13-19 digits, not part of a
    longer run, that passes the Luhn check."""
    return _DIGIT_RUN.sub(_masked, text)
