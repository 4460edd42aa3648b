"""The tag dictionary: names, formats and lengths of EMV and PBOC data objects.

Sources: EMV 4.3 Book 3 Annex A (data element dictionary) and Book 1 Annex B; JR/T 0025.5 (PBOC 2.0
debit/credit, data element annex), JR/T 0025.12 (qPBOC contactless) and JR/T 0025.13 (electronic cash),
and PBOC 3.0 additions (``DF69`` SM algorithm support). Visa VIS / Mastercard names are given for the
scheme-specific tags whose meaning depends on the RID.

Formats follow Book 3 §4.3: ``n`` BCD digits right-justified with leading zeros, ``cn`` BCD digits
left-justified padded with trailing ``F``, ``an`` / ``ans`` ASCII, ``b`` binary. Lengths are in bytes.
Tags above ``9F50`` (and the ``DFxx`` range) are payment-system specific: ``lookup(tag, rid)`` consults the
scheme's table for the RID first (UnionPay ``A000000333``, Visa ``A000000003``, Mastercard ``A000000004``)
and the generic table after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "RID_MASTERCARD",
    "RID_UNIONPAY",
    "RID_VISA",
    "Format",
    "Source",
    "TagInfo",
    "all_tags",
    "lookup",
    "tag_format",
    "tag_name",
]

Format = Literal["n", "cn", "an", "ans", "b"]
Source = Literal["card", "terminal", "issuer"]

RID_UNIONPAY: Final = "A000000333"
RID_VISA: Final = "A000000003"
RID_MASTERCARD: Final = "A000000004"

NI_MAX: Final = 248
"""Largest RSA modulus in EMV (Book 2 §5.1: 1984 bits), so the longest certificate."""


@dataclass(frozen=True, slots=True)
class TagInfo:
    """What the dictionary says about one tag: its name, format, length range (bytes) and origin."""

    tag: str
    name: str
    fmt: Format
    min_len: int
    max_len: int
    source: Source


_Row = tuple[str, str, Format, int, int, Source]

# EMV Book 3 Annex A (and Book 1 Annex B for the directory tags), plus the PBOC-only tags that have
# no other meaning (JR/T 0025.5 / .12 / .13).
_GENERIC_ROWS: tuple[_Row, ...] = (
    ("42", "Issuer identification number (IIN)", "n", 3, 3, "card"),
    ("4F", "Application identifier (AID) - card", "b", 5, 16, "card"),
    ("50", "Application label", "ans", 1, 16, "card"),
    ("56", "Track 1 data", "ans", 1, 76, "card"),
    ("57", "Track 2 equivalent data", "b", 1, 19, "card"),
    ("5A", "Application primary account number (PAN)", "cn", 1, 10, "card"),
    ("5F20", "Cardholder name", "ans", 2, 26, "card"),
    ("5F24", "Application expiration date", "n", 3, 3, "card"),
    ("5F25", "Application effective date", "n", 3, 3, "card"),
    ("5F28", "Issuer country code", "n", 2, 2, "card"),
    ("5F2A", "Transaction currency code", "n", 2, 2, "terminal"),
    ("5F2D", "Language preference", "an", 2, 8, "card"),
    ("5F30", "Service code", "n", 2, 2, "card"),
    ("5F34", "Application PAN sequence number (PSN)", "n", 1, 1, "card"),
    ("5F36", "Transaction currency exponent", "n", 1, 1, "terminal"),
    ("5F50", "Issuer URL", "ans", 1, 255, "card"),
    ("5F53", "International bank account number (IBAN)", "b", 1, 34, "card"),
    ("5F54", "Bank identifier code (BIC)", "b", 8, 11, "card"),
    ("5F55", "Issuer country code (alpha2)", "an", 2, 2, "card"),
    ("5F56", "Issuer country code (alpha3)", "an", 3, 3, "card"),
    ("5F57", "Account type", "n", 1, 1, "terminal"),
    ("61", "Application template", "b", 0, 252, "card"),
    ("6F", "File control information (FCI) template", "b", 0, 252, "card"),
    ("70", "READ RECORD response message template", "b", 0, 254, "card"),
    ("71", "Issuer script template 1", "b", 0, 255, "issuer"),
    ("72", "Issuer script template 2", "b", 0, 255, "issuer"),
    ("73", "Directory discretionary template", "b", 0, 252, "card"),
    ("77", "Response message template format 2", "b", 0, 255, "card"),
    ("80", "Response message template format 1", "b", 0, 255, "card"),
    ("81", "Amount, authorised (binary)", "b", 4, 4, "terminal"),
    ("82", "Application interchange profile (AIP)", "b", 2, 2, "card"),
    ("83", "Command template", "b", 0, 255, "terminal"),
    ("84", "Dedicated file (DF) name", "b", 5, 16, "card"),
    ("86", "Issuer script command", "b", 5, 261, "issuer"),
    ("87", "Application priority indicator", "b", 1, 1, "card"),
    ("88", "Short file identifier (SFI)", "b", 1, 1, "card"),
    ("89", "Authorisation code", "an", 6, 6, "issuer"),
    ("8A", "Authorisation response code (ARC)", "an", 2, 2, "issuer"),
    ("8C", "Card risk management data object list 1 (CDOL1)", "b", 0, 252, "card"),
    ("8D", "Card risk management data object list 2 (CDOL2)", "b", 0, 252, "card"),
    ("8E", "Cardholder verification method (CVM) list", "b", 10, 252, "card"),
    ("8F", "Certification authority public key index", "b", 1, 1, "card"),
    ("90", "Issuer public key certificate", "b", 1, NI_MAX, "card"),
    ("91", "Issuer authentication data", "b", 8, 16, "issuer"),
    ("92", "Issuer public key remainder", "b", 1, NI_MAX, "card"),
    ("93", "Signed static application data", "b", 1, NI_MAX, "card"),
    ("94", "Application file locator (AFL)", "b", 4, 252, "card"),
    ("95", "Terminal verification results (TVR)", "b", 5, 5, "terminal"),
    ("97", "Transaction certificate data object list (TDOL)", "b", 0, 252, "card"),
    ("98", "Transaction certificate (TC) hash value", "b", 20, 20, "terminal"),
    ("99", "Transaction personal identification number (PIN) data", "b", 0, 255, "terminal"),
    ("9A", "Transaction date", "n", 3, 3, "terminal"),
    ("9B", "Transaction status information (TSI)", "b", 2, 2, "terminal"),
    ("9C", "Transaction type", "n", 1, 1, "terminal"),
    ("9D", "Directory definition file (DDF) name", "b", 5, 16, "card"),
    ("9F01", "Acquirer identifier", "n", 6, 6, "terminal"),
    ("9F02", "Amount, authorised (numeric)", "n", 6, 6, "terminal"),
    ("9F03", "Amount, other (numeric)", "n", 6, 6, "terminal"),
    ("9F04", "Amount, other (binary)", "b", 4, 4, "terminal"),
    ("9F05", "Application discretionary data", "b", 1, 32, "card"),
    ("9F06", "Application identifier (AID) - terminal", "b", 5, 16, "terminal"),
    ("9F07", "Application usage control (AUC)", "b", 2, 2, "card"),
    ("9F08", "Application version number - card", "b", 2, 2, "card"),
    ("9F09", "Application version number - terminal", "b", 2, 2, "terminal"),
    ("9F0B", "Cardholder name extended", "ans", 27, 45, "card"),
    ("9F0D", "Issuer action code - default", "b", 5, 5, "card"),
    ("9F0E", "Issuer action code - denial", "b", 5, 5, "card"),
    ("9F0F", "Issuer action code - online", "b", 5, 5, "card"),
    ("9F10", "Issuer application data (IAD)", "b", 0, 32, "card"),
    ("9F11", "Issuer code table index", "n", 1, 1, "card"),
    ("9F12", "Application preferred name", "ans", 1, 16, "card"),
    ("9F13", "Last online application transaction counter (ATC) register", "b", 2, 2, "card"),
    ("9F14", "Lower consecutive offline limit", "b", 1, 1, "card"),
    ("9F15", "Merchant category code", "n", 2, 2, "terminal"),
    ("9F16", "Merchant identifier", "ans", 15, 15, "terminal"),
    ("9F17", "Personal identification number (PIN) try counter", "b", 1, 1, "card"),
    ("9F18", "Issuer script identifier", "b", 4, 4, "issuer"),
    ("9F1A", "Terminal country code", "n", 2, 2, "terminal"),
    ("9F1B", "Terminal floor limit", "b", 4, 4, "terminal"),
    ("9F1C", "Terminal identification", "an", 8, 8, "terminal"),
    ("9F1D", "Terminal risk management data", "b", 1, 8, "terminal"),
    ("9F1E", "Interface device (IFD) serial number", "an", 8, 8, "terminal"),
    ("9F1F", "Track 1 discretionary data", "ans", 0, 255, "card"),
    ("9F20", "Track 2 discretionary data", "cn", 0, 255, "card"),
    ("9F21", "Transaction time", "n", 3, 3, "terminal"),
    ("9F22", "Certification authority public key index - terminal", "b", 1, 1, "terminal"),
    ("9F23", "Upper consecutive offline limit", "b", 1, 1, "card"),
    ("9F26", "Application cryptogram (AC)", "b", 8, 8, "card"),
    ("9F27", "Cryptogram information data (CID)", "b", 1, 1, "card"),
    ("9F2D", "ICC PIN encipherment public key certificate", "b", 1, NI_MAX, "card"),
    ("9F2E", "ICC PIN encipherment public key exponent", "b", 1, 3, "card"),
    ("9F2F", "ICC PIN encipherment public key remainder", "b", 1, NI_MAX, "card"),
    ("9F32", "Issuer public key exponent", "b", 1, 3, "card"),
    ("9F33", "Terminal capabilities", "b", 3, 3, "terminal"),
    ("9F34", "Cardholder verification method (CVM) results", "b", 3, 3, "terminal"),
    ("9F35", "Terminal type", "n", 1, 1, "terminal"),
    ("9F36", "Application transaction counter (ATC)", "b", 2, 2, "card"),
    ("9F37", "Unpredictable number", "b", 4, 4, "terminal"),
    ("9F38", "Processing options data object list (PDOL)", "b", 0, 252, "card"),
    ("9F39", "Point-of-service (POS) entry mode", "n", 1, 1, "terminal"),
    ("9F3A", "Amount, reference currency", "b", 4, 4, "terminal"),
    ("9F3B", "Application reference currency", "n", 2, 8, "card"),
    ("9F3C", "Transaction reference currency code", "n", 2, 2, "terminal"),
    ("9F3D", "Transaction reference currency exponent", "n", 1, 1, "terminal"),
    ("9F40", "Additional terminal capabilities", "b", 5, 5, "terminal"),
    ("9F41", "Transaction sequence counter", "n", 2, 4, "terminal"),
    ("9F42", "Application currency code", "n", 2, 2, "card"),
    ("9F43", "Application reference currency exponent", "n", 1, 4, "card"),
    ("9F44", "Application currency exponent", "n", 1, 1, "card"),
    ("9F45", "Data authentication code", "b", 2, 2, "card"),
    ("9F46", "ICC public key certificate", "b", 1, NI_MAX, "card"),
    ("9F47", "ICC public key exponent", "b", 1, 3, "card"),
    ("9F48", "ICC public key remainder", "b", 1, NI_MAX, "card"),
    ("9F49", "Dynamic data authentication data object list (DDOL)", "b", 0, 252, "card"),
    ("9F4A", "Static data authentication tag list", "b", 0, 252, "card"),
    ("9F4B", "Signed dynamic application data", "b", 1, NI_MAX, "card"),
    ("9F4C", "ICC dynamic number", "b", 2, 8, "card"),
    ("9F4D", "Log entry (transaction log SFI, number of records)", "b", 2, 2, "card"),
    ("9F4E", "Merchant name and location", "ans", 0, 255, "terminal"),
    ("9F4F", "Log format", "b", 0, 252, "card"),
    ("A5", "File control information (FCI) proprietary template", "b", 0, 252, "card"),
    ("BF0C", "FCI issuer discretionary data", "b", 0, 222, "card"),
    # Tags defined by Visa VIS and adopted unchanged by PBOC 2.0 (JR/T 0025.5), same meaning in both.
    ("9F51", "Application currency code (card risk management)", "n", 2, 2, "card"),
    ("9F52", "Application default action (ADA)", "b", 2, 2, "card"),
    ("9F53", "Consecutive transaction limit (international)", "b", 1, 1, "card"),
    ("9F54", "Cumulative total transaction amount limit", "n", 6, 6, "card"),
    ("9F55", "Geographic indicator", "b", 1, 1, "card"),
    ("9F56", "Issuer authentication indicator", "b", 1, 1, "card"),
    ("9F57", "Issuer country code (card risk management)", "n", 2, 2, "card"),
    ("9F58", "Lower consecutive offline limit (card check)", "b", 1, 1, "card"),
    ("9F59", "Upper consecutive offline limit (card check)", "b", 1, 1, "card"),
    ("9F5A", "Issuer URL 2", "ans", 0, 255, "card"),
    ("9F5B", "Issuer script results", "b", 0, 255, "terminal"),
    ("9F5C", "Cumulative total transaction amount upper limit", "n", 6, 6, "card"),
    ("9F66", "Terminal transaction qualifiers (TTQ)", "b", 4, 4, "terminal"),
    ("9F68", "Card additional processes", "b", 4, 4, "card"),
    ("9F69", "Card authentication related data (fDDA)", "b", 5, 16, "card"),
    ("9F6B", "Card CVM limit", "n", 6, 6, "card"),
    ("9F6C", "Card transaction qualifiers (CTQ)", "b", 2, 2, "card"),
    ("9F72", "Consecutive transaction limit (international - country)", "b", 1, 1, "card"),
    ("9F73", "Currency conversion factor", "n", 4, 4, "card"),
    ("9F75", "Cumulative total transaction amount limit (dual currency)", "n", 6, 6, "card"),
    ("9F76", "Secondary application currency code", "n", 2, 2, "card"),
    # Proprietary DFxx tags of PBOC 2.0 / 3.0 (JR/T 0025.13 EC logs, segmented debit, SM algorithms).
    ("DF4D", "Load log entry (EC load log SFI, number of records)", "b", 2, 2, "card"),
    ("DF4F", "Load log format", "b", 0, 252, "card"),
    ("DF60", "CAPP transaction indicator", "b", 1, 1, "terminal"),
    ("DF61", "Segmented debit application identifier", "b", 1, 1, "card"),
    ("DF62", "EC segmented debit deduction limit", "n", 6, 6, "card"),
    ("DF63", "EC segmented debit amount already deducted", "n", 6, 6, "card"),
    ("DF69", "SM algorithm support indicator", "b", 1, 1, "terminal"),
    ("DF71", "Second-currency EC application currency code", "n", 2, 2, "card"),
    ("DF72", "Second-currency card CVM limit", "n", 6, 6, "card"),
    ("DF76", "Second-currency EC reset threshold", "n", 6, 6, "card"),
    ("DF77", "Second-currency EC balance limit", "n", 6, 6, "card"),
    ("DF78", "Second-currency EC single transaction limit", "n", 6, 6, "card"),
    ("DF79", "Second-currency EC balance", "n", 6, 6, "card"),
    # Scheme-specific tags when the RID is unknown: a combined name; the scheme tables below refine it.
    ("9F5D", "Available offline spending amount (Visa, UnionPay) / application capabilities (Mastercard)",
     "b", 1, 6, "card"),
    ("9F61", "Scheme-specific (UnionPay: cardholder ID number)", "b", 0, 255, "card"),
    ("9F62", "Scheme-specific (UnionPay: cardholder ID type; Mastercard: PCVC3 track 1)",
     "b", 0, 255, "card"),
    ("9F63", "Scheme-specific (Mastercard: PUNATC track 1; UnionPay: card product identification)",
     "b", 0, 255, "card"),
    ("9F6D", "Scheme-specific (Visa: VLP reset threshold; Mastercard: mag-stripe application version "
     "number, reader)", "b", 2, 6, "card"),
    ("9F74", "Scheme-specific (Visa: VLP issuer authorisation code)", "ans", 6, 6, "card"),
    ("9F77", "Scheme-specific (Visa: VLP funds limit)", "n", 6, 6, "card"),
    ("9F78", "Scheme-specific (Visa: VLP single transaction limit)", "n", 6, 6, "card"),
    ("9F79", "Scheme-specific (Visa: VLP available funds)", "n", 6, 6, "card"),
    ("9F7A", "Scheme-specific (Visa: VLP terminal support indicator)", "b", 1, 1, "terminal"),
    ("9F7B", "Scheme-specific (Visa: VLP terminal transaction limit)", "n", 6, 6, "terminal"),
)  # fmt: skip

# UnionPay (PBOC 2.0 / 3.0): electronic cash (JR/T 0025.13) and qPBOC (JR/T 0025.12).
_UNIONPAY_ROWS: tuple[_Row, ...] = (
    ("9F5D", "Available offline spending amount", "n", 6, 6, "card"),
    ("9F61", "Cardholder ID number", "an", 1, 40, "card"),
    ("9F62", "Cardholder ID type", "n", 1, 1, "card"),
    ("9F63", "Card product identification", "b", 16, 16, "card"),
    ("9F6D", "EC reset threshold", "n", 6, 6, "card"),
    ("9F74", "EC issuer authorization code", "an", 6, 6, "card"),
    ("9F77", "EC balance limit", "n", 6, 6, "card"),
    ("9F78", "EC single transaction limit", "n", 6, 6, "card"),
    ("9F79", "EC balance", "n", 6, 6, "card"),
    ("9F7A", "EC terminal support indicator", "b", 1, 1, "terminal"),
    ("9F7B", "EC terminal transaction limit", "n", 6, 6, "terminal"),
)

# Visa (VIS 1.5 / Visa contactless): the VLP (Visa Low-value Payment) objects PBOC EC was modelled on.
_VISA_ROWS: tuple[_Row, ...] = (
    ("9F5D", "Available offline spending amount (AOSA)", "n", 6, 6, "card"),
    ("9F6D", "VLP reset threshold", "n", 6, 6, "card"),
    ("9F74", "VLP issuer authorisation code", "ans", 6, 6, "card"),
    ("9F77", "VLP funds limit", "n", 6, 6, "card"),
    ("9F78", "VLP single transaction limit", "n", 6, 6, "card"),
    ("9F79", "VLP available funds", "n", 6, 6, "card"),
    ("9F7A", "VLP terminal support indicator", "b", 1, 1, "terminal"),
    ("9F7B", "VLP terminal transaction limit", "n", 6, 6, "terminal"),
)

# Mastercard (M/Chip, PayPass mag-stripe).
_MASTERCARD_ROWS: tuple[_Row, ...] = (
    ("9F5D", "Application capabilities information", "b", 3, 3, "card"),
    ("9F62", "PCVC3 (track 1)", "b", 6, 6, "card"),
    ("9F63", "PUNATC (track 1)", "b", 6, 6, "card"),
    ("9F6D", "Mag-stripe application version number (reader)", "b", 2, 2, "terminal"),
)


def _table(rows: tuple[_Row, ...]) -> dict[str, TagInfo]:
    table = {row[0]: TagInfo(*row) for row in rows}
    assert len(table) == len(rows), "duplicate tag in a dictionary table"
    return table


_GENERIC: Final = _table(_GENERIC_ROWS)
_BY_RID: Final = {
    RID_UNIONPAY: _table(_UNIONPAY_ROWS),
    RID_VISA: _table(_VISA_ROWS),
    RID_MASTERCARD: _table(_MASTERCARD_ROWS),
}


def _rid_key(rid: str | None) -> str | None:
    """The RID part (first 5 bytes) of a RID or a whole AID, upper-case."""
    return rid[:10].upper() if rid else None


def lookup(tag: str, rid: str | None = None) -> TagInfo | None:
    """The dictionary entry for ``tag`` (hex, any case), as the scheme of ``rid`` (a RID or AID) means it."""
    key = tag.upper()
    scheme = _BY_RID.get(_rid_key(rid) or "")
    if scheme is not None and key in scheme:
        return scheme[key]
    return _GENERIC.get(key)


def tag_name(tag: str, rid: str | None = None) -> str:
    """The tag's English name, or ``"Unknown"``."""
    info = lookup(tag, rid)
    return info.name if info is not None else "Unknown"


def tag_format(tag: str, rid: str | None = None) -> Format:
    """The tag's format (``n``, ``cn``, ``an``, ``ans`` or ``b``); ``b`` when the tag is unknown."""
    info = lookup(tag, rid)
    return info.fmt if info is not None else "b"


def all_tags(rid: str | None = None) -> list[TagInfo]:
    """Every entry known for ``rid`` (scheme entries replacing generic ones), sorted by tag."""
    merged = dict(_GENERIC)
    merged.update(_BY_RID.get(_rid_key(rid) or "", {}))
    return [merged[t] for t in sorted(merged, key=lambda t: (len(t), t))]
