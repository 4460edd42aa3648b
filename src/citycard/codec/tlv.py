"""BER-TLV as EMV uses it (EMV 4.3 Book 3 Annex B; ISO/IEC 8825-1 subset; JR/T 0025.5).

Tags are upper-case hex strings (``"9F79"``), values are ``bytes``. Supported: one- and multi-byte tags,
short and long definite lengths (up to 3 length bytes), constructed objects, and ``00``/``FF`` padding
between objects (Book 3 B1: "before, between or after TLV-coded data objects"). Everything is bounded:
nesting depth and total size. Malformed input raises :class:`TlvError` with the offset where it failed,
and nothing else.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = [
    "MAX_DEPTH",
    "MAX_SIZE",
    "MAX_TAG_SIZE",
    "Tlv",
    "TlvError",
    "check",
    "decode",
    "decode_dict",
    "decode_one",
    "encode",
    "encode_length",
    "encode_many",
    "find",
    "is_constructed",
    "iter_flat",
    "read_tag",
    "tag_bytes",
]

MAX_DEPTH = 8
"""Deepest nesting accepted: objects at top level are at depth 1; EMV data never goes beyond 4 or 5."""
MAX_SIZE = 65_535
"""Largest input accepted, in bytes."""
MAX_TAG_SIZE = 4
"""Longest tag accepted, in bytes; EMV uses at most 2, ISO/IEC 7816-4 at most 3."""


class TlvError(ValueError):
    """Malformed BER-TLV. ``offset`` is the byte position in the outermost input where decoding failed."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.reason = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Tlv:
    """One decoded data object. ``children`` is set for constructed objects only."""

    tag: str
    value: bytes
    children: tuple[Tlv, ...] | None = None
    offset: int = field(default=0, compare=False)

    @property
    def constructed(self) -> bool:
        return self.children is not None

    def to_bytes(self) -> bytes:
        return encode(self.tag, self.value)

    def __reduce__(self) -> tuple[type[Tlv], tuple[str, bytes, tuple[Tlv, ...] | None, int]]:
        """Copied and pickled through its constructor (compiled by mypyc, a frozen class takes no state)."""
        return (Tlv, (self.tag, self.value, self.children, self.offset))


@lru_cache(maxsize=1024)
def tag_bytes(tag: str) -> bytes:
    """The tag's bytes from its hex name; checks that the multi-byte structure is well formed."""
    raw = bytes.fromhex(tag)
    if not raw:
        raise ValueError("empty tag")
    if raw[0] in (0x00, 0xFF):  # ISO/IEC 7816-4 §5.2.2.1: invalid first tag bytes (they are padding)
        raise ValueError(f"tag {tag}: first byte {raw[0]:02X} is not allowed")
    if len(raw) > MAX_TAG_SIZE:
        raise ValueError(f"tag {tag}: longer than {MAX_TAG_SIZE} bytes")
    more = (raw[0] & 0x1F) == 0x1F
    for i, b in enumerate(raw[1:], start=1):
        if not more:
            raise ValueError(f"tag {tag}: byte {i} follows a final byte")
        more = bool(b & 0x80)
    if more:
        raise ValueError(f"tag {tag}: last byte announces another")
    return raw


def is_constructed(tag: str) -> bool:
    """Bit 6 of the first tag byte marks a constructed object."""
    return bool(int(tag[:2], 16) & 0x20)


def encode_length(n: int) -> bytes:
    """Definite length: one byte below 128, else ``81``/``82``/``83`` followed by the length."""
    assert n >= 0
    if n < 0x80:
        return bytes((n,))
    if n <= 0xFF:
        return bytes((0x81, n))
    if n <= 0xFFFF:
        return bytes((0x82, n >> 8, n & 0xFF))
    if n <= 0xFFFFFF:
        return bytes((0x83, n >> 16, (n >> 8) & 0xFF, n & 0xFF))
    raise ValueError(f"length {n} too large for EMV TLV")


def encode(tag: str, value: bytes) -> bytes:
    """One data object: tag ‖ length ‖ value."""
    return tag_bytes(tag) + encode_length(len(value)) + value


def encode_many(items: Iterable[tuple[str, bytes]]) -> bytes:
    """Several data objects, concatenated in the order given."""
    return b"".join(encode(t, v) for t, v in items)


_HEX = tuple(f"{b:02X}" for b in range(256))


def _read_tag(data: bytes, pos: int, end: int, base: int) -> tuple[str, int]:
    start = pos
    first = data[pos]
    pos += 1
    if (first & 0x1F) == 0x1F:
        while True:
            if pos >= end:
                raise TlvError("tag runs past the end", base + start)
            b = data[pos]
            pos += 1
            if not b & 0x80:
                break
            if pos - start >= MAX_TAG_SIZE:  # another byte announced after the 4th
                raise TlvError(f"tag longer than {MAX_TAG_SIZE} bytes", base + start)
    return data[start:pos].hex().upper(), pos


def read_tag(data: bytes, pos: int = 0) -> tuple[str, int]:
    """The tag that starts at ``data[pos]`` and the position after it (Book 3 B1 tag rules).

    For readers of tag lists that are not TLV (DOLs, ``9F4A``). Raises :class:`TlvError` when the tag is
    missing, truncated or longer than 4 bytes.
    """
    if pos >= len(data):
        raise TlvError("tag missing", pos)
    return _read_tag(data, pos, len(data), 0)


def _read_length(data: bytes, pos: int, end: int, base: int) -> tuple[int, int]:
    if pos >= end:
        raise TlvError("length missing", base + pos)
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if first == 0x80:
        raise TlvError("indefinite length is not allowed", base + pos - 1)
    if count > 3:
        raise TlvError(f"length of {count} bytes is not allowed", base + pos - 1)
    if pos + count > end:
        raise TlvError("length runs past the end", base + pos - 1)
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def _decode(data: bytes, start: int, end: int, depth: int, base: int, build: bool = True) -> list[Tlv]:
    """The objects of ``data[start:end]``; with ``build`` false, the same checks and errors but no object
    made (an empty list): :func:`check`."""
    if depth > MAX_DEPTH and start < end:
        raise TlvError(f"nesting deeper than {MAX_DEPTH}", base + start)
    out: list[Tlv] = []
    pos = start
    while pos < end:
        first = data[pos]
        if first == 0x00 or first == 0xFF:  # padding between objects
            pos += 1
            continue
        obj_start = pos
        if first & 0x1F != 0x1F:  # fast paths: one- or two-byte tag, one-byte length
            tag, pos = _HEX[first], pos + 1
        elif pos + 1 < end and data[pos + 1] < 0x80:
            tag, pos = _HEX[first] + _HEX[data[pos + 1]], pos + 2
        else:
            tag, pos = _read_tag(data, pos, end, base)
        if pos < end and data[pos] < 0x80:
            length, pos = data[pos], pos + 1
        else:
            length, pos = _read_length(data, pos, end, base)
        if pos + length > end:
            raise TlvError(f"value of {tag} ({length} bytes) runs past the end", base + obj_start)
        children = None
        if first & 0x20:  # constructed
            children = tuple(_decode(data, pos, pos + length, depth + 1, base, build))
        if build:
            out.append(_tlv(tag, data[pos : pos + length], children, base + obj_start))
        pos += length
    return out


def _tlv(tag: str, value: bytes, children: tuple[Tlv, ...] | None, offset: int) -> Tlv:
    """``Tlv(tag, value, children, offset)`` without the frozen dataclass's ``__init__`` (an
    ``object.__setattr__`` call per field): each slot set through its descriptor, the decoder's values
    being of the types the fields declare."""
    obj = _NEW(Tlv)
    _SET_TAG(obj, tag)
    _SET_VALUE(obj, value)
    _SET_CHILDREN(obj, children)
    _SET_OFFSET(obj, offset)
    return obj


_NEW = Tlv.__new__  # object.__new__ for the dataclass; compiled (citycard._compiled), its own allocator
_SET_TAG, _SET_VALUE, _SET_CHILDREN, _SET_OFFSET = (
    getattr(Tlv, name).__set__ for name in ("tag", "value", "children", "offset")
)


def decode(data: bytes, *, offset: int = 0) -> list[Tlv]:
    """Decode a sequence of data objects (recursing into constructed ones).

    ``offset`` is added to the offsets reported, for data cut out of a larger message.
    """
    if len(data) > MAX_SIZE:
        raise TlvError(f"input of {len(data)} bytes exceeds {MAX_SIZE}", offset)
    return _decode(bytes(data), 0, len(data), 1, offset)


def check(data: bytes, *, offset: int = 0) -> None:
    """Raise the :class:`TlvError` :func:`decode` would raise for ``data``, or nothing: the same walk, no
    object made (a switch checks field 55 of every message it passes on, and reads none of it)."""
    if len(data) > MAX_SIZE:
        raise TlvError(f"input of {len(data)} bytes exceeds {MAX_SIZE}", offset)
    _decode(bytes(data), 0, len(data), 1, offset, False)


def decode_one(data: bytes, *, tags: Collection[str] | None = None, offset: int = 0) -> Tlv:
    """Exactly one data object (padding aside), e.g. a response template ``77`` / ``80`` / ``70`` / ``6F``.

    Raises :class:`TlvError` when ``data`` holds no object, more than one, or one whose tag is not in
    ``tags`` (when given).
    """
    objects = decode(data, offset=offset)
    if not objects:
        raise TlvError("no data object", offset)
    if len(objects) > 1:
        raise TlvError(f"data after {objects[0].tag}", objects[1].offset)
    obj = objects[0]
    if tags is not None and obj.tag not in tags:
        raise TlvError(f"tag {obj.tag} where {'/'.join(sorted(tags))} was expected", obj.offset)
    return obj


def iter_flat(objects: Iterable[Tlv]) -> Iterator[Tlv]:
    """Every object, depth first, constructed ones before their children."""
    for obj in objects:
        yield obj
        if obj.children is not None:
            yield from iter_flat(obj.children)


def decode_dict(data: bytes, *, duplicates: bool = False) -> dict[str, bytes]:
    """Primitive objects found anywhere in ``data``, by tag.

    A tag that appears twice raises :class:`TlvError` unless ``duplicates`` is true (then the first wins);
    EMV Book 3 §7.5 makes a repeated primitive object in card data a processing error.
    """
    result: dict[str, bytes] = {}
    for obj in iter_flat(decode(data)):
        if obj.children is not None:
            continue
        if obj.tag in result:
            if not duplicates:
                raise TlvError(f"tag {obj.tag} appears twice", obj.offset)
            continue
        result[obj.tag] = obj.value
    return result


def find(objects: Iterable[Tlv], tag: str) -> Tlv | None:
    """The first object with ``tag`` anywhere in the tree, or None."""
    for obj in iter_flat(objects):
        if obj.tag == tag:
            return obj
    return None
