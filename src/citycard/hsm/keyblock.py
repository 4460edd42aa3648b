"""Key blocks: TR-31 / ANSI X9.143 version ``D`` (AES key derivation binding method).

Every key the software HSM holds at rest or exchanges is one of these blocks, so the key is bound to what
it may be used for. Layout (ASC X9 TR-31:2018 §5, ANSI X9.143-2022 §6), all printable ASCII::

    header (16)    "D" ‖ block length (4 digits) ‖ key usage (2) ‖ algorithm (1) ‖ mode of use (1)
                   ‖ key version number (2) ‖ exportability (1) ‖ number of optional blocks (2) ‖ "00"
    optional blocks  id (2) ‖ length (2 hex digits, the whole optional block) ‖ data   (we use "KP": none)
    encrypted key data (hex)   AES-CBC(KBEK, IV = MAC, 2-byte key length in bits ‖ key ‖ random padding)
    MAC (32 hex)               AES-CMAC(KBAK, header ‖ optional blocks ‖ clear key data)

KBEK and KBAK are derived from the key block protection key (KBPK, AES-128/192/256) by the NIST SP 800-108
counter-mode KDF with AES-CMAC (TR-31:2018 §5.3.2.3): CMAC(KBPK, counter ‖ usage (0000 = encryption,
0001 = MAC) ‖ 00 ‖ algorithm (0002/0003/0004 = AES-128/192/256) ‖ length in bits). Known-answer test:
TR-31:2018 Annex A.7.4 (reproduced in ``tests/hsm/test_keyblock.py``).

RSA private keys ride in the same block with algorithm ``R``; the key data is the PKCS#8 DER encoding.
Malformed or tampered blocks raise :class:`KeyBlockError`; the message never contains key material.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

__all__ = ["Header", "KeyBlockError", "derive_block_keys", "parse_header", "unwrap", "wrap"]

_MAC_LEN = 16
_BLOCK = 16
_MAX_BLOCK_CHARS = 9999
_ALGORITHM_INDICATOR = {16: b"\x00\x02", 24: b"\x00\x03", 32: b"\x00\x04"}


class KeyBlockError(ValueError):
    """A key block that is malformed, too long, or fails its authentication (no key material inside)."""


@dataclass(frozen=True, slots=True)
class Header:
    """The attributes a key block binds to its key (TR-31 §5.1, Table 1)."""

    usage: str  # "E0", "P0", "K0", "S1" ...
    algorithm: str  # "T" TDEA, "A" AES, "R" RSA, "H" HMAC
    mode: str  # "B" both, "C" compute MAC, "E" encrypt, "D" decrypt, "G", "V", "S", "X" derive, "N"
    version: str = "00"
    exportability: str = "N"  # "E" exportable under a KEK, "N" not exportable, "S" sensitive

    def __post_init__(self) -> None:
        fields = (self.usage, self.algorithm, self.mode, self.version, self.exportability)
        sizes = (2, 1, 1, 2, 1)
        for value, size in zip(fields, sizes, strict=True):
            if len(value) != size or not value.isascii() or not value.isalnum():
                raise KeyBlockError(f"key block header field {value!r} must be {size} alphanumeric chars")

    def encode(self, total_length: int) -> bytes:
        return (
            f"D{total_length:04d}{self.usage}{self.algorithm}{self.mode}{self.version}"
            f"{self.exportability}0000"
        ).encode("ascii")


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def derive_block_keys(kbpk: bytes) -> tuple[bytes, bytes]:
    """(KBEK, KBAK) from an AES KBPK by the TR-31 version D CMAC KDF."""
    if len(kbpk) not in _ALGORITHM_INDICATOR:
        raise KeyBlockError(f"an AES key block protection key is 16, 24 or 32 bytes, not {len(kbpk)}")
    algo = _ALGORITHM_INDICATOR[len(kbpk)]
    bits = (len(kbpk) * 8).to_bytes(2, "big")
    rounds = (len(kbpk) + _BLOCK - 1) // _BLOCK
    out = []
    for usage in (b"\x00\x00", b"\x00\x01"):
        material = b"".join(
            _cmac(kbpk, bytes([i]) + usage + b"\x00" + algo + bits) for i in range(1, rounds + 1)
        )
        out.append(material[: len(kbpk)])
    return out[0], out[1]


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = cipher.encryptor() if encrypt else cipher.decryptor()
    return ctx.update(data) + ctx.finalize()


def wrap(kbpk: bytes, header: Header, key: bytes, *, random: Callable[[int], bytes] = os.urandom) -> str:
    """The key block (ASCII) carrying ``key`` under ``kbpk`` with the attributes of ``header``."""
    if not 1 <= len(key) <= 4096:
        raise KeyBlockError(f"key of {len(key)} bytes cannot be wrapped")
    clear = (len(key) * 8).to_bytes(2, "big") + key
    clear += random(-len(clear) % _BLOCK)
    total = 16 + 2 * len(clear) + 2 * _MAC_LEN
    if total > _MAX_BLOCK_CHARS:
        raise KeyBlockError("key block would exceed 9999 characters")
    head = header.encode(total)
    kbek, kbak = derive_block_keys(kbpk)
    mac = _cmac(kbak, head + clear)
    encrypted = _cbc(kbek, mac, clear, encrypt=True)
    return (head + encrypted.hex().upper().encode() + mac.hex().upper().encode()).decode("ascii")


def parse_header(block: str) -> Header:
    """The attributes of a key block, without unwrapping it."""
    if len(block) < 16 or not block.isascii():
        raise KeyBlockError("key block shorter than its 16-character header")
    if block[0] != "D":
        raise KeyBlockError(f"key block version {block[0]!r} is not supported (only 'D')")
    if not block[1:5].isdigit() or int(block[1:5]) != len(block):
        raise KeyBlockError("key block length field does not match the block")
    if block[12:14] != "00":
        raise KeyBlockError("optional blocks are not supported")
    return Header(block[5:7], block[7], block[8], block[9:11], block[11])


def unwrap(kbpk: bytes, block: str) -> tuple[Header, bytes]:
    """(header, key) from a key block; :class:`KeyBlockError` when malformed or not authentic."""
    header = parse_header(block)
    body = block[16:]
    if len(body) < 2 * (_MAC_LEN + _BLOCK) or len(body) % (2 * _BLOCK):
        raise KeyBlockError("key block body has a wrong length")
    try:
        encrypted = bytes.fromhex(body[: -2 * _MAC_LEN])
        mac = bytes.fromhex(body[-2 * _MAC_LEN :])
    except ValueError:
        raise KeyBlockError("key block body is not hexadecimal") from None
    kbek, kbak = derive_block_keys(kbpk)
    clear = _cbc(kbek, mac, encrypted, encrypt=False)
    c = CMAC(algorithms.AES(kbak))
    c.update(block[:16].encode("ascii") + clear)
    try:
        c.verify(mac)
    except Exception:
        raise KeyBlockError("key block authentication failed (wrong KBPK or tampered block)") from None
    bits = int.from_bytes(clear[:2], "big")
    if bits % 8 or bits // 8 > len(clear) - 2:
        raise KeyBlockError("key block key length is inconsistent")
    return header, clear[2 : 2 + bits // 8]
