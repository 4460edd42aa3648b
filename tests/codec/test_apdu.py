"""Command and response APDUs (ISO/IEC 7816-3 §12.1 cases 1-4, short and extended; ISO/IEC 7816-4 §5)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.codec.apdu import SW, ApduError, CommandApdu, ResponseApdu, sw_meaning

H = bytes.fromhex


@pytest.mark.parametrize(
    ("raw", "expected", "case"),
    [
        # case 1: GET CHALLENGE-like header only
        ("00840000", CommandApdu(0x00, 0x84, 0, 0), 1),
        # case 2S: GET CHALLENGE with Le=08; READ RECORD with Le=00 (256)
        ("0084000008", CommandApdu(0x00, 0x84, 0, 0, b"", 8), 2),
        ("00B2010C00", CommandApdu(0x00, 0xB2, 1, 0x0C, b"", 256), 2),
        # case 3S: EXTERNAL AUTHENTICATE
        ("008200000A" + "11" * 10, CommandApdu(0x00, 0x82, 0, 0, b"\x11" * 10), 3),
        # case 4S: SELECT PPSE (EMV Book 1 §11.3)
        (
            "00A404000E325041592E5359532E444446303100",
            CommandApdu(0x00, 0xA4, 4, 0, b"2PAY.SYS.DDF01", 256),
            4,
        ),
        # case 4S: GET PROCESSING OPTIONS with an empty PDOL (Book 3 §6.5.8)
        ("80A80000028300" + "00", CommandApdu(0x80, 0xA8, 0, 0, H("8300"), 256), 4),
        # case 2E, 3E, 4E
        ("00B0000000FFFF", CommandApdu(0, 0xB0, 0, 0, b"", 0xFFFF, True), 2),
        ("00B00000000000", CommandApdu(0, 0xB0, 0, 0, b"", 65536, True), 2),
        ("00D6000000000301 0203", CommandApdu(0, 0xD6, 0, 0, H("010203"), None, True), 3),
        ("00D60000000003010203 0100", CommandApdu(0, 0xD6, 0, 0, H("010203"), 256, True), 4),
        ("00D60000000003010203 0000", CommandApdu(0, 0xD6, 0, 0, H("010203"), 65536, True), 4),
    ],
)
def test_parse_known_commands(raw: str, expected: CommandApdu, case: int) -> None:
    parsed = CommandApdu.parse(H(raw))
    assert parsed == expected
    assert parsed.case == case
    assert parsed.to_bytes() == H(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "00",
        "00A404",
        "00A40400 0E 3250",  # Lc larger than the data
        "00A40400 00 01",  # extended length field incomplete
        "00A40400 00 0000 AA",  # extended Lc of zero
        "00A40400 00 0003 0102",  # extended Lc disagrees
        "00A40400 00 0001 01 00",  # extended case 4 with a one-byte Le
    ],
)
def test_parse_malformed(raw: str) -> None:
    with pytest.raises(ApduError) as info:
        CommandApdu.parse(H(raw))
    assert info.value.sw == SW.WRONG_LENGTH


def test_short_case4_with_extra_byte_is_malformed() -> None:
    # Lc=2 followed by 4 bytes fits neither case 3S (2 bytes) nor case 4S (3 bytes).
    with pytest.raises(ApduError):
        CommandApdu.parse(H("00A40400 02 3250 4142"))


def test_large_data_goes_extended() -> None:
    cmd = CommandApdu(0x00, 0xD6, 0, 0, bytes(300))
    raw = cmd.to_bytes()
    assert raw[4:7] == H("00012C")
    assert CommandApdu.parse(raw) == CommandApdu(0x00, 0xD6, 0, 0, bytes(300), None, True)


def test_response_apdu() -> None:
    resp = ResponseApdu.parse(H("6F009000"))
    assert resp.data == H("6F00") and resp.sw == 0x9000 and resp.ok
    assert resp.sw1 == 0x90 and resp.sw2 == 0x00
    assert resp.to_bytes() == H("6F009000")
    assert not ResponseApdu.parse(H("6A82")).ok
    with pytest.raises(ApduError):
        ResponseApdu.parse(H("90"))


@pytest.mark.parametrize(
    ("sw", "meaning"),
    [
        (0x9000, "normal processing"),
        (0x6A82, "file or application not found"),
        (0x6110, "16 more response bytes available (GET RESPONSE)"),
        (0x6C08, "wrong Le: 8 bytes available"),
        (0x63C2, "verification failed, 2 tries left"),
        (0x6300, "warning: state of non-volatile memory changed"),
        (0x6281, "warning"),
        (0x6400, "execution error"),
        (0x9999, "unknown status"),
    ],
)
def test_sw_meaning(sw: int, meaning: str) -> None:
    assert sw_meaning(sw) == meaning


# --- properties -----------------------------------------------------------------------------------

_byte = st.integers(0, 0xFF)
short_commands = st.builds(
    CommandApdu,
    _byte,
    _byte,
    _byte,
    _byte,
    st.binary(max_size=255),
    st.none() | st.integers(1, 256),
)
extended_commands = st.builds(
    CommandApdu,
    _byte,
    _byte,
    _byte,
    _byte,
    st.binary(max_size=1000),
    st.none() | st.integers(1, 65536),
    st.just(True),
).filter(lambda c: c.data or c.le is not None)  # case 1 has no extended form


@settings(max_examples=500)
@given(short_commands | extended_commands)
def test_command_round_trip(cmd: CommandApdu) -> None:
    raw = cmd.to_bytes()
    assert CommandApdu.parse(raw) == cmd
    assert cmd.case == 1 + (cmd.le is not None) + 2 * bool(cmd.data)
    if not cmd.extended:
        assert len(raw) <= 4 + 1 + 255 + 1


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_apdu_error(raw: bytes) -> None:
    try:
        cmd = CommandApdu.parse(raw)
    except ApduError as exc:
        assert exc.sw == SW.WRONG_LENGTH
        return
    assert cmd.to_bytes() == raw  # what parses re-encodes to the same bytes


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_any_bytes_response_parse(raw: bytes) -> None:
    try:
        resp = ResponseApdu.parse(raw)
    except ApduError:
        assert len(raw) < 2
        return
    assert resp.to_bytes() == raw
