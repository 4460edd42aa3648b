"""qPBOC contactless (JR/T 0025.12; docs/card-profile.md §5): offline approval with fDDA and EC debit,
online ARQC, decline."""

from __future__ import annotations

from typing import Any

from citycard.codec.tlv import decode
from citycard.crypto.cryptograms import ac_input, generate_ac
from citycard.crypto.rsa_cert import (
    fdda_terminal_data,
    recover_dynamic_data,
    recover_icc_certificate,
    recover_issuer_certificate,
)


def _start(term: Any, h: Any) -> None:
    term.card.power_on("contactless")
    assert term.select(h.PPSE).sw == 0x9000
    assert term.select(h.DEBIT).sw == 0x9000


def test_offline_approval_debits_and_signs(term: Any, h: Any, demo_keys: Any) -> None:
    _start(term, h)
    pdol = h.qpboc_pdol_data(250)
    resp = term.gpo(pdol)
    assert resp.sw == 0x9000 and resp.data[0] == 0x77
    tags = resp.tags
    assert tags["9F27"] == b"\x40" and tags["82"] == bytes.fromhex("7C00")
    assert tags["94"] == bytes.fromhex("1001020118010300")
    assert int(tags["9F5D"].hex()) == 10_000 - 250
    assert int(tags["9F10"][10:15].hex()) == 10_000 - 250
    assert tags["9F6C"] == bytes.fromhex("2000")
    assert tags["57"].hex().upper().startswith(term.pan)
    # the cryptogram verifies with the issuer's key (values from the PDOL)
    sk = term.session_key("ac", int.from_bytes(tags["9F36"], "big"))
    values = {
        "9F02": pdol[5:11], "9F03": pdol[11:17], "9F1A": pdol[17:19], "95": pdol[19:24], "5F2A": pdol[24:26],
        "9A": pdol[26:29], "9C": pdol[29:30], "9F37": pdol[30:34], "82": tags["82"], "9F36": tags["9F36"],
        "9F10": tags["9F10"],
    }  # fmt: skip
    assert tags["9F26"] == generate_ac(sk, ac_input(values))
    # fDDA: the terminal reads the certificates and recovers 9F4B
    recs: dict[str, bytes] = {}
    for sfi, rec in ((2, 1), (3, 1), (3, 2)):
        recs.update(term.read(sfi, rec).tags)
    static = decode(term.read(2, 1).data)[0].value + tags["82"]  # the AIP of this GPO (Book 3 §10.3)
    _, _, ca = demo_keys.ca_public_key()
    issuer = recover_issuer_certificate(ca, recs["90"], recs["92"], recs["9F32"])
    icc = recover_icc_certificate(issuer.public_key, recs["9F46"], recs["9F48"], recs["9F47"], static)
    auth = tags["9F69"]
    assert auth[0] == 0x01 and auth[5:] == tags["9F6C"]
    terminal_data = fdda_terminal_data(pdol[30:34], pdol[5:11], pdol[24:26], auth)
    recover_dynamic_data(icc.public_key, tags["9F4B"], terminal_data)
    # logged, and GENERATE AC is not part of qPBOC
    assert term.read(11, 1).data[6:12] == bytes.fromhex("000000000250")
    assert term.generate_ac(0x40, h.cdol1_data()).sw == 0x6985
    assert term.balance() == 10_000 - 250


def test_online_when_balance_short(term: Any, h: Any) -> None:
    _start(term, h)
    resp = term.gpo(h.qpboc_pdol_data(20_000, ttq="24000000"))
    tags = resp.tags
    assert tags["9F27"] == b"\x80" and "9F4B" not in tags
    assert tags["9F6C"] == bytes.fromhex("A000")  # online PIN required, go online if ODA fails
    assert term.balance() == 10_000


def test_online_required_by_reader(term: Any, h: Any) -> None:
    _start(term, h)
    tags = term.gpo(h.qpboc_pdol_data(100, ttq="20800000")).tags
    assert tags["9F27"] == b"\x80"
    assert term.balance() == 10_000


def test_offline_only_reader_declines(term: Any, h: Any) -> None:
    _start(term, h)
    tags = term.gpo(h.qpboc_pdol_data(20_000, ttq="28000000")).tags  # qPBOC, offline-only reader
    assert tags["9F27"] == b"\x00"
    assert term.balance() == 10_000


def test_wrong_currency_goes_online(term: Any, h: Any) -> None:
    _start(term, h)
    assert term.gpo(h.qpboc_pdol_data(100, currency="0840")).tags["9F27"] == b"\x80"


def test_full_pboc_over_contactless(term: Any, h: Any) -> None:
    _start(term, h)
    resp = term.gpo(h.qpboc_pdol_data(100, ttq="40000000"))
    assert resp.sw == 0x9000 and resp.data[0] == 0x80


def test_reader_without_qpboc_or_contact_chip(term: Any, h: Any) -> None:
    _start(term, h)
    assert term.gpo(h.qpboc_pdol_data(100, ttq="80000000")).sw == 0x6985
    assert term.get_data("9F36").data[-2:] == b"\x00\x00"  # nothing changed


def test_gpo_errors(term: Any, h: Any) -> None:
    _start(term, h)
    assert term.gpo(h.qpboc_pdol_data()[:-1]).sw == 0x6700
    assert term.send("80A80000058201020304").sw == 0x6A80  # not TLV
    assert term.send("80A800000482020000").sw == 0x6A80  # not tag 83
    assert term.send("80A8010002830000").sw == 0x6A86
    assert term.get_data("9F36").data[-2:] == b"\x00\x00"
    assert term.gpo(h.qpboc_pdol_data()).sw == 0x9000
    assert term.gpo(h.qpboc_pdol_data()).sw == 0x6985  # once per session


def test_qpboc_online_leaves_nothing_pending(term: Any, h: Any) -> None:
    _start(term, h)
    assert term.gpo(h.qpboc_pdol_data(20_000)).tags["9F27"] == b"\x80"
    term.start_contact(0, ec=False)
    iad = term.generate_ac(0x80, h.cdol1_data(0)).tags["9F10"]
    assert not iad[5] & 0x80  # CVR: "last online transaction not completed" stays clear
    # whereas a contact ARQC without its second GENERATE AC is reported next time
    term.start_contact(0, ec=False)
    assert term.generate_ac(0x80, h.cdol1_data(0)).tags["9F10"][5] & 0x80
