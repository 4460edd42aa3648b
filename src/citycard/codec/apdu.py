"""Command and response APDUs (ISO/IEC 7816-3 §12.1, ISO/IEC 7816-4 §5; EMV Book 1 §9, Book 3 §6).

Command APDUs of cases 1 to 4 in short form are parsed and built; extended-length forms are recognised
(and reported with ``extended=True``) so that a card can refuse them with the right status word. Malformed
bytes raise :class:`ApduError`, which a card maps to ``6700`` (wrong length).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "SW",
    "ApduError",
    "CommandApdu",
    "Ins",
    "ResponseApdu",
    "sw_meaning",
]


class ApduError(ValueError):
    """Bytes that are not a well-formed command APDU. ``sw`` is what a card answers to them."""

    def __init__(self, message: str, sw: int = 0x6700) -> None:
        super().__init__(message)
        self.sw = sw


class Ins(enum.IntEnum):
    """The instruction bytes of the commands this platform sends, answers or prints, named once: ISO/IEC
    7816-4 §5 and EMV Book 3 §6.5 for the interindustry and EMV ones, JR/T 0025.5 for the PBOC issuer script
    commands, JR/T 0025.1 for the e-purse's (INITIALIZE … GET BALANCE) and JR/T 0025.14 (docs/card-profile.md)
    for UPDATE CAPP DATA CACHE."""

    CARD_BLOCK = 0x16
    APPLICATION_UNBLOCK = 0x18
    APPLICATION_BLOCK = 0x1E
    VERIFY = 0x20
    PIN_CHANGE_UNBLOCK = 0x24
    INITIALIZE = 0x50
    CREDIT_FOR_LOAD = 0x52
    DEBIT = 0x54
    GET_BALANCE = 0x5C
    EXTERNAL_AUTHENTICATE = 0x82
    GET_CHALLENGE = 0x84
    INTERNAL_AUTHENTICATE = 0x88
    SELECT = 0xA4
    GET_PROCESSING_OPTIONS = 0xA8
    GENERATE_AC = 0xAE
    READ_BINARY = 0xB0
    READ_RECORD = 0xB2
    GET_RESPONSE = 0xC0
    GET_DATA = 0xCA
    UPDATE_BINARY = 0xD6
    PUT_DATA = 0xDA
    UPDATE_RECORD = 0xDC
    UPDATE_CAPP_DATA_CACHE = 0xDE
    APPEND_RECORD = 0xE2

    @property
    def label(self) -> str:
        """The command's name as the standards write it: ``GENERATE AC``, ``PIN CHANGE/UNBLOCK``."""
        return "PIN CHANGE/UNBLOCK" if self is Ins.PIN_CHANGE_UNBLOCK else self.name.replace("_", " ")


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """CLA INS P1 P2 [Lc data] [Le]. ``le`` is None when absent; 256 (short) stands for Le = ``00``."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    @property
    def case(self) -> int:
        """ISO 7816-3 case: 1 no data no Le, 2 Le only, 3 data only, 4 data and Le."""
        return 1 + (self.le is not None) + 2 * bool(self.data)

    @classmethod
    def parse(cls, raw: bytes) -> CommandApdu:
        n = len(raw)
        if n < 4:
            raise ApduError(f"command APDU of {n} bytes is shorter than its 4-byte header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, b"", body[0] or 256)
        if body[0] != 0:
            lc = body[0]
            if len(body) == 1 + lc:
                return cls(cla, ins, p1, p2, bytes(body[1:]))
            if len(body) == 2 + lc:
                return cls(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), body[-1] or 256)
            raise ApduError(f"Lc = {lc} disagrees with {len(body) - 1} bytes after it")
        return cls._parse_extended(cla, ins, p1, p2, body)

    @classmethod
    def _parse_extended(cls, cla: int, ins: int, p1: int, p2: int, body: bytes) -> CommandApdu:
        if len(body) == 3:  # case 2E
            return cls(cla, ins, p1, p2, b"", int.from_bytes(body[1:3], "big") or 65536, True)
        if len(body) < 3:
            raise ApduError(f"extended length field of {len(body)} bytes is incomplete")
        lc = int.from_bytes(body[1:3], "big")
        if lc == 0:
            raise ApduError("extended Lc of zero")
        if len(body) == 3 + lc:
            return cls(cla, ins, p1, p2, bytes(body[3:]), None, True)
        if len(body) == 5 + lc:
            le = int.from_bytes(body[-2:], "big") or 65536
            return cls(cla, ins, p1, p2, bytes(body[3 : 3 + lc]), le, True)
        raise ApduError(f"extended Lc = {lc} disagrees with {len(body) - 3} bytes after it")

    def to_bytes(self) -> bytes:
        assert all(0 <= b <= 0xFF for b in (self.cla, self.ins, self.p1, self.p2))
        head = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.extended or len(self.data) > 255 or (self.le or 0) > 256:
            return head + self._extended_body()
        body = b""
        if self.data:
            body += bytes((len(self.data),)) + self.data
        if self.le is not None:
            body += bytes((self.le & 0xFF,))
        return head + body

    def _extended_body(self) -> bytes:
        body = b""
        if self.data:
            body += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
        if self.le is not None:
            le = (self.le & 0xFFFF).to_bytes(2, "big")
            body += le if self.data else b"\x00" + le
        return body


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """Response data and the two status bytes as one int (``0x9000``)."""

    data: bytes
    sw: int

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def parse(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ApduError(f"response of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))


class SW:
    """Status words a PBOC / EMV card returns (ISO 7816-4 §5.1.3; EMV Book 3 Annex A; JR/T 0025.5)."""

    OK = 0x9000
    WARNING_SELECTED_FILE_INVALIDATED = 0x6283
    WARNING_END_OF_FILE = 0x6282
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCED_DATA_INVALIDATED = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    SM_DATA_OBJECTS_MISSING = 0x6987
    SM_DATA_OBJECTS_INCORRECT = 0x6988
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00
    INSUFFICIENT_BALANCE = 0x9401


_MEANINGS: dict[int, str] = {
    0x9000: "normal processing",
    0x6283: "selected file invalidated (application blocked)",
    0x6282: "end of file reached before reading Le bytes",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6882: "secure messaging not supported",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "referenced data invalidated",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "secure messaging data objects incorrect (MAC)",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported (card or application blocked)",
    0x6A82: "file or application not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
    0x9401: "insufficient balance (purse)",
    0x9302: "MAC invalid (purse)",
    0x9403: "key index not supported (purse)",
}


def sw_meaning(sw: int) -> str:
    """A short English meaning of a status word, including the ``61xx``, ``6Cxx`` and ``63Cx`` families."""
    if sw in _MEANINGS:
        return _MEANINGS[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2} more response bytes available (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"wrong Le: {sw2} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    if sw1 in (0x62, 0x63):
        return "warning: state of non-volatile memory changed" if sw1 == 0x63 else "warning"
    if sw1 in (0x64, 0x65):
        return "execution error"
    return "unknown status"
