"""Bit maps the kernel reads and writes (EMV 4.3 Book 3 Annex C; JR/T 0025.5 Annex; JR/T 0025.12 for TTQ/CTQ).

Each flag is ``(byte index, mask)``; :class:`Bits` is a small mutable bit string for TVR and TSI.
"""

from __future__ import annotations

__all__ = [
    "AIP_CDA",
    "AIP_CVM",
    "AIP_DDA",
    "AIP_ISSUER_AUTH",
    "AIP_SDA",
    "AIP_TRM",
    "CID_AAC",
    "CID_ARQC",
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

Flag = tuple[int, int]

# TVR, Book 3 Annex C5
TVR_ODA_NOT_PERFORMED: Flag = (0, 0x80)
TVR_SDA_FAILED: Flag = (0, 0x40)
TVR_ICC_DATA_MISSING: Flag = (0, 0x20)
TVR_CARD_ON_EXCEPTION_FILE: Flag = (0, 0x10)
TVR_DDA_FAILED: Flag = (0, 0x08)
TVR_CDA_FAILED: Flag = (0, 0x04)
TVR_DIFFERENT_VERSIONS: Flag = (1, 0x80)
TVR_EXPIRED: Flag = (1, 0x40)
TVR_NOT_YET_EFFECTIVE: Flag = (1, 0x20)
TVR_SERVICE_NOT_ALLOWED: Flag = (1, 0x10)
TVR_NEW_CARD: Flag = (1, 0x08)
TVR_CVM_FAILED: Flag = (2, 0x80)
TVR_UNRECOGNISED_CVM: Flag = (2, 0x40)
TVR_PIN_TRY_LIMIT: Flag = (2, 0x20)
TVR_PIN_PAD_MISSING: Flag = (2, 0x10)
TVR_PIN_NOT_ENTERED: Flag = (2, 0x08)
TVR_ONLINE_PIN_ENTERED: Flag = (2, 0x04)
TVR_FLOOR_LIMIT: Flag = (3, 0x80)
TVR_LCOL_EXCEEDED: Flag = (3, 0x40)
TVR_UCOL_EXCEEDED: Flag = (3, 0x20)
TVR_RANDOM_ONLINE: Flag = (3, 0x10)
TVR_MERCHANT_FORCED_ONLINE: Flag = (3, 0x08)
TVR_ISSUER_AUTH_FAILED: Flag = (4, 0x40)
TVR_SCRIPT_FAILED_BEFORE: Flag = (4, 0x20)
TVR_SCRIPT_FAILED_AFTER: Flag = (4, 0x10)

# TSI, Book 3 Annex C6
TSI_ODA: Flag = (0, 0x80)
TSI_CVM: Flag = (0, 0x40)
TSI_CARD_RISK_MANAGEMENT: Flag = (0, 0x20)
TSI_ISSUER_AUTH: Flag = (0, 0x10)
TSI_TRM: Flag = (0, 0x08)
TSI_SCRIPT: Flag = (0, 0x04)

# AIP byte 1, Book 3 Annex C1
AIP_SDA = 0x40
AIP_DDA = 0x20
AIP_CVM = 0x10
AIP_TRM = 0x08
AIP_ISSUER_AUTH = 0x04
AIP_CDA = 0x01

# Cryptogram information data, Book 3 §6.5.5.4 (bits 8-7)
CID_AAC = 0x00
CID_TC = 0x40
CID_ARQC = 0x80


def cid_type(cid: int) -> int:
    """The cryptogram type of a CID byte: ``CID_AAC``, ``CID_TC``, ``CID_ARQC`` or ``0xC0`` (RFU)."""
    return cid & 0xC0


def cid_from_cvr(cvr: bytes) -> int:
    """The cryptogram type a qPBOC card states in its CVR when it sends no CID (``9F27`` is optional in the
    qPBOC GPO response, JR/T 0025.12; the reader then takes the type from the issuer application data, as
    Visa's qVSDC does): ``cvr`` is ``03 ‖ CVR`` (``9F10[3:7]``, docs/card-profile.md §9), and CVR byte 1
    bits 6-5 are the AC returned by the first cryptogram: ``00`` AAC, ``01`` TC, ``10`` ARQC, ``11`` RFU
    (``0xC0``). Bits 8-7 are the second GENERATE AC's, which qPBOC never has (``10``: not requested)."""
    assert len(cvr) == 4 and cvr[0] == 0x03
    return {0: CID_AAC, 1: CID_TC, 2: CID_ARQC}.get((cvr[1] >> 4) & 0x03, 0xC0)


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
