"""Raw RSA and the EMV public-key certificates (EMV 4.3 Book 2 §5–6, Annex A2; JR/T 0025.7; qPBOC
JR/T 0025.12 for fDDA).

EMV's RSA is raw: no PKCS#1 padding, the card and the issuer format the whole block themselves (header
``6A``, format byte, fields, SHA-1 hash, trailer ``BC``). `cryptography` does not offer a raw private
operation, so private operations run here with the CRT and gmpy2's GMP-backed ``powmod`` (about 0.15 ms
for 1024 bits, against 5 ms for Python's ``pow`` without the CRT; REFERENCE.md "cost facts").
"""

from __future__ import annotations

from dataclasses import dataclass

import gmpy2
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = [
    "RsaKey",
    "RsaPublicKey",
    "rsa_private_raw",
    "rsa_public_raw",
]


@dataclass(frozen=True, slots=True)
class RsaPublicKey:
    """An RSA public key: modulus ``n`` and exponent ``e`` (3 or 65537 in EMV)."""

    n: int
    e: int

    @property
    def size(self) -> int:
        """Modulus length in bytes (N_CA, N_I, N_IC, N_PE in EMV Book 2)."""
        return (self.n.bit_length() + 7) // 8

    @property
    def modulus(self) -> bytes:
        return self.n.to_bytes(self.size, "big")

    @property
    def exponent(self) -> bytes:
        """The exponent as EMV stores it: ``03`` or ``010001``."""
        return self.e.to_bytes((self.e.bit_length() + 7) // 8, "big")


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
        return (self.n.bit_length() + 7) // 8


def _as_int(n: int, data: bytes) -> int:
    size = (n.bit_length() + 7) // 8
    if len(data) != size:
        raise ValueError(f"RSA input is {len(data)} bytes, the modulus {size}")
    value = int.from_bytes(data, "big")
    if value >= n:
        raise ValueError("RSA input is not smaller than the modulus")
    return value


def rsa_public_raw(n: int, e: int, data: bytes) -> bytes:
    """Raw RSA public operation ``data^e mod n``; input and output have the modulus length."""
    size = (n.bit_length() + 7) // 8
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
