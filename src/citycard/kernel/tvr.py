"""Bit maps the kernel reads and writes: the bits themselves are named once, with their meanings, in
:mod:`citycard.codec.emvbits` (EMV 4.3 Book 3 Annex C; JR/T 0025.5), which the kernel's modules import;
:class:`Bits` is a small mutable bit string for TVR and TSI.
"""

from __future__ import annotations

from citycard.codec.emvbits import Flag, cvr_first_ac

__all__ = ["Bits", "cid_from_cvr"]


def cid_from_cvr(cvr: bytes) -> int:
    """The cryptogram type a qPBOC card states in its CVR when it sends no CID (``9F27`` is optional in the
    qPBOC GPO response, JR/T 0025.12; the reader then takes the type from the issuer application data, as
    Visa's qVSDC does): ``cvr`` is ``03 ‖ CVR`` (``9F10[3:7]``, docs/card-profile.md §9), whose byte 1
    bits 6-5 are the first cryptogram's type (:func:`citycard.codec.emvbits.cvr_first_ac`). Bits 8-7 are
    the second GENERATE AC's, which qPBOC never has (``10``: not requested)."""
    assert len(cvr) == 4 and cvr[0] == 0x03
    return cvr_first_ac(cvr[1:])


class Bits:
    """A fixed-length bit string (TVR is 5 bytes, TSI 2)."""

    __slots__ = ("_b",)

    def __init__(self, length: int) -> None:
        self._b = bytearray(length)

    def set(self, flag: Flag) -> None:
        self._b[flag[0]] |= flag[1]

    def clear(self, flag: Flag) -> None:
        self._b[flag[0]] &= ~flag[1] & 0xFF

    def __contains__(self, flag: Flag) -> bool:
        return bool(self._b[flag[0]] & flag[1])

    def value(self) -> bytes:
        return bytes(self._b)

    def intersects(self, mask: bytes) -> bool:
        return any(a & b for a, b in zip(self._b, mask, strict=False))
