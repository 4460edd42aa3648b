"""Application cryptogram, ARPC and script MAC tests (EMV Book 2 §8–9; PBOC JR/T 0025.5/.13)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from citycard.codec.money import amount_from_bcd, bcd_amount
from citycard.crypto.cryptograms import (
    AC_DATA_TAGS,
    CryptogramDataError,
    ScriptCommandError,
    ac_input,
    arpc_method1,
    arpc_method2,
    cvr_from_iad,
    ec_load_script,
    generate_ac,
    parse_script_command,
    script_command,
    script_mac,
    verify_ac,
    verify_acs,
    verify_arpc_method1,
    verify_script_mac,
)
from citycard.crypto.derivation import derive_common_session_key, derive_icc_mk_a, derive_pboc_session_key
from citycard.crypto.des import kcv
from citycard.crypto.mac import mac_alg3

SK = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
KAT_DATA = bytes.fromhex("000000002000000000000000012400000080000124110309003804823E58000001")

# The KAT data split into the elements of AC_DATA_TAGS (without the CVR), lengths from EMV Book 3 Annex A.
KAT_VALUES = {
    "9F02": bytes.fromhex("000000002000"),
    "9F03": bytes.fromhex("000000000000"),
    "9F1A": bytes.fromhex("0124"),
    "95": bytes.fromhex("0000008000"),
    "5F2A": bytes.fromhex("0124"),
    "9A": bytes.fromhex("110309"),
    "9C": bytes.fromhex("00"),
    "9F37": bytes.fromhex("3804823E"),
    "82": bytes.fromhex("5800"),
    "9F36": bytes.fromhex("0001"),
}
# A PBOC 9F10 with EC balance (public trace, geek-share.com "金融系列8《应用密文产生》"):
# 07 DKI=00 CVN=01 CVR=03A03002 alg=01 | 0A 01 balance(5) MAC(4).
PBOC_IAD = bytes.fromhex("07000103A03002010A010000000000B0992D81")


def test_generate_ac_reference_vector() -> None:
    # REFERENCE.md: pyemv ac.generate_ac docstring (ISO 9797-1 alg 3, EMV padding).
    assert generate_ac(SK, KAT_DATA).hex().upper() == "3B76CF10FECD8789"


def test_ac_input_orders_the_elements_like_the_reference_data() -> None:
    assert ac_input(KAT_VALUES, AC_DATA_TAGS[:-1]) == KAT_DATA


def test_ac_input_appends_cvr_from_iad() -> None:
    values = {**KAT_VALUES, "9F10": PBOC_IAD}
    assert ac_input(values) == KAT_DATA + bytes.fromhex("03A03002")
    assert cvr_from_iad(PBOC_IAD) == PBOC_IAD[3:7]


def test_ac_input_names_the_bad_element() -> None:
    with pytest.raises(CryptogramDataError) as missing:
        ac_input({k: v for k, v in KAT_VALUES.items() if k != "9F37"})
    assert missing.value.tag == "9F37"
    with pytest.raises(CryptogramDataError) as wrong:
        ac_input({**KAT_VALUES, "9A": b"\x11\x03", "9F10": PBOC_IAD})
    assert wrong.value.tag == "9A"
    with pytest.raises(CryptogramDataError) as short_iad:
        ac_input({**KAT_VALUES, "9F10": bytes.fromhex("0700010300")})
    assert short_iad.value.tag == "9F10"


def test_verify_ac() -> None:
    ac = generate_ac(SK, KAT_DATA)
    assert verify_ac(SK, KAT_DATA, ac)
    assert not verify_ac(SK, KAT_DATA[:-1] + b"\x02", ac)
    assert not verify_ac(SK, KAT_DATA, bytes(8))


_checks = st.lists(
    st.tuples(
        st.binary(min_size=16, max_size=16),
        st.lists(st.binary(max_size=40), min_size=1, max_size=3),
        st.integers(-1, 2),  # the input whose AC the cryptogram is (-1: none of them)
    ),
    max_size=6,
)


@given(_checks)
def test_verify_acs_is_verify_ac_of_each_check(checks: list[tuple[bytes, list[bytes], int]]) -> None:
    keys, batch = [], []
    for sk, inputs, which in checks:
        cryptogram = generate_ac(sk, inputs[which]) if 0 <= which < len(inputs) else bytes(8)
        keys.append(sk)
        batch.append((inputs, cryptogram))
    expected = [
        any(verify_ac(sk, d, ac) for d in inputs) for sk, (inputs, ac) in zip(keys, batch, strict=True)
    ]
    assert verify_acs(keys, batch) == expected
    assert expected == [0 <= which < len(inputs) for _, inputs, which in checks]
    with pytest.raises(ValueError):
        verify_acs([SK[:8]], [([KAT_DATA], bytes(8))])


def test_arpc_method1_reference_vector() -> None:
    # REFERENCE.md: EMV Book 2 8.2.1; pyemv ac.generate_arpc_1 docstring.
    arpc = arpc_method1(SK, bytes.fromhex("1234567890ABCDEF"), bytes.fromhex("0000"))
    assert arpc.hex().upper() == "F5E6F44147E2F1B0"
    assert verify_arpc_method1(SK, bytes.fromhex("1234567890ABCDEF"), b"\x00\x00", arpc)
    assert not verify_arpc_method1(SK, bytes.fromhex("1234567890ABCDEF"), b"\x30\x30", arpc)


# pyemv tests/test_ac_hsm.py: IMK 0123…3210, PAN 9901234567890123, PSN 45, common SK with R 1234567890123456.
def _pyemv_chain() -> tuple[bytes, bytes, bytes]:
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    icc_mk = derive_icc_mk_a(imk, "9901234567890123", "45")
    sk = derive_common_session_key(icc_mk, bytes.fromhex("1234567890123456"))
    arqc = generate_ac(sk, bytes.fromhex("0123456789ABCDEF0123456789ABCDEF"))
    return icc_mk, sk, arqc


def test_pyemv_chain_key_check_values_and_arqc() -> None:
    icc_mk, sk, arqc = _pyemv_chain()
    assert kcv(icc_mk, 2).hex().upper() == "1DA5"
    assert kcv(sk, 2).hex().upper() == "0995"
    assert arqc.hex().upper() == "4B46013359B7A58B"
    assert arpc_method1(icc_mk, arqc, b"\x00\x00").hex().upper() == "F8C9CECAABD55AD1"


def test_arpc_method2_pyemv_vectors() -> None:
    # pyemv tests/test_ac_hsm.py test_generate_arpc2 / test_generate_arpc2_no_prop_auth_data.
    _, sk, arqc = _pyemv_chain()
    csu = bytes(4)
    assert arpc_method2(sk, arqc, csu, bytes.fromhex("1234567890ABCDEF")).hex().upper() == "4962B76C"
    assert arpc_method2(sk, arqc, csu).hex().upper() == "7DFB1188"


def test_script_mac_pyemv_vector() -> None:
    # pyemv tests/test_sm_hsm.py test_generate_command_mac: 8-byte MAC CF323F09A0F6AB9E; ours keeps 4.
    imk = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    icc_mk = derive_icc_mk_a(imk, "1234567890123456", "01")
    assert kcv(icc_mk, 2).hex().upper() == "0239"
    sk = derive_common_session_key(icc_mk, bytes.fromhex("ABCDEF1234567890"))
    assert kcv(sk, 2).hex().upper() == "F088"
    assert script_mac(sk, bytes.fromhex("8424000008")).hex().upper() == "CF323F09"


@pytest.mark.parametrize(
    ("fen", "hex_"), [(0, "000000000000"), (12345, "000000012345"), (10**12 - 1, "9" * 12)]
)
def test_bcd_amount(fen: int, hex_: str) -> None:
    assert bcd_amount(fen).hex() == hex_
    assert amount_from_bcd(bytes.fromhex(hex_)) == fen


def test_bcd_amount_rejects() -> None:
    with pytest.raises(ValueError):
        bcd_amount(10**12)
    with pytest.raises(ValueError):
        bcd_amount(-1)
    with pytest.raises(ValueError):
        amount_from_bcd(bytes.fromhex("00000000001A"))


@given(st.integers(0, 10**12 - 1))
def test_bcd_round_trip(fen: int) -> None:
    assert amount_from_bcd(bcd_amount(fen)) == fen


def test_ec_load_script_layout_and_mac() -> None:
    # REFERENCE.md "EC load script": 04DA9F790A ‖ balance (n12) ‖ MAC over 04DA9F790A ‖ ATC ‖ ARQC ‖ balance.
    udk = derive_icc_mk_a(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), "6228480000000000001", "00")
    sk = derive_pboc_session_key(udk, 0x0021)
    arqc = bytes.fromhex("1122334455667788")
    cmd = ec_load_script(sk, 0x0021, arqc, 50_000)
    assert cmd[:5] == bytes.fromhex("04DA9F790A")
    assert cmd[5:11] == bytes.fromhex("000000050000")
    expected = mac_alg3(sk, bytes.fromhex("04DA9F790A0021") + arqc + bytes.fromhex("000000050000"), length=4)
    assert cmd[11:] == expected
    assert len(cmd) == 15
    assert verify_script_mac(sk, cmd, 0x0021, arqc)
    assert not verify_script_mac(sk, cmd, 0x0022, arqc)
    tampered = cmd[:10] + b"\x01" + cmd[11:]
    assert not verify_script_mac(sk, tampered, 0x0021, arqc)


@pytest.mark.parametrize(
    ("header", "data"),
    [
        ("841E0000", ""),  # APPLICATION BLOCK
        ("84180000", ""),  # APPLICATION UNBLOCK
        ("84160000", ""),  # CARD BLOCK
        ("04DA9F77", "000000100000"),  # PUT DATA EC balance limit
        ("84240002", "00112233445566778899AABBCCDDEEFF"),  # PIN CHANGE with enciphered data
    ],
)
def test_script_command_round_trip(header: str, data: str) -> None:
    arqc = bytes.fromhex("0102030405060708")
    cmd = script_command(SK, bytes.fromhex(header), bytes.fromhex(data), 7, arqc)
    assert cmd[4] == len(data) // 2 + 4
    got_header, got_data, mac = parse_script_command(cmd)
    assert (got_header.hex().upper(), got_data.hex().upper()) == (header, data)
    assert mac == script_mac(SK, bytes.fromhex(header) + cmd[4:5] + b"\x00\x07" + arqc + bytes.fromhex(data))
    assert verify_script_mac(SK, cmd, 7, arqc)
    assert verify_script_mac(SK, cmd + b"\x00", 7, arqc)  # with an Le byte
    assert not verify_script_mac(SK, cmd, 7, bytes(8))


@pytest.mark.parametrize("cmd", ["84160000", "8416000004AABB", "84160000FF0102030405"])
def test_parse_script_command_rejects(cmd: str) -> None:
    with pytest.raises(ScriptCommandError):
        parse_script_command(bytes.fromhex(cmd))
