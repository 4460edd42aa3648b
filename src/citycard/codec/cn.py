"""EMV's compressed numeric format (``cn``): the one decoding of a PAN (``5A``) and the other ``cn`` values.

EMV 4.3 Book 3 §4.3: ``cn`` data is decimal digits in BCD, two per byte, left-justified and padded on the
right with hexadecimal ``F`` up to the element's length — the PAN in ``5A`` (up to 10 bytes, 19 digits), the
issuer identifier in a certificate, the PAN of a transit record. Every reader of such a value decodes it
with :func:`cn_digits` (REVIEW.md, "say it once": it had been written out thirteen times).
"""

from __future__ import annotations

__all__ = ["cn_digits"]


def cn_digits(value: bytes) -> str:
    """The digits of a ``cn`` value, its ``F`` padding dropped (``62 12 26 00 00 00 00 00 01 8F`` →
    ``"6212260000000000018"``). A nibble that is not a digit stays in the text, upper case, so that a
    caller's ``isdigit()`` refuses it; nothing is raised here."""
    return value.hex().upper().rstrip("F")
