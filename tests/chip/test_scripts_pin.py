"""Issuer scripts under secure messaging (EMV Book 2 §9.2; JR/T 0025.13 EC load) and offline PIN
(VERIFY; EMV Book 3 §6.5.12, Book 2 §7)."""

from __future__ import annotations

from typing import Any

from citycard.crypto.cryptograms import arpc_method1, ec_load_script, script_command
from citycard.crypto.pin import (
    PinChangeFormat,
    encipher_offline_pin,
    encrypt_pin_change_data,
    plaintext_offline_pin_block,
)
from citycard.crypto.rsa_cert import rsa_public_raw


def _approve(term: Any, atc: int, arqc: bytes) -> None:
    arpc = arpc_method1(term.session_key("ac", atc), arqc, b"00")
    assert term.generate_ac(0x40, b"00" + bytes(9) + arpc + b"00").tags["9F27"] == b"\x40"


def _script(term: Any, header: str, data: bytes, atc: int, arqc: bytes) -> bytes:
    return script_command(term.session_key("mac", atc), bytes.fromhex(header), data, atc, arqc)


def test_ec_load_by_script(term: Any) -> None:
    atc, arqc = term.online_arqc()
    _approve(term, atc, arqc)
    script = ec_load_script(term.session_key("mac", atc), atc, arqc, 60_000)
    assert script[:5] == bytes.fromhex("04DA9F790A")
    resp = term.send(script)  # CLA 04: interindustry class, proprietary secure messaging
    assert resp.sw == 0x9000
    assert term.balance() == 60_000
    log = term.read(12, 1)
    assert log.sw == 0x9000 and len(log.data) == 44
    assert log.data[:2] == bytes.fromhex("9F79")
    assert int(log.data[2:8].hex()) == 10_000 and int(log.data[8:14].hex()) == 60_000
    # the same script again in the same transaction: refused
    assert term.send(script).sw == 0x6985
    # replayed in a later transaction: the MAC no longer fits the ATC/ARQC
    term.online_arqc()
    assert term.send(script).sw == 0x6988
    assert term.balance() == 60_000
    assert term.read(12, 2).sw == 0x6A83


def test_wrong_mac_changes_nothing(term: Any) -> None:
    atc, arqc = term.online_arqc()
    script = bytearray(ec_load_script(term.session_key("mac", atc), atc, arqc, 50_000))
    script[-1] ^= 0x01
    before = term.card.image.to_json()
    assert term.send(bytes(script)).sw == 0x6988
    assert term.card.image.to_json() == before
    # and the CVR of the next cryptogram reports the failed script
    resp = term.generate_ac(0x00, b"00" + bytes(19))
    assert resp.tags["9F10"][6] & 0x08


def test_script_needs_an_online_transaction(term: Any) -> None:
    term.start_contact(100, ec=True)
    assert term.send("84DA9F790A" + "00" * 10).sw == 0x6985
    term.start_contact(0, ec=False)
    term.generate_ac(0x00, bytes(52))  # AAC: no session for scripts either
    assert term.send("841E000004AABBCCDD").sw == 0x6985


def test_load_above_limit_refused(term: Any) -> None:
    atc, arqc = term.online_arqc()
    script = ec_load_script(term.session_key("mac", atc), atc, arqc, 100_001)
    assert term.send(script).sw == 0x6A80
    assert term.balance() == 10_000


def test_put_data_limits(term: Any) -> None:
    atc, arqc = term.online_arqc()
    for tag, value in (("9F77", "000000200000"), ("9F78", "000000001000"), ("9F6D", "000000002000")):
        cmd = _script(term, f"84DA{tag}", bytes.fromhex(value), atc, arqc)
        assert term.send(cmd).sw == 0x9000
        assert term.get_data(tag).data[3:].hex() == value
    assert term.send(_script(term, "84DA9F36", bytes(6), atc, arqc)).sw == 0x6A88
    assert term.send("84DA9F7905" + "00" * 5).sw == 0x6700


def test_application_block_and_unblock(term: Any, h: Any) -> None:
    atc, arqc = term.online_arqc()
    assert term.send(_script(term, "841E0000", b"", atc, arqc)).sw == 0x9000
    term.card.power_on()
    assert term.select(h.DEBIT).sw == 0x6283
    term.gpo_contact(100)
    assert term.generate_ac(0x40, h.cdol1_data(100)).tags["9F27"] == b"\x00"
    term.card.power_on()
    term.select(h.DEBIT)
    term.gpo_contact(0, ec=False)
    resp = term.generate_ac(0x80, h.cdol1_data(0))
    atc, arqc = int.from_bytes(resp.tags["9F36"], "big"), resp.tags["9F26"]
    assert term.send(_script(term, "84180000", b"", atc, arqc)).sw == 0x9000
    term.card.power_on()
    assert term.select(h.DEBIT).sw == 0x9000


def test_card_block(term: Any, h: Any) -> None:
    atc, arqc = term.online_arqc()
    assert term.send(_script(term, "84160000", b"", atc, arqc)).sw == 0x9000
    assert term.get_data("9F36").sw == 0x6A81
    term.card.power_on()
    assert term.select(h.PSE).sw == 0x6A81


def _verify(term: Any, pin: str) -> int:
    block = plaintext_offline_pin_block(pin)
    return int(term.send(bytes.fromhex("0020008008") + block).sw)


def test_pin_tries_and_block(term: Any, h: Any) -> None:
    term.start_contact()
    assert _verify(term, "123456") == 0x9000
    assert _verify(term, "111111") == 0x63C2
    assert term.get_data("9F17").data == bytes.fromhex("9F170102")
    assert _verify(term, "123456") == 0x9000  # resets the counter
    assert _verify(term, "111111") == 0x63C2
    assert _verify(term, "111111") == 0x63C1
    assert _verify(term, "111111") == 0x63C0
    assert _verify(term, "123456") == 0x6983
    term.card.power_on()
    term.select(h.DEBIT)
    assert term.get_data("9F17").data == bytes.fromhex("9F170100")
    term.gpo_contact()
    assert _verify(term, "123456") == 0x6983
    # CVR: PIN try limit exceeded
    assert term.generate_ac(0x80, h.cdol1_data()).tags["9F10"][5] & 0x40


def test_verify_errors(term: Any, h: Any) -> None:
    term.card.power_on()
    term.select(h.DEBIT)
    assert _verify(term, "123456") == 0x6985  # before GPO
    term.gpo_contact()
    assert term.send("0020008007" + "24123456FFFFFF").sw == 0x6700
    assert term.send("0020008008" + "1412345FFFFFFFFF").sw == 0x6A80
    assert term.send("0020008108" + "241234FFFFFFFFFF").sw == 0x6A86
    assert term.get_data("9F17").data[-1] == 3


def test_enciphered_pin(term: Any, h: Any) -> None:
    term.start_contact()
    key = term.card.image.applications[0].icc_key.public
    assert term.send("0020008880" + "00" * 128).sw == 0x6984  # no challenge: random number invalid
    challenge = term.send("0084000008").data
    block = encipher_offline_pin("123456", challenge, key.n, key.e, lambda n: bytes(n))
    assert term.send(bytes.fromhex("0020008880") + block).sw == 0x9000
    challenge = term.send("0084000008").data
    block = encipher_offline_pin("654321", challenge, key.n, key.e, lambda n: bytes(n))
    assert term.send(bytes.fromhex("0020008880") + block).sw == 0x63C2
    # a stale challenge is refused without spending a try
    block = encipher_offline_pin("123456", challenge, key.n, key.e, lambda n: bytes(n))
    term.send("0084000008")
    assert term.send(bytes.fromhex("0020008880") + block).sw == 0x6984
    assert term.get_data("9F17").data[-1] == 2
    # a malformed block under the right challenge is wrong data, again without spending a try: the header
    # is not 7F (made so, not by flipping a ciphertext bit, whose random plaintext starts 7F one time in 256
    # and then fails on the challenge instead, 6984)
    challenge = term.send("0084000008").data
    plain = b"\x00" + plaintext_offline_pin_block("123456") + challenge + bytes(len(block) - 17)
    bad = rsa_public_raw(key.n, key.e, plain)
    assert term.send(bytes.fromhex("0020008880") + bad).sw == 0x6A80
    assert term.get_data("9F17").data[-1] == 2


def test_pin_unblock_and_change(term: Any, h: Any) -> None:
    term.start_contact()
    for _ in range(3):
        _verify(term, "000000")
    atc, arqc = term.online_arqc()
    assert term.send(_script(term, "84240000", b"", atc, arqc)).sw == 0x9000
    assert term.get_data("9F17").data[-1] == 3
    enc = encrypt_pin_change_data(term.session_key("enc", atc), "2468", pin_format=PinChangeFormat.ISO2_ECB)
    assert term.send(_script(term, "84240002", enc, atc, arqc)).sw == 0x9000
    term.start_contact()
    assert _verify(term, "123456") == 0x63C2
    assert _verify(term, "2468") == 0x9000
    assert term.send(_script(term, "84240003", b"", atc, arqc)).sw == 0x6985  # no ARQC in this session
    atc, arqc = term.online_arqc()
    assert term.send(_script(term, "84240003", b"", atc, arqc)).sw == 0x6A86
    assert term.send(_script(term, "84240001", enc, atc, arqc)).sw == 0x6A86  # with the current PIN: no
