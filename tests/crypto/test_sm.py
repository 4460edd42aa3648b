"""SM3 / SM4 tests (GB/T 32905-2016, GB/T 32907-2016) and the SM4 variants of the card functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.crypto.cryptograms import ec_load_script, generate_ac, verify_ac, verify_script_mac
from citycard.crypto.derivation import icc_mk_a_input
from citycard.crypto.sm import (
    Algorithm,
    derive_icc_mk,
    derive_session_key,
    mac,
    sm3,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
    sm4_mac,
)

SM4_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_sm3_reference_vector() -> None:
    # REFERENCE.md: GB/T 32905-2016 example 1.
    assert sm3(b"abc").hex().upper() == "66C7F0F462EEEDD9D1F2D46BDC10E4E24167C4875CF2F7A2297DA02B8F4BA8E0"


def test_sm3_standard_example_2() -> None:
    # GB/T 32905-2016 example 2: "abcd" repeated 16 times (512 bits).
    assert sm3(b"abcd" * 16).hex() == "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"


def test_sm4_standard_example_1() -> None:
    # GB/T 32907-2016 appendix A example 1: key = plaintext = 0123456789ABCDEFFEDCBA9876543210.
    assert sm4_ecb_encrypt(SM4_KEY, SM4_KEY).hex().upper() == "681EDF34D206965E86B3E94F536E4246"
    assert sm4_ecb_decrypt(SM4_KEY, bytes.fromhex("681EDF34D206965E86B3E94F536E4246")) == SM4_KEY


def test_sm4_standard_example_2() -> None:
    # GB/T 32907-2016 appendix A example 2: the same plaintext enciphered 1,000,000 times.
    block = SM4_KEY
    for _ in range(1_000_000):
        block = sm4_ecb_encrypt(SM4_KEY, block)
    assert block.hex().upper() == "595298C7C6FD271F0402F804C33D3F66"


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=96).map(lambda b: b[: len(b) // 16 * 16]))
def test_sm4_cbc_round_trip(key: bytes, data: bytes) -> None:
    assert sm4_cbc_decrypt(key, sm4_cbc_encrypt(key, data)) == data


def test_sm4_cbc_first_block_is_ecb_with_zero_iv() -> None:
    data = SM4_KEY + bytes(16)
    assert sm4_cbc_encrypt(SM4_KEY, data)[:16] == sm4_ecb_encrypt(SM4_KEY, SM4_KEY)


def test_sm4_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        sm4_ecb_encrypt(SM4_KEY[:8], bytes(16))
    with pytest.raises(ValueError):
        sm4_ecb_encrypt(SM4_KEY, bytes(15))


def test_sm4_mac_is_cbc_mac_with_method_2_padding() -> None:
    data = bytes(range(20))
    padded = data + b"\x80" + bytes(11)
    assert sm4_mac(SM4_KEY, data) == sm4_cbc_encrypt(SM4_KEY, padded)[-16:][:8]
    assert mac(Algorithm.SM4, SM4_KEY, data, length=4) == sm4_mac(SM4_KEY, data)[:4]
    assert sm4_mac(SM4_KEY, data) != sm4_mac(SM4_KEY, data + b"\x00")


def test_algorithm_from_iad() -> None:
    assert Algorithm.from_iad(bytes.fromhex("07010103A00000040A")) is Algorithm.SM4
    assert Algorithm.from_iad(bytes.fromhex("07000103A03002010A")) is Algorithm.TDES
    with pytest.raises(ValueError):
        Algorithm.from_iad(bytes.fromhex("07000103A03002"))


def test_tdes_selector_is_the_pboc_derivation() -> None:
    # REFERENCE.md option-A vector through the selector.
    udk = derive_icc_mk(Algorithm.TDES, SM4_KEY, "12345678901234567", "01")
    assert udk.hex().upper() == "73AD54688CEF2934B0979857E3C719F1"


def test_sm4_card_and_issuer_agree() -> None:
    udk = derive_icc_mk(Algorithm.SM4, SM4_KEY, "6228480000000000001", "00")
    y = icc_mk_a_input("6228480000000000001", "00")
    assert y == bytes.fromhex("8000000000000100")
    assert udk == sm4_ecb_encrypt(SM4_KEY, y + bytes(b ^ 0xFF for b in y))
    sk = derive_session_key(Algorithm.SM4, udk, 5)
    assert sk != derive_session_key(Algorithm.SM4, udk, 6)
    data = bytes(33)
    ac = generate_ac(sk, data, algorithm=Algorithm.SM4)
    assert len(ac) == 8 and ac != generate_ac(sk, data)
    assert verify_ac(sk, data, ac, algorithm=Algorithm.SM4)
    assert not verify_ac(sk, data, ac)
    cmd = ec_load_script(sk, 5, ac, 1000, algorithm=Algorithm.SM4)
    assert verify_script_mac(sk, cmd, 5, ac, algorithm=Algorithm.SM4)
    assert not verify_script_mac(sk, cmd, 5, ac)
