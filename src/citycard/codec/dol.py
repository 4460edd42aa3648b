"""Data object lists (DOL): PDOL, CDOL1/2, DDOL, TDOL and the PBOC log formats (EMV 4.3 Book 3 §5.4).

A DOL is a list of (tag, length) pairs: a BER-TLV tag (Book 3 Annex B rules) followed by a one-byte length,
with no values. The terminal answers it with the concatenation of the values, each forced to the length
asked for (:func:`build_dol_data`); the card cuts that concatenation back into values
(:func:`split_dol_data`). The same layout serves the transaction-log and load-log formats ``9F4F`` /
``DF4F`` of JR/T 0025.13 (records are then the concatenated values).

Book 3 §5.4 rules applied by :func:`build_dol_data`:

- a data object the terminal does not have, or a constructed one, is sent as hexadecimal zeros;
- a value longer than asked for is truncated: on the left (keeping the rightmost digits) for format ``n``,
  on the right for every other format;
- a value shorter than asked for is padded: with leading ``00`` for ``n``, trailing ``FF`` for ``cn``,
  trailing ``00`` for the others.

Everything is bounded: a DOL is at most 252 bytes (:data:`MAX_DOL_SIZE`, the largest value of ``8C``/``8D``/
``9F38``) and :data:`MAX_DOL_ENTRIES` entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from citycard.codec.tags import tag_format
from citycard.codec.tlv import TlvError, is_constructed, read_tag, tag_bytes

__all__ = [
    "MAX_DOL_ENTRIES",
    "MAX_DOL_SIZE",
    "DolError",
    "build_dol_data",
    "dol_data_length",
    "encode_dol",
    "fit_value",
    "parse_dol",
    "split_dol_data",
]

MAX_DOL_SIZE = 252
"""Largest DOL accepted, in bytes (Book 3 Annex A: PDOL, CDOLs, DDOL and TDOL are ``var. up to 252``)."""
MAX_DOL_ENTRIES = 64
"""Most entries accepted in one DOL; real PDOLs and CDOLs have fewer than 25."""

DolInput = bytes | Sequence[tuple[str, int]]


class DolError(ValueError):
    """A malformed DOL, or DOL-related data that does not fit it.

    ``offset`` is the byte offset in the DOL (or, for :func:`split_dol_data` length mismatches, in the data)
    where the problem was found; when the DOL was given as a list of entries, it is the entry's index.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.reason = message
        self.offset = offset


def parse_dol(dol: bytes) -> list[tuple[str, int]]:
    """The (tag, length) entries of a DOL, in order. Raises :class:`DolError` on malformed input."""
    if len(dol) > MAX_DOL_SIZE:
        raise DolError(f"DOL of {len(dol)} bytes exceeds {MAX_DOL_SIZE}", 0)
    return list(_parse(bytes(dol)))


@lru_cache(maxsize=256)  # a terminal meets the same few PDOLs and CDOLs again and again
def _parse(dol: bytes) -> tuple[tuple[str, int], ...]:
    entries: list[tuple[str, int]] = []
    pos = 0
    while pos < len(dol):
        if dol[pos] in (0x00, 0xFF):  # ISO/IEC 7816-4: invalid first tag bytes
            raise DolError(f"tag byte {dol[pos]:02X} is not a tag", pos)
        if len(entries) == MAX_DOL_ENTRIES:
            raise DolError(f"more than {MAX_DOL_ENTRIES} entries", pos)
        try:
            tag, after = read_tag(dol, pos)
        except TlvError as exc:
            raise DolError(exc.reason, exc.offset) from None
        if after >= len(dol):
            raise DolError(f"length of {tag} missing", after)
        entries.append((tag, dol[after]))
        pos = after + 1
    return tuple(entries)


def _entries(dol: DolInput) -> Sequence[tuple[str, int]]:
    if isinstance(dol, bytes | bytearray | memoryview):
        if len(dol) > MAX_DOL_SIZE:
            raise DolError(f"DOL of {len(dol)} bytes exceeds {MAX_DOL_SIZE}", 0)
        return _parse(bytes(dol))
    if len(dol) > MAX_DOL_ENTRIES:
        raise DolError(f"more than {MAX_DOL_ENTRIES} entries", MAX_DOL_ENTRIES)
    out: list[tuple[str, int]] = []
    for i, (tag, length) in enumerate(dol):
        try:
            tag_bytes(tag)
        except ValueError as exc:
            raise DolError(f"bad tag {tag!r}: {exc}", i) from None
        if not 0 <= length <= 0xFF:
            raise DolError(f"length {length} of {tag} is not one byte", i)
        out.append((tag.upper(), length))
    return out


def encode_dol(entries: Sequence[tuple[str, int]]) -> bytes:
    """The DOL bytes for (tag, length) entries: the inverse of :func:`parse_dol`."""
    out = b"".join(tag_bytes(tag) + bytes((length,)) for tag, length in _entries(entries))
    if len(out) > MAX_DOL_SIZE:
        raise DolError(f"DOL of {len(out)} bytes exceeds {MAX_DOL_SIZE}", 0)
    return out


def dol_data_length(dol: DolInput) -> int:
    """The length of the data that answers ``dol`` (sum of the lengths)."""
    return sum(length for _, length in _entries(dol))


def fit_value(value: bytes, length: int, fmt: str) -> bytes:
    """``value`` forced to ``length`` bytes by the Book 3 §5.4 rules for format ``fmt``."""
    assert length >= 0
    have = len(value)
    if have == length:
        return bytes(value)
    if fmt == "n":
        return bytes(value[have - length :]) if have > length else bytes(length - have) + value
    if have > length:
        return bytes(value[:length])
    pad = b"\xff" if fmt == "cn" else b"\x00"
    return bytes(value) + pad * (length - have)


def build_dol_data(dol: DolInput, source: Mapping[str, bytes], *, rid: str | None = None) -> bytes:
    """The terminal's answer to ``dol``: each value from ``source`` (keys are upper-case hex tags) fitted
    to its length; absent and constructed objects as zeros. ``rid`` selects the scheme's tag formats."""
    parts: list[bytes] = []
    for tag, length in _entries(dol):
        value = source.get(tag)
        if value is None or is_constructed(tag):
            parts.append(bytes(length))
        else:
            parts.append(fit_value(value, length, tag_format(tag, rid)))
    return b"".join(parts)


def split_dol_data(dol: DolInput, data: bytes) -> dict[str, bytes]:
    """The card's side: the values in ``data`` by tag, cut by the lengths in ``dol``.

    Raises :class:`DolError` when ``data`` is not exactly as long as the DOL asks for, or when a tag is
    listed twice (its value would be ambiguous).
    """
    entries = _entries(dol)
    expected = sum(length for _, length in entries)
    if len(data) != expected:
        raise DolError(f"DOL asks for {expected} bytes, got {len(data)}", min(expected, len(data)))
    out: dict[str, bytes] = {}
    pos = 0
    for tag, length in entries:
        if tag in out:
            raise DolError(f"tag {tag} listed twice in the DOL", pos)
        out[tag] = bytes(data[pos : pos + length])
        pos += length
    return out
