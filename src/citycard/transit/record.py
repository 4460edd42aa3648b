"""The records of the card's transit file (SFI 21, ``docs/transit.md`` "On the card"): the **concession**
record (record 1, 8 bytes, written at issuance or by issuer script), the **trip** record (record 2: 32
bytes rewritten by every validator tap, committed by the card together with the fare's debit, and the
validators' 4-byte MAC over them, :mod:`.validator`) and the **card identity** (record 3, 11 bytes: PAN and
PSN, written at issuance; the validators derive the card's transit key from it); record 4, the card's
transit write counter, is the card's own (:mod:`.validator` binds the trip record's MAC to it).

Times are the validator's local clock in seconds since 2000-01-01 00:00 (four bytes, good until 2136);
days and months count from the same epoch. Amounts are fen in three bytes (up to CNY 167,772.15). All
integers are big-endian. A record that does not follow the layout raises :class:`TripRecordError` naming
the field; the validator then refuses the tap before the GPO, so the card is not charged or changed.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from citycard.codec.cn import cn_digits
from citycard.codec.transitfile import CONCESSION_LENGTH, Category, Concession, TripRecordError

__all__ = [
    "CARD_ID_LENGTH",
    "CONCESSION_LENGTH",
    "COUNTER_LENGTH",
    "EPOCH",
    "MAC_LENGTH",
    "SEALED_TRIP_LENGTH",
    "TRIP_LENGTH",
    "TRIP_VERSION",
    "TRIP_VERSION_BOUND",
    "Category",
    "Concession",
    "TripRecord",
    "TripRecordError",
    "TripStatus",
    "card_identity",
    "day_number",
    "month_number",
    "seconds",
]

EPOCH = dt.datetime(2000, 1, 1)
TRIP_LENGTH = 32
"""The trip record's fields; on the card they are followed by their MAC (:data:`SEALED_TRIP_LENGTH`)."""
MAC_LENGTH = 4
SEALED_TRIP_LENGTH = TRIP_LENGTH + MAC_LENGTH
CARD_ID_LENGTH = 11
TRIP_VERSION = 0x02  # the trip record: 02 since it carries a MAC (01 had none)
TRIP_VERSION_BOUND = 0x03  # 03: its MAC bound to the card's transit write counter (record 4)
COUNTER_LENGTH = 2
MAX_SECONDS = 0xFFFFFFFF
MAX_FEN = 0xFFFFFF


def card_identity(data: bytes) -> tuple[str, str]:
    """PAN and PSN from the card identity record (record 3): the PAN as 5A (BCD, padded with F) in 10 bytes,
    then the PSN (5F34, one BCD byte)."""
    if len(data) != CARD_ID_LENGTH:
        raise TripRecordError("card identity", f"{len(data)} bytes, expected {CARD_ID_LENGTH}")
    pan, psn = cn_digits(data[:10]), data[10:].hex()
    if not (12 <= len(pan) <= 19 and pan.isdigit() and psn.isdigit()):
        raise TripRecordError("card identity", "not a PAN and PSN in BCD")
    return pan, psn


def seconds(when: dt.datetime) -> int:
    value = int((when.replace(tzinfo=None) - EPOCH).total_seconds())
    assert 0 <= value <= MAX_SECONDS, when
    return value


def day_number(when: dt.datetime) -> int:
    return (when.date() - EPOCH.date()).days


def month_number(when: dt.datetime) -> int:
    return (when.year - 2000) * 12 + when.month - 1


class TripStatus(enum.IntEnum):
    NONE = 0  # no ride yet
    ON_BOARD = 1  # tapped in on a distance line; the fare is due at tap-out
    DONE = 2  # the last ride is paid (flat line, or tapped out)


@dataclass(frozen=True, slots=True)
class TripRecord:
    status: TripStatus = TripStatus.NONE
    line: int = 0
    boarding_stop: int = 0
    transfer: bool = False  # the current (last) ride got the transfer discount
    tapped_out: bool = False  # the last tap was an alighting (tap-out)
    boarding_s: int = 0  # when the last ride began
    last_tap_s: int = 0  # the last tap that changed this record (boarding or alighting)
    terminal_id: str = ""  # the validator of that tap (9F1C)
    day: int = 0
    day_fen: int = 0  # charged on ``day``
    month: int = 0
    month_fen: int = 0  # charged in ``month``

    def __post_init__(self) -> None:
        assert 0 <= self.line <= 0xFFFF and 0 <= self.boarding_stop <= 0xFF
        assert 0 <= self.boarding_s <= MAX_SECONDS and 0 <= self.last_tap_s <= MAX_SECONDS
        assert 0 <= self.day <= 0xFFFF and 0 <= self.month <= 0xFFFF
        assert 0 <= self.day_fen <= MAX_FEN and 0 <= self.month_fen <= MAX_FEN
        assert len(self.terminal_id) <= 8 and self.terminal_id.isascii()

    def encode(self, version: int = TRIP_VERSION) -> bytes:
        """The 32 bytes; ``version`` 02 (the MAC over them alone) or 03 (the MAC bound to the counter)."""
        assert version in (TRIP_VERSION, TRIP_VERSION_BOUND), version
        out = (
            bytes((version, self.status))
            + self.line.to_bytes(2, "big")
            + bytes((self.boarding_stop, (0x01 if self.transfer else 0) | (0x02 if self.tapped_out else 0)))
            + self.boarding_s.to_bytes(4, "big")
            + self.last_tap_s.to_bytes(4, "big")
            + self.terminal_id.encode("ascii").ljust(8, b" ")
            + self.day.to_bytes(2, "big")
            + self.day_fen.to_bytes(3, "big")
            + self.month.to_bytes(2, "big")
            + self.month_fen.to_bytes(3, "big")
        )
        assert len(out) == TRIP_LENGTH
        return out

    @classmethod
    def decode(cls, data: bytes) -> TripRecord:
        if len(data) != TRIP_LENGTH:
            raise TripRecordError("trip", f"{len(data)} bytes, expected {TRIP_LENGTH}")
        if data == bytes(TRIP_LENGTH):
            return cls()  # never written
        if data[0] not in (TRIP_VERSION, TRIP_VERSION_BOUND):
            raise TripRecordError(
                "trip version", f"{data[0]:02X}, expected {TRIP_VERSION:02X} or {TRIP_VERSION_BOUND:02X}"
            )
        if data[1] not in TripStatus._value2member_map_:
            raise TripRecordError("trip status", f"{data[1]:02X} is not a status")
        if data[5] & 0xFC:
            raise TripRecordError("trip flags", f"{data[5]:02X}: RFU bits set")
        terminal = data[14:22]
        if not all(0x20 <= b < 0x7F for b in terminal):
            raise TripRecordError("trip terminal id", "not printable ASCII")
        record = cls(
            status=TripStatus(data[1]),
            line=int.from_bytes(data[2:4], "big"),
            boarding_stop=data[4],
            transfer=bool(data[5] & 0x01),
            tapped_out=bool(data[5] & 0x02),
            boarding_s=int.from_bytes(data[6:10], "big"),
            last_tap_s=int.from_bytes(data[10:14], "big"),
            terminal_id=terminal.decode("ascii").rstrip(" "),
            day=int.from_bytes(data[22:24], "big"),
            day_fen=int.from_bytes(data[24:27], "big"),
            month=int.from_bytes(data[27:29], "big"),
            month_fen=int.from_bytes(data[29:32], "big"),
        )
        record._check()
        return record

    def _check(self) -> None:
        if self.status is not TripStatus.NONE and self.line == 0:
            raise TripRecordError("trip line", "0 in a ride")
        if self.status is TripStatus.ON_BOARD and self.boarding_stop == 0:
            raise TripRecordError("trip boarding stop", "0 while on board")
        if self.last_tap_s < self.boarding_s:
            raise TripRecordError("trip last tap", "before the boarding")
