"""ISO 8583 UnionPay POS profile, bytes level: published trace, a frame built by hand, errors, properties.

The published trace is the UnionPay POS purchase request of "POS调试8583报文-消费" (blog.csdn.net/MaxWoods,
mirrored at codetd.com/article/5053461): a contactless PBOC purchase of 0.01 yuan. Its field 59 (terminal
location data of later UnionPay specifications) is outside our profile; the test shows that the frame as
published is refused at field 59, and that the same frame without field 59 decodes to the values the
article lists and re-encodes to exactly the published bytes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.codec.iso8583 import (
    KINDS,
    MAX_FRAME_SIZE,
    MAX_MESSAGE_SIZE,
    PROFILE_FIELDS,
    SPEC,
    Frame,
    Header,
    Iso8583Error,
    RawMessage,
    Tpdu,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
    frame_length,
)

PUBLISHED_PURCHASE = bytes.fromhex(
    "01AA60000600006031003110030200702406C020C19A3116622424290000011300000000000000000100040328060710"
    "00000012346224242900000113D280620139490310133130303030303139383530313030303832343130303032000100"
    "313536D1EEF419D0AE2609260000000000000001399F260895BBE372271DDA7C9F2701809F101307010103A00000010A"
    "010000000000ED538FE49F37047F9F349E9F36020157950500000000009A031908309C01009F02060000000000015F2A"
    "02015682027C009F1A0201569F03060000000000009F3303E0E1C89F3501229F1E0831303030303031398408A0000003"
    "330101029F0902008C9F4104000004030153313232303839383630363137303830303032353833393933313331314846"
    "54313730383033303131343134323031393038333030393334333531353032303031373232424433302E363231353535"
    "2C3131342E33363139353441323630303130323032303231363030303032393032313030313537303830333036303030"
    "3131333034303830343234373239323035303848373036323830310014220000240006003846363531423236"
)
FIELD_59 = slice(256, 256 + 2 + 153)  # LLL 0153 then 153 ASCII bytes, in frame offsets


def published_without_field_59() -> bytes:
    frame = bytearray(PUBLISHED_PURCHASE[: FIELD_59.start] + PUBLISHED_PURCHASE[FIELD_59.stop :])
    frame[0:2] = (len(frame) - 2).to_bytes(2, "big")
    frame[2 + 5 + 6 + 2 + 7] &= ~0x20 & 0xFF  # bitmap byte 8 (fields 57-64): clear the bit of field 59
    return bytes(frame)


def test_the_published_purchase_is_refused_at_field_59_which_is_outside_the_profile() -> None:
    assert int.from_bytes(PUBLISHED_PURCHASE[:2], "big") == len(PUBLISHED_PURCHASE) - 2
    with pytest.raises(Iso8583Error) as info:
        decode_frame(PUBLISHED_PURCHASE)
    assert (info.value.field, info.value.position) == ("59", 15)  # the bitmap starts at 2 + 5 + 6 + 2


def test_the_published_purchase_decodes_to_its_listed_values_and_re_encodes_byte_for_byte() -> None:
    data = published_without_field_59()
    frame, raw = decode_frame(data)
    assert frame.tpdu == Tpdu(destination=0x0006, source=0x0000)
    assert frame.header == Header("60", "31", "0", "0", "311003")
    assert raw.mti == "0200"
    f = raw.fields
    assert f[2] == "6224242900000113"
    assert (f[3], f[4], f[11], f[14]) == ("000000", "000000000001", "000403", "2806")
    assert (f[22], f[23], f[25], f[26]) == ("071", "000", "00", "12")  # 22 travels as 07 10: left-aligned
    assert f[35] == "6224242900000113D28062013949031013"
    assert (f[41], f[42], f[48], f[49]) == ("10000019", "850100082410002", "0", "156")
    assert f[52] == bytes.fromhex("D1EEF419D0AE2609")
    assert f[53] == "2600000000000000"
    assert isinstance(f[55], bytes) and len(f[55]) == 139 and f[55][:3] == bytes.fromhex("9F2608")
    assert f[60] == "22000024000600"
    assert f[64] == b"8F651B26"  # the UnionPay "ECB" MAC of that terminal, 8 hex digits as ASCII
    assert raw.position(2) == 2 + 5 + 6 + 2 + 8 + 1  # after its one-byte LL
    rebuilt = encode_frame(Frame(frame.tpdu, frame.header, encode_message(RawMessage(raw.mti, f))))
    assert rebuilt == data


def test_a_sign_on_built_by_hand_from_the_documented_layout() -> None:
    expected = bytes(
        [
            0x00, 0x3C,  # length: 60 bytes follow (5 TPDU + 6 header + 49 message)
            0x60, 0x00, 0x06, 0x00, 0x01,  # TPDU: ID 60, destination 0006, source 0001
            0x60, 0x31, 0x00, 0x31, 0x00, 0x00,  # header: 60, version 31, status 0, requirement 0, 310000
            0x08, 0x00,  # MTI 0800, BCD
            0x00, 0x20, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x12,  # bitmap: fields 11, 41, 42, 60, 63
            0x00, 0x00, 0x01,  # 11 STAN n6: 000001
            0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38,  # 41 terminal id ans8: "12345678"
            0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35,  # 42
            0x00, 0x11,  # 60 LLL BCD: 11 digits
            0x00, 0x00, 0x00, 0x01, 0x00, 0x30,  # 60: 00 (60.1) 000001 (batch) 003 (sign-on 3DES), pad 0
            0x00, 0x03, 0x30, 0x31, 0x20,  # 63 LLL BCD: 3 bytes, operator "01 "
        ]
    )  # fmt: skip
    message = RawMessage(
        "0800", {11: "000001", 41: "12345678", 42: "123456789012345", 60: "00000001003", 63: b"01 "}
    )
    frame = Frame(Tpdu(6, 1), Header("60", "31", "0", "0", "310000"), encode_message(message))
    assert encode_frame(frame) == expected
    decoded_frame, decoded = decode_frame(expected)
    assert decoded_frame == frame and decoded == message


def sign_on_message() -> bytes:
    return encode_message(
        RawMessage("0800", {11: "000001", 41: "12345678", 42: "123456789012345", 60: "00000001003"})
    )


@pytest.mark.parametrize(
    ("data", "field", "position"),
    [
        (b"", "mti", 0),
        (b"\x08", "mti", 0),
        (b"\x0a\x00" + bytes(8), "mti", 0),  # not BCD
        (b"\x08\x00\x00\x20", "bitmap", 2),  # truncated
        (b"\x08\x00\x80" + bytes(7), "1", 2),  # a secondary bitmap
        (b"\x08\x00\x40\x00\x00\x00\x00\x00\x00\x00\x20" + bytes(10), "2", 10),  # PAN LL 20 > 19
        (b"\x08\x00\x40\x00\x00\x00\x00\x00\x00\x00\x1a", "2", 10),  # LL not BCD
        (b"\x08\x00\x40\x00\x00\x00\x00\x00\x00\x00\x03\x12\x34", "2", 11),  # odd length, pad nibble not 0
        (b"\x08\x00\x40\x00\x00\x00\x00\x00\x00\x00\x02\x1a", "2", 11),  # a digit that is not
        (b"\x08\x00\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00", "11", 10),  # truncated fixed field
        (
            b"\x08\x00\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x01\xff",
            "message",
            13,
        ),  # extra byte after the last
        (b"\x08\x00\x00\x00\x00\x00\x00\x80\x00\x00\x41\x42", "41", 10),  # 41 truncated
        (b"\x08\x00\x00\x00\x00\x00\x00\x80\x00\x00" + b"1234567\x07", "41", 10),  # control character in ans
        (b"\x08\x00\x00\x00\x00\x00\x00\x00\x00\x01" + bytes(7), "64", 10),
        (b"\x08\x00\x00\x00\x00\x00\x00\x00\x02\x00" + b"\x10\x00", "55", 10),  # LLL 1000 > 255
    ],
)
def test_malformed_messages_name_the_field_and_the_position(data: bytes, field: str, position: int) -> None:
    with pytest.raises(Iso8583Error) as info:
        decode_message(data)
    assert (info.value.field, info.value.position) == (field, position)
    assert str(info.value).startswith(f"field {field} pos {position}: ")


def test_positions_count_from_the_frame_start_inside_a_frame() -> None:
    message = sign_on_message()
    frame = encode_frame(Frame(Tpdu(6, 1), Header(), message[:-1] + b"\x35"))  # 60's pad nibble is 5
    with pytest.raises(Iso8583Error) as info:
        decode_frame(frame)
    assert (
        info.value.field == "60" and info.value.position == 2 + 5 + 6 + len(message) - 6
    )  # where 60's value starts


@pytest.mark.parametrize(
    ("data", "field", "position"),
    [
        (b"\x00", "length", 0),
        ((MAX_FRAME_SIZE + 1).to_bytes(2, "big"), "length", 0),
        (b"\x00\x05" + bytes(5), "length", 0),  # cannot hold TPDU, header, MTI and bitmap
        (b"\x00\x30" + bytes(20), "length", 0),  # says 48, 20 follow
        (b"\x00\x15\x61" + bytes(20), "tpdu", 2),
        (b"\x00\x15\x60\x00\x00\x00\x00\x6a" + bytes(15), "header", 7),
    ],
)
def test_malformed_frames_name_the_part_and_the_position(data: bytes, field: str, position: int) -> None:
    with pytest.raises(Iso8583Error) as info:
        decode_frame(data)
    assert (info.value.field, info.value.position) == (field, position)


def test_frame_length_reads_a_stream_prefix_within_bounds() -> None:
    assert frame_length(b"\x01\xaa") == 426
    with pytest.raises(Iso8583Error):
        frame_length((MAX_FRAME_SIZE + 1).to_bytes(2, "big"))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({2: "62242429000001131234"}, "2"),  # 20 digits
        ({3: "00000"}, "3"),  # fixed n6
        ({3: "00000A"}, "3"),
        ({35: "6224=2806"}, "35"),  # track separator travels as D
        ({41: "1234567é"}, "41"),
        ({52: "D1EEF419D0AE2609"}, "52"),  # binary needs bytes
        ({55: bytes(256)}, "55"),
        ({59: "x"}, "59"),  # not in the profile
    ],
)
def test_encoding_refuses_values_the_profile_cannot_carry(fields: dict[int, str | bytes], field: str) -> None:
    with pytest.raises(Iso8583Error) as info:
        encode_message(RawMessage("0200", fields))
    assert info.value.field == field and info.value.position is None


def test_repr_of_a_raw_message_shows_field_numbers_not_values() -> None:
    raw = RawMessage("0200", {2: "6224242900000113", 52: bytes(8)})
    assert "6224242900000113" not in repr(raw) and "[2, 52]" in repr(raw)


# --- properties ---------------------------------------------------------------------------------------

_ALPHABET = {
    "n": "0123456789",
    "z": "0123456789D",
    "an": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
}


def field_values(number: int) -> st.SearchStrategy[str | bytes]:
    spec = SPEC[str(number)]
    low = spec["max_len"] if spec["len_type"] == 0 else 0
    high = spec["max_len"]
    if spec["content"] == "b":
        return st.binary(min_size=low, max_size=high)
    return st.text(alphabet=_ALPHABET[spec["content"]], min_size=low, max_size=high)


raw_messages = st.builds(
    RawMessage,
    st.text(alphabet="0123456789", min_size=4, max_size=4),
    st.sets(st.sampled_from(sorted(PROFILE_FIELDS)), max_size=12).flatmap(
        lambda numbers: st.fixed_dictionaries({n: field_values(n) for n in numbers})
    ),
)


@settings(max_examples=300, deadline=None)
@given(raw_messages)
def test_any_valid_message_round_trips(message: RawMessage) -> None:
    data = encode_message(message)
    assert len(data) <= MAX_MESSAGE_SIZE
    assert decode_message(data) == message


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=MAX_MESSAGE_SIZE + 16))
def test_any_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    try:
        decoded = decode_message(data)
    except Iso8583Error as exc:
        assert exc.position is not None and 0 <= exc.position <= len(data)
    else:  # what decodes is canonical: it encodes back to the very same bytes
        assert encode_message(decoded) == data


@settings(max_examples=300, deadline=None)
@given(raw_messages, st.integers(0, 400), st.binary(min_size=1, max_size=4))
def test_a_valid_message_mutated_decodes_or_raises_the_typed_error(
    message: RawMessage, where: int, junk: bytes
) -> None:
    data = bytearray(encode_message(message))
    at = where % (len(data) + 1)
    data[at : at + len(junk)] = junk
    try:
        decoded = decode_message(bytes(data))
    except Iso8583Error as exc:
        assert exc.position is not None and 0 <= exc.position <= len(data)
    else:
        assert encode_message(decoded) == bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64).map(lambda tail: b"\x00" + bytes([len(tail)]) + tail) | st.binary(max_size=64))
def test_any_frame_bytes_decode_or_raise_the_typed_error(data: bytes) -> None:
    try:
        frame, decoded = decode_frame(data)
    except Iso8583Error as exc:
        assert exc.position is not None and 0 <= exc.position <= len(data)
    else:
        assert encode_frame(frame) == data and encode_message(decoded) == frame.message


def test_the_field_table_of_docs_iso8583_md_says_what_the_spec_and_the_kinds_do() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[3] / "docs" / "iso8583.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 17 and cells[0].isdigit():
            rows[int(cells[0])] = cells
    assert set(rows) == PROFILE_FIELDS
    for number, cells in rows.items():
        spec = SPEC[str(number)]
        size, kind = spec["max_len"], spec["content"]
        fixed = f"b{size * 8}" if kind == "b" else f"{kind}{size}"
        expected = (
            fixed if spec["len_type"] == 0 else f"{('LLVAR', 'LLLVAR')[spec['len_type'] - 1]} {kind}..{size}"
        )
        assert cells[2] == expected, number
        carried = ["M" if number in k.REQUIRED else "O" if number in k.OPTIONAL else "" for k in KINDS]
        assert cells[5:] == carried, number
