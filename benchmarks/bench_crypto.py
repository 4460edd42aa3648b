"""Crypto cost: 3DES key contexts, cryptograms, an issuer's ARQC check, raw RSA (DDA/fDDA), SM3/SM4.

Two baselines, measured in the same run:

- symmetric: `cryptography`'s 3DES with a new key context for one block (the naive way: the context
  set-up dominates), against which our cached-context operations are compared;
- RSA: the raw private operation with Python's ``pow`` and no CRT (what a naive EMV signer does, since
  `cryptography` has no raw private operation), against gmpy2 with the CRT and OpenSSL's PKCS#1 signing.

Ratios are "x baseline rate" (above 1 is faster). Run: ``python -m benchmarks crypto``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import count

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from citycard.crypto.cryptograms import arpc_method1, generate_ac, verify_ac
from citycard.crypto.derivation import derive_icc_mk_a, derive_pboc_session_key
from citycard.crypto.rsa_cert import (
    RsaKey,
    build_icc_certificate,
    build_issuer_certificate,
    dda_icc_dynamic_data,
    fdda_terminal_data,
    recover_dynamic_data,
    recover_icc_certificate,
    recover_issuer_certificate,
    rsa_private_raw,
    sign_dynamic_data,
)
from citycard.crypto.sm import Algorithm, sm3, sm4_mac

from benchmarks.timing import rates

IMK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
AC_DATA = bytes.fromhex("000000002000000000000000012400000080000124110309003804823E5800000103A03002")


def _naive_3des() -> bytes:
    enc = Cipher(TripleDES(IMK + IMK[:8]), modes.ECB()).encryptor()
    return enc.update(bytes(8)) + enc.finalize()


def _symmetric() -> list[tuple[str, Callable[[], object]]]:
    sk = derive_pboc_session_key(IMK, 1)
    atcs = count()

    def per_transaction_card() -> bytes:  # the card: new session key per ATC (not cached before), one AC
        atc = next(atcs) & 0xFFFF
        return generate_ac(derive_pboc_session_key(IMK, atc), AC_DATA)

    pans = count(10_000_000)

    def issuer_check() -> bytes:  # the issuer: a card never seen in the cache, UDK, SK, verify, ARPC
        udk = derive_icc_mk_a(IMK, f"6228480{next(pans):012d}", "00")
        key = derive_pboc_session_key(udk, 7)
        arqc = generate_ac(key, AC_DATA)
        assert verify_ac(key, AC_DATA, arqc)
        return arpc_method1(key, arqc, b"\x30\x30")

    return [
        ("baseline: 3DES, new context + 1 block (cryptography)", _naive_3des),
        ("generate_ac, session key cached (41 B input)", lambda: generate_ac(sk, AC_DATA)),
        ("card: derive_pboc_session_key + generate_ac (new ATC)", per_transaction_card),
        ("issuer: UDK + SK + ARQC check + ARPC (new card)", issuer_check),
        ("sm4_mac (41 B input, key cached)", lambda: sm4_mac(IMK, AC_DATA)),
        ("sm3 (41 B input)", lambda: sm3(AC_DATA)),
    ]


def _rsa() -> list[tuple[str, Callable[[], object]]]:
    private = rsa.generate_private_key(public_exponent=3, key_size=1024)
    numbers = private.private_numbers()
    key = RsaKey(
        numbers.public_numbers.n, 3, numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp
    )
    block = bytes([0x6A, 0x05]) + bytes(range(125)) + b"\xbc"
    m = int.from_bytes(block, "big")
    terminal = fdda_terminal_data(b"\x01\x02\x03\x04", bytes(6), b"\x01\x56", b"\x01\x11\x22\x33\x44\x80\x00")
    idd = dda_icc_dynamic_data(b"\x12\x34\x56\x78")
    sdad = sign_dynamic_data(key, idd, terminal)
    ca = RsaKey.generate(1408, 3)
    issuer = RsaKey.generate(1152, 3)
    static = bytes(range(64))
    issuer_cert, issuer_rem = build_issuer_certificate(ca, issuer.public, "622848", "1230", b"\x00\x00\x01")
    icc_cert, icc_rem = build_icc_certificate(
        issuer, key.public, "6228480000000001", "1230", b"\x00\x00\x02", static
    )

    def terminal_chain() -> bytes:  # what a bus validator does for one qPBOC card: CA → issuer → ICC → fDDA
        got_issuer = recover_issuer_certificate(ca.public, issuer_cert, issuer_rem, b"\x03")
        got_icc = recover_icc_certificate(got_issuer.public_key, icc_cert, icc_rem, b"\x03", static)
        return recover_dynamic_data(got_icc.public_key, sdad, terminal).icc_dynamic_number

    return [
        ("baseline: raw RSA-1024 private, Python pow, no CRT", lambda: pow(m, key.d, key.n)),
        ("rsa_private_raw (gmpy2, CRT)", lambda: rsa_private_raw(key, block)),
        (
            "OpenSSL PKCS#1 v1.5 sign, SHA-1 (not usable for EMV)",
            lambda: private.sign(block, padding.PKCS1v15(), hashes.SHA1()),
        ),
        ("card: sign_dynamic_data (fDDA signature)", lambda: sign_dynamic_data(key, idd, terminal)),
        ("terminal: recover_dynamic_data (e = 3)", lambda: recover_dynamic_data(key.public, sdad, terminal)),
        ("terminal: issuer + ICC certificates + fDDA (whole chain)", terminal_chain),
    ]


def _table(title: str, cases: list[tuple[str, Callable[[], object]]]) -> None:
    measured = rates([fn for _, fn in cases], seconds=0.08)
    base = measured[0]
    print(f"\n{title}")
    print(f"{'operation':<58} {'ops/s':>12} {'x baseline':>11}")
    for (name, _), rate in zip(cases, measured, strict=True):
        print(f"{name:<58} {rate:>12,.0f} {rate / base:>11.2f}")


def main() -> None:
    assert Algorithm.TDES.block_size == 8
    _table("symmetric (3DES / SM4 / SM3)", _symmetric())
    _table("RSA-1024 (raw, as EMV uses it)", _rsa())


if __name__ == "__main__":
    main()
