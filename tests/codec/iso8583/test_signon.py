"""Field 62 of the sign-on answer: PIK under TMK (16) || KCV (4) || MAK under TMK (16) || KCV (4), both ways,
with the HSM's working keys; anything else is a typed error for field 62."""

from __future__ import annotations

import pytest

from citycard.codec.iso8583 import (
    Iso8583Error,
    NetworkManagementResponse,
    ResponseCode,
    SignOnKeys,
    SignOnKeysError,
    Tpdu,
    decode_framed,
    encode_framed,
)
from citycard.codec.iso8583.messages import Field60
from citycard.hsm import KeyUsage
from citycard.hsm.soft import SoftHsm

TMK = [bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes.fromhex("11" * 16)]


def test_the_keys_made_at_the_host_travel_in_an_0810_and_import_at_the_terminal() -> None:
    host, terminal = SoftHsm(b"\x01" * 32), SoftHsm(b"\x02" * 32)
    for hsm in (host, terminal):
        hsm.import_components("tmk", KeyUsage.KEK, TMK)
    pik = host.generate_working_key("pik", host.get("tmk"), KeyUsage.PIN_ENCRYPTION)
    mak = host.generate_working_key("mak", host.get("tmk"), KeyUsage.MAC_X9_19)
    keys = SignOnKeys(pik.encrypted, pik.check_value, mak.encrypted, mak.check_value)
    assert len(keys.encode()) == 40
    assert keys.encode() == pik.encrypted + pik.check_value + mak.encrypted + mak.check_value
    answer = NetworkManagementResponse(
        mti="0810",
        stan=1,
        response_code=ResponseCode.APPROVED,
        terminal_id="10000019",
        merchant_id="850100082410002",
        field60=Field60("00", 1, "003"),
        private62=keys.encode(),
    )
    _, received = decode_framed(encode_framed(answer, Tpdu(1, 6)))
    assert received.private62 is not None
    got = SignOnKeys.decode(received.private62)
    assert got == keys
    imported = terminal.import_working_key(
        "mak", terminal.get("tmk"), KeyUsage.MAC_X9_19, got.mak_under_tmk, got.mak_check_value
    )
    assert terminal.pos_mac(imported, b"\x00" * 16) == host.pos_mac(mak.handle, b"\x00" * 16)
    assert "mak_kcv=" + mak.check_value.hex().upper() in repr(keys)
    assert pik.encrypted.hex().upper() not in repr(keys)


@pytest.mark.parametrize("size", [0, 1, 20, 39, 41, 80])
def test_a_field_62_of_another_size_is_a_typed_error_naming_field_62(size: int) -> None:
    with pytest.raises(SignOnKeysError) as caught:
        SignOnKeys.decode(bytes(size))
    assert isinstance(caught.value, Iso8583Error) and caught.value.field == "62"
    assert str(size) in str(caught.value)


def test_a_part_of_the_wrong_size_is_refused_at_construction() -> None:
    with pytest.raises(SignOnKeysError, match="MAK check value must be 4 bytes"):
        SignOnKeys(bytes(16), bytes(4), bytes(16), bytes(3))
