"""qPBOC (JR/T 0025.12): the card decides in the GPO; offline approval only with fDDA, an unexpired card
and a PAN not on the exception file; CTQ says what to do when fDDA fails; online with online PIN.

The GPO response may leave out the CID ``9F27`` (the cryptogram type is then in the CVR of ``9F10``,
:func:`.tvr.cid_from_cvr`) and the records the expiry date ``5F24`` (it is then the ``YYMM`` of the track 2
equivalent data ``57``, the card valid to the end of that month)."""

from __future__ import annotations

from collections.abc import Generator

from citycard.codec.emvbits import (
    AIP_DDA,
    CID_AAC,
    CID_ARQC,
    CID_TC,
    TSI_ODA,
    TVR_CARD_ON_EXCEPTION_FILE,
    TVR_DDA_FAILED,
    TVR_EXPIRED,
    TVR_ICC_DATA_MISSING,
    TVR_MERCHANT_FORCED_ONLINE,
    TVR_ODA_NOT_PERFORMED,
    TVR_PIN_NOT_ENTERED,
    cid_type,
)
from citycard.crypto.cryptograms import CryptogramDataError, cvr_from_iad

from . import oda
from .base import APPROVED_CODES, Cancelled, CardError, KernelBase, _pan_digits
from .events import Answer, Event, GoOnline, OnlineResponse, Outcome, OutcomeKind, PinEntry, RequestPin
from .tvr import cid_from_cvr

__all__ = ["ContactlessSteps"]

# CTQ (9F6C) byte 1, JR/T 0025.12 Annex: what the card asks of the reader
CTQ_ONLINE_PIN = 0x80
CTQ_SIGNATURE = 0x40
CTQ_ONLINE_IF_ODA_FAILS = 0x20
CTQ_SWITCH_IF_ODA_FAILS = 0x10
CTQ_ONLINE_IF_EXPIRED = 0x08


class ContactlessSteps(KernelBase):
    # -- qPBOC (JR/T 0025.12) ----------------------------------------------------------------------------

    def _qpboc(self) -> Generator[Event, Answer, Outcome]:
        self._mandatory(("82", "9F36", "9F26"))
        if "94" in self.card:
            yield from self._read_records()
        if "5A" not in self.card and "57" not in self.card:
            raise CardError("mandatory data missing: 5A or 57")
        cid = self.card.get("9F27")
        if cid is None:  # optional in qPBOC: the type is in the CVR, and the outcome carries it from there
            try:
                cryptogram = cid_from_cvr(cvr_from_iad(self.card.get("9F10", b"")))
            except CryptogramDataError:
                raise CardError("qPBOC: neither CID nor a readable CVR") from None
            self._cid = cryptogram
        else:
            if len(cid) != 1:
                raise CardError("qPBOC: CID of a wrong length")
            cryptogram = cid_type(cid[0])
        if cryptogram == 0xC0:
            raise CardError("qPBOC: cryptogram type RFU")
        if cryptogram == CID_ARQC and self.config.offline_only:
            raise CardError(
                "card asked for an ARQC from an offline-only reader", OutcomeKind.DECLINED_OFFLINE
            )
        if cryptogram == CID_TC and self.term.get("9F66", b"\x00\x00")[1] & 0x80:
            raise CardError("card returned TC though an online cryptogram was required")
        ctq = self._ctq()
        pan = _pan_digits(self.card.get("5A", b"")) or self._track2_pan()
        if cryptogram == CID_AAC:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "card declined (AAC)")
        if ctq[0] & CTQ_SIGNATURE:
            self.term["9F34"] = bytes.fromhex("1E0000")  # signature (printed on the receipt)
        if cryptogram == CID_TC:
            self._ec = True
            reason = self._qpboc_offline_checks(pan)
            if reason is None:
                return self._finish(OutcomeKind.APPROVED_OFFLINE, "qPBOC offline approval (fDDA)")
            online = self.config.online_capable
            if ctq[0] & CTQ_ONLINE_IF_ODA_FAILS and online and TVR_DDA_FAILED in self.tvr:
                return (yield from self._qpboc_online())
            if ctq[0] & CTQ_ONLINE_IF_EXPIRED and online and TVR_EXPIRED in self.tvr:
                return (yield from self._qpboc_online())
            if ctq[0] & CTQ_SWITCH_IF_ODA_FAILS and TVR_DDA_FAILED in self.tvr:
                return self._finish(OutcomeKind.TRY_ANOTHER_INTERFACE, reason)
            return self._finish(OutcomeKind.DECLINED_OFFLINE, reason)
        return (yield from self._qpboc_online())

    def _qpboc_offline_checks(self, pan: str) -> str | None:
        """Offline approval needs fDDA, an unexpired card and a card not on the deny list."""
        c = self.config
        if pan in c.exception_file.pans:
            self.tvr.set(TVR_CARD_ON_EXCEPTION_FILE)
            return "card on the exception file"
        if c.exception_file.stale(self.txn.now):  # a deny list past its maximum age cannot clear a card
            self.tvr.set(TVR_MERCHANT_FORCED_ONLINE)
            return "exception file older than its maximum age"
        expiry = self._expiry_date()
        if expiry is None:
            self.tvr.set(TVR_ICC_DATA_MISSING)
            return "no expiry date (neither 5F24 nor one in 57)"
        if expiry < self.txn.now.date():
            self.tvr.set(TVR_EXPIRED)
            return "expired card"
        if not self.card["82"][0] & AIP_DDA or "9F4B" not in self.card:
            self.tvr.set(TVR_ODA_NOT_PERFORMED)
            return "offline approval without fDDA"
        self.tsi.set(TSI_ODA)
        key, failure = oda.recover_icc_key(self._oda_context())
        if key is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
            return f"fDDA failed: {failure}"
        terminal = oda.fdda_data(
            self.term["9F37"], self.term["9F02"], self.term["5F2A"], self.card.get("9F69")
        )
        number, failure = oda.verify_dda(key, self.card["9F4B"], terminal)
        if number is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
            return f"fDDA failed: {failure}"
        self.term["9F4C"] = number
        return None

    def _ctq(self) -> bytes:
        """The card's CTQ (9F6C, b2; none: no requirement). A value of another length, even empty, is
        malformed card data, not "no CTQ": the card answered something the kernel cannot read."""
        ctq = self.card.get("9F6C", b"\x00\x00")
        if len(ctq) != 2:
            raise CardError("qPBOC: CTQ (9F6C) of a wrong length")
        return ctq

    def _qpboc_online(self) -> Generator[Event, Answer, Outcome]:
        ctq = self._ctq()
        if not self.config.online_capable:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "online required; reader is offline-only")
        if ctq[0] & CTQ_ONLINE_PIN and self.online_pin_pad:
            answer = yield RequestPin("online", self.txn.amount_fen)
            if isinstance(answer, PinEntry) and answer.cancel:
                raise Cancelled("online PIN entry cancelled")
            pin = answer.pin if isinstance(answer, PinEntry) else None
            if pin:
                self._encipher_online_pin(pin)
                self.term["9F34"] = bytes.fromhex("020000")  # online PIN, result unknown
            else:
                self.tvr.set(TVR_PIN_NOT_ENTERED)
        answer = yield GoOnline(self._online_request())
        if not isinstance(answer, OnlineResponse) or answer.unable_to_go_online:
            return self._finish(OutcomeKind.DECLINED_OFFLINE, "unable to go online")
        self.term["8A"] = answer.response_code.encode("ascii", "replace")[:2]
        if answer.response_code in APPROVED_CODES:
            return self._finish(
                OutcomeKind.APPROVED_ONLINE, f"approved by the issuer ({answer.response_code})"
            )
        return self._finish(OutcomeKind.DECLINED_ONLINE, f"declined online ({answer.response_code})")
