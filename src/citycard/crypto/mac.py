"""ISO/IEC 9797-1 MAC algorithms 1 and 3 with padding methods 1 and 2, over DES (EMV Book 2 A1.2).

Algorithm 1: CBC-MAC under one key. Algorithm 3 ("retail MAC"): single-DES CBC-MAC under K1, then the last
block decrypted under K2 and encrypted under K1 again, which is the same as 3DES-EDE(K1,K2) of the last
chained block. Padding method 1 appends zeros up to a block (none if already aligned); method 2 appends
``80`` then zeros (always). EMV cryptograms and PBOC script MACs use algorithm 3 with method 2.
"""

from __future__ import annotations

from .des import BLOCK, _retail, cbc_encrypt, retail_mac_once

__all__ = ["mac_alg1", "mac_alg3", "mac_alg3_once", "pad", "pad_method1", "pad_method2"]


def pad_method1(data: bytes) -> bytes:
    """Zeros up to a whole number of blocks (an empty input becomes one zero block)."""
    if not data:
        return bytes(BLOCK)
    return data + bytes(-len(data) % BLOCK)


def pad_method2(data: bytes) -> bytes:
    """``80`` then zeros up to a whole number of blocks."""
    data = data + b"\x80"
    return data + bytes(-len(data) % BLOCK)


def pad(data: bytes, method: int) -> bytes:
    if method == 1:
        return pad_method1(data)
    if method == 2:
        return pad_method2(data)
    raise ValueError(f"ISO 9797-1 padding method {method} is not supported")


def mac_alg1(key: bytes, data: bytes, *, padding: int = 2, length: int = 8) -> bytes:
    """ISO 9797-1 MAC algorithm 1 (CBC-MAC) under ``key`` (DES or 3DES), truncated to ``length`` bytes."""
    return cbc_encrypt(key, pad(data, padding))[-BLOCK:][:length]


def _alg3_input(key: bytes, data: bytes, padding: int) -> bytes:
    """``data`` padded for MAC algorithm 3 under ``key``, which must be double-length."""
    if len(key) != 16:
        raise ValueError(f"MAC algorithm 3 needs a 16-byte key, not {len(key)}")
    if padding == 2:  # pad_method2 inline: the EMV case
        return data + b"\x80" + bytes(-(len(data) + 1) % BLOCK)
    return pad(data, padding)


def mac_alg3(key: bytes, data: bytes, *, padding: int = 2, length: int = 8) -> bytes:
    """ISO 9797-1 MAC algorithm 3 under a double-length key K1‖K2, truncated to ``length`` bytes."""
    return _retail.mac(key, _alg3_input(key, data, padding))[:length]


def mac_alg3_once(key: bytes, data: bytes, *, padding: int = 2, length: int = 8) -> bytes:
    """:func:`mac_alg3` under a key that MACs this one message (no context of it kept for a next one:
    :func:`~citycard.crypto.des.retail_mac_once`)."""
    return retail_mac_once(key, _alg3_input(key, data, padding))[:length]
