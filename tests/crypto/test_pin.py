"""PIN block tests (ISO 9564-1 format 0; EMV Book 3 §6.5.12; EMV Book 2 §7, §9.3; VIS / PBOC PIN change)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.crypto.derivation import derive_common_session_key, derive_icc_mk_a
from citycard.crypto.des import kcv, xor
from citycard.crypto.pin import (
    PinBlockError,
    PinChangeFormat,
    decipher_offline_pin,
    decrypt_pin_change_data,
    encipher_offline_pin,
    encrypt_pin_change_data,
    pin_block_iso0,
    pin_from_iso0,
    pin_from_offline_block,
    plaintext_offline_pin_block,
)
from citycard.crypto.rsa_cert import RsaKey

pins = st.text(alphabet="0123456789", min_size=4, max_size=12)


def test_iso0_reference_vector() -> None:
    # REFERENCE.md: ISO 9564-1; openemv/pinblock tests.
    block = pin_block_iso0("1234", "4012345678909")
    assert block.hex().upper() == "041274EDCBA9876F"
    assert pin_from_iso0(block, "4012345678909") == "1234"


def test_iso0_public_worked_example() -> None:
    # ANSI X9.8 worked example (blog.csdn.net "PINBLOCK计算方法"): PIN 123456, PAN 1234567890123456.
    assert pin_block_iso0("123456", "1234567890123456").hex().upper() == "0612713176FEDCBA"


@given(pins, st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_iso0_round_trip(pin: str, pan: str) -> None:
    assert pin_from_iso0(pin_block_iso0(pin, pan), pan) == pin


@pytest.mark.parametrize("pin", ["123", "1234567890123", "12a4", "١٢٣٤"])
def test_bad_pins_rejected(pin: str) -> None:
    with pytest.raises(PinBlockError):
        pin_block_iso0(pin, "4012345678909")
    with pytest.raises(PinBlockError):
        plaintext_offline_pin_block(pin)


def test_iso0_wrong_pan_does_not_yield_the_pin() -> None:
    block = pin_block_iso0("1234", "4012345678909")
    with pytest.raises(PinBlockError):
        pin_from_iso0(block, "4012345678918")


@pytest.mark.parametrize(
    "block",
    ["141234FFFFFFFFFF", "031234FFFFFFFFFF", "04123AFFFFFFFFFF", "041234FFFFFFFF0F", "041234FFFFFFFF"],
)
def test_iso0_malformed_blocks(block: str) -> None:
    pan_field = bytes.fromhex("0000" + "401234567890")
    raw = bytes.fromhex(block)
    with pytest.raises(PinBlockError):
        pin_from_iso0(xor(raw, pan_field) if len(raw) == 8 else raw, "4012345678909")


def test_offline_block_pyemv_vectors() -> None:
    # pyemv tests/test_sm_hsm.py: ISO format 2 blocks for 9999 and 999999999999.
    assert plaintext_offline_pin_block("9999").hex().upper() == "249999FFFFFFFFFF"
    assert plaintext_offline_pin_block("999999999999").hex().upper() == "2C999999999999FF"


@given(pins)
def test_offline_block_round_trip(pin: str) -> None:
    assert pin_from_offline_block(plaintext_offline_pin_block(pin)) == pin


def test_offline_block_rejects_format_0() -> None:
    with pytest.raises(PinBlockError):
        pin_from_offline_block(bytes.fromhex("041234FFFFFFFFFF"))


@pytest.fixture(scope="module")
def pin_key() -> RsaKey:
    return RsaKey.generate(1024, 3)


def _counter_rnd(k: int) -> bytes:
    return bytes(i % 251 for i in range(k))


def test_offline_pin_encipherment_round_trip(pin_key: RsaKey) -> None:
    # EMV Book 2 §7.1–7.2: 7F ‖ PIN block ‖ ICC UN ‖ random pad, raw RSA.
    un = bytes.fromhex("0102030405060708")
    enc = encipher_offline_pin("4321", un, pin_key.n, pin_key.e, _counter_rnd)
    assert len(enc) == 128
    assert pow(int.from_bytes(enc, "big"), pin_key.d, pin_key.n).to_bytes(128, "big") == (
        b"\x7f" + bytes.fromhex("244321FFFFFFFFFF") + un + _counter_rnd(111)
    )
    assert decipher_offline_pin(enc, pin_key, un) == "4321"


def test_offline_pin_wrong_challenge_or_garbage(pin_key: RsaKey) -> None:
    un = bytes.fromhex("0102030405060708")
    enc = encipher_offline_pin("4321", un, pin_key.n, pin_key.e, _counter_rnd)
    with pytest.raises(PinBlockError):
        decipher_offline_pin(enc, pin_key, bytes(8))
    with pytest.raises(PinBlockError):
        decipher_offline_pin(bytes(127) + b"\x05", pin_key, un)
    with pytest.raises(PinBlockError):
        decipher_offline_pin(b"\xff" * 128, pin_key, un)
    with pytest.raises(PinBlockError):
        decipher_offline_pin(enc[1:], pin_key, un)


# pyemv tests/test_sm_hsm.py vectors. SMC master key from IMK 1111…2222, PAN 1234567890123456, PSN 01.
PAN, PSN = "1234567890123456", "01"


def _smc_mk() -> bytes:
    mk = derive_icc_mk_a(bytes.fromhex("11111111111111112222222222222222"), PAN, PSN)
    assert kcv(mk).hex().upper() == "6B0F76"
    return mk


def test_pin_change_emv_ccd_pyemv_vector() -> None:
    # pyemv test_ccd_pin_change: common SK with R ABCDEF1234567890 (KCV D694B8).
    sk = derive_common_session_key(_smc_mk(), bytes.fromhex("ABCDEF1234567890"))
    assert kcv(sk).hex().upper() == "D694B8"
    data = encrypt_pin_change_data(sk, "9999")
    assert data.hex().upper() == "28367E05DE3381C29D30A6055A8DEB86"
    assert decrypt_pin_change_data(sk, data) == "9999"


def test_pin_change_iso2_ecb_pyemv_mastercard_vector() -> None:
    # pyemv test_mastercard_pin_change(_12): format-2 block, ECB, no padding.
    sk = derive_common_session_key(_smc_mk(), bytes.fromhex("ABCDEF1234567890"))
    for pin, expected in (("9999", "28367E05DE3381C2"), ("999999999999", "99AD3AF9EB3ECF0C")):
        data = encrypt_pin_change_data(sk, pin, pin_format=PinChangeFormat.ISO2_ECB)
        assert data.hex().upper() == expected
        assert decrypt_pin_change_data(sk, data, pin_format=PinChangeFormat.ISO2_ECB) == pin
    with pytest.raises(PinBlockError):
        decrypt_pin_change_data(sk, bytes(8), pin_format=PinChangeFormat.ISO2_ECB)


def _visa_sk() -> bytes:
    # VIS session key for ATC FFFF: MK xor (0…0‖ATC ‖ 0…0‖(ATC xor FFFF)); pyemv KCV BD7C46 checks it.
    sk = xor(_smc_mk(), bytes(6) + b"\xff\xff" + bytes(8))
    assert kcv(sk).hex().upper() == "BD7C46"
    return sk


def _udk_ac() -> bytes:
    udk = derive_icc_mk_a(bytes.fromhex("FEDCBA98765432100123456789ABCDEF"), PAN, PSN)
    assert kcv(udk).hex().upper() == "C5CACD"
    return udk


@pytest.mark.parametrize(
    ("new", "current", "expected"),
    [
        ("9999", None, "D421231A6FD2F0FAEE671384F0D3A7B9"),  # test_vis_pin_change
        ("9999", "8888", "C29371CC36BA70C1EE671384F0D3A7B9"),  # test_vis_change_change_current_pin
        ("999999999999", "888888888888", "622066A74F1E974AEE671384F0D3A7B9"),  # ..._current_pin_12
    ],
)
def test_pin_change_pboc_vis_pyemv_vectors(new: str, current: str | None, expected: str) -> None:
    sk, udk = _visa_sk(), _udk_ac()
    data = encrypt_pin_change_data(sk, new, current, udk_ac=udk)
    assert data.hex().upper() == expected
    assert decrypt_pin_change_data(sk, data, current, udk_ac=udk) == new


def test_pin_change_wrong_current_pin_is_detected_or_differs() -> None:
    sk, udk = _visa_sk(), _udk_ac()
    data = encrypt_pin_change_data(sk, "9999", "8888", udk_ac=udk)
    with pytest.raises(PinBlockError):  # 8888 vs 1111 flips the PIN nibbles into non-decimal values
        decrypt_pin_change_data(sk, data, "1111", udk_ac=udk)


def test_pin_change_rejects() -> None:
    sk, udk = _visa_sk(), _udk_ac()
    with pytest.raises(ValueError):
        encrypt_pin_change_data(sk, "9999", "8888")
    with pytest.raises(ValueError):
        encrypt_pin_change_data(sk, "9999", pin_format=PinChangeFormat.PBOC_VIS)
    with pytest.raises(PinBlockError):
        decrypt_pin_change_data(sk, bytes(16), udk_ac=udk)
    with pytest.raises(PinBlockError):
        decrypt_pin_change_data(sk, bytes(8), udk_ac=udk)


@given(pins, st.one_of(st.none(), pins))
def test_pin_change_round_trip(new: str, current: str | None) -> None:
    sk = bytes(range(16))
    udk = bytes(range(16, 32))
    data = encrypt_pin_change_data(sk, new, current, udk_ac=udk)
    assert decrypt_pin_change_data(sk, data, current, udk_ac=udk) == new


def test_iso1_round_trip_carries_no_pan() -> None:
    from citycard.crypto.pin import pin_block_iso1, pin_from_iso1

    block = pin_block_iso1("246810", bytes.fromhex("A1B2C3D4E5F60718"))
    assert block.hex().upper() == "16246810A1B2C3D4"
    assert pin_from_iso1(block) == "246810"
    for bad in ("06246810A1B2C3D4", "13246810A1B2C3D4", "1424A6810A1B2C3D"[:16]):
        with pytest.raises(PinBlockError):
            pin_from_iso1(bytes.fromhex(bad))
    with pytest.raises(ValueError):
        pin_block_iso1("246810", bytes(6))
