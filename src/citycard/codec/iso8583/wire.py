"""Bytes of the UnionPay POS profile: the frame (length, TPDU, header), the message, and the MAC block.

Frame on TCP (中国银联 POS终端消息域说明; public POS traces, see :mod:`.spec`)::

    length (2 bytes, big-endian binary: TPDU + header + message)
    TPDU   (5 bytes: ID 60, destination address 2 bytes, source address 2 bytes)
    header (6 bytes BCD: application type n2, version n2, terminal status n1, processing requirement n1,
            software version n6; e.g. 60 31 00 31 10 03)
    message: MTI (2 bytes BCD), bitmap (8 bytes binary, fields 2-64), fields in ascending order

The message codec is pyiso8583 over :data:`.spec.SPEC`, wrapped so that every malformed input raises
:class:`.errors.Iso8583Error` naming the field and the byte position, and nothing else: the bitmap is
checked against the profile before pyiso8583 sees it, and every value against its content kind after.
Decoding is bounded: :data:`MAX_FRAME_SIZE`, :data:`.spec.MAX_MESSAGE_SIZE` and each field's maximum.

Every host encodes and decodes several messages per authorization, so both directions have a fast path
written for this one profile (BCD length prefixes, BCD digits right-padded with ``0``, ASCII text, raw
bytes: :data:`_FORMATS`, derived from the spec): the encoder gives the bytes pyiso8583 gives, the decoder
the values it gives, and whatever the fast decoder cannot take whole (a bad length prefix, a truncated
field, a pad nibble that is not ``0``, non-ASCII text, bytes after the last field) is decoded again by
pyiso8583 itself, so a malformed message raises exactly the error it raised before.
``tests/codec/iso8583/test_fast_codec.py`` checks both against pyiso8583 on random valid and damaged
messages (Hypothesis).

Field 64 is the MAC over the MAC block (MAB): the message from the MTI to the end of field 63, bitmap
included (with bit 64 set). :func:`mac_block`, :func:`with_mac` and :func:`mac_matches` take the MAC
function from the caller (the key stays in ``hsm``; the algorithm is in :mod:`citycard.crypto.pos_mac`).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Final

import iso8583

from .errors import ECHO_FIELDS, Iso8583Error
from .spec import MAX_MESSAGE_SIZE, PROFILE_FIELDS, SPEC

__all__ = [
    "BITMAP_SIZE",
    "HEADER_SIZE",
    "LENGTH_SIZE",
    "MAC_SIZE",
    "MAX_FRAME_SIZE",
    "MTI_SIZE",
    "TPDU_ID",
    "TPDU_SIZE",
    "Frame",
    "Header",
    "RawMessage",
    "Tpdu",
    "Value",
    "check_value",
    "decode_frame",
    "decode_message",
    "decode_with_pyiso8583",
    "echo_fields",
    "encode_frame",
    "encode_message",
    "encode_with_pyiso8583",
    "frame_length",
    "mac_block",
    "mac_matches",
    "with_fields",
    "with_mac",
]

LENGTH_SIZE: Final = 2
TPDU_SIZE: Final = 5
HEADER_SIZE: Final = 6
MTI_SIZE: Final = 2
BITMAP_SIZE: Final = 8
MAC_SIZE: Final = 8
TPDU_ID: Final = 0x60
"""The only TPDU ID of the profile (``60``: transaction message)."""
MAX_FRAME_SIZE: Final = TPDU_SIZE + HEADER_SIZE + MAX_MESSAGE_SIZE
"""Largest value of the 2-byte length prefix accepted."""

Value = str | bytes
"""A field value: ``str`` for n, z, an and ans fields (digits or ASCII text), ``bytes`` for b fields."""

_DIGITS: Final = frozenset("0123456789")
_TRACK: Final = _DIGITS | {"D"}
_AN: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ")
_ANS: Final = frozenset(chr(c) for c in range(0x20, 0x7F))
_ALPHABETS: Final = MappingProxyType({"n": _DIGITS, "z": _TRACK, "an": _AN, "ans": _ANS})
_VALUE_START: Final = MappingProxyType({n: int(SPEC[str(n)]["len_type"]) for n in PROFILE_FIELDS})


@dataclass(frozen=True, slots=True)
class RawMessage:
    """An ISO message as the profile's codec sees it: the MTI and field values by number.

    ``offsets`` (filled by :func:`decode_message`, not compared) gives where each field's value starts
    in the decoded input, so that a later check can say ``field 55 pos 40``.
    """

    mti: str
    fields: Mapping[int, Value]
    offsets: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        object.__setattr__(self, "offsets", MappingProxyType(dict(self.offsets)))

    def __repr__(self) -> str:  # values may hold a PAN, track data or a PIN block: numbers only
        return f"RawMessage(mti={self.mti!r}, fields={sorted(self.fields)})"

    def position(self, number: int) -> int | None:
        """Where field ``number``'s value started in the decoded input, if it was decoded."""
        return self.offsets.get(number)


def _check_mti(mti: str, position: int | None) -> None:
    if len(mti) != 4 or not set(mti) <= _DIGITS:
        raise Iso8583Error("mti", position, "MTI is not 4 BCD digits")


def _checker(kind: str) -> Callable[[str], bool]:
    """Whether a str is all of ``kind``'s alphabet (``_ALPHABETS``), by one C-level call."""
    if kind == "ans":  # printable ASCII, 0x20-0x7E
        return lambda value: value.isascii() and value.isprintable()
    pattern = re.compile("[" + "".join(sorted(_ALPHABETS[kind])) + "]*")  # digits, letters, D, space
    return lambda value: pattern.fullmatch(value) is not None


_CHECKS: Final = MappingProxyType(
    {
        number: (
            str(number),
            SPEC[str(number)]["content"],
            None if SPEC[str(number)]["content"] == "b" else _checker(SPEC[str(number)]["content"]),
            int(SPEC[str(number)]["max_len"]),
            SPEC[str(number)]["len_type"] == 0,
        )
        for number in PROFILE_FIELDS
    }
)


def check_value(number: int, value: Value, position: int | None) -> None:
    """Type, alphabet and length of one field value against the spec (no value in the message)."""
    name, kind, alphabet, limit, fixed = _CHECKS[number]
    if alphabet is None:
        if not isinstance(value, bytes):
            raise Iso8583Error(name, position, "binary field needs bytes")
    else:
        if not isinstance(value, str):
            raise Iso8583Error(name, position, f"{kind} field needs str")
        if not alphabet(value):
            raise Iso8583Error(name, position, f"character outside the {kind} alphabet")
    size = len(value)
    if fixed and size != limit:
        raise Iso8583Error(name, position, f"fixed field of {limit}, got {size}")
    if size > limit:
        raise Iso8583Error(name, position, f"{size} longer than the maximum {limit}")


def encode_message(message: RawMessage) -> bytes:
    """MTI, bitmap and fields; raises :class:`Iso8583Error` for a value the profile cannot carry."""
    _check_mti(message.mti, None)
    unknown = set(message.fields) - PROFILE_FIELDS
    if unknown:
        raise Iso8583Error(str(min(unknown)), None, "field is not in the profile")
    for number, value in message.fields.items():
        check_value(number, value, None)
    return encode_checked(message)


@dataclass(frozen=True, slots=True)
class _Format:
    """How one field of the profile travels (from :data:`.spec.SPEC`)."""

    len_type: int
    """Bytes of its BCD length prefix (0: fixed length)."""
    max_len: int
    nibbles: bool
    """BCD digits (n, z: 2 a byte, an odd count right-padded with ``0``; lengths count digits)."""
    text: bool
    """ASCII (an, ans); neither this nor ``nibbles``: raw bytes (b)."""
    prefix_digits: int


def _format(number: int) -> _Format:
    spec = SPEC[str(number)]
    assert spec["len_enc"] == "bcd" and spec["data_enc"] in ("b", "ascii") and "left_pad" not in spec
    nibbles = spec.get("len_count") == "nibbles"
    assert not nibbles or (spec["data_enc"] == "b" and spec.get("right_pad") == "0")
    text = spec["data_enc"] == "ascii"
    assert text == (spec["content"] in ("an", "ans")) and nibbles == (spec["content"] in ("n", "z"))
    return _Format(int(spec["len_type"]), int(spec["max_len"]), nibbles, text, 2 * int(spec["len_type"]))


_FORMATS: Final = MappingProxyType({number: _format(number) for number in PROFILE_FIELDS})


def encode_checked(message: RawMessage) -> bytes:
    """:func:`encode_message` of a message whose MTI and values were checked already (a typed message's
    fields, checked when it was made): the profile's fast encoder, the bytes pyiso8583 makes."""
    bitmap = 0
    parts: list[bytes] = []
    fields = message.fields
    for number in sorted(fields):
        bitmap |= 1 << (64 - number)
        parts.append(_encode_field(number, fields[number]))
    return _sized(bytes.fromhex(message.mti) + bitmap.to_bytes(BITMAP_SIZE, "big") + b"".join(parts))


def _encode_field(number: int, value: Value) -> bytes:
    """One field as it travels: its length prefix (if variable) and its value (checked already)."""
    form = _FORMATS[number]
    if form.text:
        assert isinstance(value, str)
        body = value.encode("ascii")
        length = len(body)
    elif form.nibbles:
        assert isinstance(value, str)
        length = len(value)
        body = bytes.fromhex(value + "0" if length & 1 else value)
    else:
        assert isinstance(value, bytes)
        body, length = value, len(value)
    if form.len_type:
        return bytes.fromhex(f"{length:0{form.prefix_digits}d}") + body
    return body


def _sized(raw: bytes) -> bytes:
    if len(raw) > MAX_MESSAGE_SIZE:
        raise Iso8583Error("message", None, f"{len(raw)} bytes exceed {MAX_MESSAGE_SIZE}")
    return raw


def encode_with_pyiso8583(message: RawMessage) -> bytes:
    """:func:`encode_checked` by pyiso8583 (the reference the fast encoder is tested against)."""
    doc: dict[str, str] = {"t": message.mti}
    for number, value in message.fields.items():
        doc[str(number)] = value.hex().upper() if isinstance(value, bytes) else value
    try:
        raw, _ = iso8583.encode(doc, SPEC)
    except iso8583.EncodeError as exc:  # not reached after the checks above; mapped all the same
        raise Iso8583Error(exc.field, None, exc.msg) from None
    if len(raw) > MAX_MESSAGE_SIZE:
        raise Iso8583Error("message", None, f"{len(raw)} bytes exceed {MAX_MESSAGE_SIZE}")
    return bytes(raw)


_BITS_OF: Final = tuple(tuple(bit + 1 for bit in range(8) if byte & (0x80 >> bit)) for byte in range(256))
"""Byte value → the 1-based positions of its bits set, most significant first."""


def _bitmap_fields(bitmap: bytes) -> list[int]:
    return [i * 8 + bit for i, byte in enumerate(bitmap) if byte for bit in _BITS_OF[byte]]


_DECODE_FIELD_NAMES: Final = MappingProxyType({"t": "mti", "p": "bitmap", "h": "header"})


def decode_message(data: bytes, *, offset: int = 0) -> RawMessage:
    """Decode one ISO message (MTI to the last field); ``offset`` is added to the positions reported.

    Raises :class:`Iso8583Error` for anything malformed: too long, truncated, a bitmap naming a field
    outside the profile (a secondary bitmap included), a bad length prefix, a value outside its
    alphabet, or bytes after the last field. The error keeps the MTI and the echo fields that decoded
    cleanly before the failure, for the format-error response.
    """
    data = bytes(data)
    mti, present = _head(data, offset)
    fast = _decode_fields(data, present)
    if fast is not None:
        values, starts = fast
        fields: dict[int, Value] = {}
        offsets: dict[int, int] = {}
        for number, value, start in zip(present, values, starts, strict=True):
            _take(fields, offsets, mti, number, value, offset + start)
        return RawMessage(mti, fields, offsets)
    return _decode_with_pyiso8583(data, mti, present, offset)


def _decode_fields(data: bytes, present: list[int]) -> tuple[list[Value], list[int]] | None:
    """The values of ``present`` fields and where each starts, as pyiso8583 decodes them; None when any is
    malformed as pyiso8583 sees it (it is then left to pyiso8583 to say how)."""
    pos, size = MTI_SIZE + BITMAP_SIZE, len(data)
    values: list[Value] = []
    starts: list[int] = []
    for number in present:
        form = _FORMATS[number]
        start = pos + form.len_type
        if form.len_type:
            if start > size:
                return None
            digits = data[pos:start].hex()
            if not digits.isdigit():
                return None
            length = int(digits)
            if length > form.max_len:
                return None
        else:
            length = form.max_len
        end = start + ((length + 1) // 2 if form.nibbles else length)
        if end > size:
            return None
        value: Value
        if form.text:
            try:
                value = data[start:end].decode("ascii")
            except UnicodeDecodeError:
                return None
        elif form.nibbles:
            value = data[start:end].hex().upper()
            if length & 1:
                if value[-1:] != "0":
                    return None
                value = value[:-1]
        else:
            value = data[start:end]
        values.append(value)
        starts.append(start)
        pos = end
    if pos != size:
        return None
    return values, starts


def _take(
    fields: dict[int, Value], offsets: dict[int, int], mti: str, number: int, value: Value, position: int
) -> None:
    """Check a decoded value against the profile and keep it with its position; the error carries the
    MTI and the echo fields decoded before it (both decoders)."""
    try:
        check_value(number, value, position)
    except Iso8583Error as exc:
        raise Iso8583Error(exc.field, exc.position, exc.reason, mti=mti, echo=echo_fields(fields)) from None
    fields[number] = value
    offsets[number] = position


def _head(data: bytes, offset: int) -> tuple[str, list[int]]:
    """The MTI and the fields the bitmap names, after the checks both decoders make first (size, MTI,
    bitmap, every field in the profile); :class:`Iso8583Error` naming the first that fails."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise Iso8583Error("message", offset, f"{len(data)} bytes exceed {MAX_MESSAGE_SIZE}")
    if len(data) < MTI_SIZE:
        raise Iso8583Error("mti", offset, "message shorter than its MTI")
    mti = data[:MTI_SIZE].hex()
    _check_mti(mti, offset)
    bitmap = data[MTI_SIZE : MTI_SIZE + BITMAP_SIZE]
    if len(bitmap) < BITMAP_SIZE:
        raise Iso8583Error("bitmap", offset + MTI_SIZE, "bitmap truncated", mti=mti)
    present = _bitmap_fields(bitmap)
    for number in present:
        if number not in PROFILE_FIELDS:
            what = "secondary bitmap" if number == 1 else "field"
            raise Iso8583Error(str(number), offset + MTI_SIZE, f"{what} is not in the profile", mti=mti)
    return mti, present


def decode_with_pyiso8583(data: bytes, *, offset: int = 0) -> RawMessage:
    """:func:`decode_message` by pyiso8583 alone (the reference the fast decoder is tested against)."""
    data = bytes(data)
    mti, present = _head(data, offset)
    return _decode_with_pyiso8583(data, mti, present, offset)


def _decode_with_pyiso8583(data: bytes, mti: str, present: list[int], offset: int) -> RawMessage:
    try:
        decoded, encoded = iso8583.decode(data, SPEC)
    except iso8583.DecodeError as exc:
        where = (
            "message" if exc.msg.startswith("Extra data") else _DECODE_FIELD_NAMES.get(exc.field, exc.field)
        )
        done = {n: exc.doc_dec[str(n)] for n in present if str(n) in exc.doc_dec and str(n) != exc.field}
        raise Iso8583Error(where, offset + exc.pos, exc.msg, mti=mti, echo=echo_fields(done)) from None
    fields: dict[int, Value] = {}
    offsets: dict[int, int] = {}
    pos = MTI_SIZE + BITMAP_SIZE
    for number in present:
        start = pos + _VALUE_START[number]
        part = encoded[str(number)]
        pos += len(part["len"]) + len(part["data"])
        value: Value = decoded[str(number)]
        if SPEC[str(number)]["content"] == "b":
            value = bytes.fromhex(decoded[str(number)])
        _take(fields, offsets, mti, number, value, offset + start)
    assert pos == len(data)
    return RawMessage(mti, fields, offsets)


def echo_fields(decoded: Mapping[int, Value]) -> dict[int, str]:
    """Those of the echo fields that decoded and are valid (a response may carry them back)."""
    echo: dict[int, str] = {}
    for number in ECHO_FIELDS & set(decoded):
        value = decoded[number]
        try:
            check_value(number, value, None)
        except Iso8583Error:
            continue
        assert isinstance(value, str)
        echo[number] = value
    return echo


@dataclass(frozen=True, slots=True)
class Tpdu:
    """Transport protocol data unit: ID ``60``, then destination and source addresses (NII, 2 bytes each).

    A response swaps the addresses: :meth:`reply`.
    """

    destination: int
    source: int

    def __post_init__(self) -> None:
        for name in ("destination", "source"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFF:
                raise Iso8583Error("tpdu", None, f"{name} address does not fit 2 bytes")

    def to_bytes(self) -> bytes:
        return bytes((TPDU_ID,)) + self.destination.to_bytes(2, "big") + self.source.to_bytes(2, "big")

    @classmethod
    def from_bytes(cls, data: bytes, *, offset: int = 0) -> Tpdu:
        if len(data) != TPDU_SIZE:
            raise Iso8583Error("tpdu", offset, f"TPDU of {len(data)} bytes, not {TPDU_SIZE}")
        if data[0] != TPDU_ID:
            raise Iso8583Error("tpdu", offset, f"TPDU ID {data[0]:02X} is not {TPDU_ID:02X}")
        return cls(int.from_bytes(data[1:3], "big"), int.from_bytes(data[3:5], "big"))

    def reply(self) -> Tpdu:
        return Tpdu(self.source, self.destination)


@dataclass(frozen=True, slots=True)
class Header:
    """The 6-byte message header, 12 BCD digits: application type n2 (``60``), version n2 (``31``),
    terminal status n1, processing requirement n1, software version n6."""

    application_type: str = "60"
    version: str = "31"
    terminal_status: str = "0"
    processing_requirement: str = "0"
    software_version: str = "310000"

    def __post_init__(self) -> None:
        sizes = (2, 2, 1, 1, 6)
        parts = (
            self.application_type,
            self.version,
            self.terminal_status,
            self.processing_requirement,
            self.software_version,
        )
        for part, size in zip(parts, sizes, strict=True):
            if len(part) != size or not set(part) <= _DIGITS:
                raise Iso8583Error("header", None, "header parts must be BCD digits of their sizes")

    def to_bytes(self) -> bytes:
        digits = (
            self.application_type
            + self.version
            + self.terminal_status
            + self.processing_requirement
            + self.software_version
        )
        return bytes.fromhex(digits)

    @classmethod
    def from_bytes(cls, data: bytes, *, offset: int = 0) -> Header:
        if len(data) != HEADER_SIZE:
            raise Iso8583Error("header", offset, f"header of {len(data)} bytes, not {HEADER_SIZE}")
        digits = data.hex()
        if not set(digits) <= _DIGITS:
            raise Iso8583Error("header", offset, "header is not BCD")
        return cls(digits[0:2], digits[2:4], digits[4], digits[5], digits[6:12])


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame on the wire: TPDU, header and the ISO message bytes."""

    tpdu: Tpdu
    header: Header
    message: bytes

    def __repr__(self) -> str:
        return f"Frame({self.tpdu!r}, {self.header!r}, message of {len(self.message)} bytes)"


_PREFIX: Final = LENGTH_SIZE + TPDU_SIZE + HEADER_SIZE


def frame_length(prefix: bytes) -> int:
    """The number of bytes that follow a 2-byte length prefix (for a reader on a stream), bounded."""
    if len(prefix) != LENGTH_SIZE:
        raise Iso8583Error("length", 0, f"length prefix of {len(prefix)} bytes, not {LENGTH_SIZE}")
    length = int.from_bytes(prefix, "big")
    if length > MAX_FRAME_SIZE:
        raise Iso8583Error("length", 0, f"frame of {length} bytes exceeds {MAX_FRAME_SIZE}")
    if length < TPDU_SIZE + HEADER_SIZE + MTI_SIZE + BITMAP_SIZE:
        raise Iso8583Error("length", 0, f"frame of {length} bytes cannot hold TPDU, header, MTI and bitmap")
    return length


def encode_frame(frame: Frame) -> bytes:
    body = frame.tpdu.to_bytes() + frame.header.to_bytes() + frame.message
    if len(body) > MAX_FRAME_SIZE:
        raise Iso8583Error("length", None, f"frame of {len(body)} bytes exceeds {MAX_FRAME_SIZE}")
    return len(body).to_bytes(LENGTH_SIZE, "big") + body


@lru_cache(maxsize=256)
def _tpdu_at(data: bytes) -> Tpdu:
    """The TPDU of a frame (bytes 2–6): a link's frames all carry one or two, so each is decoded once
    (the values are frozen; an error is raised every time, lru_cache keeps no exception)."""
    return Tpdu.from_bytes(data, offset=LENGTH_SIZE)


@lru_cache(maxsize=256)
def _header_at(data: bytes) -> Header:
    """The header of a frame (bytes 7–12), decoded once per distinct value as :func:`_tpdu_at`."""
    return Header.from_bytes(data, offset=LENGTH_SIZE + TPDU_SIZE)


def decode_frame(data: bytes) -> tuple[Frame, RawMessage]:
    """One whole frame (length prefix included): the frame and its decoded message.

    The length prefix must announce exactly the bytes that follow it.
    """
    data = bytes(data)
    length = frame_length(data[:LENGTH_SIZE])
    if len(data) - LENGTH_SIZE != length:
        raise Iso8583Error("length", 0, f"length prefix says {length}, {len(data) - LENGTH_SIZE} follow")
    tpdu = _tpdu_at(data[LENGTH_SIZE : LENGTH_SIZE + TPDU_SIZE])
    header = _header_at(data[LENGTH_SIZE + TPDU_SIZE : _PREFIX])
    message = data[_PREFIX:]
    return Frame(tpdu, header, message), decode_message(message, offset=_PREFIX)


def _has_mac_field(message: bytes) -> bool:
    return len(message) >= MTI_SIZE + BITMAP_SIZE + MAC_SIZE and bool(message[MTI_SIZE + BITMAP_SIZE - 1] & 1)


def mac_block(message: bytes) -> bytes:
    """The MAC input block: the encoded message from the MTI to the end of field 63 (field 64 cut off).

    ``message`` must have field 64 in its bitmap (encode it with a placeholder of 8 zero bytes first).
    """
    if not _has_mac_field(message):
        raise Iso8583Error("64", None, "message has no field 64 to carry a MAC")
    return message[:-MAC_SIZE]


def with_mac(message: bytes, mac: Callable[[bytes], bytes]) -> bytes:
    """``message`` with field 64 set to ``mac(mac_block(message))`` (8 bytes)."""
    value = mac(mac_block(message))
    assert len(value) == MAC_SIZE, "a POS MAC is 8 bytes"
    return message[:-MAC_SIZE] + value


def mac_matches(message: bytes, mac: Callable[[bytes], bytes]) -> bool:
    """Whether field 64 of a received message is the MAC of its MAC block (constant-time compare)."""
    expected = mac(mac_block(message))
    return hmac.compare_digest(expected, message[-MAC_SIZE:])


def with_fields(message: bytes, changes: Mapping[int, Value | None]) -> bytes:
    """``message`` (a decoded or encoded one: its bitmap and length prefixes are valid) with the fields of
    ``changes`` set to their values, or left out where the value is None, every other field's bytes copied
    as they were: what :func:`encode_checked` makes of the message's fields so changed, without decoding or
    encoding the fields kept. The new values must have been checked (:func:`check_value`) and be fields of
    the profile."""
    if changes.keys() == {64}:  # the MAC alone: the last field of the profile, 8 bytes at the end
        return _with_mac_field(message, changes[64])
    spans: dict[int, tuple[int, int]] = {}  # field → (start of its length prefix, end of its value)
    pos = MTI_SIZE + BITMAP_SIZE
    for number in _bitmap_fields(message[MTI_SIZE:pos]):
        form = _FORMATS[number]
        start = pos + form.len_type
        length = int(message[pos:start].hex()) if form.len_type else form.max_len
        end = start + ((length + 1) // 2 if form.nibbles else length)
        spans[number] = (pos, end)
        pos = end
    assert pos == len(message), "not a whole message"
    parts: list[bytes] = []
    bitmap = 0
    for number in sorted(spans.keys() | changes.keys()):
        if number in changes:
            value = changes[number]
            if value is None:
                continue
            parts.append(_encode_field(number, value))
        else:
            start, end = spans[number]
            parts.append(message[start:end])
        bitmap |= 1 << (64 - number)
    return _sized(message[:MTI_SIZE] + bitmap.to_bytes(BITMAP_SIZE, "big") + b"".join(parts))


def _with_mac_field(message: bytes, mac: Value | None) -> bytes:
    """``message`` with field 64 set to ``mac`` (8 bytes) or left out (None): its bit and its last 8 bytes."""
    last = MTI_SIZE + BITMAP_SIZE - 1  # the bitmap's byte holding bit 64
    kept = message[:-MAC_SIZE] if message[last] & 1 else message
    if mac is None:
        return kept[:last] + bytes((kept[last] & 0xFE,)) + kept[last + 1 :]
    assert isinstance(mac, bytes) and len(mac) == MAC_SIZE, "a POS MAC is 8 bytes"
    return _sized(kept[:last] + bytes((kept[last] | 1,)) + kept[last + 1 :] + mac)
