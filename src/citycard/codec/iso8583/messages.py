"""Typed messages of the UnionPay POS profile: frozen values with named fields over :mod:`.wire`.

One class per message kind, requests and responses apart (ISO 8583:1987 message classes):

==========================  ==============  =========================================================
kind                        MTI             carries
==========================  ==============  =========================================================
AuthorizationRequest        0100 0200       purchase, void, balance inquiry, EC loads (by 3/25/60.1)
AuthorizationResponse       0110 0210       response code 39, RRN 37, auth code 38, balance 54, 55
AdviceRequest               0220            refund and other advices
AdviceResponse              0230
ReversalRequest             0400 0420       reason in 39 (98 no response, 96, 06 ...)
ReversalResponse            0410 0430
BatchUpload                 0320            offline (EC) transactions, end of batch upload
BatchUploadResponse         0330
SettlementRequest           0500            totals in 48
SettlementResponse          0510
NetworkManagementRequest    0800 0820       sign-on, sign-off, echo test (60.3)
NetworkManagementResponse   0810 0830       working keys in 62
==========================  ==============  =========================================================

Which fields each kind requires or allows is plain data (``REQUIRED`` / ``OPTIONAL`` on each class);
:data:`TRANSACTIONS` is the table of the transactions we use (MTI, processing code, condition code 25,
message type code 60.1, network management code 60.3), from 中国银联 "POS终端消息域说明" and UnionPay POS
terminal practice (see ``docs/iso8583.md``). Field 55 is parsed with the project's BER-TLV codec into an
:class:`IccData`. Every malformed input raises :class:`.errors.Iso8583Error` with the field and position;
PANs are masked and track data, PIN blocks and chip data are left out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from types import MappingProxyType
from typing import Any, ClassVar, Final, Self

from citycard.codec.pan import mask_pan
from citycard.codec.tlv import Tlv, TlvError, check, decode, encode_many, find

from .codes import ResponseCode
from .errors import Iso8583Error
from .wire import (
    MTI_SIZE,
    Frame,
    Header,
    RawMessage,
    Tpdu,
    Value,
    check_value,
    decode_frame,
    echo_fields,
    encode_checked,
    encode_frame,
    with_fields,
    with_mac,
)

__all__ = [
    "BATCH_UPLOAD_DETAIL",
    "BATCH_UPLOAD_END",
    "KINDS",
    "REVERSAL_REPEATS",
    "TRANSACTIONS",
    "AdviceRequest",
    "AdviceResponse",
    "AuthorizationRequest",
    "AuthorizationResponse",
    "BatchUpload",
    "BatchUploadResponse",
    "Field60",
    "IccData",
    "Message",
    "NetworkManagementRequest",
    "NetworkManagementResponse",
    "ReversalRequest",
    "ReversalResponse",
    "SettlementRequest",
    "SettlementResponse",
    "TransactionType",
    "decode_framed",
    "encode_framed",
    "note_received",
    "parse",
    "reversal_of",
    "transaction_type",
]


@dataclass(frozen=True, slots=True)
class Field60:
    """Field 60 (reserved private, n..17): 60.1 message type code n2, 60.2 batch number n6, 60.3 network
    management information code n3 (optional), then the terminal's further subfields (60.4 read
    capability, 60.5 IC condition code, ...) as digits."""

    message_type_code: str
    batch_number: int
    network_code: str | None = None
    rest: str = ""

    def __post_init__(self) -> None:
        if len(self.message_type_code) != 2 or not self.message_type_code.isdigit():
            raise Iso8583Error("60", None, "60.1 must be 2 digits")
        if not 0 <= self.batch_number <= 999_999:
            raise Iso8583Error("60", None, "60.2 batch number must fit 6 digits")
        if self.network_code is not None and (len(self.network_code) != 3 or not self.network_code.isdigit()):
            raise Iso8583Error("60", None, "60.3 must be 3 digits")
        if self.rest and (self.network_code is None or not self.rest.isdigit()):
            raise Iso8583Error("60", None, "60.4 onwards must be digits after 60.3")

    def to_digits(self) -> str:
        return f"{self.message_type_code}{self.batch_number:06d}{self.network_code or ''}{self.rest}"

    @classmethod
    def from_digits(cls, digits: str, *, position: int | None = None) -> Field60:
        if len(digits) < 8:
            raise Iso8583Error("60", position, "shorter than 60.1 and 60.2 (8 digits)")
        if 8 < len(digits) < 11:
            raise Iso8583Error("60", position, "60.3 truncated")
        network = digits[8:11] or None
        return cls(digits[:2], int(digits[2:8]), network, digits[11:])


@dataclass(frozen=True, slots=True)
class IccData:
    """Field 55: the chip data objects (BER-TLV, EMV Book 3 Annex B) as sent, and decoded.

    ``IccData(raw)`` checks ``raw`` as BER-TLV (a TLV error raises :class:`Iso8583Error` for field 55); its
    objects are those of the bytes that travel, decoded the first time they are asked for (a host that
    passes field 55 on, or reads it as ``raw``, never makes them).
    """

    raw: bytes
    _objects: tuple[Tlv, ...] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        _icc_check(self.raw, None)

    @classmethod
    def from_bytes(cls, data: bytes, *, position: int | None = None) -> IccData:
        """Parse field 55; a TLV error is reported at its byte position inside the message."""
        icc = cls.__new__(cls)  # checked once, with the position known
        object.__setattr__(icc, "raw", bytes(data))
        object.__setattr__(icc, "_objects", None)
        _icc_check(icc.raw, position)
        return icc

    @property
    def objects(self) -> tuple[Tlv, ...]:
        """The decoded objects (checked when this was made: decoding them again cannot fail)."""
        objects = self._objects
        if objects is None:
            objects = tuple(decode(self.raw))
            object.__setattr__(self, "_objects", objects)
        return objects

    @classmethod
    def of(cls, items: list[tuple[str, bytes]]) -> IccData:
        """Field 55 built from (tag, value) pairs in the order given."""
        return cls.from_bytes(encode_many(items))

    def get(self, tag: str) -> bytes | None:
        """The value of ``tag`` anywhere in the data, or None."""
        obj = find(self.objects, tag)
        return None if obj is None else obj.value

    def __repr__(self) -> str:  # tags only: values may hold track-equivalent data
        return f"IccData(tags={[obj.tag for obj in self.objects]})"


def _icc_check(raw: bytes, position: int | None) -> None:
    try:
        check(raw, offset=position or 0)
    except TlvError as exc:
        raise Iso8583Error("55", exc.offset if position is not None else None, exc.reason) from None


def _number(field: str, size: int) -> Callable[[Any], Value]:
    def to_wire(value: Any) -> Value:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**size:
            raise Iso8583Error(field, None, f"needs an integer of at most {size} digits")
        return f"{value:0{size}d}"

    return to_wire


def _int(value: Value, position: int | None, field: str) -> Any:
    assert isinstance(value, str)
    return int(value)


def _as_is(value: Any) -> Value:
    assert isinstance(value, str | bytes)
    return value


def _same(value: Value, position: int | None, field: str) -> Any:
    return value


def _rc_to(value: Any) -> Value:
    return str(ResponseCode(value))


def _rc_from(value: Value, position: int | None, field: str) -> Any:
    assert isinstance(value, str)
    return ResponseCode.parse(value, position=position)


def _icc_to(value: Any) -> Value:
    assert isinstance(value, IccData)
    return value.raw


def _icc_from(value: Value, position: int | None, field: str) -> Any:
    assert isinstance(value, bytes)
    return IccData.from_bytes(value, position=position)


def _f60_to(value: Any) -> Value:
    assert isinstance(value, Field60)
    return value.to_digits()


def _f60_from(value: Value, position: int | None, field: str) -> Any:
    assert isinstance(value, str)
    try:
        return _field60_of(value)
    except Iso8583Error:  # said again with its position in the message (lru_cache keeps no exception)
        return Field60.from_digits(value, position=position)


@lru_cache(maxsize=1024)
def _field60_of(digits: str) -> Field60:
    """Field 60 of ``digits``, made once per distinct value (frozen): a terminal's messages of one batch
    carry a handful of them."""
    return Field60.from_digits(digits)


_ATTRIBUTES: Final[
    tuple[tuple[str, int, Callable[[Any], Value], Callable[[Value, int | None, str], Any]], ...]
] = (
    ("pan", 2, _as_is, _same),
    ("processing_code", 3, _as_is, _same),
    ("amount_fen", 4, _number("4", 12), _int),
    ("stan", 11, _number("11", 6), _int),
    ("local_time", 12, _as_is, _same),
    ("local_date", 13, _as_is, _same),
    ("expiry", 14, _as_is, _same),
    ("settlement_date", 15, _as_is, _same),
    ("pos_entry_mode", 22, _as_is, _same),
    ("card_sequence_number", 23, _as_is, _same),
    ("nii", 24, _as_is, _same),
    ("condition_code", 25, _as_is, _same),
    ("pin_capture_code", 26, _as_is, _same),
    ("acquirer_id", 32, _as_is, _same),
    ("track2", 35, _as_is, _same),
    ("track3", 36, _as_is, _same),
    ("rrn", 37, _as_is, _same),
    ("auth_code", 38, _as_is, _same),
    ("response_code", 39, _rc_to, _rc_from),
    ("terminal_id", 41, _as_is, _same),
    ("merchant_id", 42, _as_is, _same),
    ("additional_response", 44, _as_is, _same),
    ("additional_data", 48, _as_is, _same),
    ("currency", 49, _as_is, _same),
    ("pin_block", 52, _as_is, _same),
    ("security_control", 53, _as_is, _same),
    ("balance", 54, _as_is, _same),
    ("icc", 55, _icc_to, _icc_from),
    ("field60", 60, _f60_to, _f60_from),
    ("original", 61, _as_is, _same),
    ("private62", 62, _as_is, _same),
    ("private63", 63, _as_is, _same),
    ("mac", 64, _as_is, _same),
)
"""Attribute name, field number, to wire, from wire: the one mapping between names and numbers."""

_NAME_OF: Final = MappingProxyType({number: name for name, number, _, _ in _ATTRIBUTES})
_TO_WIRE_OF: Final = MappingProxyType({name: (number, to_wire) for name, number, to_wire, _ in _ATTRIBUTES})
_NAMES: Final = tuple(name for name, _, _, _ in _ATTRIBUTES)
_HIDDEN: Final = frozenset({"track2", "track3", "pin_block"})

_AUTH_REQUEST: Final = frozenset({2, 4, 14, 23, 26, 32, 35, 36, 37, 38, 48, 52, 53, 55, 61, 62, 63, 64})
"""Field 32 (acquiring institution) is added by the acquirer on host-to-host legs; terminals omit it."""
_RESPONSE: Final = frozenset(
    {2, 4, 12, 13, 14, 15, 22, 23, 25, 32, 37, 38, 44, 49, 53, 54, 55, 60, 61, 63, 64}
)


class _Wired:
    """Where a :class:`Message` keeps the ISO message it is, byte for byte, when that is known: received
    (:func:`note_received`), signed (:meth:`Message.signed`) or patched from one of those
    (:meth:`Message.replaced`, :meth:`Message.echoing`); None for a message made by its constructor or by
    ``dataclasses.replace`` (its bytes are then its encoding). A slot of a base class, not a dataclass field:
    a message's fields are its ISO fields."""

    __slots__ = ("_wire",)
    _wire: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Message(_Wired):
    """Fields shared by every kind, all optional here; each kind says which it requires and allows."""

    MTIS: ClassVar[frozenset[str]] = frozenset()
    REQUIRED: ClassVar[frozenset[int]] = frozenset()
    OPTIONAL: ClassVar[frozenset[int]] = frozenset()

    mti: str
    pan: str | None = None
    processing_code: str | None = None
    amount_fen: int | None = None
    stan: int | None = None
    local_time: str | None = None
    local_date: str | None = None
    expiry: str | None = None
    settlement_date: str | None = None
    pos_entry_mode: str | None = None
    card_sequence_number: str | None = None
    nii: str | None = None
    condition_code: str | None = None
    pin_capture_code: str | None = None
    acquirer_id: str | None = None
    track2: str | None = None
    track3: str | None = None
    rrn: str | None = None
    auth_code: str | None = None
    response_code: ResponseCode | None = None
    terminal_id: str | None = None
    merchant_id: str | None = None
    additional_response: str | None = None
    additional_data: str | None = None
    currency: str | None = None
    pin_block: bytes | None = None
    security_control: str | None = None
    balance: str | None = None
    icc: IccData | None = None
    field60: Field60 | None = None
    original: str | None = None
    private62: bytes | None = None
    private63: bytes | None = None
    mac: bytes | None = None

    def __post_init__(self) -> None:
        _SET_WIRE(self, None)
        if self.mti not in self.MTIS:
            raise Iso8583Error("mti", None, f"MTI {self.mti} is not a {type(self).__name__}")
        present = self._present()
        missing = self.REQUIRED - present
        if missing:
            raise Iso8583Error(str(min(missing)), None, f"required in {self.mti}, missing")
        unexpected = present - self.REQUIRED - self.OPTIONAL
        if unexpected:
            raise Iso8583Error(str(min(unexpected)), None, f"not expected in {self.mti}")
        for name, number, to_wire, _ in _ATTRIBUTES:
            value = getattr(self, name)
            if value is not None:
                check_value(number, to_wire(value), None)

    def _present(self) -> frozenset[int]:
        return frozenset(number for name, number, _, _ in _ATTRIBUTES if getattr(self, name) is not None)

    @property
    def approved(self) -> bool:
        """True when the message carries an approving response code."""
        return self.response_code is not None and self.response_code.approved

    @property
    def card_number(self) -> str | None:
        """The PAN: field 2, else the digits of track 2 (field 35) before the separator ``D``."""
        if self.pan:
            return self.pan
        if self.track2:
            return self.track2.partition("D")[0] or None
        return None

    def to_fields(self) -> RawMessage:
        values = {
            number: to_wire(getattr(self, name))
            for name, number, to_wire, _ in _ATTRIBUTES
            if getattr(self, name) is not None
        }
        return RawMessage(self.mti, values)

    @classmethod
    def from_fields(cls, raw: RawMessage) -> Self:
        """The typed message for ``raw``; malformed content raises :class:`Iso8583Error` where it is."""
        if raw.mti not in cls.MTIS:
            raise Iso8583Error("mti", None, f"MTI {raw.mti} is not a {cls.__name__}")
        fields, offsets = raw.fields, raw.offsets
        unexpected = fields.keys() - cls.REQUIRED - cls.OPTIONAL
        if unexpected:
            number = min(unexpected)
            raise Iso8583Error(str(number), raw.position(number), f"not expected in {raw.mti}")
        if offsets.keys() != fields.keys():  # built by hand: every check of the constructor
            values: dict[str, Any] = {}
            for name, number, _, from_wire in _ATTRIBUTES:
                if number in fields:
                    values[name] = from_wire(fields[number], raw.position(number), str(number))
            return cls(mti=raw.mti, **values)
        # Decoded by ``decode_message``: the MTI and every value were checked against the profile there and
        # are typed here (the typed values check themselves: response code, field 55, field 60), the fields
        # against this kind just now; only the required ones are left to check. Skipping the constructor's
        # second pass over the same values halves the cost of parsing a message; each slot is set through
        # its descriptor (:data:`_FROM_WIRE`), the absent ones to None first.
        message = _NEW(cls)
        _CLEAR_SLOTS(message)
        _SET_MTI(message, raw.mti)
        for number, value in fields.items():  # in field order, as decoded
            set_slot, from_wire = _FROM_WIRE[number]
            set_slot(message, value if from_wire is _same else from_wire(value, offsets[number], str(number)))
        missing = cls.REQUIRED - fields.keys()
        if missing:
            raise Iso8583Error(str(min(missing)), None, f"required in {raw.mti}, missing")
        return message

    @classmethod
    def echoing(cls, mti: str, request: Message, echoed: frozenset[int], values: Mapping[int, Value]) -> Self:
        """The message ``parse(RawMessage(mti, fields))`` makes, where ``fields`` are ``request``'s fields
        numbered in ``echoed`` that this kind allows (as ``request.to_fields()`` gives them) and then
        ``values`` (field number → wire value). Each value of ``values`` and the MTI are checked as the
        constructor checks them, and so are the fields present; the echoed values are the request's own
        typed values (immutable), not checked against the profile again (they were when ``request`` was
        made). When the request's bytes are known (received), the answer's are spliced from them."""
        if mti not in cls.MTIS:
            raise Iso8583Error("mti", None, f"MTI {mti} is not a {cls.__name__}")
        allowed = cls.REQUIRED | cls.OPTIONAL
        message = _NEW(cls)
        _CLEAR_SLOTS(message)
        _SET_MTI(message, mti)
        present: set[int] = set()
        for number in sorted(values):  # the first error in field order, as the constructor's
            if number not in allowed:
                raise Iso8583Error(str(number), None, f"not expected in {mti}")
            value = values[number]
            check_value(number, value, None)
            set_slot, from_wire = _FROM_WIRE[number]
            set_slot(message, value if from_wire is _same else from_wire(value, None, str(number)))
            present.add(number)
        for number in (echoed & allowed) - values.keys():  # the request's typed value, as it is (frozen)
            kept = getattr(request, _NAME_OF[number])
            if kept is not None:
                _FROM_WIRE[number][0](message, kept)
                present.add(number)
        missing = cls.REQUIRED - present
        if missing:
            raise Iso8583Error(str(min(missing)), None, f"required in {mti}, missing")
        wire = request._wire
        if wire is not None:  # the request's bytes with its echoed fields kept: spliced, not encoded again
            changes: dict[int, Value | None] = dict.fromkeys(request._present() - (echoed & allowed))
            changes.update(values)
            _SET_WIRE(message, with_fields(bytes.fromhex(mti) + wire[MTI_SIZE:], changes))
        return message

    def to_bytes(self) -> bytes:
        """The encoded ISO message (MTI to the last field). A message made by :meth:`signed`, one decoded
        from bytes :func:`note_received` noted, and one :meth:`replaced` made of either by patching is not
        encoded again: it gives those bytes (its ``_wire``)."""
        wire = self._wire
        if wire is not None:
            return wire
        return encode_checked(self.to_fields())  # its values were checked when it was made

    def replaced(self, **changes: Any) -> Self:
        """``dataclasses.replace(self, **changes)`` that checks only what changes: the MTI against the
        kind, the fields present afterwards against the kind's required and allowed ones, and each new
        value against the profile — the constructor's checks, minus those of the values kept, which were
        checked when this message was made (by its constructor or by ``decode_message``)."""
        mti = changes.pop("mti", self.mti)
        if mti not in self.MTIS:
            raise Iso8583Error("mti", None, f"MTI {mti} is not a {type(self).__name__}")
        present = set(self._present())
        for name, value in changes.items():
            number, to_wire = _TO_WIRE_OF[name]  # KeyError: no such field (a bug, as replace's TypeError)
            if value is None:
                present.discard(number)
            else:
                present.add(number)
        missing = self.REQUIRED - present
        if missing:
            raise Iso8583Error(str(min(missing)), None, f"required in {mti}, missing")
        unexpected = present - self.REQUIRED - self.OPTIONAL
        if unexpected:
            raise Iso8583Error(str(min(unexpected)), None, f"not expected in {mti}")
        wired: dict[int, Value | None] = {}
        for name, value in changes.items():
            number, to_wire = _TO_WIRE_OF[name]
            if value is None:
                wired[number] = None
            else:
                wired[number] = new = to_wire(value)
                check_value(number, new, None)
        message = _NEW(type(self))
        _COPY_SLOTS(self, message)
        for name, value in changes.items():
            _SET_OF[name](message, value)
        _SET_MTI(message, mti)
        wire = self._wire
        if wire is not None and mti == self.mti:  # the fields kept are copied, not encoded again
            _SET_WIRE(message, with_fields(wire, wired))
        return message

    def signed(self, mac_of: Callable[[bytes], bytes]) -> Self:
        """This message with field 64 = ``mac_of(MAC block)`` (``wire.with_mac``): encoded once with a
        placeholder for the MAC, and copied with the MAC without checking its other values again (they
        were checked when it was made), instead of two ``dataclasses.replace`` that re-check them all."""
        if 64 not in self.REQUIRED | self.OPTIONAL:
            raise Iso8583Error("64", None, f"not expected in {self.mti}")
        wire = self._wire
        if wire is not None:  # received or patched: MACed in place (a placeholder spliced in if it has none)
            wire = with_mac(wire if self.mac is not None else with_fields(wire, {64: bytes(8)}), mac_of)
        else:
            raw = self.to_fields()
            wire = with_mac(encode_checked(RawMessage(self.mti, {**raw.fields, 64: bytes(8)})), mac_of)
        message = _NEW(type(self))
        _COPY_SLOTS(self, message)
        _SET_MTI(message, self.mti)
        _SET_MAC(message, wire[-8:])
        _SET_WIRE(message, wire)
        return message

    def __reduce__(self) -> tuple[Any, ...]:
        """Copied and pickled as its constructor's arguments and its bytes (``copy``, ``pickle``: the
        dataclass's own state would leave the bytes' slot unset)."""
        values = {name: getattr(self, name) for name in ("mti", *_NAMES)}
        return (_restored, (type(self), values, self._wire))

    def __repr__(self) -> str:
        parts = [f"mti={self.mti!r}"]
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name == "mti" or value is None:
                continue
            if item.name == "pan":
                parts.append(f"pan={mask_pan(value)!r}")
            elif item.name in _HIDDEN:
                parts.append(f"{item.name}=<hidden>")
            else:
                parts.append(f"{item.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


assert {item.name for item in fields(Message)} == {"mti", *_NAMES}, "every field is in _ATTRIBUTES"


def note_received(message: Message, wire: bytes) -> None:
    """Note that ``message`` is ``parse(decode_message(wire))``: the ISO message as it came off the wire
    (``net.server``, ``net.link``). From then on ``to_bytes`` gives ``wire`` — so a MAC check covers the
    bytes received, not an encoding of what was decoded — and :meth:`Message.replaced` of fixed-length
    binary fields (52, 64) and :meth:`Message.signed` patch ``wire`` in place instead of encoding the
    message: a switch forwards what it received with only those bytes changed. Bytes that are not the
    profile's own encoding of their values are passed on as they came; a message encoded afresh would have
    them encoded again. (Field 55 is kept as its raw bytes either way: :class:`IccData`.)"""
    _SET_WIRE(message, wire)


_NEW: Final = object.__new__
_SET_MTI: Final = getattr(Message, "mti").__set__  # noqa: B009 (a slot descriptor, read from the class)
_SET_OF: Final = MappingProxyType({name: getattr(Message, name).__set__ for name in _NAMES})
"""Each field's slot setter by attribute name (its member descriptor's ``__set__``: no frozen
``__setattr__`` in the way)."""
_SET_MAC: Final = _SET_OF["mac"]
_SET_WIRE: Final = getattr(_Wired, "_wire").__set__  # noqa: B009 (a slot descriptor, read from the class)


def _slot_functions() -> tuple[Callable[[Message, Message], None], Callable[[Message], None]]:
    """``copy(source, target)``: every field slot of ``target`` set to ``source``'s value; ``clear(target)``:
    every field slot set to None; both set ``target``'s bytes (``_wire``) to None, unknown until the caller
    sets them. Made once from :data:`_NAMES`, one statement per field (as ``dataclasses`` makes
    ``__init__``): a slot read as a plain attribute and set through its descriptor, no loop — half the time
    of a loop of ``getattr`` and ``object.__setattr__`` over the names, on every message parsed, answered,
    forwarded or signed."""
    namespace: dict[str, Any] = {f"_set_{name}": setter for name, setter in _SET_OF.items()}
    namespace["_set_wire"] = _SET_WIRE
    copy = "".join(f"    _set_{name}(target, source.{name})\n" for name in _NAMES)
    clear = "".join(f"    _set_{name}(target, None)\n" for name in _NAMES)
    copy += "    _set_wire(target, None)\n"
    clear += "    _set_wire(target, None)\n"
    exec(f"def copy(source, target):\n{copy}\ndef clear(target):\n{clear}", namespace)
    return namespace["copy"], namespace["clear"]


_COPY_SLOTS, _CLEAR_SLOTS = _slot_functions()
_FROM_WIRE: Final = MappingProxyType(
    {number: (_SET_OF[name], from_wire) for name, number, _, from_wire in _ATTRIBUTES}
)
"""Field number → (its attribute's slot setter, from wire)."""


def _restored(kind: type[Message], values: dict[str, Any], wire: bytes | None) -> Message:
    """A message copied or unpickled (:meth:`Message.__reduce__`): made by its constructor, its bytes kept."""
    message = kind(**values)
    _SET_WIRE(message, wire)
    return message


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AuthorizationRequest(Message):
    MTIS = frozenset({"0100", "0200"})
    REQUIRED = frozenset({3, 11, 22, 25, 41, 42, 49, 60})
    OPTIONAL = _AUTH_REQUEST


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AuthorizationResponse(Message):
    MTIS = frozenset({"0110", "0210"})
    REQUIRED = frozenset({3, 11, 39, 41, 42})
    OPTIONAL = _RESPONSE


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AdviceRequest(Message):
    MTIS = frozenset({"0220"})
    REQUIRED = frozenset({3, 11, 22, 25, 41, 42, 49, 60})
    OPTIONAL = _AUTH_REQUEST


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AdviceResponse(Message):
    MTIS = frozenset({"0230"})
    REQUIRED = frozenset({3, 11, 39, 41, 42})
    OPTIONAL = _RESPONSE


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ReversalRequest(Message):
    MTIS = frozenset({"0400", "0420"})
    REQUIRED = frozenset({3, 11, 22, 25, 39, 41, 42, 49, 60})
    OPTIONAL = frozenset({2, 4, 14, 23, 32, 35, 36, 37, 38, 53, 55, 61, 64})


REVERSAL_REPEATS = (
    "pan", "processing_code", "amount_fen", "stan", "expiry", "pos_entry_mode", "card_sequence_number",
    "condition_code", "acquirer_id", "track2", "rrn", "terminal_id", "merchant_id", "currency", "icc",
    "field60", "original",
)  # fmt: skip
"""What a reversal repeats of the request it reverses (2, 3, 4, 11, 14, 22, 23, 25, 32, 35, 37, 41, 42, 49,
55, 60, 61); never the PIN block (52): a reversal moves money back, it needs no PIN."""


def reversal_of(request: Message, reason: ResponseCode, **changes: Any) -> ReversalRequest:
    """The 0400 reversing ``request``: its :data:`REVERSAL_REPEATS`, the reason in 39, then ``changes``
    (0420 for a repeat, a MAC placeholder ...). Field 11 is the original's: with 41 and 60.2 it names the
    transaction reversed (docs/iso8583.md)."""
    fields: dict[str, Any] = {name: getattr(request, name) for name in REVERSAL_REPEATS}
    return ReversalRequest(**{"mti": "0400", **fields, "response_code": reason, **changes})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ReversalResponse(Message):
    MTIS = frozenset({"0410", "0430"})
    REQUIRED = frozenset({3, 11, 39, 41, 42})
    OPTIONAL = _RESPONSE


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BatchUpload(Message):
    MTIS = frozenset({"0320"})
    REQUIRED = frozenset({11, 41, 42, 60})
    OPTIONAL = frozenset({2, 3, 4, 14, 22, 23, 25, 26, 32, 37, 38, 48, 49, 55, 61, 62, 63, 64})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BatchUploadResponse(Message):
    MTIS = frozenset({"0330"})
    REQUIRED = frozenset({11, 39, 41, 42})
    OPTIONAL = frozenset({2, 3, 4, 12, 13, 37, 48, 60, 63, 64})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SettlementRequest(Message):
    MTIS = frozenset({"0500"})
    REQUIRED = frozenset({11, 41, 42, 48, 49, 60})
    OPTIONAL = frozenset({15, 63, 64})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class SettlementResponse(Message):
    MTIS = frozenset({"0510"})
    REQUIRED = frozenset({11, 39, 41, 42, 48, 60})
    OPTIONAL = frozenset({12, 13, 15, 32, 37, 49, 63, 64})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class NetworkManagementRequest(Message):
    MTIS = frozenset({"0800", "0820"})
    REQUIRED = frozenset({11, 41, 42, 60})
    OPTIONAL = frozenset({12, 13, 39, 62, 63, 64})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class NetworkManagementResponse(Message):
    MTIS = frozenset({"0810", "0830"})
    REQUIRED = frozenset({11, 39, 41, 42, 60})
    OPTIONAL = frozenset({12, 13, 32, 37, 62, 63, 64})


KINDS: Final[tuple[type[Message], ...]] = (
    AuthorizationRequest,
    AuthorizationResponse,
    AdviceRequest,
    AdviceResponse,
    ReversalRequest,
    ReversalResponse,
    BatchUpload,
    BatchUploadResponse,
    SettlementRequest,
    SettlementResponse,
    NetworkManagementRequest,
    NetworkManagementResponse,
)
_KIND_OF: Final[Mapping[str, type[Message]]] = MappingProxyType(
    {mti: kind for kind in KINDS for mti in kind.MTIS}
)
assert len(_KIND_OF) == sum(len(kind.MTIS) for kind in KINDS), "an MTI belongs to one kind"


def parse(raw: RawMessage) -> Message:
    """The typed message for a decoded one; an MTI outside the profile is malformed input."""
    try:
        kind = _KIND_OF.get(raw.mti)
        if kind is None:
            raise Iso8583Error("mti", None, f"MTI {raw.mti} is not in the profile")
        return kind.from_fields(raw)
    except Iso8583Error as exc:  # keep what a format-error response needs
        raise Iso8583Error(
            exc.field, exc.position, exc.reason, mti=raw.mti, echo=echo_fields(raw.fields)
        ) from None


def decode_framed(data: bytes) -> tuple[Frame, Message]:
    """A whole frame from the wire (length prefix included): the frame and its typed message."""
    frame, raw = decode_frame(data)
    return frame, parse(raw)


def encode_framed(message: Message, tpdu: Tpdu, header: Header | None = None) -> bytes:
    """A whole frame for ``message``: length, TPDU, header, message bytes."""
    return encode_frame(Frame(tpdu, header or Header(), message.to_bytes()))


@dataclass(frozen=True, slots=True)
class TransactionType:
    """One row of the table of transactions: what identifies it on the wire."""

    name: str
    mti: str
    processing_code: str | None
    condition_code: str | None
    message_type_code: str
    network_code: str | None = None


BATCH_UPLOAD_DETAIL: Final = "201"
"""60.3 of a batch-upload record (批上送, 0320; 60.1 its transaction's) after a settlement answered 95."""
BATCH_UPLOAD_END: Final = "202"
"""60.3 of the end of a batch upload (0320, 60.1 ``00``), 48 the records sent (n4): docs/iso8583.md."""

TRANSACTIONS: Final[tuple[TransactionType, ...]] = (
    TransactionType("balance inquiry", "0200", "310000", "00", "01"),
    TransactionType("purchase", "0200", "000000", "00", "22"),
    TransactionType("void", "0200", "200000", "00", "23"),
    TransactionType("refund", "0220", "200000", "00", "25"),
    TransactionType("EC load, designated account", "0200", "600000", "91", "45"),
    TransactionType("EC load, cash", "0200", "630000", "91", "46"),
    TransactionType("EC load, other account", "0200", "620000", "91", "47"),
    TransactionType("offline EC purchase upload", "0320", "000000", "00", "36"),
    TransactionType("sign-on (3DES keys)", "0800", None, None, "00", "003"),
    TransactionType("sign-off", "0820", None, None, "00", "002"),
    TransactionType("settlement", "0500", None, None, "00", "201"),
    TransactionType("batch upload end", "0320", None, None, "00", BATCH_UPLOAD_END),
    TransactionType("echo test", "0820", None, None, "00", "301"),
)
"""Sources and choices: ``docs/iso8583.md`` ("Transactions")."""


def _same_class(mti: str, row: str) -> bool:
    """A request, its response, and a reversal of it (04xx) all belong to the row's transaction."""
    return mti[1] == "4" or (mti[1] == row[1] and mti[2] in (row[2], str(int(row[2]) + 1)))


def transaction_type(message: Message) -> TransactionType | None:
    """The row of :data:`TRANSACTIONS` that ``message`` belongs to, if any."""
    f60 = message.field60
    if f60 is None:
        return None
    for row in TRANSACTIONS:
        if (
            row.message_type_code == f60.message_type_code
            and row.processing_code in (None, message.processing_code)
            and row.condition_code in (None, message.condition_code)
            and row.network_code in (None, f60.network_code)
            and _same_class(message.mti, row.mti)
        ):
            return row
    return None
