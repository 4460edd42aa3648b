"""Field 64 MAC of the UnionPay POS profile: known answers through the one MAC implementation, and the
MAC block (MTI to field 63) chosen by the codec."""

from __future__ import annotations

import pytest

from citycard.codec.iso8583 import (
    Iso8583Error,
    RawMessage,
    decode_message,
    encode_message,
    mac_block,
    mac_matches,
    with_mac,
)
from citycard.crypto.mac import mac_alg1
from citycard.crypto.pos_mac import PosMacAlgorithm, pos_mac

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


@pytest.mark.parametrize(
    ("text", "first4"),
    [(b"Now is the time for all ", "A1C72E74"), (b"Now is the time for it", "2E2B1428")],
)
def test_x9_19_reproduces_the_retail_mac_vectors_of_reference_md(text: bytes, first4: str) -> None:
    # REFERENCE.md: retail MAC, ISO 9797-1 alg 3, padding 1 (ISO 9797-1 Annex B; openemv tests)
    assert pos_mac(KEY, text)[:4].hex().upper() == first4


def test_alg1_is_cbc_mac_with_zero_padding_under_the_key_as_given() -> None:
    single = KEY[:8]
    assert pos_mac(single, b"Now is the time for it", PosMacAlgorithm.ISO9797_1_ALG1) == mac_alg1(
        single, b"Now is the time for it\x00\x00", padding=1
    )


def sign_on(mac: bytes = bytes(8)) -> bytes:
    fields = {11: "000001", 41: "12345678", 42: "123456789012345", 60: "00000001003", 64: mac}
    return encode_message(RawMessage("0800", fields))


def test_the_mac_block_runs_from_the_mti_to_the_end_of_field_63() -> None:
    message = sign_on()
    assert mac_block(message) == message[:-8] and mac_block(message)[:2] == b"\x08\x00"
    assert mac_block(message)[2 + 7] & 1  # bit 64 is set in the bitmap that the MAC covers


def test_a_signed_message_verifies_and_any_change_breaks_it() -> None:
    compute = lambda block: pos_mac(KEY, block)  # noqa: E731
    signed = with_mac(sign_on(), compute)
    assert decode_message(signed).fields[64] == pos_mac(KEY, signed[:-8])
    assert mac_matches(signed, compute)
    tampered = signed[:12] + bytes([signed[12] ^ 0x01]) + signed[13:]  # one bit of the STAN
    assert not mac_matches(tampered, compute)
    assert not mac_matches(signed, lambda block: pos_mac(bytes(16), block))


def test_a_message_without_field_64_has_no_mac_block() -> None:
    without = encode_message(RawMessage("0800", {11: "000001", 41: "12345678", 42: "123456789012345"}))
    with pytest.raises(Iso8583Error, match="field 64"):
        mac_block(without)
