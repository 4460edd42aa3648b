"""Combined DDA/application cryptogram generation (EMV Book 2 §6.6, Book 3 §10.3/§10.8).

Our emulated card does not offer CDA, so this test wraps it in a proxy that does what a CDA card does:
AIP with the CDA bit (and the ICC certificate re-issued by the demo issuer over that AIP), and, when the
terminal asks for CDA in GENERATE AC, the cryptogram moved into a signed dynamic application data object
``9F4B`` over ``L ‖ ICC dynamic number ‖ CID ‖ AC ‖ transaction data hash`` and the unpredictable number."""

from __future__ import annotations

import hashlib

from citycard.codec import tlv
from citycard.codec.emvbits import TVR_CDA_FAILED
from citycard.crypto.rsa_cert import cda_icc_dynamic_data, sign_dynamic_data
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import demo_keys, new_card, transact

UN_OFFSET = 6 + 6 + 2 + 5 + 2 + 3 + 1  # 9F37 in CDOL1 (docs/card-profile.md §6)


def cda_card(*, corrupt: bool = False, balance_fen: int = 10_000):
    card = new_card("contact", balance_fen=balance_fen)
    app = card.image.applications[0]
    icc_key = app.icc_key
    state: dict[str, bytes] = {}

    def transmit(apdu: bytes) -> bytes:
        response = card.transmit(apdu)
        body, sw = response[:-2], response[-2:]
        if apdu[:2] == b"\x80\xa8":  # GPO: announce CDA
            state["pdol"] = apdu[7 : 7 + apdu[6]]
            return body[:2] + b"\x7d\x00" + body[4:] + sw
        if apdu[:5] == bytes.fromhex("00B2011400"):
            state["static"] = tlv.decode(body)[0].value
        if apdu[:5] == bytes.fromhex("00B2021C00"):  # ICC certificate over the static data with AIP 7D00
            pan = app.data["5A"].hex().rstrip("f").rstrip("F")
            cert, rem = demo_keys().certify_icc_key(
                icc_key.public, pan, "1231", state["static"] + b"\x7d\x00"
            )
            objs = {o.tag: o.value for o in tlv.decode(body)[0].children}
            objs["9F46"], objs["9F48"] = cert, rem
            return tlv.encode("70", tlv.encode_many(objs.items())) + sw
        if apdu[1] == 0xAE and apdu[2] & 0x10 and sw == b"\x90\x00":
            objs = [(o.tag, o.value) for o in tlv.decode(body)[0].children]
            values = dict(objs)
            cid, ac = values["9F27"], values["9F26"]
            if cid[0] & 0xC0 == 0x00:
                return response
            cdol = apdu[5 : 5 + apdu[4]]
            kept = [(t, v) for t, v in objs if t != "9F26"]
            tx_hash = hashlib.sha1(state["pdol"] + cdol + tlv.encode_many(kept)).digest()
            if corrupt:
                tx_hash = bytes(20)
            dyn = cda_icc_dynamic_data(bytes(range(1, 9)), cid, ac, tx_hash)
            sdad = sign_dynamic_data(icc_key, dyn, cdol[UN_OFFSET : UN_OFFSET + 4])
            out = [*kept[:2], ("9F4B", sdad), *kept[2:]]
            return tlv.encode("77", tlv.encode_many(out)) + sw
        return response

    card.cda_transmit = transmit
    return card


class _Proxy:
    def __init__(self, card):
        self.transmit = card.cda_transmit


def test_cda_offline_approval():
    card = cda_card()
    out, apdus = transact(_Proxy(card), K.PURCHASE, 1_250)
    assert out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason
    assert [c[2] for p, c, _ in apdus if p == "GENERATE AC 1"] == [0x50]  # TC with CDA requested
    assert "INTERNAL AUTHENTICATE" not in [p for p, _, _ in apdus]
    assert out.tvr == bytes(5) and len(out.cryptogram) == 8 and out.cryptogram != bytes(8)


def test_cda_wrong_transaction_hash_fails_and_declines():
    card = cda_card(corrupt=True)
    out, _ = transact(_Proxy(card), K.PURCHASE, 1_250)
    assert out.tvr[TVR_CDA_FAILED[0]] & TVR_CDA_FAILED[1]
    assert out.kind is OutcomeKind.DECLINED_OFFLINE and "transaction data hash" in out.reason


def _emulated_cda_card(balance_fen: int):
    from citycard.chip.card import Card
    from citycard.chip.personalise import ProductProfile, personalise

    from .cardlab import det_rng

    image = personalise(ProductProfile(opening_balance_fen=balance_fen, cda=True), 41, demo_keys())
    card = Card(image, det_rng(8))
    card.power_on("contact")
    return card


def test_cda_with_the_emulated_cda_product_offline():
    out, apdus = transact(_emulated_cda_card(10_000), K.PURCHASE, 1_250)
    assert out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason
    assert [c[2] for p, c, _ in apdus if p == "GENERATE AC 1"] == [0x50]
    assert out.tvr == bytes(5) and out.ec_balance_fen == 8_750


def test_cda_with_the_emulated_cda_product_online_both_generate_acs():
    from .cardlab import PIN, issuer_stub

    out, apdus = transact(_emulated_cda_card(0), K.PURCHASE, 5_000, online=issuer_stub().authorize,
                          pin=lambda r: PIN)  # fmt: skip
    p1 = {p: c[2] for p, c, _ in apdus if p.startswith("GENERATE AC")}
    assert p1 == {"GENERATE AC 1": 0x90, "GENERATE AC 2": 0x50}  # ARQC and TC, both with CDA
    assert out.kind is OutcomeKind.APPROVED_ONLINE, out.reason
    assert not out.tvr[TVR_CDA_FAILED[0]] & TVR_CDA_FAILED[1]
