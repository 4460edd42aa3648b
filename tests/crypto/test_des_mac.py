"""DES/3DES wrapper and ISO/IEC 9797-1 MAC tests (FIPS 81, ISO 9797-1 Annex B, pyemv)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from citycard.crypto import des
from citycard.crypto.cryptograms import arpc_method1
from citycard.crypto.des import (
    _Retail,
    adjust_parity,
    cbc_decrypt,
    cbc_encrypt,
    check_parity,
    ecb_decrypt,
    ecb_encrypt,
    ecb_encrypt_once,
    kcv,
    xor,
)
from citycard.crypto.mac import mac_alg1, mac_alg3, mac_alg3_once, pad, pad_method1, pad_method2

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
blocks = st.integers(0, 6).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n))


def test_des_fips81_example() -> None:
    # FIPS 81 appendix B: key 0123456789ABCDEF, "Now is t" → 3FA40E8A984D4815.
    key = bytes.fromhex("0123456789ABCDEF")
    assert ecb_encrypt(key, b"Now is t").hex().upper() == "3FA40E8A984D4815"
    assert ecb_decrypt(key, bytes.fromhex("3FA40E8A984D4815")) == b"Now is t"


def test_fips81_cbc_example() -> None:
    # FIPS 81 appendix C: CBC, IV 1234567890ABCDEF, "Now is the time for all ".
    out = cbc_encrypt(
        bytes.fromhex("0123456789ABCDEF"), b"Now is the time for all ", bytes.fromhex("1234567890ABCDEF")
    )
    assert out.hex().upper() == "E5C7CDDE872BF27C43E934008C389C0F683788499A7C05F6"


def test_kcv_pyemv_vector() -> None:
    # pyemv tests: key_check_digits(0123456789ABCDEFFEDCBA9876543210, 3) = 08D7B4.
    assert kcv(KEY).hex().upper() == "08D7B4"
    assert kcv(KEY, 2).hex().upper() == "08D7"


@given(st.sampled_from([8, 16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)), blocks)
def test_round_trips(key: bytes, data: bytes) -> None:
    assert ecb_decrypt(key, ecb_encrypt(key, data)) == data
    assert cbc_decrypt(key, cbc_encrypt(key, data)) == data


def test_double_length_key_with_equal_halves_is_single_des() -> None:
    single = bytes.fromhex("0123456789ABCDEF")
    assert ecb_encrypt(single * 2, b"Now is t") == ecb_encrypt(single, b"Now is t")


def test_bad_lengths() -> None:
    with pytest.raises(ValueError):
        ecb_encrypt(KEY[:7], bytes(8))
    with pytest.raises(ValueError):
        ecb_encrypt(KEY, bytes(7))


@given(st.binary(max_size=32))
def test_parity(key: bytes) -> None:
    fixed = adjust_parity(key)
    assert check_parity(fixed)
    assert all(a & 0xFE == b & 0xFE for a, b in zip(key, fixed, strict=True))
    assert check_parity(key) == (fixed == key)


def test_xor() -> None:
    assert xor(b"\x0f\xf0", b"\xff\xff") == b"\xf0\x0f"


def test_padding_methods() -> None:
    assert pad_method1(b"") == bytes(8)
    assert pad_method1(bytes(8)) == bytes(8)
    assert pad_method1(b"\x01") == b"\x01" + bytes(7)
    assert pad_method2(bytes(8)) == bytes(8) + b"\x80" + bytes(7)
    assert pad_method2(b"\x01") == b"\x01\x80" + bytes(6)
    assert pad(b"\x01", 2) == pad_method2(b"\x01")
    with pytest.raises(ValueError):
        pad(b"", 3)


@pytest.mark.parametrize(
    ("text", "expected"), [(b"Now is the time for all ", "A1C72E74"), (b"Now is the time for it", "2E2B1428")]
)
def test_retail_mac_reference_vectors(text: bytes, expected: str) -> None:
    # REFERENCE.md: ISO 9797-1 Annex B; openemv crypto tests. Algorithm 3, padding 1.
    assert mac_alg3(KEY, text, padding=1, length=4).hex().upper() == expected


@given(st.binary(max_size=64))
def test_mac_alg3_is_alg1_with_a_3des_final_block(data: bytes) -> None:
    # Algorithm 3 = single-DES CBC-MAC under K1, last block 3DES: with K1 = K2 it is single-DES algorithm 1.
    k1 = KEY[:8]
    assert mac_alg3(k1 * 2, data) == mac_alg1(k1, data)


def test_mac_alg3_needs_double_length_key() -> None:
    with pytest.raises(ValueError):
        mac_alg3(KEY[:8], b"data")


def _in_threads(work: Callable[[], None], n: int) -> list[str]:
    """Run ``work`` in ``n`` threads at once; what each raised (an assertion or an error), in no order."""
    errors: list[str] = []

    def guarded() -> None:
        try:
            work()
        except Exception as exc:  # collected for the caller to assert
            errors.append(repr(exc))

    threads = [threading.Thread(target=guarded) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_cached_contexts_are_safe_across_threads() -> None:
    # A shared `cryptography` context raises "Already borrowed" when two threads update it at once
    # (large updates release the GIL); the caches are per thread.
    key, data = bytes(range(16)), bytes(range(256)) * 128
    expected = ecb_encrypt(key, data)

    def work() -> None:
        for _ in range(100):
            assert ecb_encrypt(key, data) == expected
            assert ecb_decrypt(key, expected) == data

    assert _in_threads(work, 6) == []


def _alg3_reference(key: bytes, data: bytes, padding: int) -> bytes:
    """ISO 9797-1 MAC algorithm 3 as the standard writes it, from the block primitives above: single-DES
    CBC under K1 over every block, then output transformation 3, e_K1(d_K2(H))."""
    chained = cbc_encrypt(key[:8], pad(data, padding))[-8:]
    return ecb_encrypt(key[:8], ecb_decrypt(key[8:], chained))


_mac_keys = st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=4)
_mac_steps = st.lists(
    st.tuples(st.integers(0, 3), st.binary(max_size=80), st.sampled_from([1, 2]), st.sampled_from([4, 8])),
    min_size=1,
    max_size=12,
)


@given(_mac_keys, _mac_steps)
def test_mac_alg3_matches_the_reference_under_keys_used_again_in_any_order(
    keys: list[bytes], steps: list[tuple[int, bytes, int, int]]
) -> None:
    # Each key's contexts are reused from one message to the next (the CBC context's chaining cancelled
    # in the next first block); every length, both paddings, one block or many, an ARPC in between.
    for i, data, padding, length in steps:
        key = keys[i % len(keys)]
        expected = _alg3_reference(key, data, padding)[:length]
        assert mac_alg3(key, data, padding=padding, length=length) == expected
        arqc = data[:8].ljust(8, b"\x00")
        assert arpc_method1(key, arqc, b"00") == ecb_encrypt(key, xor(arqc, b"00" + bytes(6)))


@given(st.binary(min_size=16, max_size=16), blocks)
def test_session_key_contexts_encrypt_as_the_public_cipher_api_does(key: bytes, data: bytes) -> None:
    # des._new_encryptor is what Cipher(algorithm, mode).encryptor() calls once it has checked its
    # arguments: the same contexts, 3DES ECB under K1‖K2‖K1 and single-DES CBC from a zero IV under K1
    ede = Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor()
    single = Cipher(TripleDES(key[:8] * 3), modes.CBC(bytes(8))).encryptor()
    assert des._tdes_ecb(key).update(data) == ede.update(data)
    assert des._single_cbc(key).update(data) == single.update(data) == cbc_encrypt(key[:8], data)


def test_the_pinned_cryptography_gives_the_fast_constructor_and_the_fallback_encrypts_the_same() -> None:
    # with the pinned release the private constructor is found (a silent fallback would only be slower);
    # the public fallback makes the same contexts
    assert des._new_encryptor is not des._public_encryptor
    key, data = bytes(range(16)), bytes(range(32))
    for algorithm, mode in (
        (TripleDES(key + key[:8]), modes.ECB()),
        (TripleDES(key[:8] * 3), modes.CBC(bytes(8))),
    ):
        assert des._new_encryptor(algorithm, mode).update(data) == des._public_encryptor(
            algorithm, mode
        ).update(data)


def test_the_pinned_cryptography_takes_bare_3des_objects_and_they_encrypt_as_its_own_do() -> None:
    # the MAC contexts' algorithm objects are made without TripleDES.__init__ (a silent fallback to the
    # constructor would only be slower); an object made so encrypts as the constructor's, ECB and CBC
    assert des._new_tdes is des._bare_tdes
    key, data = bytes(range(7, 31)), bytes(range(40))
    for mode in (modes.ECB(), modes.CBC(bytes(8))):
        assert des._new_encryptor(des._bare_tdes(key), mode).update(data) == Cipher(
            TripleDES(key), mode
        ).encryptor().update(data)


@given(st.binary(min_size=16, max_size=16), blocks)
def test_ecb_encrypt_once_is_ecb_encrypt_and_keeps_no_context(key: bytes, data: bytes) -> None:
    before = dict(des._contexts._encryptors)
    assert ecb_encrypt_once(key, data) == Cipher(TripleDES(key + key[:8]), modes.ECB()).encryptor().update(
        data
    )
    assert des._contexts._encryptors == before  # the LRU of long-lived keys is not touched


def test_ecb_encrypt_once_takes_double_length_keys_and_whole_blocks() -> None:
    assert ecb_encrypt_once(KEY, b"Now is t") == ecb_encrypt(KEY, b"Now is t")
    with pytest.raises(ValueError, match="16 bytes"):
        ecb_encrypt_once(KEY[:8], bytes(8))
    with pytest.raises(ValueError, match="multiple of 8"):
        ecb_encrypt_once(KEY, bytes(7))


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=80), st.sampled_from([1, 2]))
def test_mac_alg3_once_is_the_reference_and_keeps_no_context(key: bytes, data: bytes, padding: int) -> None:
    before = dict(des._retail._entries)
    for length in (4, 8):
        expected = _alg3_reference(key, data, padding)[:length]
        assert mac_alg3_once(key, data, padding=padding, length=length) == expected
    assert des._retail._entries == before  # the LRU of keys used again is not touched


@pytest.mark.parametrize(
    ("text", "expected"), [(b"Now is the time for all ", "A1C72E74"), (b"Now is the time for it", "2E2B1428")]
)
def test_mac_alg3_once_reference_vectors(text: bytes, expected: str) -> None:
    assert mac_alg3_once(KEY, text, padding=1, length=4).hex().upper() == expected
    with pytest.raises(ValueError):
        mac_alg3_once(KEY[:8], text)


def test_mac_alg3_contexts_are_bounded_and_stay_right_when_evicted() -> None:
    retail = _Retail(size=2)
    keys = [bytes([k]) * 16 for k in range(5)]
    data = bytes(range(40))
    for _ in range(3):
        for key in keys:
            padded = pad(data, 2)
            assert retail.mac(key, padded) == _alg3_reference(key, data, 2)
            assert len(retail._entries) <= 2


def test_mac_alg3_contexts_are_safe_across_threads() -> None:
    keys = [bytes([k]) * 8 + bytes([k + 1]) * 8 for k in range(4)]
    messages = [bytes(range(n)) for n in (0, 7, 8, 9, 37, 64, 250)]
    expected = {(k, m): _alg3_reference(k, m, 2) for k in keys for m in messages}

    def work() -> None:
        for _ in range(50):
            for (key, message), mac in expected.items():
                assert mac_alg3(key, message) == mac

    assert _in_threads(work, 4) == []
