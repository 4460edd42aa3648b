"""The bit fields of EMV and PBOC data objects, each bit named once, with its meaning.

The terminal kernel sets and reads these bits, the card emulator writes them, the issuer reads them, and the
pretty-printer (``citycard tlv``) spells them out: all from this one table, so a bit cannot mean one thing
to the kernel and another on the screen (REVIEW.md, "say it once").

Sources: EMV 4.3 Book 3 Annex C (AIP C1, TVR C5, TSI C6) and §6.5.5.4 (CID); the card verification
results (CVR) in the layout of JR/T 0025.5's issuer application data, the same as Visa's VIS 1.5
(docs/card-profile.md §9). A flag is ``(byte index, mask)``, byte 0 being the object's first byte.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AIP_BITS",
    "AIP_CDA",
    "AIP_CVM",
    "AIP_DDA",
    "AIP_ISSUER_AUTH",
    "AIP_SDA",
    "AIP_TRM",
    "CID_AAC",
    "CID_ARQC",
    "CID_NAMES",
    "CID_RFU",
    "CID_TC",
    "CVR_BITS",
    "CVR_DDA_PERFORMED",
    "CVR_ISSUER_AUTH_FAILED",
    "CVR_LAST_ISSUER_AUTH_FAILED",
    "CVR_LAST_ONLINE_INCOMPLETE",
    "CVR_LENGTH",
    "CVR_PIN_FAILED",
    "CVR_PIN_PERFORMED",
    "CVR_PIN_TRY_LIMIT_EXCEEDED",
    "CVR_SCRIPT_FAILED",
    "TSI_BITS",
    "TSI_CARD_RISK_MANAGEMENT",
    "TSI_CVM",
    "TSI_ISSUER_AUTH",
    "TSI_ODA",
    "TSI_SCRIPT",
    "TSI_TRM",
    "TVR_BITS",
    "TVR_CARD_ON_EXCEPTION_FILE",
    "TVR_CDA_FAILED",
    "TVR_CVM_FAILED",
    "TVR_DDA_FAILED",
    "TVR_DEFAULT_TDOL",
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
    "TVR_SDA_SELECTED",
    "TVR_SERVICE_NOT_ALLOWED",
    "TVR_UCOL_EXCEEDED",
    "TVR_UNRECOGNISED_CVM",
    "Flag",
    "cid_type",
    "cvr_first_ac",
    "cvr_first_ac_bits",
    "cvr_has",
    "cvr_scripts",
    "cvr_second_ac",
    "cvr_second_ac_bits",
]

Flag = tuple[int, int]
"""``(byte index, mask)`` of one bit (or a few) of a data object."""

AIP_BITS: Final[dict[Flag, str]] = {}
TVR_BITS: Final[dict[Flag, str]] = {}
TSI_BITS: Final[dict[Flag, str]] = {}
CVR_BITS: Final[dict[Flag, str]] = {}


def _bit(table: dict[Flag, str], byte: int, mask: int, meaning: str) -> Flag:
    flag = (byte, mask)
    assert 0 < mask <= 0xFF and flag not in table, flag
    table[flag] = meaning
    return flag


def _aip(mask: int, meaning: str) -> int:
    """An AIP bit of byte 1 (the kernel tests it as a mask of that byte; byte 2 is RFU in EMV)."""
    return _bit(AIP_BITS, 0, mask, meaning)[1]


# -- application interchange profile 82, Book 3 Annex C1 ----------------------------------------------------
AIP_SDA: Final = _aip(0x40, "SDA supported")
AIP_DDA: Final = _aip(0x20, "DDA supported")
AIP_CVM: Final = _aip(0x10, "cardholder verification supported")
AIP_TRM: Final = _aip(0x08, "terminal risk management to be performed")
AIP_ISSUER_AUTH: Final = _aip(0x04, "issuer authentication supported")
AIP_CDA: Final = _aip(0x01, "CDA supported")

# -- terminal verification results 95, Book 3 Annex C5 ------------------------------------------------------
TVR_ODA_NOT_PERFORMED: Final = _bit(TVR_BITS, 0, 0x80, "offline data authentication not performed")
TVR_SDA_FAILED: Final = _bit(TVR_BITS, 0, 0x40, "SDA failed")
TVR_ICC_DATA_MISSING: Final = _bit(TVR_BITS, 0, 0x20, "ICC data missing")
TVR_CARD_ON_EXCEPTION_FILE: Final = _bit(TVR_BITS, 0, 0x10, "card on terminal exception file")
TVR_DDA_FAILED: Final = _bit(TVR_BITS, 0, 0x08, "DDA failed")
TVR_CDA_FAILED: Final = _bit(TVR_BITS, 0, 0x04, "CDA failed")
TVR_SDA_SELECTED: Final = _bit(TVR_BITS, 0, 0x02, "SDA selected")
TVR_DIFFERENT_VERSIONS: Final = _bit(
    TVR_BITS, 1, 0x80, "ICC and terminal have different application versions"
)
TVR_EXPIRED: Final = _bit(TVR_BITS, 1, 0x40, "expired application")
TVR_NOT_YET_EFFECTIVE: Final = _bit(TVR_BITS, 1, 0x20, "application not yet effective")
TVR_SERVICE_NOT_ALLOWED: Final = _bit(TVR_BITS, 1, 0x10, "requested service not allowed for card product")
TVR_NEW_CARD: Final = _bit(TVR_BITS, 1, 0x08, "new card")
TVR_CVM_FAILED: Final = _bit(TVR_BITS, 2, 0x80, "cardholder verification not successful")
TVR_UNRECOGNISED_CVM: Final = _bit(TVR_BITS, 2, 0x40, "unrecognised CVM")
TVR_PIN_TRY_LIMIT: Final = _bit(TVR_BITS, 2, 0x20, "PIN try limit exceeded")
TVR_PIN_PAD_MISSING: Final = _bit(TVR_BITS, 2, 0x10, "PIN entry required, PIN pad not present or not working")
TVR_PIN_NOT_ENTERED: Final = _bit(TVR_BITS, 2, 0x08, "PIN entry required, PIN pad present, PIN not entered")
TVR_ONLINE_PIN_ENTERED: Final = _bit(TVR_BITS, 2, 0x04, "online PIN entered")
TVR_FLOOR_LIMIT: Final = _bit(TVR_BITS, 3, 0x80, "transaction exceeds floor limit")
TVR_LCOL_EXCEEDED: Final = _bit(TVR_BITS, 3, 0x40, "lower consecutive offline limit exceeded")
TVR_UCOL_EXCEEDED: Final = _bit(TVR_BITS, 3, 0x20, "upper consecutive offline limit exceeded")
TVR_RANDOM_ONLINE: Final = _bit(TVR_BITS, 3, 0x10, "transaction selected randomly for online processing")
TVR_MERCHANT_FORCED_ONLINE: Final = _bit(TVR_BITS, 3, 0x08, "merchant forced transaction online")
TVR_DEFAULT_TDOL: Final = _bit(TVR_BITS, 4, 0x80, "default TDOL used")
TVR_ISSUER_AUTH_FAILED: Final = _bit(TVR_BITS, 4, 0x40, "issuer authentication failed")
TVR_SCRIPT_FAILED_BEFORE: Final = _bit(TVR_BITS, 4, 0x20, "script processing failed before final GENERATE AC")
TVR_SCRIPT_FAILED_AFTER: Final = _bit(TVR_BITS, 4, 0x10, "script processing failed after final GENERATE AC")

# -- transaction status information 9B, Book 3 Annex C6 ----------------------------------------------------
TSI_ODA: Final = _bit(TSI_BITS, 0, 0x80, "offline data authentication performed")
TSI_CVM: Final = _bit(TSI_BITS, 0, 0x40, "cardholder verification performed")
TSI_CARD_RISK_MANAGEMENT: Final = _bit(TSI_BITS, 0, 0x20, "card risk management performed")
TSI_ISSUER_AUTH: Final = _bit(TSI_BITS, 0, 0x10, "issuer authentication performed")
TSI_TRM: Final = _bit(TSI_BITS, 0, 0x08, "terminal risk management performed")
TSI_SCRIPT: Final = _bit(TSI_BITS, 0, 0x04, "script processing performed")

# -- cryptogram information data 9F27, Book 3 §6.5.5.4 (bits 8-7: the cryptogram's type) -------------------
CID_AAC: Final = 0x00
CID_TC: Final = 0x40
CID_ARQC: Final = 0x80
CID_RFU: Final = 0xC0
CID_NAMES: Final[dict[int, str]] = {CID_AAC: "AAC", CID_TC: "TC", CID_ARQC: "ARQC", CID_RFU: "RFU"}


def cid_type(cid: int) -> int:
    """The cryptogram type of a CID byte: ``CID_AAC``, ``CID_TC``, ``CID_ARQC`` or ``CID_RFU``."""
    return cid & 0xC0


# -- card verification results: the 3 bytes after the ``03`` length in 9F10 (JR/T 0025.5, VIS layout) -------
CVR_LENGTH: Final = 3
CVR_ISSUER_AUTH_FAILED: Final = _bit(CVR_BITS, 0, 0x08, "issuer authentication failed")
CVR_PIN_PERFORMED: Final = _bit(CVR_BITS, 0, 0x04, "offline PIN verification performed")
CVR_PIN_FAILED: Final = _bit(CVR_BITS, 0, 0x02, "offline PIN verification failed")
CVR_LAST_ONLINE_INCOMPLETE: Final = _bit(CVR_BITS, 1, 0x80, "last online transaction not completed")
CVR_PIN_TRY_LIMIT_EXCEEDED: Final = _bit(CVR_BITS, 1, 0x40, "PIN try limit exceeded")
CVR_LAST_ISSUER_AUTH_FAILED: Final = _bit(
    CVR_BITS, 1, 0x08, "issuer authentication failed in the last online transaction"
)
CVR_SCRIPT_FAILED: Final = _bit(CVR_BITS, 2, 0x08, "issuer script processing failed")
CVR_DDA_PERFORMED: Final = _bit(CVR_BITS, 2, 0x02, "DDA performed")

_CVR_AC_TYPES: Final[dict[int, int]] = {0: CID_AAC, 1: CID_TC, 2: CID_ARQC, 3: CID_RFU}
"""The two-bit codes of byte 1 for the cryptogram returned: ``00`` AAC, ``01`` TC, ``10`` ARQC, ``11`` RFU."""
_CVR_AC_CODES: Final[dict[int, int]] = {cid: code for code, cid in _CVR_AC_TYPES.items()}


def cvr_first_ac_bits(cid: int | None) -> int:
    """CVR byte 1 bits 6-5: the type of the cryptogram the first GENERATE AC returned (none yet: ``00``)."""
    return 0 if cid is None else _CVR_AC_CODES[cid_type(cid)] << 4


def cvr_second_ac_bits(cid: int | None) -> int:
    """CVR byte 1 bits 8-7: the second GENERATE AC's (``10``: not requested, which a second ARQC, never
    given, would read as too)."""
    return _CVR_AC_CODES[CID_ARQC if cid is None else cid_type(cid)] << 6


def cvr_first_ac(cvr: bytes) -> int:
    """The cryptogram type a CVR states for the first GENERATE AC (or a qPBOC card's GPO; qPBOC has no
    second)."""
    assert len(cvr) == CVR_LENGTH
    return _CVR_AC_TYPES[(cvr[0] >> 4) & 0x03]


def cvr_second_ac(cvr: bytes) -> int | None:
    """The cryptogram type a CVR states for the second GENERATE AC; None when not requested (``10``)."""
    assert len(cvr) == CVR_LENGTH
    second = _CVR_AC_TYPES[cvr[0] >> 6]
    return None if second == CID_ARQC else second


def cvr_has(cvr: bytes, flag: Flag) -> bool:
    """Whether ``flag`` (one of the ``CVR_*`` bits) is set in a CVR's 3 bytes."""
    assert len(cvr) == CVR_LENGTH
    return bool(cvr[flag[0]] & flag[1])


def cvr_scripts(cvr: bytes) -> tuple[int, bool]:
    """Byte 3 of a CVR: how many issuer script commands the card processed in its last online transaction
    (bits 8-5, counted up to 15) and whether one failed (bit 4)."""
    assert len(cvr) == CVR_LENGTH
    return cvr[2] >> 4, bool(cvr[2] & CVR_SCRIPT_FAILED[1])
