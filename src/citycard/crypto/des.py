"""The one DES / 3DES wrapper of the project (FIPS 46-3, ANSI X9.52; keys as EMV uses them).

Single DES keys are 8 bytes, double-length 3DES keys 16 bytes (K1‖K2, EDE with K1 again), triple-length
24 bytes. Every block operation in ``crypto`` goes through here, so that key contexts are made once and
reused: making a context costs far more than encrypting a block (see REFERENCE.md, "cost facts").
The cache is bounded; keys never leave the process through it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, modes

__all__ = [
    "BLOCK",
    "ContextCache",
    "adjust_parity",
    "cbc_decrypt",
    "cbc_encrypt",
    "check_parity",
    "ecb_decrypt",
    "ecb_encrypt",
    "kcv",
    "xor",
]

BLOCK = 8


class ContextCache(threading.local):
    """Bounded LRU caches of ECB encryptors and decryptors for one block cipher, one set per thread.

    A `cryptography` context must not be used by two threads at once (it raises "Already borrowed" when
    one thread's update releases the GIL), and the LRU bookkeeping is not atomic either: each thread builds
    its own contexts, and the bound holds per thread. ECB contexts are stateless between blocks, so they
    can be reused. Encryptors and decryptors are cached apart: most keys (session keys) only ever encrypt,
    and making a context is the expensive part. ``algorithm(key)`` makes the cipher algorithm for a key
    (3DES here, SM4 in :mod:`.sm`); it may raise ``ValueError`` for a bad key.
    """

    def __init__(self, algorithm: Callable[[bytes], BlockCipherAlgorithm], size: int = 4096) -> None:
        self._algorithm = algorithm
        self._size = size
        self._encryptors: OrderedDict[bytes, Any] = OrderedDict()
        self._decryptors: OrderedDict[bytes, Any] = OrderedDict()
        self._pair_key = b""
        self._pair: tuple[Any, Any] = (None, None)

    def get(self, key: bytes, decrypt: bool) -> Any:
        """The cached ECB encryptor (or decryptor) for ``key``, made on first use."""
        cache = self._decryptors if decrypt else self._encryptors
        ctx = cache.get(key)
        if ctx is not None:
            cache.move_to_end(key)
            return ctx
        cipher = Cipher(self._algorithm(key), _ECB)
        ctx = cipher.decryptor() if decrypt else cipher.encryptor()
        cache[key] = ctx
        if len(cache) > self._size:
            cache.popitem(last=False)
        return ctx

    def pair(self, key: bytes) -> tuple[Any, Any]:
        """ECB encryptors under ``key[:8]`` and under ``key`` (ISO 9797-1 MAC algorithm 3's two keys).

        The last pair is kept in one slot of its own. A pair for a key that the LRU does not hold is made
        for the slot alone: MAC algorithm 3 runs under session keys, each used for one or two MACs, and
        putting them in the LRU would only push the long-lived keys (master keys, UDKs) out of it.
        """
        if key == self._pair_key:
            return self._pair
        cache = self._encryptors
        single, triple = cache.get(key[:8]), cache.get(key)
        if single is None:
            single = Cipher(self._algorithm(key[:8]), _ECB).encryptor()
        if triple is None:
            triple = Cipher(self._algorithm(key), _ECB).encryptor()
        self._pair_key, self._pair = key, (single, triple)
        return single, triple


_ECB = modes.ECB()
"""ECB has no parameters: one mode object serves every context."""


def _full_key(key: bytes) -> bytes:
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return key
    raise ValueError(f"DES key must be 8, 16 or 24 bytes, not {len(key)}")


def _tdes(key: bytes) -> TripleDES:
    return TripleDES(_full_key(key))


_contexts = ContextCache(_tdes)
_context = _contexts.get
_pair = _contexts.pair


def _check_blocks(data: bytes) -> None:
    if len(data) % BLOCK:
        raise ValueError(f"data length {len(data)} is not a multiple of {BLOCK}")


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise exclusive or of two strings of equal length."""
    assert len(a) == len(b), (len(a), len(b))
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """DES (8-byte key) or 3DES-EDE (16/24-byte key) in ECB mode; ``data`` a whole number of blocks."""
    if len(data) % BLOCK:
        _check_blocks(data)
    out: bytes = _context(key, False).update(data)
    return out


def ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_blocks(data)
    out: bytes = _context(key, True).update(data)
    return out


def cbc_encrypt(key: bytes, data: bytes, iv: bytes = bytes(BLOCK)) -> bytes:
    """CBC mode over a whole number of blocks (no padding added here)."""
    _check_blocks(data)
    enc = _context(key, False)
    chain = int.from_bytes(iv, "big")
    out = bytearray()
    for i in range(0, len(data), BLOCK):
        block = (int.from_bytes(data[i : i + BLOCK], "big") ^ chain).to_bytes(BLOCK, "big")
        cipher_block = enc.update(block)
        out += cipher_block
        chain = int.from_bytes(cipher_block, "big")
    return bytes(out)


def cbc_decrypt(key: bytes, data: bytes, iv: bytes = bytes(BLOCK)) -> bytes:
    _check_blocks(data)
    plain = _context(key, True).update(data)
    previous = (iv + data)[: len(data)]
    return xor(plain, previous)


_ODD_PARITY = bytes(b & 0xFE | ((bin(b >> 1).count("1") + 1) & 1) for b in range(256))
"""Each byte value with its least significant bit set for odd parity (a ``bytes.translate`` table)."""


def adjust_parity(key: bytes) -> bytes:
    """Set each byte's least significant bit so that the byte has odd parity (DES key parity)."""
    return key.translate(_ODD_PARITY)


def check_parity(key: bytes) -> bool:
    """True when every byte of ``key`` has odd parity."""
    return key.translate(_ODD_PARITY) == key


def kcv(key: bytes, length: int = 3) -> bytes:
    """Key check value: the key encrypting a zero block, first ``length`` bytes (ANSI X9.24)."""
    return ecb_encrypt(key, bytes(BLOCK))[:length]
