"""The card commands built once (citycard.codec.commands): the well-known bytes of each, the same bytes the
kernel built by hand before, and a refusal of what does not fit a short APDU."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.codec import commands
from citycard.codec.apdu import ApduError, CommandApdu, Ins
from citycard.codec.pretty import command_name

H = bytes.fromhex


def test_the_commands_every_emv_trace_shows() -> None:
    """Known answers, as EMV 4.3 Book 1 §11-12 and Book 3 §6.5 lay them out and every published EMV trace
    shows them: the PSE's SELECT, a GPO with an empty PDOL, the first record of SFI 1, the ATC's GET DATA."""
    assert commands.select(b"1PAY.SYS.DDF01") == H("00A404000E315041592E5359532E444446303100")
    assert commands.select(H("A000000333010101"), next_occurrence=True) == H("00A4040208A00000033301010100")
    assert commands.get_processing_options(b"") == H("80A8000002830000")
    assert commands.read_record(1, 1) == H("00B2010C00")
    assert commands.read_record(11, 10) == H("00B20A5C00")  # the PBOC transaction log, SFI 11 (0B)
    assert commands.get_data("9F36") == H("80CA9F3600")
    assert commands.get_data("9F79") == H("80CA9F7900")  # the EC balance
    assert commands.get_challenge() == H("0084000008")
    assert commands.get_response(0x1C) == H("00C000001C")
    assert commands.get_response(0) == H("00C0000000")  # 61 00: 256 bytes


@given(st.binary(min_size=1, max_size=255), st.sampled_from([0x00, 0x40, 0x80, 0x50, 0x90]))
def test_the_commands_are_the_bytes_the_kernel_built_by_hand(data: bytes, p1: int) -> None:
    n = bytes((len(data),))
    assert commands.generate_ac(p1, data) == bytes((0x80, 0xAE, p1, 0x00)) + n + data + b"\x00"
    assert commands.internal_authenticate(data) == H("00880000") + n + data + b"\x00"
    assert commands.external_authenticate(data) == H("00820000") + n + data
    assert commands.verify(0x88, data) == H("00200088") + n + data
    assert commands.update_capp_data_cache(21, 2, data) == H("80DE02AC") + n + data
    assert CommandApdu.parse(commands.generate_ac(p1, data)) == CommandApdu(
        0x80, Ins.GENERATE_AC, p1, 0, data, 256
    )


def test_what_does_not_fit_a_short_apdu_is_refused_not_sent_extended() -> None:
    with pytest.raises(ApduError, match="GENERATE AC: 256 bytes of data"):
        commands.generate_ac(0x80, bytes(256))
    with pytest.raises(ApduError):  # 83 81 FD and 253 bytes: 256
        commands.get_processing_options(bytes(253))
    assert len(commands.get_processing_options(bytes(252))) == 5 + 255 + 1


def test_the_instruction_names_are_the_pretty_printer_s() -> None:
    assert command_name(0x80, Ins.GENERATE_AC, 0x80, 0x00) == "GENERATE AC"
    assert command_name(0x80, Ins.UPDATE_CAPP_DATA_CACHE, 0x02, 0xAC) == "UPDATE CAPP DATA CACHE"
    assert command_name(0x84, Ins.PIN_CHANGE_UNBLOCK, 0x00, 0x00) == "PIN UNBLOCK"
    assert Ins.GET_PROCESSING_OPTIONS.label == "GET PROCESSING OPTIONS"
