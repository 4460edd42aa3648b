"""Step 6, cardholder verification as the kernel runs it (EMV 4.3 Book 3 §10.5; Book 2 §7 enciphered PIN):
the CVM list rule by rule, PIN entry, VERIFY, online PIN block. The list rules are :mod:`.cvm`'s."""

from __future__ import annotations

from collections.abc import Generator
from typing import Literal

from citycard.codec import commands
from citycard.codec.emvbits import (
    AIP_CVM,
    TSI_CVM,
    TVR_CVM_FAILED,
    TVR_ICC_DATA_MISSING,
    TVR_PIN_NOT_ENTERED,
    TVR_PIN_PAD_MISSING,
    TVR_PIN_TRY_LIMIT,
    TVR_UNRECOGNISED_CVM,
)
from citycard.crypto.pin import encipher_offline_pin, plaintext_offline_pin_block

from . import cvm as cvmlib
from . import oda
from .base import Cancelled, CardError, KernelBase
from .events import Answer, Event, PinEntry, RequestPin

__all__ = ["VerificationSteps"]


class VerificationSteps(KernelBase):
    # -- 6. cardholder verification (Book 3 §10.5) ------------------------------------------------------

    def _cvm(self) -> Generator[Event, Answer, None]:
        self.term["9F34"] = bytes.fromhex("3F0000")
        aip = self.card["82"][0]
        if not aip & AIP_CVM:
            return
        self.tsi.set(TSI_CVM)
        if self._ec:
            return  # JR/T 0025.13: the EC offline purchase needs no cardholder verification
        raw = self.card.get("8E")
        if raw is None:
            self.tvr.set(TVR_ICC_DATA_MISSING)
            return
        cvms = cvmlib.parse_cvm_list(raw)
        if not cvms.rules:
            self.tvr.set(TVR_ICC_DATA_MISSING)
            return
        ctx = cvmlib.CvmContext(
            self.txn.amount_fen,
            self.txn.other_amount_fen,
            self.card.get("9F42") == self.config.currency,
            self.config.capabilities,
            self.term["9C"][0],
            self.config.cardholder_id_check,
        )
        last: cvmlib.CvmRule | None = None
        for rule in cvms.rules:
            if not cvmlib.condition_applies(rule, cvms, ctx):
                continue
            last = rule
            result = yield from self._perform_cvm(rule)
            if result is not None:
                self.term["9F34"] = rule.raw + bytes((result,))
                return
            if not rule.apply_next_if_fails:
                break
        self.tvr.set(TVR_CVM_FAILED)
        self.term["9F34"] = (last.raw if last else b"\x3f\x00") + b"\x01"

    def _perform_cvm(self, rule: cvmlib.CvmRule) -> Generator[Event, Answer, int | None]:
        """The CVM result (``00`` unknown, ``02`` successful) or None when it failed."""
        code = rule.code
        if code not in cvmlib.KNOWN:
            self.tvr.set(TVR_UNRECOGNISED_CVM)
            return None
        if code == cvmlib.CVM_FAIL:
            return None
        if not cvmlib.terminal_supports(
            code, self.config.capabilities, cardholder_id=self.config.cardholder_id_check
        ):
            if code in (cvmlib.CVM_PLAINTEXT_OFFLINE, cvmlib.CVM_ONLINE_PIN, cvmlib.CVM_ENCIPHERED_OFFLINE):
                self.tvr.set(TVR_PIN_PAD_MISSING)
            return None
        if code == cvmlib.CVM_NO_CVM:
            return 0x02
        if code in (cvmlib.CVM_SIGNATURE, cvmlib.CVM_CARDHOLDER_ID):
            return 0x00
        if code == cvmlib.CVM_ONLINE_PIN:
            if not self.online_pin_pad or not self.config.online_capable:
                self.tvr.set(TVR_PIN_PAD_MISSING)
                return None
            answer = yield RequestPin("online", self.txn.amount_fen)
            pin = _entered(answer, "online PIN entry cancelled")
            if not pin:
                self.tvr.set(TVR_PIN_NOT_ENTERED)
                return None
            self._encipher_online_pin(pin)
            return 0x00
        enciphered = code in (cvmlib.CVM_ENCIPHERED_OFFLINE, cvmlib.CVM_ENCIPHERED_OFFLINE_SIGNATURE)
        ok = yield from self._offline_pin(enciphered)
        if not ok:
            return None
        signature = code in (cvmlib.CVM_PLAINTEXT_OFFLINE_SIGNATURE, cvmlib.CVM_ENCIPHERED_OFFLINE_SIGNATURE)
        return 0x00 if signature else 0x02

    def _pin_encipherment_key(self) -> oda.PublicKey | None:
        """Book 2 §7.1: the ICC PIN encipherment public key (certificate 9F2D) when the card has one, else
        the ICC public key (9F46); None when it cannot be recovered (the CVM then fails, Book 3 §10.5.1)."""
        if "9F2D" in self.card:
            return oda.recover_pin_key(self._oda_context())[0]
        if self._icc_key is None:
            self._icc_key, _ = oda.recover_icc_key(self._oda_context())
        return self._icc_key

    def _offline_pin(self, enciphered: bool) -> Generator[Event, Answer, bool]:
        key = self._pin_encipherment_key() if enciphered else None
        if enciphered and key is None:
            return False  # Book 3 §10.5.1: the key cannot be retrieved, the CVM fails
        tries = yield from self._get_data("9F17")
        tries_left = tries[0] if tries else None
        if tries_left == 0:
            self.tvr.set(TVR_PIN_TRY_LIMIT)
            return False
        kind: Literal["offline_plaintext", "offline_enciphered"] = (
            "offline_enciphered" if enciphered else "offline_plaintext"
        )
        rejected: set[str] = set()  # PINs the card refused in this transaction: never sent again
        for _ in range(self.config.max_pin_tries):
            answer = yield RequestPin(kind, self.txn.amount_fen, tries_left, wrong_pin=bool(rejected))
            left = f" ({tries_left} PIN tries left)" if tries_left is not None else ""
            reason = "PIN entry cancelled" + (f" after a wrong PIN{left}" if rejected else "")
            pin = _entered(answer, reason)
            if not pin:
                self.tvr.set(TVR_PIN_NOT_ENTERED)
                return False
            if pin in rejected:  # the same wrong value would only burn a try: ask again
                continue
            p2, block = 0x80, plaintext_offline_pin_block(pin)
            if key is not None:
                challenge, csw = yield from self._apdu(commands.get_challenge(), "GET CHALLENGE")
                if csw != 0x9000 or len(challenge) != 8:
                    raise CardError(f"GET CHALLENGE: status {csw:04X}")
                p2, block = 0x88, encipher_offline_pin(pin, challenge, key.n, key.e, self._rng)
            _, sw = yield from self._apdu(commands.verify(p2, block), "VERIFY")
            if sw == 0x9000:
                return True
            if sw in (0x6983, 0x6984):
                self.tvr.set(TVR_PIN_TRY_LIMIT)
                return False
            if sw >> 4 == 0x63C:
                rejected.add(pin)
                tries_left = sw & 0x0F
                if tries_left == 0:
                    self.tvr.set(TVR_PIN_TRY_LIMIT)
                    return False
                continue
            raise CardError(f"VERIFY: status {sw:04X}")
        return False


def _entered(answer: Answer, cancelled: str) -> str | None:
    """The PIN of the PIN pad's answer (None: bypassed); raises :class:`Cancelled` when it cancelled."""
    if not isinstance(answer, PinEntry):
        return None
    if answer.cancel:
        raise Cancelled(cancelled)
    return answer.pin
