"""A T=0 reader's habits (ISO 7816-3 §12.2; EMV Book 1 §9.3): case-4 responses come as ``61xx`` and are
fetched with GET RESPONSE; a wrong Le is answered ``6Cxx`` and the command repeated. The kernel handles
both, so any ``transmit`` works; and the runner turns a transport exception into "card removed"."""

from __future__ import annotations

import pytest

from citycard.kernel.events import CardResponse, OutcomeKind, SendApdu
from citycard.kernel.kernel import Kernel, Transaction
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import NOW, det_rng, new_card, terminal_config, transact


class T0:
    def __init__(self, card):
        self.card = card
        self.pending = b""
        self.get_responses = 0
        self.wrong_le = 0

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\x00\xc0":
            self.get_responses += 1
            data, self.pending = self.pending, b""
            return data[: apdu[4] or 256] + b"\x90\x00"
        case4 = len(apdu) > 5 and len(apdu) == 6 + apdu[4]
        if case4:
            response = self.card.transmit(apdu[:-1])  # T=0 sends no Le in case 4
            body, sw = response[:-2], response[-2:]
            if body and sw == b"\x90\x00":
                self.pending = body
                return bytes((0x61, len(body) & 0xFF))
            return response
        if apdu[:2] == b"\x00\xb2" and apdu[4] == 0:
            response = self.card.transmit(apdu)
            if response[-2:] == b"\x90\x00":
                self.wrong_le += 1
                return bytes((0x6C, (len(response) - 2) & 0xFF))
            return response
        return self.card.transmit(apdu)


def test_ec_purchase_over_a_t0_transport():
    t0 = T0(new_card("contact"))
    out, _ = transact(t0, K.PURCHASE, 1_250)
    assert out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason
    assert t0.get_responses >= 4 and t0.wrong_le >= 6
    assert out.ec_balance_fen == 50_000 - 1_250


def test_garbage_answer_type_terminates():
    kernel = Kernel(terminal_config(), Transaction(K.PURCHASE, NOW, 100), det_rng())
    event = kernel.start()
    assert isinstance(event, SendApdu)
    out = kernel.send(None)
    assert out.kind is OutcomeKind.TERMINATED and "expected a card response" in out.reason
    with pytest.raises(RuntimeError):  # a finished kernel refuses more answers (a caller's bug)
        kernel.send(CardResponse(b"\x90\x00"))


def test_6cxx_resend_by_case():
    from citycard.kernel.base import _with_le

    assert _with_le(bytes.fromhex("00B2011400"), 0x20) == bytes.fromhex("00B2011420")  # case 2
    assert _with_le(bytes.fromhex("80CA9F79"), 0x09) == bytes.fromhex("80CA9F7909")  # case 1
    assert _with_le(bytes.fromhex("0088000004AABBCCDD00"), 0x80) == bytes.fromhex("0088000004AABBCCDD80")
    assert _with_le(bytes.fromhex("0020008008241234FFFFFFFFFF"), 0x10) is None  # case 3: no Le to fix
