"""Field 63 of a validator's fare upload (0320): the bus line and the vehicle the fare was taken on
(``docs/iso8583.md``, "Field 63 of an upload: the bus line and vehicle"; ``docs/transit.md``).

A validator is registered with the line it runs and the bus it is mounted in, but a bus changes lines and a
validator changes buses; what the bus company is owed per line is what the validator journaled at the time
of the fare. Its 0320 therefore carries them in field 63 (reserved private, LLLVAR bytes up to 163 in this
profile) — our choice: no public UnionPay text defines a usage of 63 in an upload. Field 48 is numeric and
holds the public-service reference already. The layout, 23 bytes of ASCII::

    BL          usage tag (2): a bus line and vehicle (the only usage of 63 in a 0320)
    NNNNN       the line n5, 00001 to 65535 (the fare table's ``[[lines]] id``)
    V...V       the vehicle an16: 1-16 characters ``0-9 A-Z -``, left-justified, padded with spaces

Example: ``BL00012K12-0815        `` is line 12, vehicle K12-0815.

Pure: no I/O. Malformed bytes raise :class:`.errors.Iso8583Error` for field 63 (the acquirer answers 30).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from .errors import Iso8583Error

__all__ = ["BUS_RIDE_LENGTH", "USAGE_BUS_RIDE", "BusRide", "bus_ride"]

USAGE_BUS_RIDE: Final = b"BL"
VEHICLE_LENGTH: Final = 16
BUS_RIDE_LENGTH: Final = 2 + 5 + VEHICLE_LENGTH
_VEHICLE = re.compile(r"[0-9A-Z-]{1,16}")


@dataclass(frozen=True, slots=True)
class BusRide:
    """The line and vehicle of a validator's fare."""

    line: int
    vehicle: str

    def __post_init__(self) -> None:
        assert 1 <= self.line <= 65_535 and _VEHICLE.fullmatch(self.vehicle), self

    @classmethod
    def of(cls, line: int | None, vehicle: str) -> BusRide | None:
        """The ride of a journaled fare, None when the fare has no line and vehicle that fit the layout."""
        if line is None or not 1 <= line <= 65_535 or not _VEHICLE.fullmatch(vehicle):
            return None
        return cls(line, vehicle)

    def to_field63(self) -> bytes:
        return USAGE_BUS_RIDE + f"{self.line:05d}{self.vehicle:<{VEHICLE_LENGTH}}".encode("ascii")

    @classmethod
    def from_field63(cls, data: bytes) -> BusRide:
        if len(data) != BUS_RIDE_LENGTH or data[:2] != USAGE_BUS_RIDE:
            raise Iso8583Error("63", None, f"not a bus line and vehicle ({BUS_RIDE_LENGTH} bytes, BL)")
        digits, vehicle = data[2:7], data[7:].rstrip(b" ")
        if not digits.isdigit() or not 1 <= int(digits) <= 65_535:
            raise Iso8583Error("63", 2, "the line is n5, 00001 to 65535")
        text = vehicle.decode("ascii", errors="replace")
        if not _VEHICLE.fullmatch(text) or b" " in vehicle:
            raise Iso8583Error("63", 7, "the vehicle is 1-16 characters 0-9 A-Z -, padded with spaces")
        return cls(int(digits), text)


def bus_ride(field63: bytes | None) -> BusRide | None:
    """The line and vehicle a 0320 carries in field 63, None without field 63; malformed:
    :class:`Iso8583Error` for field 63."""
    return None if field63 is None else BusRide.from_field63(field63)
