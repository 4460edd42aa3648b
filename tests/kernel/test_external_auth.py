"""Issuer authentication by EXTERNAL AUTHENTICATE (EMV Book 3 §10.9), for cards whose CDOL2 does not ask
for the issuer authentication data ``91``. Our card asks for it, so a proxy shows the kernel a CDOL2
without ``91`` and pads the second GENERATE AC with zeros for ``91`` (the card then relies on the
EXTERNAL AUTHENTICATE result, docs/card-profile.md §9)."""

from __future__ import annotations

from dataclasses import replace

from citycard.codec.emvbits import TSI_ISSUER_AUTH, TVR_ISSUER_AUTH_FAILED
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import PIN, issuer_stub, new_card, transact

CDOL2_WITH_91 = bytes.fromhex("8D098A029F37049505910A")
CDOL2_WITHOUT_91 = bytes.fromhex("8D078A029F37049505")


class NoIadInCdol2:
    def __init__(self, card):
        self.card = card

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\x80\xae" and apdu[2] & 0xC0 != 0x80 and apdu[4] == 11:  # second GENERATE AC
            data = apdu[5:16] + bytes(10)
            apdu = apdu[:4] + bytes((len(data),)) + data + b"\x00"
        response = self.card.transmit(apdu)
        if CDOL2_WITH_91 in response:  # SFI 2 record 1: template length shrinks by 2
            body = response[:-2].replace(CDOL2_WITH_91, CDOL2_WITHOUT_91)
            body = b"\x70\x81" + bytes((len(body) - 3,)) + body[3:]
            response = body + response[-2:]
        return response


def test_external_authenticate_then_online_approval():
    out, apdus = transact(NoIadInCdol2(new_card("contact", balance_fen=0)), K.PURCHASE, 5_000,
                          online=issuer_stub().authorize, pin=lambda r: PIN)  # fmt: skip
    purposes = [p for p, _, _ in apdus]
    assert purposes.index("EXTERNAL AUTHENTICATE") < purposes.index("GENERATE AC 2")
    assert out.kind is OutcomeKind.APPROVED_ONLINE, out.reason
    assert out.tsi[TSI_ISSUER_AUTH[0]] & TSI_ISSUER_AUTH[1]
    assert not out.tvr[TVR_ISSUER_AUTH_FAILED[0]] & TVR_ISSUER_AUTH_FAILED[1]


def test_external_authenticate_failure_sets_tvr_and_card_declines():
    stub = issuer_stub()

    def forged(request):
        answer = stub.authorize(request)
        bad = bytes(8) + answer.issuer_authentication_data[8:]
        return replace(answer, issuer_authentication_data=bad)

    out, _ = transact(NoIadInCdol2(new_card("contact", balance_fen=0)), K.PURCHASE, 5_000, online=forged,
                      pin=lambda r: PIN)  # fmt: skip
    assert out.tvr[TVR_ISSUER_AUTH_FAILED[0]] & TVR_ISSUER_AUTH_FAILED[1]
    assert out.kind is OutcomeKind.DECLINED_ONLINE
