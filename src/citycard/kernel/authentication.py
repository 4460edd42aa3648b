"""Step 4, offline data authentication as the kernel runs it (EMV 4.3 Book 3 §10.3, Book 2 §5-6): choice
of CDA, DDA or SDA by AIP and terminal capabilities, INTERNAL AUTHENTICATE, CDA signature checks. The
certificate arithmetic is :mod:`citycard.kernel.oda`'s."""

from __future__ import annotations

from collections.abc import Generator

from citycard.codec import commands, tlv
from citycard.codec.emvbits import (
    AIP_CDA,
    AIP_DDA,
    AIP_SDA,
    TSI_ODA,
    TVR_CDA_FAILED,
    TVR_DDA_FAILED,
    TVR_ODA_NOT_PERFORMED,
    TVR_SDA_FAILED,
)
from citycard.codec.tlv import Tlv

from . import oda
from .base import CardError, KernelBase
from .events import Answer, Event

__all__ = ["AuthenticationSteps"]


class AuthenticationSteps(KernelBase):
    # -- 4. offline data authentication (Book 3 §10.3, Book 2 §5-6) -------------------------------

    def _oda_contact(self) -> Generator[Event, Answer, None]:
        aip = self.card["82"][0]
        caps = self.config.capabilities[2] if len(self.config.capabilities) > 2 else 0
        if aip & AIP_CDA and caps & 0x08:
            self.tsi.set(TSI_ODA)  # Book 3 §10.3: keys now, the signature with GENERATE AC
            key, failure = oda.recover_icc_key(self._oda_context())
            if key is None:
                self.tvr.set(TVR_CDA_FAILED)
                self._oda_failure = failure
            else:
                self._icc_key, self._cda = key, True
        elif aip & AIP_DDA and caps & 0x40:
            self.tsi.set(TSI_ODA)
            yield from self._dda()
        elif aip & AIP_SDA and caps & 0x80:
            self.tsi.set(TSI_ODA)
            self._sda()
        else:
            self.tvr.set(TVR_ODA_NOT_PERFORMED)

    def _sda(self) -> None:
        failure = oda.verify_sda(self._oda_context())
        if failure:
            self.tvr.set(TVR_SDA_FAILED)
            self._oda_failure = failure

    def _dda(self) -> Generator[Event, Answer, None]:
        key, failure = oda.recover_icc_key(self._oda_context())
        if key is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
            return
        self._icc_key = key
        ddol = self.card.get("9F49", self.config.default_ddol)
        data = self._dol_data(ddol)
        resp, sw = yield from self._apdu(commands.internal_authenticate(data), "INTERNAL AUTHENTICATE")
        if sw != 0x9000:
            raise CardError(f"INTERNAL AUTHENTICATE: status {sw:04X}")
        objs = tlv.decode(resp)
        if len(objs) == 1 and objs[0].tag == "80":
            sdad = objs[0].value
        elif len(objs) == 1 and objs[0].tag == "77" and tlv.find(objs, "9F4B") is not None:
            found = tlv.find(objs, "9F4B")
            assert found is not None
            sdad = found.value
        else:
            raise CardError("INTERNAL AUTHENTICATE: no signed dynamic application data")
        number, failure = oda.verify_dda(key, sdad, data)
        if number is None:
            self.tvr.set(TVR_DDA_FAILED)
            self._oda_failure = failure
        else:
            self.term["9F4C"] = number

    def _verify_cda(self, template: Tlv, cdol_data: bytes) -> None:
        """Book 2 §6.6.2: recover the SDAD, check CID and the transaction data hash, take the AC from it.
        On failure the cryptogram is treated as an AAC and TVR "CDA failed" is set (Book 3 §10.8)."""
        assert self._icc_key is not None
        others = b"".join(o.to_bytes() for o in template.children or () if o.tag != "9F4B")
        tx_hash = oda.cda_hash(self._pdol_data, cdol_data, others)
        cid = self.card["9F27"]
        ac, failure = oda.verify_cda(self._icc_key, self.card["9F4B"], self.term["9F37"], cid, tx_hash)
        if ac is None:
            self.tvr.set(TVR_CDA_FAILED)
            self._oda_failure = failure
            self.card["9F27"] = bytes((cid[0] & 0x3F,))  # AAC
            self.card["9F26"] = bytes(8)
            return
        self.card["9F26"] = ac
