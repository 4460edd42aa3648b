"""Contact transactions, APDU for APDU: PSE, selection, GPO (standard and EC), records, GENERATE AC,
issuer authentication, logs, GET DATA, INTERNAL AUTHENTICATE (docs/card-profile.md)."""

from __future__ import annotations

from typing import Any

from citycard.chip.card import Card
from citycard.codec.tlv import decode
from citycard.crypto.cryptograms import ac_input, arpc_method1, generate_ac
from citycard.crypto.mac import mac_alg3
from citycard.crypto.rsa_cert import (
    recover_dynamic_data,
    recover_icc_certificate,
    recover_issuer_certificate,
    recover_static_data,
)


def test_full_ec_purchase_debits_balance_and_logs(term: Any, h: Any) -> None:
    """SELECT PSE → READ RECORD → SELECT AID → GPO(9F7A=01) → READ RECORDs → GENERATE AC → TC."""
    assert term.card.power_on("contact") == bytes.fromhex("3B68000000 73C84000 009000".replace(" ", ""))
    pse = term.select(h.PSE)
    assert pse.sw == 0x9000 and pse.tags["88"] == b"\x01"
    entry = term.read(1, 1)
    assert entry.sw == 0x9000 and entry.tags["4F"].hex().upper() == h.DEBIT
    assert term.read(1, 2).sw == 0x6A83
    fci = term.select(h.DEBIT)
    assert fci.sw == 0x9000
    assert fci.tags["9F38"] == bytes.fromhex("9F7A019F02065F2A02")
    assert fci.tags["9F4D"] == bytes.fromhex("0B0A") and fci.tags["DF4D"] == bytes.fromhex("0C0A")
    gpo = term.gpo_contact(1234, ec=True)
    assert gpo.sw == 0x9000 and gpo.data[0] == 0x80
    aip, afl = gpo.data[2:4], gpo.data[4:]
    assert aip == bytes.fromhex("7C00")
    assert afl == bytes.fromhex("100102011801030020010200")
    records: dict[str, bytes] = {}
    for i in range(0, len(afl), 4):
        sfi = afl[i] >> 3
        for rec in range(afl[i + 1], afl[i + 2] + 1):
            resp = term.read(sfi, rec)
            assert resp.sw == 0x9000 and resp.data[0] == 0x70
            records.update(resp.tags)
    assert records["9F74"] == b"ECC001"
    assert term.read(4, 2).data == bytes.fromhex("7009 9F7406") + b"ECC001"  # alone in the last record
    assert records["5F20"] == b"ZHANG SAN"
    assert records["57"].hex().upper().startswith(term.pan + "D3112220")
    before = term.balance()
    assert before == 10_000
    resp = term.generate_ac(0x40, h.cdol1_data(1234))
    assert resp.sw == 0x9000
    tags = resp.tags
    assert tags["9F27"] == b"\x40"
    assert term.balance() == before - 1234
    iad = tags["9F10"]
    assert iad[:4] == bytes.fromhex("07010103") and iad[7:10] == bytes.fromhex("010A01")
    assert int(iad[10:15].hex()) == before - 1234
    atc = int.from_bytes(tags["9F36"], "big")
    assert atc == 1
    sk = term.session_key("ac", atc)
    assert iad[15:] == mac_alg3(sk, b"\x01" + iad[10:15] + tags["9F36"], padding=2, length=4)
    # the issuer (or clearing) can verify the TC from the data it receives
    cdol = h.cdol1_data(1234)
    values = {
        "9F02": cdol[0:6], "9F03": cdol[6:12], "9F1A": cdol[12:14], "95": cdol[14:19],
        "5F2A": cdol[19:21], "9A": cdol[21:24], "9C": cdol[24:25], "9F37": cdol[25:29],
        "82": aip, "9F36": tags["9F36"], "9F10": iad,
    }  # fmt: skip
    assert tags["9F26"] == generate_ac(sk, ac_input(values))
    # the transaction log holds it, most recent first
    log = term.read(11, 1)
    assert log.sw == 0x9000 and len(log.data) == 45
    assert log.data[:3] == bytes.fromhex("261125") and log.data[6:12] == bytes.fromhex("000000001234")
    assert log.data[-2:] == tags["9F36"]
    assert term.read(11, 2).sw == 0x6A83
    # after the TC no further GENERATE AC
    assert term.generate_ac(0x40, h.cdol1_data(1)).sw == 0x6985


def test_ec_path_not_taken_when_amount_exceeds_balance(term: Any, h: Any) -> None:
    resp = term.start_contact(10_001, ec=True)
    assert resp.data[4:] == bytes.fromhex("1001020118010300")
    gen = term.generate_ac(0x40, h.cdol1_data(10_001))
    assert gen.tags["9F27"] == b"\x80"  # goes online
    assert term.balance() == 10_000


def test_ec_path_needs_terminal_support_and_currency(term: Any, h: Any) -> None:
    term.card.power_on()
    term.select(h.DEBIT)
    assert term.gpo_contact(100, ec=True, currency="0840").data[4:] == bytes.fromhex("1001020118010300")
    term.start_contact(100, ec=False)
    assert term.generate_ac(0x40, h.cdol1_data(100)).tags["9F27"] == b"\x80"
    assert term.balance() == 10_000


def test_ec_single_transaction_limit(make_terminal: Any, demo_keys: Any, h: Any) -> None:
    from citycard.chip.personalise import ProductProfile, personalise

    image = personalise(ProductProfile(opening_balance_fen=5000, ec_single_limit_fen=1000), 3, demo_keys)
    t = make_terminal(image)
    assert t.start_contact(1001).data[4:] == bytes.fromhex("1001020118010300")
    assert t.start_contact(1000).data[4:] == bytes.fromhex("100102011801030020010200")


def test_online_arqc_arpc_second_generate_ac(term: Any, h: Any) -> None:
    atc, arqc = term.online_arqc(5000)
    sk = term.session_key("ac", atc)
    arc = b"00"
    arpc = arpc_method1(sk, arqc, arc)
    cdol2 = arc + b"\x55\x66\x77\x88" + bytes(5) + arpc + arc
    resp = term.generate_ac(0x40, cdol2)
    assert resp.sw == 0x9000 and resp.tags["9F27"] == b"\x40"
    assert term.get_data("9F13").data == bytes.fromhex("9F1302") + atc.to_bytes(2, "big")
    iad = resp.tags["9F10"]
    assert iad[4] & 0xC0 == 0x40 and iad[4] & 0x30 == 0x20  # 2nd AC TC, 1st AC ARQC
    assert term.read(11, 1).sw == 0x9000
    assert term.balance() == 10_000  # an online purchase does not touch the EC balance


def test_wrong_arpc_gives_aac_and_remembers_failure(term: Any, h: Any) -> None:
    _atc, _ = term.online_arqc()
    cdol2 = b"00" + bytes(4) + bytes(5) + bytes.fromhex("0102030405060708") + b"00"
    resp = term.generate_ac(0x40, cdol2)
    assert resp.tags["9F27"] == b"\x00"
    assert resp.tags["9F10"][4] & 0x08  # issuer authentication failed
    assert term.read(11, 1).sw == 0x6A83
    # next transaction reports "issuer authentication failure on last online transaction"
    term.online_arqc()
    assert term.log[-1][1].tags["9F10"][5] & 0x08


def test_external_authenticate(term: Any, h: Any) -> None:
    assert term.start_contact(0, ec=False).sw == 0x9000
    assert term.send("008200000A" + "00" * 10).sw == 0x6985  # no ARQC yet
    assert term.send("0082000008" + "00" * 8 + "00").sw == 0x6985  # out of sequence, before its length
    atc, arqc = term.online_arqc()
    assert term.send("0082000008" + "00" * 8 + "00").sw == 0x6700  # in sequence: its length is read
    sk = term.session_key("ac", atc)
    arpc = arpc_method1(sk, arqc, b"00")
    assert term.send(bytes.fromhex("008200000A") + arpc + b"00").sw == 0x9000
    assert term.send(bytes.fromhex("008200000A") + arpc + b"00").sw == 0x6985  # once only
    resp = term.generate_ac(0x40, b"00" + bytes(4) + bytes(5) + bytes(10))
    assert resp.tags["9F27"] == b"\x40"
    # a wrong ARPC by EXTERNAL AUTHENTICATE: 6300, then AAC
    atc, arqc = term.online_arqc()
    assert term.send(bytes.fromhex("008200000A") + bytes(8) + b"00").sw == 0x6300
    assert term.generate_ac(0x40, b"00" + bytes(19)).tags["9F27"] == b"\x00"


def test_declined_online_gives_aac(term: Any) -> None:
    atc, arqc = term.online_arqc()
    arc = b"05"
    arpc = arpc_method1(term.session_key("ac", atc), arqc, arc)
    resp = term.generate_ac(0x40, arc + bytes(9) + arpc + arc)
    assert resp.tags["9F27"] == b"\x00"


def test_generate_ac_errors(term: Any, h: Any) -> None:
    term.card.power_on()
    term.select(h.DEBIT)
    assert term.generate_ac(0x40, h.cdol1_data()).sw == 0x6985  # no GPO
    term.gpo_contact()
    assert term.generate_ac(0x40, h.cdol1_data()[:-1]).sw == 0x6700
    assert term.generate_ac(0xC0, h.cdol1_data()).sw == 0x6A86
    assert term.send(b"\x80\xae\x40\x01\x34" + h.cdol1_data() + b"\x00").sw == 0x6A86
    assert term.generate_ac(0x00, h.cdol1_data()).tags["9F27"] == b"\x00"  # AAC requested
    assert term.generate_ac(0x40, b"00" + bytes(19)).sw == 0x6985  # no second AC after AAC


def test_second_ac_rules(term: Any) -> None:
    _atc, _arqc = term.online_arqc()
    assert term.generate_ac(0x80, b"00" + bytes(19)).sw == 0x6A86  # no ARQC in the second AC
    assert term.generate_ac(0x40, b"00" + bytes(18)).sw == 0x6700
    resp = term.generate_ac(0x00, b"00" + bytes(19))
    assert resp.tags["9F27"] == b"\x00"


def test_get_data(term: Any, h: Any) -> None:
    term.card.power_on()
    assert term.get_data("9F79").sw == 0x6985  # nothing selected
    term.select(h.DEBIT)
    expected = {
        "9F79": "000000010000", "9F77": "000000100000", "9F78": "000000050000", "9F6D": "000000010000",
        "9F51": "0156", "9F36": "0000", "9F13": "0000", "9F17": "03",
        "9F4F": "9A039F21039F02069F03069F1A025F2A029F4E149C019F3602", "DF4F": "9A039F21039F1A029F4E149F3602",
    }  # fmt: skip
    for tag, value in expected.items():
        resp = term.get_data(tag)
        assert resp.sw == 0x9000, tag
        assert resp.tags[tag].hex().upper() == value, tag
        assert decode(resp.data)[0].tag == tag
    assert term.get_data("5A").sw == 0x6A88
    assert term.get_data("9F7F").sw == 0x6A88
    assert term.send("80CA9F79029F79").sw == 0x6700


def test_read_record_errors(term: Any, h: Any) -> None:
    term.card.power_on()
    assert term.read(2, 1).sw == 0x6A82  # nothing selected
    term.select(h.DEBIT)
    assert term.read(2, 1).sw == 0x9000  # no GPO needed
    assert term.read(2, 3).sw == 0x6A83
    assert term.read(2, 0).sw == 0x6A83
    assert term.read(9, 1).sw == 0x6A82
    assert term.send("00B2011000").sw == 0x6A86  # P2 low bits not 100
    assert term.read(12, 1).sw == 0x6A83  # load log empty


def test_offline_data_authentication_chain(term: Any, h: Any, demo_keys: Any) -> None:
    """SDA, the certificate chain and DDA all verify with the demo CA public key, as a terminal would."""
    term.start_contact(100, ec=True)
    recs: dict[str, bytes] = {}
    for sfi, rec in ((2, 1), (2, 2), (3, 1), (3, 2), (3, 3)):
        recs.update(term.read(sfi, rec).tags)
    rid, index, ca = demo_keys.ca_public_key()
    assert rid == "A000000333" and recs["8F"] == bytes((index,))
    issuer = recover_issuer_certificate(ca, recs["90"], recs["92"], recs["9F32"])
    assert term.pan.startswith(issuer.issuer_identifier)
    raw1 = term.read(2, 1).data
    static = decode(raw1)[0].value + bytes.fromhex("7C00")
    sda = recover_static_data(issuer.public_key, recs["93"], static)
    assert len(sda.data_authentication_code) == 2
    icc = recover_icc_certificate(issuer.public_key, recs["9F46"], recs["9F48"], recs["9F47"], static)
    assert icc.pan == term.pan
    un = bytes.fromhex("DEADBEEF")
    resp = term.send(bytes.fromhex("0088000004") + un + b"\x00")
    assert resp.sw == 0x9000 and resp.data[0] == 0x80
    signed = recover_dynamic_data(icc.public_key, resp.tags["80"], un)
    assert len(signed.icc_dynamic_number) == 8
    assert term.send("0088000003AABBCC00").sw == 0x6700
    assert term.send("0088010004DEADBEEF00").sw == 0x6A86


def test_internal_authenticate_needs_gpo(term: Any, h: Any) -> None:
    term.card.power_on()
    term.select(h.DEBIT)
    assert term.send("0088000004DEADBEEF00").sw == 0x6985


def test_get_challenge(term: Any, h: Any) -> None:
    term.card.power_on()
    a = term.send("0084000008")
    b = term.send("0084000008")
    assert a.sw == b.sw == 0x9000 and len(a.data) == 8 and a.data != b.data
    assert term.send("0084000004").sw == 0x6700
    assert term.send("0084010008").sw == 0x6A86


def test_status_words_for_bad_commands(term: Any) -> None:
    term.card.power_on()
    assert term.send("00").sw == 0x6700
    assert term.send("FFA4040000").sw == 0x6E00
    assert term.send("00FF000000").sw == 0x6D00
    assert term.send("80A4040000").sw == 0x6E00  # SELECT with a proprietary class
    assert term.send("00A8000000").sw == 0x6E00  # GPO with an interindustry class
    assert term.send("00A404000000").sw == 0x6700
    assert term.send("00A4040001").sw == 0x6700  # no name (case 2: Le only)


def test_transmit_before_power_on(card: Card) -> None:
    assert card.transmit(bytes.fromhex("00A404000E315041592E5359532E444446303100")) == b"\x69\x85"


def test_transaction_log_is_cyclic(term: Any, h: Any) -> None:
    for amount in range(1, 13):
        term.start_contact(amount, ec=True)
        assert term.generate_ac(0x40, h.cdol1_data(amount)).tags["9F27"] == b"\x40"
    records = [term.read(11, n) for n in range(1, 11)]
    assert all(r.sw == 0x9000 for r in records)
    assert [int(r.data[6:12].hex()) for r in records] == list(range(12, 2, -1))  # most recent first
    assert term.read(11, 11).sw == 0x6A83
    assert term.balance() == 10_000 - sum(range(1, 13))
