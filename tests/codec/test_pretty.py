"""Pretty-printing of TLV trees and DOLs (uses the public traces of test_tlv.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.codec.pan import mask_pan
from citycard.codec.pretty import (
    command_hex,
    command_name,
    format_command,
    format_dol,
    format_response,
    format_tlv,
    render_value,
)
from citycard.codec.tags import RID_MASTERCARD, RID_UNIONPAY
from citycard.codec.tlv import encode, encode_many

H = bytes.fromhex

UNIONPAY_PPSE = H(
    "6F30840E325041592E5359532E4444463031A51EBF0C1B61194F08A000000333010101500A50424F43204445424954870101"
)


def test_ppse_tree() -> None:
    text = format_tlv(UNIONPAY_PPSE, indent="  ")
    assert text.splitlines() == [
        "6F File control information (FCI) template (48 bytes)",
        '  84 Dedicated file (DF) name: 325041592E5359532E4444463031 = "2PAY.SYS.DDF01"',
        "  A5 File control information (FCI) proprietary template (30 bytes)",
        "    BF0C FCI issuer discretionary data (27 bytes)",
        "      61 Application template (25 bytes)",
        "        4F Application identifier (AID) - card: A000000333010101",
        '        50 Application label: 50424F43204445424954 = "PBOC DEBIT"',
        "        87 Application priority indicator: 01",
    ]


def test_indent_argument() -> None:
    assert "\n\t84 " in format_tlv(UNIONPAY_PPSE, indent="\t")


def test_ec_record_with_rid() -> None:
    record = encode(
        "70",
        encode_many(
            [
                ("9F79", H("000000012345")),
                ("9F74", b"ECC001"),
                ("5F24", H("301231")),
                ("9F21", H("235959")),
                ("5F2A", H("0156")),
                ("9F4D", H("0B0A")),
                ("94", H("08010100")),
                ("9F27", H("40")),
                ("9F4F", H("9A039F2103")),
            ]
        ),
    )
    lines = format_tlv(record, rid=RID_UNIONPAY).splitlines()
    assert "  9F79 EC balance: 000000012345 = 123.45" in lines
    assert '  9F74 EC issuer authorization code: 454343303031 = "ECC001"' in lines
    assert "  5F24 Application expiration date: 301231 = 2030-12-31" in lines
    assert "  9F21 Transaction time: 235959 = 23:59:59" in lines
    assert "  5F2A Transaction currency code: 0156 = 156" in lines
    assert any(line.endswith("0B0A = SFI 11, 10 records") for line in lines)
    assert any(line.endswith("08010100 = SFI 1 records 1-1 (0 for ODA)") for line in lines)
    assert any(line.endswith("40 = TC") for line in lines)
    assert any(line.endswith("9A039F2103 = 9A(3) 9F21(3)") for line in lines)
    # Without the RID, 9F79 is not called the EC balance.
    assert "EC balance" not in format_tlv(record)


def test_rid_dependent_amounts() -> None:
    # 9F5D is an amount for UnionPay but "application capabilities" (binary) for Mastercard.
    data = encode("9F5D", H("000000001000"))
    assert format_tlv(data, rid=RID_UNIONPAY).endswith("= 10.00")
    assert "=" not in format_tlv(data, rid=RID_MASTERCARD)


def test_pan_masked_by_default() -> None:
    data = encode_many([("5A", H("6234567890123456")), ("57", H("6234567890123456D30122010000000000000F"))])
    text = format_tlv(data)
    assert "6234567890123456" not in text and "7890" not in text
    assert text.count("623456******3456 (masked)") == 2
    clear = format_tlv(data, mask=False)
    assert "6234567890123456=30122010000000000000" in clear
    track1 = encode("56", b"B6234567890123456^ZHANG/SAN^3012201")
    assert "623456******3456 (masked)" in format_tlv(track1)


def test_mask_pan() -> None:
    assert mask_pan("6234567890123456789") == "623456*********6789"
    assert mask_pan("1234567890") == "**********"


def test_not_tlv_falls_back_to_hex_with_error() -> None:
    text = format_tlv(H("5A05"))
    assert text.splitlines()[0] == "5A05"
    assert "not BER-TLV" in text and "at offset 0" in text


def test_empty_input() -> None:
    assert format_tlv(b"") == "(no data objects)"
    assert format_dol(b"") == "(empty DOL)"


def test_format_dol() -> None:
    text = format_dol(H("9F66049F7A019F0206"), rid=RID_UNIONPAY)
    assert text.splitlines() == [
        "9F66 Terminal transaction qualifiers (TTQ) (4)",
        "9F7A EC terminal support indicator (1)",
        "9F02 Amount, authorised (numeric) (6)",
        "total 11 bytes",
    ]
    bad = format_dol(H("9F02"))
    assert "not a DOL" in bad and "at offset 2" in bad


def test_render_value_unknown_binary_is_none() -> None:
    assert render_value("DF7F", H("01")) is None
    assert render_value("9F02", H("0A0B0C0D0E0F")) is None  # not BCD: hex only
    assert render_value("50", b"\x01\x02") is None  # not printable


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_any_bytes_format_without_exception(data: bytes) -> None:
    assert format_tlv(data)
    assert format_tlv(data, rid=RID_UNIONPAY, mask=False)
    assert format_dol(data)


def test_bit_fields() -> None:
    assert render_value("82", H("7C00")) == (
        "SDA supported; DDA supported; cardholder verification supported; "
        "terminal risk management to be performed; issuer authentication supported"
    )
    assert render_value("95", H("8000008000")) == (
        "offline data authentication not performed; transaction exceeds floor limit"
    )
    assert render_value("95", bytes(5)) == "(none set)"
    assert render_value("95", bytes(4)) is None  # wrong length: hex only
    assert render_value("9B", H("E800")) == (
        "offline data authentication performed; cardholder verification performed; "
        "card risk management performed; terminal risk management performed"
    )
    assert render_value("9F66", H("28000000")) == "qPBOC/qVSDC supported; offline-only reader"
    assert render_value("9F6C", H("8000")) == "online PIN required"


def test_cid_details() -> None:
    assert render_value("9F27", H("40")) == "TC"
    assert render_value("9F27", H("00")) == "AAC"
    assert render_value("9F27", H("0A")) == "AAC, advice required, PIN try limit exceeded"


def test_cvm_list_and_results() -> None:
    cvm_list = H("0000000000000000410342031E031F00")
    assert render_value("8E", cvm_list) == (
        "X=0 Y=0: plaintext PIN verified by ICC if terminal supports the CVM, else next; "
        "enciphered PIN verified online if terminal supports the CVM, else next; "
        "signature if terminal supports the CVM; no CVM required always"
    )
    assert render_value("8E", H("0000")) is None
    assert render_value("9F34", H("1F0002")) == "no CVM required always: successful"


def test_pboc_iad_for_unionpay_only() -> None:
    # docs/card-profile.md §9: 07 DKI CVN 03 CVR(3) 01 ‖ 0A 01 EC balance (5) MAC (4)
    iad = H("07010103A00000010A010000001000AABBCCDD")
    assert render_value("9F10", iad, rid=RID_UNIONPAY) == (
        "DKI 01, CVN 01, CVR A00000 (first AC ARQC; second AC not requested), algorithm 01,"
        " EC balance 10.00, MAC AABBCCDD"
    )
    assert render_value("9F10", iad[:8], rid=RID_UNIONPAY) == (
        "DKI 01, CVN 01, CVR A00000 (first AC ARQC; second AC not requested), algorithm 01"
    )
    assert render_value("9F10", iad) is None  # other schemes lay out their IAD differently
    assert render_value("9F10", H("0601"), rid=RID_UNIONPAY) is None


# --- APDUs ----------------------------------------------------------------------------------------

CDOL1 = H("9F02069F03069F1A0295055F2A029A039C019F3704")
CDOL1_DATA = H("00000000015000000000000001560000000000015626112500A1B2C3D4")


def test_command_names() -> None:
    assert command_name(0x00, 0xB2, 1, 0x0C) == "READ RECORD"
    assert command_name(0x80, 0x50, 0x01, 0x02) == "INITIALIZE FOR PURCHASE"
    assert command_name(0x80, 0x50, 0x00, 0x02) == "INITIALIZE FOR LOAD"
    assert command_name(0x84, 0x24, 0x00, 0x01) == "PIN CHANGE"
    assert command_name(0x84, 0x24, 0x00, 0x00) == "PIN UNBLOCK"
    assert command_name(0x80, 0xDC, 0x00, 0x00) == "UPDATE CAPP DATA CACHE"
    assert command_name(0x00, 0x99, 0, 0) == "INS 99"


def test_format_select_and_read_record() -> None:
    assert format_command(H("00A404000E325041592E5359532E444446303100")) == (
        'SELECT "2PAY.SYS.DDF01"  [00A40400 Lc 14 Le 256]'
    )
    assert format_command(H("00A4040208A00000033301010100")) == (
        "SELECT A000000333010101 (next occurrence)  [00A40402 Lc 8 Le 256]"
    )
    assert format_command(H("00B2010C00")) == "READ RECORD SFI 1 record 1  [00B2010C Le 256]"
    assert format_command(H("80CA9F7900"), rid=RID_UNIONPAY) == "GET DATA 9F79 EC balance  [80CA9F79 Le 256]"


def test_format_generate_ac_with_cdol() -> None:
    raw = H("80AE80001D") + CDOL1_DATA + H("00")
    lines = format_command(raw, dol=CDOL1).splitlines()
    assert lines[0] == "GENERATE AC ARQC requested  [80AE8000 Lc 29 Le 256]"
    assert "  9F02 Amount, authorised (numeric): 000000000150 = 1.50" in lines
    assert "  9A Transaction date: 261125 = 2026-11-25" in lines
    assert len(lines) == 1 + 8
    # without the CDOL, or with one that does not fit, the data is shown as hex
    assert format_command(raw).splitlines()[1] == "  " + CDOL1_DATA.hex().upper()
    assert format_command(raw, dol=H("9F0206")).splitlines()[1] == "  " + CDOL1_DATA.hex().upper()


def test_format_gpo_data_as_tlv() -> None:
    text = format_command(H("80A80000028300") + H("00"))
    assert text.splitlines() == [
        "GET PROCESSING OPTIONS  [80A80000 Lc 2 Le 256]",
        "  83 Command template: (empty)",
    ]


def test_script_command_data_is_hex() -> None:
    # PUT DATA 9F79 under secure messaging: new balance (6) ‖ MAC (4), not TLV (docs/card-profile.md §9)
    text = format_command(H("84DA9F790A 000000010000 11223344"), rid=RID_UNIONPAY)
    assert text.splitlines() == ["PUT DATA 9F79 EC balance  [84DA9F79 Lc 10]", "  00000001000011223344"]


def test_pin_data_hidden() -> None:
    verify = H("0020008008241234FFFFFFFFFF")
    text = format_command(verify)
    assert "241234" not in text and "8 bytes of PIN data hidden" in text
    assert text.startswith("VERIFY plaintext PIN")
    assert "241234" not in format_command(verify, mask=False)  # unmasking shows PANs, never PINs
    assert command_hex(verify) == "0020008008 " + "*" * 16
    script = H("842400020C 0011223344556677 8899AABB")  # PIN CHANGE: enciphered PIN ‖ MAC
    assert command_hex(script) == "842400020C " + "*" * 24
    assert command_hex(H("00B2010C00")) == "00B2010C00"


def test_malformed_apdus() -> None:
    assert "not a command APDU" in format_command(H("00A4"))
    assert "not a response APDU" in format_response(H("90"))


def test_format_response() -> None:
    gpo = H("771682025880941008010100100101011801040020010200") + H("9000")
    lines = format_response(gpo).splitlines()
    assert lines[0] == "77 Response message template format 2 (22 bytes)"
    assert lines[-1] == "SW 9000 normal processing"
    assert format_response(H("6A82")) == "SW 6A82 file or application not found"
    assert format_response(H("63C2")) == "SW 63C2 verification failed, 2 tries left"
    assert format_response(H("0102039000")) == "010203\nSW 9000 normal processing"  # not TLV: hex


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_any_bytes_format_apdus_without_exception(raw: bytes) -> None:
    assert format_command(raw)
    assert format_command(raw, dol=CDOL1, rid=RID_UNIONPAY)
    assert format_response(raw)


def test_malformed_values_fall_back_to_hex() -> None:
    for tag, value in [
        ("9A", "26112A"),  # not BCD
        ("94", "080101"),  # AFL not a multiple of 4
        ("9F4D", "0B"),
        ("9F27", "8000"),
        ("9F34", "1F00"),
        ("8C", "9F02"),  # DOL truncated
    ]:
        assert render_value(tag, H(value)) is None, tag
    # a date of the wrong length is only shown as digits (here the same as its hex)
    assert render_value("9A", H("2611")) == "2611"
    assert format_tlv(encode("9A", H("2611"))) == "9A Transaction date: 2611"


def test_cn_and_empty_values() -> None:
    assert render_value("9F20", H("1234567FFF")) == "1234567"  # cn: trailing F dropped
    assert render_value("8C", b"") == "(empty)"
    assert format_tlv(encode("9F02", b"")) == "9F02 Amount, authorised (numeric): (empty)"


def test_gpo_data_not_tlv_is_hex() -> None:
    text = format_command(H("80A8000002 8305 00"))
    assert text.splitlines()[1] == "  8305"


@settings(max_examples=200)
@given(st.text("0123456789", min_size=13, max_size=19), st.binary(max_size=30))
def test_masked_output_never_shows_the_pan(pan: str, other: bytes) -> None:
    digits = pan + "F" * (len(pan) % 2)
    track2 = pan + "D3012220" + "0" * 5
    track2 += "F" * (len(track2) % 2)
    data = encode_many([("5A", H(digits)), ("9F10", other), ("57", H(track2))])
    record = encode("70", data)
    for text in (format_tlv(record), format_response(record + H("9000"))):
        assert pan not in text and digits not in text
        assert f"{pan[:6]}{'*' * (len(pan) - 10)}{pan[-4:]} (masked)" in text


def test_pin_data_hidden_in_a_malformed_command() -> None:
    """A VERIFY whose Lc does not match its data is still a PIN: the trace of a command that does not parse
    shows its header only, like :func:`command_hex`."""
    text = format_command(H("0020008008241234FFFF"))
    assert "241234" not in text and text.startswith("0020008008 ") and "not a command APDU" in text
