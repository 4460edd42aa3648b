"""The UnionPay-style POS terminal profile of ISO 8583:1987, as a pyiso8583 spec dict (plain data).

Sources (public; where they disagree the choice is stated in ``docs/iso8583.md``):

- 中国银联 "POS终端消息域说明" (China UnionPay, May 2002; copies on public document sites): the field list
  (2, 3, 4, 11–15, 22, 25, 26, 32, 35–39, 41, 42, 44, 48, 49, 52–54, 60–64), data types (n, an, ans, z, b),
  BCD compression, and the table of transaction types by processing code (3), condition code (25), MTI
  and message type code (60.1).
- Published UnionPay POS terminal software tables (field formats and maxima for the chip era: 23, 55).
- Published UnionPay POS traces ("POS调试8583报文-消费", codetd.com/article/5053461; "银联Iso8583报文
  POS终端报文结构", e-com-net.com): framing (2-byte length, TPDU ``60 dddd ssss``, 6-byte header such as
  ``60 31 00 31 10 03``), BCD MTI, 8-byte binary bitmap, BCD length prefixes counting digits for numeric
  fields and bytes for the others, odd-length numeric fields left-aligned with a ``0`` nibble on the right
  (field 22 ``071`` travels as ``07 10``; field 35 of 37 digits ends with a ``0`` pad nibble).

Encoding in one line per kind (the ``content`` key is ours; pyiso8583 ignores keys it does not know):

- ``n`` digits, ``z`` track data (digits and ``D``): BCD, 2 digits a byte, right pad ``0``; variable
  lengths count digits.
- ``an`` / ``ans``: ASCII (``an`` letters, digits and space; ``ans`` printable ASCII); lengths count bytes.
- ``b``: raw bytes; lengths count bytes. Fields 62 and 63 (``ans`` in the UnionPay text, but carrying key
  blocks and GBK text) travel as bytes.

All length prefixes are BCD: LLVAR one byte (``0x00``–``0x99``), LLLVAR two bytes (``0x0000``–``0x0999``).
No secondary bitmap: the profile ends at field 64 (the MAC).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "CONTENT_KINDS",
    "FIELD_NAMES",
    "MAX_MESSAGE_SIZE",
    "PROFILE_FIELDS",
    "SPEC",
    "max_encoded_size",
]


def _fixed_n(digits: int, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 0,
        "max_len": digits,
        "len_count": "nibbles",
        "right_pad": "0",
        "content": "n",
        "desc": desc,
    }


def _var_digits(prefix_bytes: int, max_digits: int, content: str, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": prefix_bytes,
        "max_len": max_digits,
        "len_count": "nibbles",
        "right_pad": "0",
        "content": content,
        "desc": desc,
    }


def _fixed_text(size: int, content: str, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "ascii",
        "len_enc": "bcd",
        "len_type": 0,
        "max_len": size,
        "content": content,
        "desc": desc,
    }


def _var_text(prefix_bytes: int, max_size: int, content: str, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "ascii",
        "len_enc": "bcd",
        "len_type": prefix_bytes,
        "max_len": max_size,
        "content": content,
        "desc": desc,
    }


def _fixed_b(size: int, desc: str) -> dict[str, Any]:
    return {"data_enc": "b", "len_enc": "bcd", "len_type": 0, "max_len": size, "content": "b", "desc": desc}


def _var_b(prefix_bytes: int, max_size: int, desc: str) -> dict[str, Any]:
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": prefix_bytes,
        "max_len": max_size,
        "content": "b",
        "desc": desc,
    }


LL, LLL = 1, 2  # BCD length prefix sizes in bytes

_SPEC: dict[str, dict[str, Any]] = {
    # TPDU and the 6-byte header are framed apart (see .wire), so pyiso8583 sees no header.
    "h": {
        "data_enc": "ascii",
        "len_enc": "bcd",
        "len_type": 0,
        "max_len": 0,
        "content": "b",
        "desc": "Header",
    },
    "t": {"data_enc": "b", "len_enc": "bcd", "len_type": 0, "max_len": 4, "content": "n", "desc": "MTI"},
    "p": {"data_enc": "b", "len_enc": "bcd", "len_type": 0, "max_len": 8, "content": "b", "desc": "Bitmap"},
    "2": _var_digits(LL, 19, "n", "Primary account number"),
    "3": _fixed_n(6, "Processing code"),
    "4": _fixed_n(12, "Amount, transaction (fen)"),
    "11": _fixed_n(6, "System trace audit number"),
    "12": _fixed_n(6, "Time, local transaction (hhmmss)"),
    "13": _fixed_n(4, "Date, local transaction (MMDD)"),
    "14": _fixed_n(4, "Date, expiration (YYMM)"),
    "15": _fixed_n(4, "Date, settlement (MMDD)"),
    "22": _fixed_n(3, "Point of service entry mode"),
    "23": _fixed_n(3, "Card sequence number"),
    "24": _fixed_n(3, "Network international identifier"),
    "25": _fixed_n(2, "Point of service condition code"),
    "26": _fixed_n(2, "Point of service PIN capture code"),
    "32": _var_digits(LL, 11, "n", "Acquiring institution identification code"),
    "35": _var_digits(LL, 37, "z", "Track 2 data"),
    "36": _var_digits(LLL, 104, "z", "Track 3 data"),
    "37": _fixed_text(12, "an", "Retrieval reference number"),
    "38": _fixed_text(6, "an", "Authorization identification response"),
    "39": _fixed_text(2, "an", "Response code"),
    "41": _fixed_text(8, "ans", "Card acceptor terminal identification"),
    "42": _fixed_text(15, "ans", "Card acceptor identification code"),
    "44": _var_text(LL, 25, "ans", "Additional response data"),
    "48": _var_digits(LLL, 322, "n", "Additional data, private (settlement totals)"),
    "49": _fixed_text(3, "an", "Currency code, transaction"),
    "52": _fixed_b(8, "PIN data (encrypted PIN block)"),
    "53": _fixed_n(16, "Security related control information"),
    "54": _var_text(LLL, 40, "an", "Balance amount"),
    "55": _var_b(LLL, 255, "ICC system related data (BER-TLV)"),
    "60": _var_digits(LLL, 17, "n", "Reserved private: 60.1 type, 60.2 batch, 60.3 network code"),
    "61": _var_digits(LLL, 29, "n", "Original message data (batch, trace, date)"),
    "62": _var_b(LLL, 512, "Reserved private (key blocks, terminal data)"),
    "63": _var_b(LLL, 163, "Reserved private (operator, issuer data)"),
    "64": _fixed_b(8, "Message authentication code"),
}

SPEC: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {key: MappingProxyType(value) for key, value in _SPEC.items()}
)
"""The profile as a pyiso8583 spec (read-only); ``content`` is one of :data:`CONTENT_KINDS`."""

CONTENT_KINDS: Final = frozenset({"n", "z", "an", "ans", "b"})

PROFILE_FIELDS: Final[frozenset[int]] = frozenset(int(key) for key in SPEC if key.isdigit())
"""Data fields the profile knows; a bitmap naming any other field is malformed."""

FIELD_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {number: SPEC[str(number)]["desc"] for number in sorted(PROFILE_FIELDS)}
)


def max_encoded_size(field: int) -> int:
    """The most bytes ``field`` can take on the wire, length prefix included."""
    spec = SPEC[str(field)]
    size: int = spec["max_len"]
    if spec.get("len_count") == "nibbles":
        size = (size + 1) // 2
    return int(spec["len_type"]) + size


MAX_MESSAGE_SIZE: Final = 2048
"""Largest ISO message accepted (MTI to field 64), in bytes; every field at its maximum fits."""

assert all(spec["content"] in CONTENT_KINDS for spec in SPEC.values())
assert 2 + 8 + sum(max_encoded_size(f) for f in PROFILE_FIELDS) <= MAX_MESSAGE_SIZE
