"""Raw RSA and EMV certificate tests (EMV Book 2 §5–6): public vectors from emv-tools, then round trips."""

from __future__ import annotations

import hashlib

import pytest

from citycard.crypto.rsa_cert import (
    CertificateError,
    RsaKey,
    RsaPublicKey,
    build_icc_certificate,
    build_issuer_certificate,
    cda_icc_dynamic_data,
    cda_transaction_data_hash,
    dda_icc_dynamic_data,
    fdda_terminal_data,
    recover_dynamic_data,
    recover_icc_certificate,
    recover_issuer_certificate,
    recover_static_data,
    rsa_private_raw,
    rsa_public_raw,
    sign_dynamic_data,
    sign_static_data,
)

from tests.crypto import emv_cert_vectors as v


def _ca(modulus: bytes) -> RsaPublicKey:
    return RsaPublicKey(int.from_bytes(modulus, "big"), 3)


# --- public vectors: emv-tools sda_test.c / dda_test.c (proxmark3 client/emv/test) ---------------------


def test_sda_vector_issuer_certificate_and_dac() -> None:
    issuer = recover_issuer_certificate(
        _ca(v.SDA_CA_MODULUS), v.SDA_ISSUER_CERT, v.SDA_ISSUER_REMAINDER, b"\x03"
    )
    assert (issuer.issuer_identifier, issuer.expiry, issuer.serial.hex()) == ("427655", "1209", "0042b3")
    assert (issuer.hash_algorithm, issuer.pk_algorithm, issuer.public_key.size) == (1, 1, 128)
    ssad = recover_static_data(issuer.public_key, v.SDA_SSAD, v.SDA_STATIC_DATA)
    assert ssad.data_authentication_code.hex().upper() == "3132"
    with pytest.raises(CertificateError) as err:
        recover_static_data(issuer.public_key, v.SDA_SSAD, v.SDA_STATIC_DATA[:-1])
    assert err.value.reason == "hash"


def test_dda_vector_chain_and_icc_dynamic_number() -> None:
    issuer = recover_issuer_certificate(
        _ca(v.DDA_CA_MODULUS), v.DDA_ISSUER_CERT, v.DDA_ISSUER_REMAINDER, b"\x03"
    )
    assert (issuer.issuer_identifier, issuer.expiry) == ("528588", "1221")
    icc = recover_icc_certificate(issuer.public_key, v.DDA_ICC_CERT, b"", b"\x03", v.DDA_STATIC_DATA)
    assert (icc.pan, icc.expiry, icc.serial.hex()) == ("5285881254345653", "0615", "345653")
    assert icc.public_key.size == 112
    sdad = recover_dynamic_data(icc.public_key, v.DDA_SDAD, bytes(4))  # DDOL data: 9F37 = 00000000
    assert sdad.icc_dynamic_number.hex().upper() == "7A33FB8C9546E1E7"
    with pytest.raises(CertificateError) as err:
        recover_dynamic_data(icc.public_key, v.DDA_SDAD, b"\x00\x00\x00\x01")
    assert err.value.reason == "hash"


def test_dda_vector_wrong_static_data_or_remainder() -> None:
    issuer = recover_issuer_certificate(
        _ca(v.DDA_CA_MODULUS), v.DDA_ISSUER_CERT, v.DDA_ISSUER_REMAINDER, b"\x03"
    )
    with pytest.raises(CertificateError) as err:
        recover_icc_certificate(issuer.public_key, v.DDA_ICC_CERT, b"", b"\x03", v.DDA_STATIC_DATA + b"\x00")
    assert err.value.reason == "hash"
    bad_rem = bytes([v.DDA_ISSUER_REMAINDER[0] ^ 1]) + v.DDA_ISSUER_REMAINDER[1:]
    with pytest.raises(CertificateError) as err:
        recover_issuer_certificate(_ca(v.DDA_CA_MODULUS), v.DDA_ISSUER_CERT, bad_rem, b"\x03")
    assert err.value.reason == "hash"
    with pytest.raises(CertificateError) as err:
        recover_issuer_certificate(
            _ca(v.DDA_CA_MODULUS), v.DDA_ISSUER_CERT, v.DDA_ISSUER_REMAINDER[:-1], b"\x03"
        )
    assert err.value.reason in {"hash", "remainder"}


# --- raw RSA -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_key() -> RsaKey:
    return RsaKey.generate(1408, 3)


@pytest.fixture(scope="module")
def issuer_key() -> RsaKey:
    return RsaKey.generate(1152, 3)


@pytest.fixture(scope="module")
def icc_key() -> RsaKey:
    return RsaKey.generate(1024, 65537)


def test_raw_rsa_matches_textbook_rsa(icc_key: RsaKey) -> None:
    m = bytes([0x6A]) + bytes(range(126)) + b"\xbc"
    s = rsa_private_raw(icc_key, m)
    assert int.from_bytes(s, "big") == pow(int.from_bytes(m, "big"), icc_key.d, icc_key.n)
    assert rsa_public_raw(icc_key.n, icc_key.e, s) == m
    with pytest.raises(ValueError):
        rsa_public_raw(icc_key.n, icc_key.e, s[1:])
    with pytest.raises(ValueError):
        rsa_private_raw(icc_key, b"\xff" * 128)


def test_rsa_key_repr_hides_secrets(icc_key: RsaKey) -> None:
    assert str(icc_key.d) not in repr(icc_key)
    assert RsaKey.from_primes(icc_key.p, icc_key.q, icc_key.e) == icc_key


# --- round trips ---------------------------------------------------------------------------------------

STATIC = bytes.fromhex("5A0862284800000000015F24033012315F25032401019F0702FF00") + bytes.fromhex("7C00")


@pytest.mark.parametrize(("ca_bits", "issuer_bits"), [(1408, 1152), (1024, 1024)])
def test_issuer_certificate_round_trip(
    ca_bits: int, issuer_bits: int, ca_key: RsaKey, issuer_key: RsaKey
) -> None:
    ca = ca_key if ca_bits == 1408 else RsaKey.generate(1024, 3)
    issuer = issuer_key if issuer_bits == 1152 else RsaKey.generate(1024, 3)
    cert, rem = build_issuer_certificate(ca, issuer.public, "622848", "1230", b"\x00\x00\x01")
    assert len(cert) == ca.size
    assert len(rem) == max(0, issuer.size - (ca.size - 36))
    got = recover_issuer_certificate(ca.public, cert, rem, issuer.public.exponent)
    assert got.public_key == issuer.public
    assert (got.issuer_identifier, got.expiry, got.serial) == ("622848", "1230", b"\x00\x00\x01")


def test_icc_certificate_sda_dda_round_trip(ca_key: RsaKey, issuer_key: RsaKey, icc_key: RsaKey) -> None:
    cert, rem = build_icc_certificate(
        issuer_key, icc_key.public, "6228480000000000001", "1230", b"\x00\x00\x07", STATIC
    )
    got = recover_icc_certificate(issuer_key.public, cert, rem, b"\x01\x00\x01", STATIC)
    assert got.public_key == icc_key.public and got.pan == "6228480000000000001"
    ssad = sign_static_data(issuer_key, b"\xda\xc1", STATIC)
    assert recover_static_data(issuer_key.public, ssad, STATIC).data_authentication_code == b"\xda\xc1"
    idd = dda_icc_dynamic_data(bytes.fromhex("1122334455667788"))
    sdad = sign_dynamic_data(icc_key, idd, bytes.fromhex("CAFEBABE"))
    rec = recover_dynamic_data(icc_key.public, sdad, bytes.fromhex("CAFEBABE"))
    assert rec.icc_dynamic_data == idd and rec.icc_dynamic_number == bytes.fromhex("1122334455667788")


def test_fdda_round_trip_and_terminal_data(icc_key: RsaKey) -> None:
    # qPBOC fDDA version 01: hash over 9F37 ‖ 9F02 ‖ 5F2A ‖ 9F69 (JR/T 0025.12; Visa VCPS).
    un, amount, currency = bytes.fromhex("01020304"), bytes.fromhex("000000000150"), bytes.fromhex("0156")
    cad = bytes.fromhex("01A1B2C3D48000")
    terminal = fdda_terminal_data(un, amount, currency, cad)
    assert terminal == un + amount + currency + cad
    assert fdda_terminal_data(un, amount, currency, b"\x00" + cad[1:]) == un
    sdad = sign_dynamic_data(icc_key, dda_icc_dynamic_data(b"\x12\x34\x56\x78"), terminal)
    assert recover_dynamic_data(icc_key.public, sdad, terminal).icc_dynamic_number == b"\x12\x34\x56\x78"
    other_amount = fdda_terminal_data(un, bytes.fromhex("000000000151"), currency, cad)
    with pytest.raises(CertificateError):
        recover_dynamic_data(icc_key.public, sdad, other_amount)


def test_cda_round_trip(icc_key: RsaKey) -> None:
    tx_hash = cda_transaction_data_hash(
        b"pdol", b"cdol1", bytes.fromhex("9F2701809F360200019F2608" + "11" * 8)
    )
    assert (
        tx_hash == hashlib.sha1(b"pdolcdol1" + bytes.fromhex("9F2701809F360200019F2608" + "11" * 8)).digest()
    )
    idd = cda_icc_dynamic_data(b"\x01\x02\x03\x04", b"\x40", b"\x11" * 8, tx_hash)
    sdad = sign_dynamic_data(icc_key, idd, b"\xaa\xbb\xcc\xdd")
    rec = recover_dynamic_data(icc_key.public, sdad, b"\xaa\xbb\xcc\xdd")
    assert rec.icc_dynamic_data[5:6] == b"\x40" and rec.icc_dynamic_data[-20:] == tx_hash


# --- tampering -------------------------------------------------------------------------------------------


def _resign(key: RsaKey, cert: bytes, change: int, value: int) -> bytes:
    """Recover the block, change one byte, sign it again (to reach checks past the trailer)."""
    block = bytearray(rsa_public_raw(key.n, key.e, cert))
    block[change] = value
    return rsa_private_raw(key, bytes(block))


@pytest.mark.parametrize(
    ("index", "value", "reason"),
    [
        (-1, 0xBD, "trailer"),
        (0, 0x6B, "header"),
        (1, 0x04, "format"),
        (11, 0x02, "hash-algorithm"),
        (20, 0, "hash"),
    ],
)
def test_tampered_issuer_certificate(
    ca_key: RsaKey, issuer_key: RsaKey, index: int, value: int, reason: str
) -> None:
    cert, rem = build_issuer_certificate(ca_key, issuer_key.public, "622848", "1230", b"\x00\x00\x01")
    bad = _resign(ca_key, cert, index, value)
    with pytest.raises(CertificateError) as err:
        recover_issuer_certificate(ca_key.public, bad, rem, b"\x03")
    assert err.value.reason == reason


def test_tampered_bytes_and_wrong_inputs(ca_key: RsaKey, issuer_key: RsaKey, icc_key: RsaKey) -> None:
    cert, rem = build_issuer_certificate(ca_key, issuer_key.public, "622848", "1230", b"\x00\x00\x01")
    flipped = cert[:50] + bytes([cert[50] ^ 0x01]) + cert[51:]
    with pytest.raises(CertificateError):
        recover_issuer_certificate(ca_key.public, flipped, rem, b"\x03")
    with pytest.raises(CertificateError) as err:
        recover_issuer_certificate(ca_key.public, cert[1:], rem, b"\x03")
    assert err.value.reason == "length"
    with pytest.raises(CertificateError) as err:
        recover_issuer_certificate(ca_key.public, cert, rem, b"\x01\x00\x01")
    assert err.value.reason in {"hash", "exponent"}
    with pytest.raises(CertificateError) as err:  # a certificate of another format
        recover_icc_certificate(ca_key.public, cert, rem, b"\x03", b"")
    assert err.value.reason == "format"
    with pytest.raises(CertificateError) as err:
        recover_issuer_certificate(ca_key.public, b"\xff" * ca_key.size, rem, b"\x03")
    assert err.value.reason == "length"


def test_builders_reject_bad_fields(ca_key: RsaKey, issuer_key: RsaKey, icc_key: RsaKey) -> None:
    with pytest.raises(ValueError):
        build_issuer_certificate(ca_key, issuer_key.public, "62", "1230", b"\x00\x00\x01")
    with pytest.raises(ValueError):
        build_issuer_certificate(ca_key, issuer_key.public, "622848", "1330", b"\x00\x00\x01")
    with pytest.raises(ValueError):
        build_icc_certificate(issuer_key, icc_key.public, "62284A", "1230", b"\x00\x00\x01", b"")
    with pytest.raises(ValueError):
        sign_dynamic_data(icc_key, bytes(104), b"")
    with pytest.raises(ValueError):
        dda_icc_dynamic_data(b"\x01")
