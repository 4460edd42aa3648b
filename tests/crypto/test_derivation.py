"""Key derivation known-answer tests (EMV Book 2 A1.3, A1.4.1; PBOC 2.0 JR/T 0025.7)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from citycard.crypto import des
from citycard.crypto.derivation import (
    derive_common_session_key,
    derive_icc_mk_a,
    derive_icc_mks_a,
    derive_pboc_session_key,
    derive_pboc_session_keys,
    icc_mk_a_input,
)
from citycard.crypto.des import check_parity

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_icc_mk_a_reference_vector() -> None:
    # REFERENCE.md: EMV Book 2 A1.4.1; pyemv kd.derive_icc_mk_a docstring.
    assert derive_icc_mk_a(IMK, "12345678901234567", "01").hex().upper() == "73AD54688CEF2934B0979857E3C719F1"


def test_icc_mk_a_pyemv_module_docstring_vector() -> None:
    # pyemv kd module docstring: PAN 99012345678901234, PSN 45.
    assert derive_icc_mk_a(IMK, "99012345678901234", "45").hex().upper() == "67F8292358083E5EA7AB7FDA58D53B6B"


def test_icc_mk_a_input_layout() -> None:
    # Book 2 A1.4.1: rightmost 16 digits of PAN‖PSN, zero padded on the left when shorter.
    assert icc_mk_a_input("4012345678909", "01") == bytes.fromhex("0401234567890901")
    assert icc_mk_a_input("12345678901234567", "01") == bytes.fromhex("4567890123456701")
    assert icc_mk_a_input("123456", "00") == bytes.fromhex("0000000012345600")
    assert icc_mk_a_input("6222021234567890123F", "00") == icc_mk_a_input("6222021234567890123", "00")


@pytest.mark.parametrize(("pan", "psn"), [("12A4", "00"), ("", "00"), ("1234", "1"), ("1234", "AB")])
def test_icc_mk_a_input_rejects_bad_digits(pan: str, psn: str) -> None:
    with pytest.raises(ValueError):
        icc_mk_a_input(pan, psn)


def test_common_session_key_reference_vector() -> None:
    # REFERENCE.md: EMV Book 2 A1.3; pyemv kd.derive_common_sk docstring.
    sk = derive_common_session_key(IMK, bytes.fromhex("001C000000000000"))
    assert sk.hex().upper() == "E9FB384AF807B940FEDCEA613461B0C4"


def _tdes(key: bytes, block: bytes) -> bytes:
    """An independent 3DES-ECB straight from `cryptography`, to cross-check the PBOC formula."""
    enc = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _odd(key: bytes) -> bytes:
    return bytes(b ^ (0 if bin(b).count("1") % 2 else 1) for b in key)


@given(st.binary(min_size=16, max_size=16), st.integers(0, 0xFFFF))
def test_pboc_session_key_formula(udk: bytes, atc: int) -> None:
    # JR/T 0025.7 / REFERENCE.md: SK = 3DES(UDK, 0…0‖ATC) ‖ 3DES(UDK, 0…0‖(ATC xor FFFF)).
    left = _tdes(udk, bytes(6) + atc.to_bytes(2, "big"))
    right = _tdes(udk, bytes(6) + (atc ^ 0xFFFF).to_bytes(2, "big"))
    sk = derive_pboc_session_key(udk, atc)
    assert sk == _odd(left + right)
    assert check_parity(sk)


def test_pboc_session_key_differs_per_atc() -> None:
    udk = derive_icc_mk_a(IMK, "6228480000000000001", "00")
    assert derive_pboc_session_key(udk, 1) != derive_pboc_session_key(udk, 2)


@pytest.mark.parametrize("atc", [-1, 0x10000])
def test_pboc_session_key_rejects_bad_atc(atc: int) -> None:
    with pytest.raises(ValueError):
        derive_pboc_session_key(IMK, atc)
    with pytest.raises(ValueError, match=f"ATC {atc} "):
        derive_pboc_session_keys(IMK, [1, atc, 2])


@given(st.binary(min_size=16, max_size=16), st.lists(st.integers(0, 0xFFFF), max_size=40))
def test_pboc_session_keys_of_a_card_are_its_session_keys_one_by_one(udk: bytes, atcs: list[int]) -> None:
    assert derive_pboc_session_keys(udk, atcs) == [derive_pboc_session_key(udk, atc) for atc in atcs]


def test_derivations_reject_short_keys() -> None:
    with pytest.raises(ValueError):
        derive_pboc_session_keys(IMK[:8], [1])
    with pytest.raises(ValueError):
        derive_icc_mk_a(IMK[:8], "1234", "00")
    with pytest.raises(ValueError):
        derive_common_session_key(IMK, bytes(7))


def test_icc_mks_a_reference_vectors_in_one_call() -> None:
    # REFERENCE.md (EMV Book 2 A1.4.1; pyemv kd.derive_icc_mk_a docstring) and the pyemv kd module
    # docstring's vector, derived together in one pass under the IMK
    assert [
        k.hex().upper()
        for k in derive_icc_mks_a(IMK, [("12345678901234567", "01"), ("99012345678901234", "45")])
    ] == [
        "73AD54688CEF2934B0979857E3C719F1",
        "67F8292358083E5EA7AB7FDA58D53B6B",
    ]
    assert derive_icc_mks_a(IMK, []) == []


_pans = st.text("0123456789", min_size=1, max_size=19).map(lambda pan: pan + "F" * (len(pan) % 2))
_psns = st.text("0123456789", min_size=2, max_size=2)


@given(st.binary(min_size=16, max_size=16), st.lists(st.tuples(_pans, _psns), max_size=30))
def test_icc_mks_a_are_the_cards_master_keys_one_by_one(imk: bytes, cards: list[tuple[str, str]]) -> None:
    assert derive_icc_mks_a(imk, cards) == [derive_icc_mk_a(imk, pan, psn) for pan, psn in cards]


@pytest.mark.parametrize(("pan", "psn"), [("12A4", "00"), ("", "00"), ("1234", "1"), ("1" * 20, "00")])
def test_icc_mks_a_name_the_bad_card_and_encipher_nothing(
    pan: str, psn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enciphered: list[bytes] = []
    real = des._contexts.get

    class Spy:
        def __init__(self, ctx: object) -> None:
            self.ctx = ctx

        def update(self, data: bytes) -> bytes:
            enciphered.append(data)
            return self.ctx.update(data)  # type: ignore[attr-defined, no-any-return]

    monkeypatch.setattr("citycard.crypto.derivation._context", lambda key, decrypt: Spy(real(key, decrypt)))
    with pytest.raises(ValueError, match=r"^card 1: P"):
        derive_icc_mks_a(IMK, [("6222021234567890128", "01"), (pan, psn), ("6222021234567890136", "00")])
    assert enciphered == []
    with pytest.raises(ValueError, match="16-byte"):
        derive_icc_mks_a(IMK[:8], [("1234", "00")])


def test_pboc_session_keys_keep_no_context_of_the_udk() -> None:
    udk = derive_icc_mk_a(IMK, "6228480000000000019", "00")
    expected = [derive_pboc_session_key(udk, atc) for atc in (4, 5)]  # this one keeps the UDK's context
    des._contexts._encryptors.pop(udk)
    before = dict(des._contexts._encryptors)
    assert derive_pboc_session_keys(udk, [4, 5]) == expected
    assert des._contexts._encryptors == before  # a card's UDK is used once a day: not put in the LRU
