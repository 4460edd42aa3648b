"""Field 55 of an authorization, parsed once at the edge into a frozen :class:`ChipData` with typed values.

Tags (EMV Book 3 Annex A; JR/T 0025.5, .12 for PBOC): ``9F26`` the ARQC, ``9F27`` cryptogram information
data, ``9F36`` ATC, ``9F10`` issuer application data (the CVR in bytes 4-7, and for PBOC EC the card's
balance with its MAC in the discretionary part, card profile §9), ``9F37`` unpredictable number, ``9F02`` /
``9F03`` amounts, ``9F1A`` / ``5F2A`` country and currency, ``95`` TVR, ``9A`` date, ``9C`` transaction type,
``82`` AIP; optional ``9F34`` CVM results, ``9F6C`` card transaction qualifiers (a qPBOC card), ``9F1C``
terminal identification and ``9F5B`` issuer script results. A value that cannot be parsed raises
:class:`ChipDataError` (answered with response code 30; nothing posted).
"""

from __future__ import annotations

from dataclasses import dataclass

from citycard.codec.emvbits import CID_ARQC, CVR_PIN_FAILED, CVR_PIN_PERFORMED, cvr_has
from citycard.codec.money import amount_from_bcd
from citycard.codec.tlv import TlvError, decode_dict
from citycard.crypto.cryptograms import CryptogramDataError, ac_input, cvr_from_iad
from citycard.crypto.cvn import cryptogram_version

from .commands import MalformedRequest

__all__ = [
    "REQUIRED_TAGS",
    "ChipData",
    "ChipDataError",
    "IadBalance",
    "ScriptResult",
    "parse_chip_data",
    "parse_script_results",
]

REQUIRED_TAGS = ("9F26", "9F36", "9F10", "9F37", "9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "82")
"""What an online authorization's field 55 must carry: the ARQC and the data it covers."""
_OFFLINE_PIN_CVMS = frozenset({0x01, 0x03, 0x04, 0x05})  # EMV Book 3 Annex C3: PIN verified by the ICC
_CVM_ONLINE_PIN = 0x02  # EMV Book 3 Annex C3: online enciphered PIN
_CVM_RESULT_SUCCESSFUL = 0x02  # EMV Book 3 Annex A, CVM results byte 3
_CVM_RESULT_FAILED = 0x01
_CTQ_ONLINE_PIN = 0x80  # CTQ (9F6C) byte 1 bit 8, JR/T 0025.12: the card asks for an online PIN
_SCRIPT_RESULT_LENGTH = 5
_SCRIPT_PROCESSED = 2  # 9F5B byte 1 high nibble: script processed successfully


class ChipDataError(MalformedRequest):
    """Field 55 cannot be used: ``detail`` says what (ISO 8583 response code 30)."""

    def __init__(self, detail: str) -> None:
        super().__init__("field55", detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class IadBalance:
    """The card's EC balance as its IAD reports it (``0A 01 balance(5) MAC(4)``): trusted only once its MAC
    under the AC session key over ``01 ‖ balance ‖ ATC`` verifies in the HSM."""

    balance_fen: int
    mac_input: bytes  # 01 ‖ balance (the ATC is appended by the verifier)
    mac: bytes


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """One entry of the issuer script results ``9F5B`` (EMV Book 3 Annex A): status and script id."""

    status: int  # high nibble of byte 1: 0 not performed, 1 failed, 2 processed successfully
    script_id: bytes  # 4 bytes (9F18 of the script, zeros when it had none)

    @property
    def processed(self) -> bool:
        return self.status == _SCRIPT_PROCESSED


@dataclass(frozen=True, slots=True)
class ChipData:
    """What the issuer needs from field 55, parsed and checked for form (not yet for authenticity)."""

    arqc: bytes  # 9F26, 8 bytes
    atc: int  # 9F36
    atc_bytes: bytes
    cid: int | None  # 9F27
    iad: bytes  # 9F10
    cvr: bytes  # the 4 CVR bytes from the IAD (length byte included)
    unpredictable_number: bytes  # 9F37
    amount_fen: int  # 9F02
    transaction_type: int  # 9C
    ac_data: bytes  # the ARQC's input (crypto.cryptograms.ac_input), in order
    terminal_id: str | None  # 9F1C, right-trimmed
    ctq: bytes | None  # 9F6C: present for a qPBOC card
    cvm_results: bytes | None  # 9F34
    ec_balance: IadBalance | None  # from the IAD, not yet verified
    script_results: tuple[ScriptResult, ...] = ()  # 9F5B

    @property
    def contactless(self) -> bool:
        """A qPBOC card (its CTQ): it left the field after its GPO — no second GENERATE AC, no scripts."""
        return self.ctq is not None

    @property
    def online_pin_asked(self) -> bool:
        """The card's CTQ asks for an online PIN, or the CVM results name online PIN as the method performed
        and not failed."""
        if self.ctq and self.ctq[0] & _CTQ_ONLINE_PIN:
            return True
        cvm = self.cvm_results or b""
        return len(cvm) == 3 and cvm[0] & 0x3F == _CVM_ONLINE_PIN and cvm[2] != _CVM_RESULT_FAILED

    @property
    def offline_pin_claim_unsupported(self) -> bool:
        """The CVM results claim an offline PIN verified by the card, but the card's own CVR says no PIN was
        verified, or that it failed — the "No PIN" attack of Murdoch, Drimer, Anderson and Bond (IEEE S&P
        2010) makes the terminal believe a PIN was verified that the card never saw."""
        cvm = self.cvm_results or b""
        claimed = len(cvm) == 3 and cvm[0] & 0x3F in _OFFLINE_PIN_CVMS and cvm[2] == _CVM_RESULT_SUCCESSFUL
        cvr = self.cvr[1:]
        return claimed and (not cvr_has(cvr, CVR_PIN_PERFORMED) or cvr_has(cvr, CVR_PIN_FAILED))


def parse_chip_data(field55: bytes) -> ChipData:
    """Field 55 of an online authorization as :class:`ChipData`; :class:`ChipDataError` when malformed."""
    try:
        tags = decode_dict(field55)
    except TlvError as bad_tlv:  # a name of its own: compiled by mypyc, one name holds one type
        raise ChipDataError(str(bad_tlv)) from None
    missing = [t for t in REQUIRED_TAGS if t not in tags]
    if missing:
        raise ChipDataError(f"lacks {', '.join(missing)}")
    try:
        version = cryptogram_version(tags["9F10"])
        data = ac_input(tags, version.ac_tags)
        cvr = cvr_from_iad(tags["9F10"])
        amount = amount_from_bcd(tags["9F02"])
    except (CryptogramDataError, ValueError) as exc:
        raise ChipDataError(str(exc)) from None
    if len(tags["9F36"]) != 2 or len(tags["9F26"]) != 8:
        raise ChipDataError("ATC must be 2 bytes and the ARQC 8")
    cid = tags["9F27"][0] if tags.get("9F27") else None
    if "9F27" in tags and tags["9F27"][:1] != bytes((CID_ARQC,)):
        raise ChipDataError("the cryptogram is not an ARQC")
    terminal = tags.get("9F1C")
    return ChipData(
        arqc=tags["9F26"],
        atc=int.from_bytes(tags["9F36"], "big"),
        atc_bytes=tags["9F36"],
        cid=cid,
        iad=tags["9F10"],
        cvr=cvr,
        unpredictable_number=tags["9F37"],
        amount_fen=amount,
        transaction_type=tags["9C"][0] if tags["9C"] else 0,
        ac_data=data,
        terminal_id=None if terminal is None else terminal.decode("ascii", "replace").rstrip(),
        ctq=tags.get("9F6C"),
        cvm_results=tags.get("9F34"),
        ec_balance=_ec_balance_from_iad(tags["9F10"]),
        script_results=_script_results(tags.get("9F5B", b"")),
    )


def parse_script_results(field55: bytes) -> tuple[ScriptResult, ...]:
    """Only the issuer script results ``9F5B`` of field 55 (a reversal's chip data: the card may have run
    the scripts of the original's answer before the transaction failed); empty without field 55 or 9F5B.
    :class:`ChipDataError` when field 55 is not BER-TLV."""
    if not field55:
        return ()
    try:
        return _script_results(decode_dict(field55).get("9F5B", b""))
    except TlvError as exc:
        raise ChipDataError(str(exc)) from None


def _script_results(value: bytes) -> tuple[ScriptResult, ...]:
    """5 bytes per script (EMV Book 3 Annex A): status nibble (and sequence number), script id; a trailing
    part shorter than 5 bytes is ignored."""
    n = _SCRIPT_RESULT_LENGTH
    return tuple(ScriptResult(value[i] >> 4, value[i + 1 : i + n]) for i in range(0, len(value) - n + 1, n))


def _ec_balance_from_iad(iad: bytes) -> IadBalance | None:
    """The IAD's discretionary data ``0A 01 balance(5) MAC(4)`` (card profile §9); None when absent or the
    balance is not BCD."""
    if len(iad) >= 19 and iad[8] == 0x0A and iad[9] == 0x01:
        try:
            balance = amount_from_bcd(iad[10:15])
        except ValueError:
            return None
        return IadBalance(balance, iad[9:15], iad[15:19])
    return None
