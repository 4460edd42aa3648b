"""The industry applications file on the card: a proprietary linear file of fixed records, one per
application the service center may enable (docs/public-services.md, "On the chip").

SFI 22 (proprietary range 11–30 of EMV Book 1 §12.2 / Book 3 §5.3.2.2, beside the logs 11 and 12 and the
transit file 21), three records of 16 bytes, record *n* for application *n*:

========  =====  ===================================================================================
bytes     field  meaning
========  =====  ===================================================================================
1         id     the application: ``01`` transit concession, ``02`` library reader, ``03`` health
2         state  ``00`` not on the card, ``01`` enabled, ``02`` disabled
3–16      data   per application, unused bytes ``00``:
                 transit: category (1: ``01`` elderly, ``02`` student, ``03`` disabled), valid until
                 n8 YYYYMMDD (4);
                 library: reader number cn12 (6, BCD, right-padded ``F``), deposit n12 fen (6);
                 health: insurance number cn18 (9, BCD, right-padded ``F``), blood type (1: ``00``
                 unknown, ``01`` A, ``02`` B, ``03`` AB, ``04`` O)
========  =====  ===================================================================================

Any terminal reads it offline (READ RECORD, no security); only the issuer writes it, by an issuer script
UPDATE RECORD under secure messaging (``84 DC <record> B4 Lc data MAC``), or at personalisation.
Pure functions: :func:`encode_record` and :func:`decode_record` (:class:`AppFileError` for bytes that are
not a record of this layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from .cn import cn_digits

__all__ = [
    "APP_FILE_SFI",
    "APP_NUMBERS",
    "APP_RECORD_LENGTH",
    "AppFileError",
    "AppRecord",
    "decode_record",
    "empty_record",
    "encode_record",
]

APP_FILE_SFI: Final = 22
APP_RECORD_LENGTH: Final = 16
APP_NUMBERS: Final[Mapping[str, int]] = MappingProxyType({"transit": 1, "library": 2, "health": 3})
"""Application code → its record number (and id byte)."""
_CODES: Final = {n: code for code, n in APP_NUMBERS.items()}
_STATES: Final = {0: "absent", 1: "enabled", 2: "disabled"}
_CATEGORIES: Final = {"elderly": 1, "student": 2, "disabled": 3}
_BLOOD: Final = {"unknown": 0, "A": 1, "B": 2, "AB": 3, "O": 4}


class AppFileError(ValueError):
    """Bytes that are not a record of the applications file; the message says where."""


@dataclass(frozen=True, slots=True)
class AppRecord:
    """One record as read: the application, its state on the chip, its data (strings as the service
    center keeps them)."""

    app: str
    state: str  # absent | enabled | disabled
    data: Mapping[str, str]


def _bcd(digits: str, length: int) -> bytes:
    text = digits.ljust(length * 2, "F")
    assert len(text) == length * 2 and all(c in "0123456789F" for c in text), digits
    return bytes.fromhex(text)


def _digits(raw: bytes, what: str) -> str:
    text = cn_digits(raw)
    if not text.isdigit():
        raise AppFileError(f"{what}: {raw.hex().upper()} is not BCD digits")
    return text


def empty_record(app: str) -> bytes:
    """The record of an application not on the card."""
    return bytes((APP_NUMBERS[app], 0)) + bytes(APP_RECORD_LENGTH - 2)


def encode_record(app: str, enabled: bool, data: Mapping[str, str]) -> bytes:
    """The 16-byte record of ``app`` (enabled or disabled) with its data (checked by the service center
    already: ``citycard.public.model.check_app_data``)."""
    if app == "transit":
        body = bytes((_CATEGORIES[data["category"]],)) + _bcd(data["valid_until"], 4)
    elif app == "library":
        body = _bcd(data["reader_number"], 6) + _bcd(data["deposit_fen"].rjust(12, "0"), 6)
    elif app == "health":
        body = _bcd(data["insurance_number"], 9) + bytes((_BLOOD[data["blood_type"]],))
    else:
        raise AssertionError(app)
    record = bytes((APP_NUMBERS[app], 1 if enabled else 2)) + body
    return record.ljust(APP_RECORD_LENGTH, b"\x00")


def decode_record(raw: bytes) -> AppRecord:
    if len(raw) != APP_RECORD_LENGTH:
        raise AppFileError(f"a record is {APP_RECORD_LENGTH} bytes, not {len(raw)}")
    app = _CODES.get(raw[0])
    if app is None:
        raise AppFileError(f"byte 1: {raw[0]:02X} is no application")
    state = _STATES.get(raw[1])
    if state is None:
        raise AppFileError(f"byte 2: {raw[1]:02X} is no state")
    if state == "absent":
        return AppRecord(app, state, {})
    body = raw[2:]
    data: dict[str, str]
    if app == "transit":
        category = {v: k for k, v in _CATEGORIES.items()}.get(body[0])
        if category is None:
            raise AppFileError(f"byte 3: {body[0]:02X} is no concession category")
        data = {"category": category, "valid_until": _digits(body[1:5], "bytes 4-7")}
    elif app == "library":
        deposit = _digits(body[6:12], "bytes 9-14").lstrip("0") or "0"
        data = {"reader_number": _digits(body[:6], "bytes 3-8"), "deposit_fen": deposit}
    else:
        blood = {v: k for k, v in _BLOOD.items()}.get(body[9])
        if blood is None:
            raise AppFileError(f"byte 12: {body[9]:02X} is no blood type")
        data = {"insurance_number": _digits(body[:9], "bytes 3-11"), "blood_type": blood}
    return AppRecord(app, state, MappingProxyType(data))
