"""Data formats of the PBOC debit/credit application with electronic cash: constants of the card profile,
the card verification results, the issuer application data, log records and record building.

Every value here is the one written down in ``docs/card-profile.md`` (JR/T 0025.5 card specification,
JR/T 0025.12 qPBOC, JR/T 0025.13 electronic cash; EMV 4.3 Book 3 Annex A for the tags). The command
processing that uses them is in :mod:`citycard.chip.card`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from citycard.codec import aids
from citycard.codec.commands import PPSE_NAME, PSE_NAME
from citycard.codec.dol import parse_dol
from citycard.codec.emvbits import (
    CID_AAC,
    CID_ARQC,
    CID_TC,
    CVR_DDA_PERFORMED,
    CVR_ISSUER_AUTH_FAILED,
    CVR_LAST_ISSUER_AUTH_FAILED,
    CVR_LAST_ONLINE_INCOMPLETE,
    CVR_LENGTH,
    CVR_PIN_FAILED,
    CVR_PIN_PERFORMED,
    CVR_PIN_TRY_LIMIT_EXCEEDED,
    CVR_SCRIPT_FAILED,
    cvr_first_ac_bits,
    cvr_second_ac_bits,
)
from citycard.codec.money import bcd_amount
from citycard.crypto.cvn import CVN01_TDES
from citycard.crypto.mac import mac_alg3

__all__ = [
    "AID_CREDIT",
    "AID_DEBIT",
    "AIP_CDA",
    "AIP_CONTACT",
    "AIP_QPBOC",
    "APPROVED_ARCS",
    "ATR_CONTACT",
    "ATR_CONTACTLESS",
    "CDOL1",
    "CDOL2",
    "CID_AAC",
    "CID_ARQC",
    "CID_TC",
    "DDOL",
    "EC_AUTH_CODE",
    "LOAD_LOG_FORMAT",
    "LOAD_LOG_SFI",
    "PDOL_CONTACT",
    "PDOL_CONTACTLESS",
    "PPSE_NAME",
    "PSE_NAME",
    "TRANSIT_RECORD_LENGTHS",
    "TRANSIT_SFI",
    "TRANSIT_WRITABLE",
    "TXN_LOG_FORMAT",
    "TXN_LOG_SFI",
    "Cvr",
    "afl",
    "build_iad",
    "load_log_record",
    "txn_log_record",
]

ATR_CONTACT = bytes.fromhex("3B68000000 73C84000 009000".replace(" ", ""))
"""T=0, TB1 = TC1 = 00, 8 historical bytes (ISO/IEC 7816-3 §8; EMV Book 1 §8.3)."""
ATR_CONTACTLESS = bytes.fromhex("3B80800101")
"""The ATR PC/SC part 3 builds for an ISO 14443-4 card without historical bytes (TCK = 01)."""

AID_DEBIT = aids.DEBIT
AID_CREDIT = aids.CREDIT  # the card's two applications (citycard.codec.aids)

PDOL_CONTACT = bytes.fromhex("9F7A01 9F0206 5F2A02".replace(" ", ""))
PDOL_CONTACTLESS = bytes.fromhex(
    "9F6604 9F7A01 9F0206 9F0306 9F1A02 9505 5F2A02 9A03 9C01 9F3704 9F2103 9F4E14".replace(" ", "")
)
CDOL1 = bytes.fromhex("9F0206 9F0306 9F1A02 9505 5F2A02 9A03 9C01 9F3704 9F2103 9F4E14".replace(" ", ""))
CDOL2 = bytes.fromhex("8A02 9F3704 9505 910A".replace(" ", ""))
DDOL = bytes.fromhex("9F3704")
TXN_LOG_FORMAT = bytes.fromhex("9A03 9F2103 9F0206 9F0306 9F1A02 5F2A02 9F4E14 9C01 9F3602".replace(" ", ""))
LOAD_LOG_FORMAT = bytes.fromhex("9A03 9F2103 9F1A02 9F4E14 9F3602".replace(" ", ""))
TXN_LOG_SFI = 11
LOAD_LOG_SFI = 12
TRANSIT_SFI = 21
"""The transit file (docs/transit.md): the first issuer-specific SFI (EMV 4.3 Book 3 §5.3.2.2: 21 to 30).
Record 1 (8 bytes) is written at issuance or by issuer script; record 2 (the trip, 32 bytes and the
validators' 4-byte MAC) by UPDATE CAPP DATA CACHE, committed with the debit of the qPBOC GPO that approves
offline; record 3 (11 bytes: PAN as 5A padded with F to 10 bytes, PSN) at issuance only, the card identity
the validators derive the card's transit key from before the GPO; record 4 (2 bytes, binary) the card's
transit write counter: how many times it committed a staged record, counted by the card itself in that
commit (modulo 65536) and written by nothing else, so that the validators bind each trip record to the
moment it was written (a replayed earlier record does not match it). Cards personalised before record 4
have three records."""
TRANSIT_RECORD_LENGTHS = (8, 36, 11, 2)
TRANSIT_LEGACY_RECORDS = 3
TRANSIT_WRITABLE = frozenset({2})
EC_AUTH_CODE = b"ECC001"

AIP_CONTACT = bytes.fromhex("7C00")
AIP_CDA = bytes.fromhex("7D00")
"""AIP of a product that also offers CDA (byte 1 bit 1, EMV Book 3 Annex C1)."""
AIP_QPBOC = AIP_CONTACT
"""The same AIP as on contact: the static data to be authenticated (and so the ICC certificate) covers
the AIP of the GPO response (EMV Book 3 §10.3), so both interfaces must return the signed one."""

APPROVED_ARCS = frozenset({b"00", b"10", b"11"})
"""Authorisation response codes ``8A`` that approve (ISO 8583 field 39, ASCII)."""


_AFL_BASE = bytes.fromhex("1001020118010300")
_AFL_EC = _AFL_BASE + bytes.fromhex("20010200")


def afl(*, ec: bool) -> bytes:
    """The AFL (``94``) of the contact and qPBOC paths; the EC path adds SFI 4 records 1–2 (EC limits, then
    ``9F74`` alone in the last record, as JR/T 0025 recommends)."""
    return _AFL_EC if ec else _AFL_BASE


@dataclass
class Cvr:
    """Card verification results (3 bytes after the ``03`` length in ``9F10``; VIS/PBOC layout)."""

    first_ac: int | None = None  # CID of the first GENERATE AC
    second_ac: int | None = None
    issuer_auth_failed: bool = False
    pin_performed: bool = False
    pin_failed: bool = False
    last_online_incomplete: bool = False
    pin_try_limit_exceeded: bool = False
    last_issuer_auth_failed: bool = False
    scripts_processed: int = 0
    script_failed: bool = False
    dda_performed: bool = False

    def to_bytes(self) -> bytes:
        cvr = bytearray(CVR_LENGTH)
        cvr[0] = cvr_second_ac_bits(self.second_ac) | cvr_first_ac_bits(self.first_ac)
        cvr[2] = min(self.scripts_processed, 15) << 4
        for flag, on in (
            (CVR_ISSUER_AUTH_FAILED, self.issuer_auth_failed),
            (CVR_PIN_PERFORMED, self.pin_performed),
            (CVR_PIN_FAILED, self.pin_failed),
            (CVR_LAST_ONLINE_INCOMPLETE, self.last_online_incomplete),
            (CVR_PIN_TRY_LIMIT_EXCEEDED, self.pin_try_limit_exceeded),
            (CVR_LAST_ISSUER_AUTH_FAILED, self.last_issuer_auth_failed),
            (CVR_SCRIPT_FAILED, self.script_failed),
            (CVR_DDA_PERFORMED, self.dda_performed),
        ):
            if on:
                cvr[flag[0]] |= flag[1]
        return bytes(cvr)


def build_iad(cvr: bytes, balance_fen: int, atc: int, session_key: bytes) -> bytes:
    """Issuer application data ``9F10`` (19 bytes): ``07 01 01 03 CVR 01 ‖ 0A 01 balance(5) MAC(4)``.

    The MAC (our choice, docs/card-profile.md §9) is ISO 9797-1 algorithm 3, padding 2, first 4 bytes, under
    the AC session key over ``01 ‖ balance ‖ ATC``.
    """
    assert len(cvr) == 3
    if not 0 <= balance_fen < 10**10:
        bcd_amount(balance_fen, 5)  # raises its ValueError
    balance = bytes.fromhex(f"{balance_fen:010d}")  # bcd_amount(balance_fen, 5), without the call
    mac = mac_alg3(session_key, b"\x01" + balance + atc.to_bytes(2, "big"), padding=2, length=4)
    return _IAD_HEAD + cvr + _IAD_ALGORITHM + b"\x0a\x01" + balance + mac


_IAD_HEAD = CVN01_TDES.iad_header(dki=0x01) + b"\x03"  # 07 DKI CVN, then the CVR's length byte
_IAD_ALGORITHM = bytes((CVN01_TDES.algorithm.value,))


_TXN_LOG_ENTRIES = tuple(parse_dol(TXN_LOG_FORMAT))
_LOAD_LOG_ENTRIES = tuple(parse_dol(LOAD_LOG_FORMAT))


def _values(entries: tuple[tuple[str, int], ...], source: Mapping[str, bytes], atc: int) -> bytes:
    """The values of a log format's entries from ``source``, the card's ATC for ``9F36``."""
    parts = []
    for tag, length in entries:
        value = atc.to_bytes(2, "big") if tag == "9F36" else source.get(tag, b"")
        n = len(value)
        parts.append(value if n == length else value[:length] if n > length else bytes(length - n) + value)
    return b"".join(parts)


def txn_log_record(terminal: Mapping[str, bytes], atc: int) -> bytes:
    """A transaction-log record: the values of ``9F4F`` (45 bytes); zeros for what the terminal omitted."""
    return _values(_TXN_LOG_ENTRIES, terminal, atc)


def load_log_record(terminal: Mapping[str, bytes], atc: int, before_fen: int, after_fen: int) -> bytes:
    """A load-log record: ``9F79 ‖ before ‖ after ‖`` the values of ``DF4F`` (44 bytes)."""
    head = bytes.fromhex("9F79") + bcd_amount(before_fen) + bcd_amount(after_fen)
    return head + _values(_LOAD_LOG_ENTRIES, terminal, atc)
