"""Raw RSA and the EMV public-key certificates (EMV 4.3 Book 2 §5–6, Annex A2; JR/T 0025.7; qPBOC
JR/T 0025.12 for fDDA).

EMV's RSA is raw: no PKCS#1 padding, the card and the issuer format the whole block themselves (header
``6A``, format byte, fields, SHA-1 hash, trailer ``BC``). `cryptography` does not offer a raw private
operation, so private operations run here with the CRT and gmpy2's GMP-backed ``powmod`` (about 0.15 ms
for 1024 bits, against 5 ms for Python's ``pow`` without the CRT; REFERENCE.md "cost facts").

Recovered-data layouts (Book 2 tables 6, 14, 7, 17; N = modulus length of the signing key):

- issuer public-key certificate ``90`` (format 02, signed by the CA): ``6A 02 ‖ issuer identifier (4, PAN
  digits F-padded) ‖ expiry MMYY (2) ‖ serial (3) ‖ hash algo 01 ‖ PK algo 01 ‖ PK length ‖ exponent
  length ‖ PK or its leftmost N−36 bytes (BB-padded) ‖ SHA-1 ‖ BC``; hash over format…leftmost digits ‖
  remainder ``92`` ‖ exponent ``9F32``.
- ICC public-key certificate ``9F46`` (format 04, signed by the issuer): as above with the PAN (10 bytes,
  F-padded) instead of the issuer identifier and N−42 bytes of key; the hash also covers the remainder
  ``9F48``, the exponent ``9F47`` and the static data to be authenticated.
  The ICC PIN encipherment public-key certificate ``9F2D`` (Book 2 §7.1) has the same layout without
  static data: use the same functions with ``static_data=b""``.
- signed static application data ``93`` (format 03): ``6A 03 01 ‖ DAC (2) ‖ BB… ‖ SHA-1 ‖ BC``; hash over
  format…pad ‖ static data to be authenticated.
- signed dynamic application data ``9F4B`` (format 05, signed by the ICC): ``6A 05 01 ‖ L ‖ ICC dynamic
  data (L) ‖ BB… ‖ SHA-1 ‖ BC``; hash over format…pad ‖ terminal dynamic data. For DDA the terminal
  dynamic data are the DDOL data; for qPBOC fDDA (JR/T 0025.12, following Visa VCPS fDDA) version 01
  (first byte of ``9F69``) they are ``9F37 ‖ 9F02 ‖ 5F2A ‖ 9F69``, version 00 only ``9F37``
  (:func:`fdda_terminal_data`); for CDA (Book 2 §6.6) only ``9F37``, the ICC dynamic data carrying the
  CID, the AC and the transaction data hash code. The fDDA layout is Visa's (VCPS), which qPBOC mirrors;
  JR/T 0025.12 itself was not available to us, and no public fDDA test vector was found: the fDDA
  tests are round trips (build → recover, tampered → CertificateError).

Recovery checks what Book 2 §5.3, §6.3, §6.5.2 and §6.6.2 ask of the terminal, except dates (the pure core
has no clock: the expiry is returned for the caller) and the issuer-identifier/PAN match (returned too).
Every failure is one :class:`CertificateError` with a short ``reason``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import gmpy2
from cryptography.hazmat.primitives.asymmetric import rsa

from citycard.codec.cn import cn_digits

__all__ = [
    "HASH_SHA1",
    "PK_ALGORITHM_RSA",
    "CertificateError",
    "IccCertificate",
    "IssuerCertificate",
    "RsaKey",
    "RsaPublicKey",
    "SignedDynamicData",
    "SignedStaticData",
    "build_icc_certificate",
    "build_issuer_certificate",
    "byte_length",
    "cda_icc_dynamic_data",
    "cda_transaction_data_hash",
    "dda_icc_dynamic_data",
    "fdda_terminal_data",
    "recover_dynamic_data",
    "recover_icc_certificate",
    "recover_issuer_certificate",
    "recover_static_data",
    "rsa_kcv",
    "rsa_private_raw",
    "rsa_public_raw",
    "sign_dynamic_data",
    "sign_static_data",
]


def byte_length(value: int) -> int:
    """Bytes needed for a non-negative integer: a modulus length (N_CA, N_I, N_IC in EMV Book 2)."""
    return (value.bit_length() + 7) // 8


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    """An RSA public key: modulus ``n`` and exponent ``e`` (3 or 65537 in EMV)."""

    n: int
    e: int

    @property
    def size(self) -> int:
        """Modulus length in bytes (N_CA, N_I, N_IC, N_PE in EMV Book 2)."""
        return byte_length(self.n)

    @property
    def modulus(self) -> bytes:
        return self.n.to_bytes(self.size, "big")

    @property
    def exponent(self) -> bytes:
        """The exponent as EMV stores it: ``03`` or ``010001``."""
        return self.e.to_bytes(byte_length(self.e), "big")


@dataclass(frozen=True, slots=True, repr=False)
class RsaKey:
    """An RSA private key with its CRT parameters. ``repr`` shows no secret."""

    n: int
    e: int
    d: int
    p: int
    q: int
    dp: int
    dq: int
    qinv: int

    def __repr__(self) -> str:
        return f"RsaKey({self.n.bit_length()} bits, e={self.e})"

    @classmethod
    def generate(cls, bits: int, e: int = 65537) -> RsaKey:
        """A fresh key from `cryptography` (OpenSSL's generator; ``bits`` ≥ 1024, ``e`` 3 or 65537)."""
        numbers = rsa.generate_private_key(public_exponent=e, key_size=bits).private_numbers()
        pub = numbers.public_numbers
        return cls(pub.n, pub.e, numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)

    @classmethod
    def from_primes(cls, p: int, q: int, e: int) -> RsaKey:
        """Build a key from its primes (fixed test keys, keys imported from an HSM export)."""
        phi = (p - 1) * (q - 1)
        d = pow(e, -1, phi)
        return cls(p * q, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))

    @property
    def public(self) -> RsaPublicKey:
        return RsaPublicKey(self.n, self.e)

    @property
    def size(self) -> int:
        return byte_length(self.n)


def _as_int(n: int, data: bytes) -> int:
    size = byte_length(n)
    if len(data) != size:
        raise ValueError(f"RSA input is {len(data)} bytes, the modulus {size}")
    value = int.from_bytes(data, "big")
    if value >= n:
        raise ValueError("RSA input is not smaller than the modulus")
    return value


def rsa_public_raw(n: int, e: int, data: bytes) -> bytes:
    """Raw RSA public operation ``data^e mod n``; input and output have the modulus length."""
    size = byte_length(n)
    result = int(gmpy2.powmod(_as_int(n, data), e, n))
    return result.to_bytes(size, "big")


def rsa_private_raw(key: RsaKey, data: bytes) -> bytes:
    """Raw RSA private operation ``data^d mod n`` by the CRT with gmpy2 (Garner's recombination)."""
    c = _as_int(key.n, data)
    m1 = gmpy2.powmod(c, key.dp, key.p)
    m2 = gmpy2.powmod(c, key.dq, key.q)
    h = (key.qinv * (m1 - m2)) % key.p
    result = int(m2 + h * key.q)
    return result.to_bytes(key.size, "big")


HASH_SHA1 = 0x01
"""Hash algorithm indicator: SHA-1 (EMV Book 2 Annex B3)."""
PK_ALGORITHM_RSA = 0x01
"""Public-key algorithm indicator: RSA (EMV Book 2 Annex B2)."""
_HEADER, _TRAILER, _PAD = 0x6A, 0xBC, 0xBB
_HASH_LEN = 20


class CertificateError(ValueError):
    """An EMV certificate or signature failed recovery. ``reason`` is one of: ``length``, ``header``,
    ``trailer``, ``format``, ``hash-algorithm``, ``pk-algorithm``, ``remainder``, ``exponent``, ``hash``,
    ``field``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuerCertificate:
    """What the terminal recovers from the issuer public-key certificate."""

    issuer_identifier: str
    """Leftmost 3–8 PAN digits (the ``F`` padding removed); the caller matches it with the PAN."""
    expiry: str
    """``MMYY``; the caller compares it with the transaction date."""
    serial: bytes
    hash_algorithm: int
    pk_algorithm: int
    public_key: RsaPublicKey


@dataclass(frozen=True, slots=True)
class IccCertificate:
    """What the terminal recovers from the ICC public-key certificate."""

    pan: str
    """The application PAN (``F`` padding removed); the caller matches it with ``5A``."""
    expiry: str
    serial: bytes
    hash_algorithm: int
    pk_algorithm: int
    public_key: RsaPublicKey


@dataclass(frozen=True, slots=True)
class SignedStaticData:
    """Recovered signed static application data (SDA)."""

    hash_algorithm: int
    data_authentication_code: bytes
    """DAC (``9F45``), 2 bytes."""


@dataclass(frozen=True, slots=True)
class SignedDynamicData:
    """Recovered signed dynamic application data (DDA, fDDA, CDA)."""

    hash_algorithm: int
    icc_dynamic_data: bytes

    @property
    def icc_dynamic_number(self) -> bytes:
        """ICC dynamic number (``9F4C``): the first byte of the ICC dynamic data is its length."""
        data = self.icc_dynamic_data
        if not data or not 2 <= data[0] <= 8 or len(data) < 1 + data[0]:
            raise CertificateError("field", "ICC dynamic data does not start with a 2..8-byte dynamic number")
        return data[1 : 1 + data[0]]


def _sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def _sign(key: RsaKey, body: bytes, hash_input_tail: bytes) -> bytes:
    """``6A ‖ body ‖ SHA-1(body ‖ tail) ‖ BC`` signed with the raw private operation."""
    assert len(body) + _HASH_LEN + 2 == key.size, (len(body), key.size)
    block = bytes([_HEADER]) + body + _sha1(body, hash_input_tail) + bytes([_TRAILER])
    return rsa_private_raw(key, block)


_MIN_SIZE = {0x02: 37, 0x03: 26, 0x04: 43, 0x05: 26}
"""Smallest modulus (bytes) that can hold each format: fixed fields, hash, trailer and one byte of content."""


def _recover(key: RsaPublicKey, signed: bytes, fmt: int) -> bytes:
    """Raw public operation and the checks common to every format; returns the recovered block."""
    if key.size < _MIN_SIZE[fmt]:
        raise CertificateError("length", f"a {key.size}-byte key cannot carry format {fmt:02X}")
    if len(signed) != key.size:
        raise CertificateError("length", f"{len(signed)} bytes, the key's modulus {key.size}")
    try:
        block = rsa_public_raw(key.n, key.e, signed)
    except ValueError as exc:
        raise CertificateError("length", "signed data is not smaller than the modulus") from exc
    if block[-1] != _TRAILER:
        raise CertificateError("trailer", f"recovered data trailer {block[-1]:02X}, expected BC")
    if block[0] != _HEADER:
        raise CertificateError("header", f"recovered data header {block[0]:02X}, expected 6A")
    if block[1] != fmt:
        raise CertificateError("format", f"certificate format {block[1]:02X}, expected {fmt:02X}")
    return block


def _check_hash(block: bytes, hash_algorithm: int, tail: bytes) -> None:
    if hash_algorithm != HASH_SHA1:
        raise CertificateError("hash-algorithm", f"hash algorithm {hash_algorithm:02X} is not SHA-1 (01)")
    body, given = block[1 : -1 - _HASH_LEN], block[-1 - _HASH_LEN : -1]
    if not hmac.compare_digest(_sha1(body, tail), given):
        raise CertificateError("hash", "hash result does not match the recovered data")


def _digits(value: str, size: int, what: str) -> bytes:
    if not value.isdigit() or not value.isascii() or len(value) > 2 * size:
        raise ValueError(f"{what} must be at most {2 * size} decimal digits")
    return bytes.fromhex(value.ljust(2 * size, "F"))


def _expiry(mmyy: str) -> bytes:
    if len(mmyy) != 4 or not mmyy.isdigit() or not 1 <= int(mmyy[:2]) <= 12:
        raise ValueError("expiry must be MMYY")
    return bytes.fromhex(mmyy)


def _split_key(key: RsaPublicKey, slot: int) -> tuple[bytes, bytes]:
    """(leftmost digits padded to ``slot`` with BB, remainder)."""
    modulus = key.modulus
    if len(modulus) <= slot:
        return modulus + bytes([_PAD]) * (slot - len(modulus)), b""
    return modulus[:slot], modulus[slot:]


def _key_header(key: RsaPublicKey) -> bytes:
    if key.size > 248 or len(key.exponent) > 3:
        raise ValueError("EMV keys are at most 248 bytes with a 1- to 3-byte exponent")
    return bytes([HASH_SHA1, PK_ALGORITHM_RSA, key.size, len(key.exponent)])


def _recovered_key(block: bytes, at: int, slot: int, remainder: bytes, exponent: bytes) -> RsaPublicKey:
    """The certified key from the recovered block (key-length byte at ``at``)."""
    pk_algorithm, n_len, e_len = block[at - 1], block[at], block[at + 1]
    if pk_algorithm != PK_ALGORITHM_RSA:
        raise CertificateError("pk-algorithm", f"public-key algorithm {pk_algorithm:02X} is not RSA (01)")
    if e_len != len(exponent) or e_len not in (1, 3):
        raise CertificateError("exponent", f"exponent length {e_len} does not match the exponent given")
    leftmost = block[at + 2 : at + 2 + slot]
    if n_len <= slot:
        modulus = leftmost[:n_len]
    else:
        modulus = leftmost + remainder
        if len(modulus) != n_len:
            raise CertificateError("remainder", f"leftmost digits and remainder give {len(modulus)} bytes")
    if not modulus or modulus[0] == 0:
        raise CertificateError("field", "certified modulus is empty or has a leading zero byte")
    return RsaPublicKey(int.from_bytes(modulus, "big"), int.from_bytes(exponent, "big"))


def build_issuer_certificate(
    ca_key: RsaKey, issuer_key: RsaPublicKey, issuer_identifier: str, expiry: str, serial: bytes
) -> tuple[bytes, bytes]:
    """Issuer public-key certificate (``90``) and remainder (``92``, possibly empty), format 02."""
    if len(serial) != 3:
        raise ValueError("certificate serial number must be 3 bytes")
    if not 3 <= len(issuer_identifier) <= 8:
        raise ValueError("issuer identifier must be 3 to 8 PAN digits")
    slot = ca_key.size - 36
    leftmost, remainder = _split_key(issuer_key, slot)
    body = (
        b"\x02"
        + _digits(issuer_identifier, 4, "issuer identifier")
        + _expiry(expiry)
        + serial
        + _key_header(issuer_key)
        + leftmost
    )
    return _sign(ca_key, body, remainder + issuer_key.exponent), remainder


def recover_issuer_certificate(
    ca_key: RsaPublicKey, certificate: bytes, remainder: bytes, exponent: bytes
) -> IssuerCertificate:
    """Recover and check an issuer public-key certificate (EMV Book 2 §5.3 steps 1–7, not the dates)."""
    block = _recover(ca_key, certificate, 0x02)
    _check_hash(block, block[11], remainder + exponent)
    key = _recovered_key(block, 13, ca_key.size - 36, remainder, exponent)
    return IssuerCertificate(
        issuer_identifier=cn_digits(block[2:6]),
        expiry=block[6:8].hex().upper(),
        serial=block[8:11],
        hash_algorithm=block[11],
        pk_algorithm=block[12],
        public_key=key,
    )


def build_icc_certificate(
    issuer_key: RsaKey,
    icc_key: RsaPublicKey,
    pan: str,
    expiry: str,
    serial: bytes,
    static_data: bytes,
) -> tuple[bytes, bytes]:
    """ICC public-key certificate (``9F46``) and remainder (``9F48``), format 04, over ``static_data``."""
    if len(serial) != 3:
        raise ValueError("certificate serial number must be 3 bytes")
    slot = issuer_key.size - 42
    leftmost, remainder = _split_key(icc_key, slot)
    body = b"\x04" + _digits(pan, 10, "PAN") + _expiry(expiry) + serial + _key_header(icc_key) + leftmost
    return _sign(issuer_key, body, remainder + icc_key.exponent + static_data), remainder


def recover_icc_certificate(
    issuer_key: RsaPublicKey, certificate: bytes, remainder: bytes, exponent: bytes, static_data: bytes
) -> IccCertificate:
    """Recover and check an ICC public-key certificate (EMV Book 2 §6.4 steps 1–8, not the dates)."""
    block = _recover(issuer_key, certificate, 0x04)
    _check_hash(block, block[17], remainder + exponent + static_data)
    key = _recovered_key(block, 19, issuer_key.size - 42, remainder, exponent)
    return IccCertificate(
        pan=cn_digits(block[2:12]),
        expiry=block[12:14].hex().upper(),
        serial=block[14:17],
        hash_algorithm=block[17],
        pk_algorithm=block[18],
        public_key=key,
    )


def sign_static_data(issuer_key: RsaKey, dac: bytes, static_data: bytes) -> bytes:
    """Signed static application data (``93``), format 03, with the 2-byte data authentication code."""
    if len(dac) != 2:
        raise ValueError("data authentication code must be 2 bytes")
    body = bytes([0x03, HASH_SHA1]) + dac + bytes([_PAD]) * (issuer_key.size - 26)
    return _sign(issuer_key, body, static_data)


def recover_static_data(issuer_key: RsaPublicKey, signed: bytes, static_data: bytes) -> SignedStaticData:
    """Recover and check signed static application data (EMV Book 2 §5.4, SDA)."""
    block = _recover(issuer_key, signed, 0x03)
    _check_hash(block, block[2], static_data)
    return SignedStaticData(hash_algorithm=block[2], data_authentication_code=block[3:5])


def sign_dynamic_data(icc_key: RsaKey, icc_dynamic_data: bytes, terminal_dynamic_data: bytes) -> bytes:
    """Signed dynamic application data (``9F4B``), format 05 (EMV Book 2 §6.5.1 / §6.6.1)."""
    pad = icc_key.size - len(icc_dynamic_data) - 25
    if pad < 0 or len(icc_dynamic_data) > 255:
        raise ValueError(f"ICC dynamic data of {len(icc_dynamic_data)} bytes do not fit the ICC key")
    body = bytes([0x05, HASH_SHA1, len(icc_dynamic_data)]) + icc_dynamic_data + bytes([_PAD]) * pad
    return _sign(icc_key, body, terminal_dynamic_data)


def recover_dynamic_data(
    icc_key: RsaPublicKey, signed: bytes, terminal_dynamic_data: bytes
) -> SignedDynamicData:
    """Recover and check signed dynamic application data (DDA §6.5.2, fDDA, CDA §6.6.2 steps 1–7)."""
    block = _recover(icc_key, signed, 0x05)
    _check_hash(block, block[2], terminal_dynamic_data)
    length = block[3]
    if 4 + length > len(block) - 1 - _HASH_LEN:
        raise CertificateError("field", f"ICC dynamic data length {length} overruns the recovered data")
    return SignedDynamicData(hash_algorithm=block[2], icc_dynamic_data=block[4 : 4 + length])


def dda_icc_dynamic_data(icc_dynamic_number: bytes) -> bytes:
    """ICC dynamic data for DDA / fDDA: ``L ‖ ICC dynamic number`` (2–8 bytes, Book 2 table 16)."""
    if not 2 <= len(icc_dynamic_number) <= 8:
        raise ValueError("ICC dynamic number must be 2 to 8 bytes")
    return bytes([len(icc_dynamic_number)]) + icc_dynamic_number


def fdda_terminal_data(
    unpredictable_number: bytes, amount: bytes, currency: bytes, card_auth_data: bytes
) -> bytes:
    """Terminal dynamic data hashed into a qPBOC fDDA signature, by the fDDA version (``9F69`` byte 1).

    Version 01: ``9F37 ‖ 9F02 ‖ 5F2A ‖ 9F69``; version 00: ``9F37`` only (JR/T 0025.12; Visa VCPS).
    """
    if len(unpredictable_number) != 4 or len(amount) != 6 or len(currency) != 2:
        raise ValueError("9F37 must be 4 bytes, 9F02 6 bytes and 5F2A 2 bytes")
    if not card_auth_data:
        raise ValueError("card authentication related data (9F69) is empty")
    if card_auth_data[0] == 0x00:
        return unpredictable_number
    return unpredictable_number + amount + currency + card_auth_data


def cda_transaction_data_hash(pdol_data: bytes, cdol1_data: bytes, response_tlvs: bytes) -> bytes:
    """Transaction data hash code for CDA (Book 2 §6.6.1): SHA-1 of the PDOL data values, the CDOL1
    (or CDOL2) data values and the GENERATE AC response TLVs other than ``9F4B``, in that order."""
    return _sha1(pdol_data, cdol1_data, response_tlvs)


def cda_icc_dynamic_data(icc_dynamic_number: bytes, cid: bytes, cryptogram: bytes, tx_hash: bytes) -> bytes:
    """ICC dynamic data for CDA (Book 2 table 19): ``L ‖ ICC dynamic number ‖ CID ‖ AC ‖ hash code``."""
    if len(cid) != 1 or len(cryptogram) != 8 or len(tx_hash) != _HASH_LEN:
        raise ValueError("CID must be 1 byte, the AC 8 bytes and the transaction data hash 20 bytes")
    return dda_icc_dynamic_data(icc_dynamic_number) + cid + cryptogram + tx_hash


def rsa_kcv(modulus: int) -> str:
    """Key check value of an RSA public key as this project shows it (HSM key lists, deny-list files):
    SHA-256 over the big-endian modulus, first 3 bytes, upper-case hex."""
    return hashlib.sha256(modulus.to_bytes((modulus.bit_length() + 7) // 8, "big")).digest()[:3].hex().upper()
