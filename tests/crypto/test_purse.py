"""ED/EP purse cryptography tests (PBOC 2.0 part 2): worked examples published for developers."""

from __future__ import annotations

import pytest

from citycard.crypto.des import ecb_encrypt
from citycard.crypto.mac import mac_alg1
from citycard.crypto.purse import (
    TX_ED_LOAD,
    TX_EP_LOAD,
    TX_EP_PURCHASE,
    load_mac1,
    load_mac2,
    load_session_key,
    load_tac,
    purchase_mac1,
    purchase_mac2,
    purchase_session_key,
    purchase_tac,
    purse_mac,
    tac_key,
    verify_purse_mac,
)

H = bytes.fromhex
KEY = H("11223344556677888877665544332211")
TERMINAL = H("001122334455")


def test_load_worked_example() -> None:
    # "基于PBOC的电子钱包的圈存过程" (ncuisine.com, 2020): LoadKey 1122…2211, random 11223344, serial 0000.
    sk = load_session_key(KEY, H("11223344"), 0)
    assert sk.hex().upper() == "9B1D924E05595603"
    assert load_mac1(sk, 0, 0x1000, TX_ED_LOAD, TERMINAL).hex().upper() == "2988AE5A"
    assert load_mac2(sk, 0x1000, TX_ED_LOAD, TERMINAL, H("20111221"), H("214822")).hex().upper() == "3A845BF0"


def test_load_second_worked_example() -> None:
    # dpj365.com "圈存命令": key 3F01…3F01, random F9CABA91, serial 0000, EP load of 0x1234, terminal …01.
    sk = load_session_key(H("3F01" * 8), H("F9CABA91"), 0)
    assert sk.hex().upper() == "03015BEA347EA231"
    assert load_mac1(sk, 0, 0x1234, TX_EP_LOAD, H("000000000001")).hex().upper() == "6C394D64"


def test_purchase_worked_example() -> None:
    # "基于PBOC电子钱包的消费过程详解" (cnblogs ttss, 2015): PurchKey 1122…2211, random 11223344,
    # offline serial 0000, terminal serial …0001.
    sk = purchase_session_key(KEY, H("11223344"), 0, 1)
    assert sk.hex().upper() == "003238ABC57659DD"
    assert (
        purchase_mac1(sk, 0x1000, TX_EP_PURCHASE, TERMINAL, H("20120229"), H("135100")).hex().upper()
        == "F15CAB75"
    )
    assert purchase_mac2(sk, 0x1000).hex().upper() == "56988A13"


def test_tac_key_and_tac_layout() -> None:
    # Same source: TAC key 00112233445566778899AABBCCDDEEFF → 8888888888888888.
    tk = tac_key(H("00112233445566778899AABBCCDDEEFF"))
    assert tk == H("8888888888888888")
    tac = purchase_tac(tk, 0x1000, TX_EP_PURCHASE, TERMINAL, 1, H("20120229"), H("135100"))
    expected = mac_alg1(tk, H("00001000060011223344550000000120120229135100"), length=4)
    assert tac == expected
    ltac = load_tac(tk, 0x1000, 0, 0x1000, TX_EP_LOAD, TERMINAL, H("20111221"), H("214822"))
    assert ltac == mac_alg1(tk, H("000010000000000010000200112233445520111221214822"), length=4)


def test_purse_mac_is_single_des_cbc_with_80_padding() -> None:
    sk = H("0123456789ABCDEF")
    data = H("00001000")
    assert purse_mac(sk, data) == ecb_encrypt(sk, data + H("80000000"))[:4]
    assert verify_purse_mac(sk, data, purse_mac(sk, data))
    assert not verify_purse_mac(sk, data + b"\x00", purse_mac(sk, data))


def test_rejects_bad_fields() -> None:
    with pytest.raises(ValueError):
        purse_mac(KEY, b"")  # 16-byte key: purse MACs are single DES
    with pytest.raises(ValueError):
        load_session_key(KEY, H("112233"), 0)
    with pytest.raises(ValueError):
        load_mac1(H("0123456789ABCDEF"), 2**32, 1, TX_EP_LOAD, TERMINAL)
    with pytest.raises(ValueError):
        purchase_mac1(H("0123456789ABCDEF"), 1, TX_EP_PURCHASE, TERMINAL[:5], H("20120229"), H("135100"))
    with pytest.raises(ValueError):
        tac_key(KEY[:8])
