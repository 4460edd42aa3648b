"""Bit maps the kernel reads and writes: the bits themselves are named once, with their meanings, in
:mod:`citycard.codec.emvbits` (EMV 4.3 Book 3 Annex C; JR/T 0025.5) and re-exported here for the kernel's
modules; :class:`Bits` is a small mutable bit string for TVR and TSI.
"""

from __future__ import annotations

from citycard.codec.emvbits import (
    AIP_CDA,
    AIP_CVM,
    AIP_DDA,
    AIP_ISSUER_AUTH,
    AIP_SDA,
    AIP_TRM,
    CID_AAC,
    CID_ARQC,
    CID_NAMES,
    CID_TC,
    TSI_CARD_RISK_MANAGEMENT,
    TSI_CVM,
    TSI_ISSUER_AUTH,
    TSI_ODA,
    TSI_SCRIPT,
    TSI_TRM,
    TVR_CARD_ON_EXCEPTION_FILE,
    TVR_CDA_FAILED,
    TVR_CVM_FAILED,
    TVR_DDA_FAILED,
    TVR_DIFFERENT_VERSIONS,
    TVR_EXPIRED,
    TVR_FLOOR_LIMIT,
    TVR_ICC_DATA_MISSING,
    TVR_ISSUER_AUTH_FAILED,
    TVR_LCOL_EXCEEDED,
    TVR_MERCHANT_FORCED_ONLINE,
    TVR_NEW_CARD,
    TVR_NOT_YET_EFFECTIVE,
    TVR_ODA_NOT_PERFORMED,
    TVR_ONLINE_PIN_ENTERED,
    TVR_PIN_NOT_ENTERED,
    TVR_PIN_PAD_MISSING,
    TVR_PIN_TRY_LIMIT,
    TVR_RANDOM_ONLINE,
    TVR_SCRIPT_FAILED_AFTER,
    TVR_SCRIPT_FAILED_BEFORE,
    TVR_SDA_FAILED,
    TVR_SERVICE_NOT_ALLOWED,
    TVR_UCOL_EXCEEDED,
    TVR_UNRECOGNISED_CVM,
    Flag,
    cid_type,
    cvr_first_ac,
)

__all__ = [
    "AIP_CDA",
    "AIP_CVM",
    "AIP_DDA",
    "AIP_ISSUER_AUTH",
    "AIP_SDA",
    "AIP_TRM",
    "CID_AAC",
    "CID_ARQC",
    "CID_NAMES",
    "CID_TC",
    "TSI_CARD_RISK_MANAGEMENT",
    "TSI_CVM",
    "TSI_ISSUER_AUTH",
    "TSI_ODA",
    "TSI_SCRIPT",
    "TSI_TRM",
    "TVR_CARD_ON_EXCEPTION_FILE",
    "TVR_CDA_FAILED",
    "TVR_CVM_FAILED",
    "TVR_DDA_FAILED",
    "TVR_DIFFERENT_VERSIONS",
    "TVR_EXPIRED",
    "TVR_FLOOR_LIMIT",
    "TVR_ICC_DATA_MISSING",
    "TVR_ISSUER_AUTH_FAILED",
    "TVR_LCOL_EXCEEDED",
    "TVR_MERCHANT_FORCED_ONLINE",
    "TVR_NEW_CARD",
    "TVR_NOT_YET_EFFECTIVE",
    "TVR_ODA_NOT_PERFORMED",
    "TVR_ONLINE_PIN_ENTERED",
    "TVR_PIN_NOT_ENTERED",
    "TVR_PIN_PAD_MISSING",
    "TVR_PIN_TRY_LIMIT",
    "TVR_RANDOM_ONLINE",
    "TVR_SCRIPT_FAILED_AFTER",
    "TVR_SCRIPT_FAILED_BEFORE",
    "TVR_SDA_FAILED",
    "TVR_SERVICE_NOT_ALLOWED",
    "TVR_UCOL_EXCEEDED",
    "TVR_UNRECOGNISED_CVM",
    "Bits",
    "cid_from_cvr",
    "cid_type",
]


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
