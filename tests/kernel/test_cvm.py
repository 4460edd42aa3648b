"""Cardholder verification (EMV Book 3 §10.5, Annex C3): list parsing, conditions, enciphered offline PIN."""

from __future__ import annotations

import importlib

import pytest

from citycard.chip.card import Card
from citycard.chip.personalise import ProductProfile
from citycard.codec.emvbits import TVR_CVM_FAILED, TVR_UNRECOGNISED_CVM
from citycard.kernel import cvm
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import PIN, demo_keys, det_rng, issuer_stub, terminal_config, transact

chip_personalise = importlib.import_module("citycard.chip.personalise")


def _ctx(amount=100, other=0, same=True, caps="E0F8C8", kind=0x00):
    return cvm.CvmContext(amount, other, same, bytes.fromhex(caps), kind)


def test_conditions():
    lst = cvm.parse_cvm_list(bytes.fromhex("000003E8000007D0410642071E081F0901050203"))
    r = {rule.condition: rule for rule in lst.rules}
    assert cvm.condition_applies(r[0x06], lst, _ctx(999)) and not cvm.condition_applies(
        r[0x06], lst, _ctx(1000)
    )
    assert cvm.condition_applies(r[0x07], lst, _ctx(1001)) and not cvm.condition_applies(
        r[0x07], lst, _ctx(1000)
    )
    assert cvm.condition_applies(r[0x08], lst, _ctx(1999)) and cvm.condition_applies(r[0x09], lst, _ctx(2001))
    assert not cvm.condition_applies(r[0x06], lst, _ctx(1, same=False))  # needs the application currency
    assert cvm.condition_applies(r[0x05], lst, _ctx(other=5)) and not cvm.condition_applies(
        r[0x05], lst, _ctx()
    )
    assert cvm.condition_applies(r[0x03], lst, _ctx()) and not cvm.condition_applies(
        r[0x03], lst, _ctx(caps="E00088")
    )


def test_malformed_list():
    with pytest.raises(cvm.CvmListError):
        cvm.parse_cvm_list(bytes(7))


def _card_with_cvm_list(monkeypatch, cvm_list: str, serial: int) -> Card:
    monkeypatch.setattr(chip_personalise, "_CVM_LIST", bytes.fromhex(cvm_list))
    image = chip_personalise.personalise(ProductProfile(opening_balance_fen=0), serial, demo_keys())
    card = Card(image, det_rng(5))
    card.power_on("contact")
    return card


def test_enciphered_offline_pin(monkeypatch):
    card = _card_with_cvm_list(monkeypatch, "000000000000000044031F00", 21)
    asked = []
    out, apdus = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize,
                          pin=lambda r: asked.append(r.kind) or PIN)  # fmt: skip
    assert asked == ["offline_enciphered"]
    verify = [c for p, c, _ in apdus if p == "VERIFY"]
    assert verify and verify[0][3] == 0x88 and len(verify[0]) == 5 + 128
    assert "GET CHALLENGE" in [p for p, _, _ in apdus]
    assert out.data["9F34"] == bytes.fromhex("440302") and out.approved, out.reason


def test_unrecognised_cvm_then_failure(monkeypatch):
    card = _card_with_cvm_list(monkeypatch, "00000000000000007A000000", 22)
    out, _ = transact(card, K.PURCHASE, 5_000)
    assert out.tvr[TVR_UNRECOGNISED_CVM[0]] & TVR_UNRECOGNISED_CVM[1]
    assert out.tvr[TVR_CVM_FAILED[0]] & TVR_CVM_FAILED[1]
    assert out.data["9F34"] == bytes.fromhex("000001") and out.kind is not OutcomeKind.APPROVED_OFFLINE


def test_signature_cvm_result_unknown(monkeypatch):
    card = _card_with_cvm_list(monkeypatch, "00000000000000001E00", 23)
    cfg = terminal_config()
    out, _ = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize, cfg=cfg)
    assert out.data["9F34"] == bytes.fromhex("1E0000") and out.approved


def test_pboc_cardholder_id_verification(monkeypatch):
    from citycard.kernel.events import OutcomeKind as OK
    from citycard.pos.receipt import render_receipt

    records = dict(chip_personalise._RECORDS)
    records[2] = (records[2][0], (*records[2][1], "9F61", "9F62"))
    monkeypatch.setattr(chip_personalise, "_RECORDS", records)
    original = chip_personalise._application_data
    extra = {"9F61": b"110101199001011234", "9F62": b"\x00"}
    monkeypatch.setattr(chip_personalise, "_application_data", lambda p, pan: {**original(p, pan), **extra})
    card = _card_with_cvm_list(monkeypatch, "00000000000000002000", 24)
    out, _ = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize)
    assert out.data["9F34"] == bytes.fromhex("200000") and out.kind is OK.APPROVED_ONLINE
    receipt = render_receipt(terminal_config(), out, None, amount_fen=5_000)
    assert "CHECK ID CARD" in receipt and "**************1234" in receipt and "199001" not in receipt
    no_id = terminal_config(cardholder_id_check=False)
    out, _ = transact(
        _card_with_cvm_list(monkeypatch, "00000000000000002000", 25), K.PURCHASE, 5_000, cfg=no_id
    )
    assert out.data["9F34"] == bytes.fromhex("200001")


def _card_with_pin_encipherment_key(monkeypatch, serial: int, *, tamper: bool = False):
    """A card whose enciphered offline PIN uses a separate ICC PIN encipherment key (EMV Book 2 §7.1):
    the certificate 9F2D (issuer-signed, format 04, no static data in its hash), 9F2E, 9F2F in a record
    outside ODA. The emulator deciphers PINs only under its ICC key, so a proxy in front of it plays the
    card's PIN-key side: it deciphers the P2=88 block with the PIN private key and passes the PIN to the
    card as a plaintext VERIFY."""
    from citycard.crypto.pin import PinBlockError, decipher_offline_pin, plaintext_offline_pin_block
    from citycard.crypto.rsa_cert import build_icc_certificate

    keys = demo_keys()
    pin_key = keys.generate_icc_key()
    records = dict(chip_personalise._RECORDS)
    records[2] = (records[2][0], (*records[2][1], "9F2D", "9F2E", "9F2F"))  # SFI 2 record 2: not in ODA
    monkeypatch.setattr(chip_personalise, "_RECORDS", records)
    original = chip_personalise._application_data

    def application_data(profile, pan):
        cert, remainder = build_icc_certificate(
            keys.issuer_key, pin_key.public, pan, "1235", b"\x00\x00\x07", b""
        )
        if tamper:
            cert = cert[:-1] + bytes((cert[-1] ^ 1,))
        return {**original(profile, pan), "9F2D": cert, "9F2E": pin_key.public.exponent, "9F2F": remainder}

    monkeypatch.setattr(chip_personalise, "_application_data", application_data)
    card = _card_with_cvm_list(monkeypatch, "000000000000000044031F00", serial)
    inner = card.transmit
    challenge = [b""]
    deciphered: list[str] = []

    def transmit(apdu: bytes) -> bytes:
        if apdu[:4] == bytes.fromhex("00200088"):
            try:
                pin = decipher_offline_pin(apdu[5 : 5 + apdu[4]], pin_key, challenge[0])
            except PinBlockError:
                return bytes.fromhex("6983")
            deciphered.append(pin)
            block = plaintext_offline_pin_block(pin)
            return inner(bytes((0x00, 0x20, 0x00, 0x80, len(block))) + block)
        response = inner(apdu)
        if apdu[:2] == bytes.fromhex("0084"):
            challenge[0] = response[:-2]
        return response

    card.transmit = transmit
    return card, deciphered


def test_enciphered_offline_pin_under_the_icc_pin_encipherment_key(monkeypatch):
    card, deciphered = _card_with_pin_encipherment_key(monkeypatch, 26)
    asked = []
    out, _ = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize,
                          pin=lambda r: asked.append(r.kind) or PIN)  # fmt: skip
    assert asked == ["offline_enciphered"] and deciphered == [PIN]  # enciphered under 9F2D's key
    assert out.data["9F34"] == bytes.fromhex("440302") and out.approved, out.reason


def test_a_bad_pin_encipherment_key_certificate_fails_that_cvm(monkeypatch):
    card, _ = _card_with_pin_encipherment_key(monkeypatch, 27, tamper=True)
    asked = []
    out, apdus = transact(card, K.PURCHASE, 5_000, online=issuer_stub().authorize,
                          pin=lambda r: asked.append(r.kind) or PIN)  # fmt: skip
    assert asked == [] and "VERIFY" not in [p for p, _, _ in apdus]  # no key: the CVM fails, no PIN asked
    assert out.data["9F34"] == bytes.fromhex("1F0002") and out.approved, out.reason  # next rule: no CVM
