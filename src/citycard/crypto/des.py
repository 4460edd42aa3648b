"""The one DES / 3DES wrapper of the project (FIPS 46-3, ANSI X9.52; keys as EMV uses them).

Single DES keys are 8 bytes, double-length 3DES keys 16 bytes (K1‖K2, EDE with K1 again), triple-length
24 bytes. Every block operation in ``crypto`` goes through here, so that key contexts are made once and
reused: making a context costs far more than encrypting a block (see REFERENCE.md, "cost facts").
Long-lived keys' ECB contexts are kept in one cache, the contexts of MAC algorithm 3 (session keys,
MAC keys) in another (:class:`_Retail`); both are bounded, and keys never leave the process through them.
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
    "ecb_encrypt_once",
    "kcv",
    "retail_mac_once",
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


_ECB = modes.ECB()
"""ECB has no parameters: one mode object serves every context."""
_CBC_ZERO = modes.CBC(bytes(BLOCK))
"""CBC from a zero IV (mode objects are immutable: one serves every context)."""


def _public_encryptor(algorithm: BlockCipherAlgorithm, mode: Any) -> Any:
    """An encryption context through cryptography's public API."""
    return Cipher(algorithm, mode).encryptor()


def _fast_encryptor() -> Callable[[BlockCipherAlgorithm, Any], Any]:
    """cryptography's own constructor of an encryption context: what ``Cipher(algorithm, mode).encryptor()``
    returns for a mode without a tag, without ``Cipher``'s checks of its arguments (nine ABC ``isinstance``
    checks, which cost more than OpenSSL's making of the context: some 4 µs of the 7 of a context). It lives
    in cryptography's private bindings: when a release moves it, the public path serves (slower, the same
    bytes). ``tests/crypto/test_des_mac.py`` checks that these contexts encrypt as ``Cipher``'s do."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        made: Callable[[BlockCipherAlgorithm, Any], Any] = rust_openssl.ciphers.create_encryption_ctx
    except (ImportError, AttributeError):  # pragma: no cover - another cryptography than the pinned one
        return _public_encryptor
    return made


_new_encryptor = _fast_encryptor()
"""The context constructor of the MAC contexts of session keys below (a 24-byte 3DES key, ECB or
:data:`_CBC_ZERO`, which ``Cipher``'s checks accept); one is made for each TC clearing verifies."""


def _bare_tdes(key: bytes) -> TripleDES:
    """The 3DES algorithm object of a 24-byte ``key`` without ``TripleDES.__init__``, whose checks (the key's
    type, its length against the key sizes, a deprecation branch per length) cost a third of a microsecond
    of the three a MAC context costs to make, for keys these functions built themselves (24 bytes, from a
    checked 16-byte key). The object is what ``__init__`` leaves: its ``key``."""
    algorithm: TripleDES = object.__new__(TripleDES)
    algorithm.key = key
    return algorithm


def _session_tdes() -> Callable[[bytes], TripleDES]:
    """:func:`_bare_tdes` when an object made so gives the contexts ``TripleDES(key)`` gives (checked once,
    here: a cryptography release that keeps more state in the object makes the fallback serve), else the
    public constructor."""
    key, block = bytes(range(1, 25)), bytes(range(BLOCK))
    try:
        same = _new_encryptor(_bare_tdes(key), _ECB).update(block) == _public_encryptor(
            TripleDES(key), _ECB
        ).update(block)
    except Exception:  # pragma: no cover - another cryptography than the pinned one
        same = False
    return _bare_tdes if same else TripleDES


_new_tdes = _session_tdes()
"""The 3DES algorithm of a 24-byte key for the MAC contexts below (:func:`_bare_tdes` with the pinned
cryptography)."""


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


class _Retail(threading.local):
    """Per thread, a bounded LRU of the contexts of ISO 9797-1 MAC algorithm 3 for double-length keys
    K = K1‖K2: a single-DES CBC encryptor under K1 from a zero IV (3DES-EDE under K1‖K1‖K1, which is
    single DES; made when a message of more than one block needs it), the chaining value it stands at
    (the last block it gave out), and the 3DES-EDE ECB encryptor under K.

    Kept apart from :class:`ContextCache`: session keys come here (each used for one MAC or two, and the
    ARPC) and would only push the long-lived keys (master keys, UDKs) out of the large LRU. The single-DES
    chain over all blocks but the last is one call into the library rather than one per block. A CBC
    context is reused for the next message under the same key by XORing its chaining value into that
    message's first block, which cancels the chaining: the context then computes CBC from a zero IV. An
    entry is taken out of the LRU while in use and put back with its new chaining value, so an exception
    half-way drops it rather than leaving a context whose chaining value is unknown.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, tuple[Any, int, Any]] = OrderedDict()

    def _put(self, key: bytes, entry: tuple[Any, int, Any]) -> None:
        entries = self._entries
        entries[key] = entry
        if len(entries) > self._size:
            entries.popitem(last=False)

    def mac(self, key: bytes, padded: bytes) -> bytes:
        """Algorithm 3 over whole blocks under a 16-byte ``key``: single-DES CBC under K1 over all blocks
        but the last, then the last block XOR that chain through 3DES-EDE under K; 8 bytes."""
        assert padded and not len(padded) % BLOCK, len(padded)
        entry = self._entries.pop(key, None)
        single, chain, triple = (None, 0, _tdes_ecb(key)) if entry is None else entry
        end = len(padded) - BLOCK
        last = int.from_bytes(padded[end:], "big")
        if end:
            head = padded[:end]
            if single is None:
                single = _single_cbc(key)
            elif chain:  # cancel the context's chaining: this message starts from a zero IV
                head = (int.from_bytes(head[:BLOCK], "big") ^ chain).to_bytes(BLOCK, "big") + head[BLOCK:]
            chain = int.from_bytes(single.update(head)[-BLOCK:], "big")
            last ^= chain
        out: bytes = triple.update(last.to_bytes(BLOCK, "big"))
        self._put(key, (single, chain, triple))
        return out

    def encrypt_block(self, key: bytes, block: bytes) -> bytes:
        """3DES-EDE of one block under a 16-byte ``key`` with the encryptor of this key's MACs (the ARPC,
        under the session key that has just verified the ARQC)."""
        entry = self._entries.pop(key, None)
        if entry is None:
            entry = (None, 0, _tdes_ecb(key))
        out: bytes = entry[2].update(block)
        self._put(key, entry)
        return out


def _tdes_ecb(key: bytes) -> Any:
    """A new 3DES-EDE ECB encryptor under a double-length key K1‖K2 (as K1‖K2‖K1)."""
    if len(key) != 16:
        raise ValueError(f"a double-length 3DES key is 16 bytes, not {len(key)}")
    return _new_encryptor(_new_tdes(key + key[:8]), _ECB)


def _single_cbc(key: bytes) -> Any:
    """A new single-DES CBC encryptor from a zero IV under K1 of a double-length key (3DES under K1‖K1‖K1)."""
    return _new_encryptor(_new_tdes(key[:8] * 3), _CBC_ZERO)


def retail_mac_once(key: bytes, padded: bytes) -> bytes:
    """ISO 9797-1 MAC algorithm 3 as :meth:`_Retail.mac` computes it, under a 16-byte ``key`` that MACs this
    one message (a session key of a TC verified in clearing: one per card and ATC): its two contexts are
    made, used and dropped, never put in the LRU of :class:`_Retail`, where they would only push out the
    contexts that are used again. ``padded``: whole blocks."""
    assert padded and not len(padded) % BLOCK, len(padded)
    end = len(padded) - BLOCK
    last = int.from_bytes(padded[end:], "big")
    if end:
        last ^= int.from_bytes(_single_cbc(key).update(padded[:end])[-BLOCK:], "big")
    out: bytes = _tdes_ecb(key).update(last.to_bytes(BLOCK, "big"))
    return out


def ecb_encrypt_once(key: bytes, data: bytes) -> bytes:
    """3DES-EDE ECB of whole blocks under a 16-byte ``key`` used for this call only (a card's UDK in
    clearing, which derives the session keys of the card's TCs of the day at once): its context is made,
    used and dropped, never put in the LRU of :func:`ecb_encrypt`, where it would only push out the keys
    that are used again."""
    _check_blocks(data)
    out: bytes = _tdes_ecb(key).update(data)
    return out


_retail = _Retail()


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
