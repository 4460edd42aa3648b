"""The concession record of the card's transit file (SFI 21, record 1; ``docs/transit.md`` "Concession
record"): 8 bytes the issuer writes at personalisation or by issuer script (UPDATE RECORD ``84 DC 01 AC``)
and the validators read offline. Here in the pure core because both sides use it: the issuer encodes it
(``citycard.issuer``), the validators decode it (``citycard.transit``), and the two domain services may not
import each other.

========  =====  ==============================================================================
offset    len    field
========  =====  ==============================================================================
0         1      version ``01``
1         1      category ``00`` none, ``01`` elderly, ``02`` student, ``03`` disabled
2         4      valid until (inclusive), BCD ``YYYYMMDD``; ``00000000`` with category ``00``
6         2      RFU ``0000``
========  =====  ==============================================================================

All zeros: no concession (a revoked one is written so).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

__all__ = ["CONCESSION_LENGTH", "CONCESSION_VERSION", "Category", "Concession", "TripRecordError"]

CONCESSION_LENGTH = 8
CONCESSION_VERSION = 0x01


class TripRecordError(ValueError):
    """A concession or trip record read from a card that does not follow the layout."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"transit record {where}: {message}")
        self.where = where


class Category(enum.IntEnum):
    """The registered holder's concession category (byte 1 of the concession record)."""

    NONE = 0
    ELDERLY = 1
    STUDENT = 2
    DISABLED = 3


@dataclass(frozen=True, slots=True)
class Concession:
    category: Category = Category.NONE
    valid_until: dt.date | None = None  # inclusive; None with NONE

    def __post_init__(self) -> None:
        assert (self.category is Category.NONE) == (self.valid_until is None), self

    def applies(self, today: dt.date) -> bool:
        return (
            self.category is not Category.NONE and self.valid_until is not None and today <= self.valid_until
        )

    def encode(self) -> bytes:
        until = self.valid_until.strftime("%Y%m%d") if self.valid_until else "00000000"
        return bytes((CONCESSION_VERSION, self.category)) + bytes.fromhex(until) + bytes(2)

    @classmethod
    def decode(cls, data: bytes) -> Concession:
        if len(data) != CONCESSION_LENGTH:
            raise TripRecordError("concession", f"{len(data)} bytes, expected {CONCESSION_LENGTH}")
        if data == bytes(CONCESSION_LENGTH):
            return cls()
        if data[0] != CONCESSION_VERSION:
            raise TripRecordError("concession version", f"{data[0]:02X}, expected {CONCESSION_VERSION:02X}")
        if data[1] not in Category._value2member_map_:
            raise TripRecordError("concession category", f"{data[1]:02X} is not a category")
        if data[6:] != bytes(2):
            raise TripRecordError("concession RFU", "must be 0000")
        category = Category(data[1])
        digits = data[2:6].hex()
        if digits == "00000000":
            if category is not Category.NONE:
                raise TripRecordError("concession valid until", "missing for a category")
            return cls()
        if category is Category.NONE:
            raise TripRecordError("concession valid until", "a date without a category")
        try:
            until = dt.datetime.strptime(digits, "%Y%m%d").date()
        except ValueError:
            raise TripRecordError("concession valid until", f"{digits} is not a date YYYYMMDD") from None
        return cls(category, until)
