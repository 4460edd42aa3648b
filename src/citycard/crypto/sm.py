"""The Chinese commercial algorithms PBOC 3.0 adds beside 3DES/RSA: SM3 hash (GB/T 32905-2016) and SM4
block cipher (GB/T 32907-2016), both through `cryptography` (OpenSSL), and the :class:`Algorithm` selector
that lets the cryptogram and script-MAC functions run with SM4 (JR/T 0025.17; IAD byte 8 says which).

What SM4 changes for the symmetric card functions, as implemented here (**our reading**; JR/T 0025.17 is
not public in our sources, so these choices are documented assumptions, kept in this one module):

- the block is 16 bytes and keys are 16 bytes;
- UDK (option A): SM4(IMK, Y ‖ (Y ⊕ FF…FF)) with Y as in EMV option A — one SM4 block;
- session key: SM4(UDK, 000000000000‖ATC ‖ 000000000000‖(ATC ⊕ FFFF)) — the PBOC diversification data
  of the 3DES case, enciphered as one SM4 block;
- MAC: CBC-MAC under SM4 (ISO/IEC 9797-1 algorithm 1 with a 16-byte block, GB/T 15852.1), padding method
  2 (``80 00…``) to 16 bytes, zero IV, leftmost ``length`` bytes (8 for a cryptogram, 4 for a script MAC).
"""

from __future__ import annotations

from enum import Enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .derivation import derive_icc_mk_a, derive_pboc_session_key, icc_mk_a_input
from .des import ContextCache, xor
from .mac import mac_alg3

__all__ = [
    "SM4_BLOCK",
    "Algorithm",
    "derive_icc_mk",
    "derive_session_key",
    "mac",
    "sm3",
    "sm4_cbc_decrypt",
    "sm4_cbc_encrypt",
    "sm4_ecb_decrypt",
    "sm4_ecb_encrypt",
    "sm4_mac",
]

SM4_BLOCK = 16


_contexts = ContextCache(algorithms.SM4)


class Algorithm(Enum):
    """Symmetric algorithm of a card application: value = the algorithm identifier in the PBOC IAD."""

    TDES = 0x01
    SM4 = 0x04

    @property
    def block_size(self) -> int:
        return 8 if self is Algorithm.TDES else SM4_BLOCK

    @classmethod
    def from_iad(cls, iad: bytes) -> Algorithm:
        """The algorithm named by byte 8 (index 7) of a PBOC issuer application data value."""
        if len(iad) < 8:
            raise ValueError("issuer application data too short for an algorithm identifier")
        return cls(iad[7])


def sm3(data: bytes) -> bytes:
    """SM3 digest (32 bytes), GB/T 32905-2016."""
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def _check(key: bytes, data: bytes) -> None:
    if len(key) != 16:
        raise ValueError(f"SM4 key must be 16 bytes, not {len(key)}")
    if len(data) % SM4_BLOCK:
        raise ValueError(f"data length {len(data)} is not a multiple of {SM4_BLOCK}")


_ecb = _contexts.get
"""A cached SM4-ECB encryptor or decryptor (stateless between blocks), from the cache :mod:`.des` uses."""


def sm4_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _check(key, data)
    out: bytes = _ecb(key, False).update(data)
    return out


def sm4_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check(key, data)
    out: bytes = _ecb(key, True).update(data)
    return out


def sm4_cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(SM4_BLOCK)) -> bytes:
    _check(key, data)
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def sm4_cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(SM4_BLOCK)) -> bytes:
    _check(key, data)
    dec = Cipher(algorithms.SM4(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def sm4_mac(key: bytes, data: bytes, *, length: int = 8) -> bytes:
    """CBC-MAC under SM4, padding method 2 to 16-byte blocks, leftmost ``length`` bytes."""
    padded = data + b"\x80"
    padded += bytes(-len(padded) % SM4_BLOCK)
    _check(key, padded)
    enc = _ecb(key, False)
    chain = bytes(SM4_BLOCK)
    for i in range(0, len(padded), SM4_BLOCK):
        chain = enc.update(xor(chain, padded[i : i + SM4_BLOCK]))
    return chain[:length]


def mac(algorithm: Algorithm, key: bytes, data: bytes, *, length: int = 8) -> bytes:
    """The card MAC for ``algorithm``: 3DES ISO 9797-1 alg 3 padding 2, or :func:`sm4_mac`."""
    if algorithm is Algorithm.TDES:
        return mac_alg3(key, data, padding=2, length=length)
    return sm4_mac(key, data, length=length)


def derive_icc_mk(algorithm: Algorithm, imk: bytes, pan: str, psn: str = "00") -> bytes:
    """UDK by option A: :func:`~citycard.crypto.derivation.derive_icc_mk_a` or its SM4 form."""
    if algorithm is Algorithm.TDES:
        return derive_icc_mk_a(imk, pan, psn)
    y = icc_mk_a_input(pan, psn)
    return sm4_ecb_encrypt(imk, y + xor(y, b"\xff" * 8))


def derive_session_key(algorithm: Algorithm, udk: bytes, atc: int) -> bytes:
    """Session key: :func:`~citycard.crypto.derivation.derive_pboc_session_key` or its SM4 form."""
    if algorithm is Algorithm.TDES:
        return derive_pboc_session_key(udk, atc)
    if not 0 <= atc <= 0xFFFF:
        raise ValueError(f"ATC {atc} is not a 2-byte value")
    block = bytes(6) + atc.to_bytes(2, "big") + bytes(6) + (atc ^ 0xFFFF).to_bytes(2, "big")
    return sm4_ecb_encrypt(udk, block)
