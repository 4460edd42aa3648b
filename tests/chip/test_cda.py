"""CDA (EMV Book 2 §6.6; Book 3 §6.5.5.4) on a product that offers it: the AC inside signed dynamic data."""

from __future__ import annotations

import hashlib
from typing import Any

from citycard.chip.image import CardImage
from citycard.chip.personalise import ProductProfile, personalise
from citycard.codec.tlv import decode, encode_many
from citycard.crypto.cryptograms import ac_input, generate_ac
from citycard.crypto.rsa_cert import (
    recover_dynamic_data,
    recover_icc_certificate,
    recover_issuer_certificate,
)


def _icc_key(t: Any, keys: Any, aip: bytes) -> Any:
    recs: dict[str, bytes] = {}
    for sfi, rec in ((3, 1), (3, 2)):
        recs.update(t.read(sfi, rec).tags)
    _, _, ca = keys.ca_public_key()
    issuer = recover_issuer_certificate(ca, recs["90"], recs["92"], recs["9F32"])
    static = decode(t.read(2, 1).data)[0].value + aip
    return recover_icc_certificate(
        issuer.public_key, recs["9F46"], recs["9F48"], recs["9F47"], static
    ).public_key


def test_cda_on_first_and_second_generate_ac(demo_keys: Any, make_terminal: Any, h: Any) -> None:
    image = personalise(ProductProfile(cda=True, opening_balance_fen=1000), 21, demo_keys)
    t = make_terminal(CardImage.from_json(image.to_json()))
    t.card.power_on()
    t.select(h.DEBIT)
    pdol = b"\x01" + bytes.fromhex("0000000005000156")
    gpo = t.gpo(pdol)
    aip = gpo.data[2:4]
    assert aip == bytes.fromhex("7D00")
    icc = _icc_key(t, demo_keys, aip)
    cdol1 = h.cdol1_data(500)
    resp = t.generate_ac(0x50, cdol1)  # TC + CDA
    tags = resp.tags
    assert "9F26" not in tags and tags["9F27"] == b"\x40"
    signed = recover_dynamic_data(icc, tags["9F4B"], cdol1[25:29])  # terminal data: 9F37
    dyn = signed.icc_dynamic_data
    assert dyn[0] == 8 and dyn[9:10] == b"\x40"
    others = encode_many([("9F27", tags["9F27"]), ("9F36", tags["9F36"]), ("9F10", tags["9F10"])])
    assert dyn[18:38] == hashlib.sha1(pdol + cdol1 + others).digest()
    sk = t.session_key("ac", 1)
    values = {
        "9F02": cdol1[0:6], "9F03": cdol1[6:12], "9F1A": cdol1[12:14], "95": cdol1[14:19],
        "5F2A": cdol1[19:21], "9A": cdol1[21:24], "9C": cdol1[24:25], "9F37": cdol1[25:29],
        "82": aip, "9F36": tags["9F36"], "9F10": tags["9F10"],
    }  # fmt: skip
    assert dyn[10:18] == generate_ac(sk, ac_input(values))
    assert t.balance() == 500
    # an AAC is never signed, and without the CDA bit the AC comes in clear
    t.start_contact(0, ec=False)
    assert "9F26" in t.generate_ac(0x10, h.cdol1_data(0)).tags
    t.start_contact(0, ec=False)
    assert "9F26" in t.generate_ac(0x80, h.cdol1_data(0)).tags


def test_cda_requested_from_a_card_without_it(term: Any, h: Any) -> None:
    term.start_contact(100)
    tags = term.generate_ac(0x50, h.cdol1_data(100)).tags
    assert "9F26" in tags and "9F4B" not in tags


def test_cda_second_generate_ac(demo_keys: Any, make_terminal: Any, h: Any) -> None:
    from citycard.crypto.cryptograms import arpc_method1

    image = personalise(ProductProfile(cda=True), 22, demo_keys)
    t = make_terminal(image)
    t.card.power_on()
    t.select(h.DEBIT)
    pdol = b"\x00" + bytes.fromhex("0000000099000156")
    aip = t.gpo(pdol).data[2:4]
    icc = _icc_key(t, demo_keys, aip)
    cdol1 = h.cdol1_data(9900)
    first = t.generate_ac(0x90, cdol1).tags  # ARQC + CDA
    assert first["9F27"] == b"\x80" and "9F26" not in first
    dyn1 = recover_dynamic_data(icc, first["9F4B"], cdol1[25:29]).icc_dynamic_data
    arqc = dyn1[10:18]
    arpc = arpc_method1(t.session_key("ac", 1), arqc, b"00")
    cdol2 = b"00" + bytes.fromhex("55667788") + bytes(5) + arpc + b"00"
    second = t.generate_ac(0x50, cdol2).tags
    assert second["9F27"] == b"\x40"
    dyn2 = recover_dynamic_data(icc, second["9F4B"], bytes.fromhex("55667788")).icc_dynamic_data
    others = encode_many([("9F27", second["9F27"]), ("9F36", second["9F36"]), ("9F10", second["9F10"])])
    assert dyn2[18:38] == hashlib.sha1(pdol + cdol1 + cdol2 + others).digest()
