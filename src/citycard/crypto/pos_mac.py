"""The MAC of field 64 in the UnionPay POS profile, under the terminal's MAC key (MAK).

Two choices, both through the project's one MAC implementation (:mod:`.mac`), padding method 1 (zeros up
to a block, none when aligned), full 8 bytes:

- ``X9_19`` (default): ANSI X9.19 retail MAC = ISO/IEC 9797-1 MAC algorithm 3 under a double-length MAK
  (single-DES CBC under K1, last block through 3DES-EDE K1,K2). UnionPay terminals with a 3DES MAK
  (sign-on network management code 003/004) use it.
- ``ISO9797_1_ALG1``: ISO/IEC 9797-1 MAC algorithm 1 (CBC-MAC) under the MAK as given (single DES for an
  8-byte key, 3DES for 16 or 24 bytes): the single-DES MAK of sign-on code 001.

The MAC input block is chosen by the codec (:func:`citycard.codec.iso8583.wire.mac_block`: MTI to the end
of field 63). Not implemented: the UnionPay "ECB" MAC of older terminals (XOR of all blocks, expanded to
hex, two DES passes, 8 hex characters sent as ASCII), which is not an ISO 9797-1 algorithm.
"""

from __future__ import annotations

import enum

from .mac import mac_alg1, mac_alg3

__all__ = ["PosMacAlgorithm", "pos_mac"]


class PosMacAlgorithm(enum.StrEnum):
    X9_19 = "x9.19"
    ISO9797_1_ALG1 = "iso9797-1-alg1"


def pos_mac(mak: bytes, mac_block: bytes, algorithm: PosMacAlgorithm = PosMacAlgorithm.X9_19) -> bytes:
    """The 8-byte MAC of ``mac_block`` under ``mak`` (padding method 1)."""
    if algorithm is PosMacAlgorithm.X9_19:
        return mac_alg3(mak, mac_block, padding=1, length=8)
    return mac_alg1(mak, mac_block, padding=1, length=8)
