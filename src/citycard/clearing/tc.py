"""An offline transaction certificate (TC) as it reaches clearing: field 55 of the 0320 upload or of the
terminal's journal, parsed into the values clearing checks and the AC input the issuer's HSM verifies.

The TC is the card's MAC (EMV Book 2 §8.1, ISO 9797-1 algorithm 3 under the AC session key derived from the
card's UDK and its ATC) over the CDOL1 data in the order of ``crypto.cryptograms.AC_DATA_TAGS``: amount
(9F02), other amount (9F03), country (9F1A), TVR (95), currency (5F2A), date (9A), type (9C), unpredictable
number (9F37), AIP (82), ATC (9F36) and the CVR from the IAD (9F10). The terminal id (9F1C, field 41) and the
merchant (field 42) are not covered: a TC moved to another terminal verifies, which is why the clearing
compares the upload with the journal and with earlier presentments of the same TC.

A qPBOC card (``9F66`` present) computes its TC in the GPO over the PDOL's TVR, which the terminal sends
before its own checks (all zero); when the terminal then refuses the fare (exception file, failed fDDA) the
record carries the TVR as it ended, with bits set. Such a TC is verified over the record's TVR, and failing
that over the GPO's zero TVR: only a cryptogram the card made over that data verifies either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from citycard.codec.emvbits import CID_TC, cid_type
from citycard.codec.money import amount_from_bcd
from citycard.codec.tlv import TlvError, decode_dict
from citycard.crypto.cryptograms import CryptogramDataError, ac_input
from citycard.crypto.cvn import cryptogram_version

__all__ = ["TcData", "TcDataError", "parse_tc"]

_REQUIRED = ("9F26", "9F36", "9F10", "9F37", "9F02", "9A", "82")


class TcDataError(ValueError):
    """Field 55 that is not a usable TC: ``detail`` says what."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"field 55: {detail}")
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TcData:
    cryptogram: bytes  # 9F26, 8 bytes
    atc: int  # 9F36
    amount_fen: int  # 9F02
    txn_date: date  # 9A
    ac_data: bytes  # what the TC covers, in order
    gpo_ac_data: bytes | None = None  # qPBOC: the same with the TVR the card saw in its GPO (all zero)

    def ac_inputs(self) -> tuple[bytes, ...]:
        """The inputs to try, in order: the record's, then (qPBOC) the one with the GPO's TVR."""
        return (self.ac_data,) if self.gpo_ac_data is None else (self.ac_data, self.gpo_ac_data)


def parse_tc(field55: bytes) -> TcData:
    """The TC of ``field55``; :class:`TcDataError` when it is malformed or not a TC."""
    try:
        tags = decode_dict(field55)
    except TlvError as exc:
        raise TcDataError(str(exc)) from None
    missing = [t for t in _REQUIRED if t not in tags]
    if missing:
        raise TcDataError(f"lacks {', '.join(missing)}")
    cid = tags.get("9F27", b"")
    if cid and cid_type(cid[0]) != CID_TC:
        raise TcDataError(f"cryptogram information {cid.hex().upper()} is not a TC")
    if len(tags["9F26"]) != 8 or len(tags["9F36"]) != 2 or len(tags["9A"]) != 3:
        raise TcDataError("9F26 must be 8 bytes, 9F36 2 and 9A 3")
    try:
        version = cryptogram_version(tags["9F10"])
        data = ac_input(tags, version.ac_tags)
        amount = amount_from_bcd(tags["9F02"])
        yymmdd = tags["9A"].hex()
        txn_date = date(2000 + int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:]))
    except (CryptogramDataError, ValueError) as exc:
        raise TcDataError(str(exc)) from None
    gpo_data = None
    tvr = tags.get("95", b"")
    if "9F66" in tags and any(tvr):  # qPBOC: the card signed the TVR of its GPO's PDOL, before the checks
        gpo_data = ac_input({**tags, "95": bytes(len(tvr))}, version.ac_tags)
    return TcData(tags["9F26"], int.from_bytes(tags["9F36"], "big"), amount, txn_date, data, gpo_data)
