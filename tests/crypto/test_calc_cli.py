"""``citycard calc`` through Typer's CliRunner, each subcommand with a known answer (sources as in the
crypto tests: REFERENCE.md, pyemv test vectors)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from citycard.cli.calc import app
from citycard.crypto.cryptograms import verify_script_mac
from citycard.crypto.derivation import derive_pboc_session_key

from tests.crypto import emv_cert_vectors as v

runner = CliRunner()
IMK = "0123456789ABCDEFFEDCBA9876543210"
SK = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"
AC_DATA = "000000002000000000000000012400000080000124110309003804823E58000001"


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_icc_mk() -> None:
    # REFERENCE.md: EMV Book 2 A1.4.1 / pyemv.
    out = run("icc-mk", IMK, "12345678901234567", "01")
    assert "ICC master key: 73AD54688CEF2934B0979857E3C719F1" in out
    assert "KCV: " in out


def test_session_key_is_the_pboc_derivation() -> None:
    out = run("session-key", IMK, "001C")
    expected = derive_pboc_session_key(bytes.fromhex(IMK), 0x001C).hex().upper()
    assert f"Session key: {expected}" in out


def test_common_sk() -> None:
    # REFERENCE.md: EMV Book 2 A1.3 / pyemv.
    assert "Session key: E9FB384AF807B940FEDCEA613461B0C4" in run("common-sk", IMK, "001C000000000000")


def test_arqc_and_verify() -> None:
    # REFERENCE.md: pyemv ac.generate_ac docstring.
    assert "Cryptogram: 3B76CF10FECD8789" in run("arqc", AC_DATA, "--sk", SK)
    assert "valid" in run("arqc-verify", AC_DATA, "3B76CF10FECD8789", "--sk", SK)
    bad = runner.invoke(app, ["arqc-verify", AC_DATA, "3B76CF10FECD8788", "--sk", SK])
    assert bad.exit_code == 1 and "INVALID" in bad.output


def test_arqc_from_udk_and_atc_prints_the_session_key() -> None:
    out = run("arqc", AC_DATA, "--udk", IMK, "--atc", "0001")
    assert derive_pboc_session_key(bytes.fromhex(IMK), 1).hex().upper() in out


def test_arpc_methods() -> None:
    # REFERENCE.md (method 1); pyemv tests/test_ac_hsm.py test_generate_arpc2 (method 2, common SK KCV 0995).
    assert "ARPC: F5E6F44147E2F1B0" in run("arpc", "1234567890ABCDEF", "--sk", SK, "--arc", "0000")
    sk = run(
        "common-sk", run("icc-mk", IMK, "9901234567890123", "45").split()[3], "1234567890123456"
    ).split()[2]
    out = run("arpc", "4B46013359B7A58B", "--sk", sk, "--method", "2", "--proprietary", "1234567890ABCDEF")
    assert "ARPC: 4962B76C" in out


@pytest.mark.parametrize(
    ("text", "expected"), [("Now is the time for all ", "A1C72E74"), ("Now is the time for it", "2E2B1428")]
)
def test_retail_mac(text: str, expected: str) -> None:
    # REFERENCE.md: ISO 9797-1 Annex B, alg 3 padding 1.
    out = run("mac", IMK, text, "--ascii", "--padding", "1", "--alg", "3", "--length", "4")
    assert f"MAC: {expected}" in out


def test_kcv() -> None:
    # pyemv tests: KCV of 0123456789ABCDEFFEDCBA9876543210 is 08D7B4.
    assert "KCV: 08D7B4" in run("kcv", IMK)


def test_pin_block_both_ways() -> None:
    # REFERENCE.md: ISO 9564-1 format 0.
    assert "PIN block: 041274EDCBA9876F" in run("pin-block", "1234", "4012345678909")
    assert "PIN: 1234" in run("pin-block", "--decode", "041274EDCBA9876F", "4012345678909")
    assert runner.invoke(app, ["pin-block", "12", "4012345678909"]).exit_code == 2


def test_tlv_names_and_masking() -> None:
    out = run("tlv", "9F02060000000012345A0862284812345678905F2A020156")
    assert "9F02 Amount, authorised" in out and "12.34" in out
    assert "5A" in out and "6228481234567890" not in out
    assert "6228481234567890" in run("tlv", "5A086228481234567890", "--unmask")


def test_dol_with_data() -> None:
    out = run("dol", "9F02069F37045F2A02", "000000001000123456780156")
    assert "total 12 bytes" in out
    assert "9F37" in out and "12345678" in out and "10.00" in out
    assert runner.invoke(app, ["dol", "9F0206", "0000"]).exit_code == 2


def test_bad_hex_is_a_usage_error() -> None:
    result = runner.invoke(app, ["kcv", "XYZ"])
    assert result.exit_code == 2 and "not hex" in result.output


def test_ec_load_script() -> None:
    # REFERENCE.md layout: 04DA9F790A ‖ balance (n12) ‖ MAC; the card-side check accepts it.
    out = run("ec-load", "1122334455667788", "500.00", "--sk", SK, "--atc", "0021")
    command = bytes.fromhex(out.split("Script command: ")[1].split()[0])
    assert command[:11] == bytes.fromhex("04DA9F790A000000050000")
    assert verify_script_mac(bytes.fromhex(SK), command, 0x21, bytes.fromhex("1122334455667788"))
    for bad in ("12.505", "-1", "50000 fen", "10000000000.00"):
        result = runner.invoke(app, ["ec-load", "1122334455667788", bad, "--sk", SK, "--atc", "0021"])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (bad, result.output)


def test_script_command_application_block() -> None:
    out = run("script", "841E0000", "1122334455667788", "--udk", IMK, "--atc", "0001")
    command = bytes.fromhex(out.split("Script command: ")[1].split()[0])
    sk = derive_pboc_session_key(bytes.fromhex(IMK), 1)
    assert command[:5] == bytes.fromhex("841E000004") and len(command) == 9
    assert verify_script_mac(sk, command, 1, bytes.fromhex("1122334455667788"))
    assert runner.invoke(app, ["script", "841E0000", "1122334455667788", "--sk", SK]).exit_code == 2
    assert runner.invoke(app, ["arpc", "1122334455667788", "--sk", SK, "--sm4"]).exit_code == 2
    too_long = ["script", "84DA9F77", "1122334455667788", "--sk", SK, "--atc", "0001", "--data", "00" * 300]
    result = runner.invoke(app, too_long)
    assert result.exit_code == 2 and "does not fit" in result.output


def test_des_fips81() -> None:
    # FIPS 81 appendix B/C.
    assert "Ciphertext: 3FA40E8A984D4815" in run("des", "0123456789ABCDEF", b"Now is t".hex())
    assert "Plaintext: 4E6F772069732074" in run("des", "0123456789ABCDEF", "3FA40E8A984D4815", "--decrypt")
    out = run(
        "des", "0123456789ABCDEF", b"Now is the time for all ".hex(), "--cbc", "--iv", "1234567890ABCDEF"
    )
    assert "Ciphertext: E5C7CDDE872BF27C43E934008C389C0F683788499A7C05F6" in out


def test_sm4_and_sm3() -> None:
    # GB/T 32907-2016 example 1; GB/T 32905-2016 example 1 (REFERENCE.md).
    assert "Ciphertext: 681EDF34D206965E86B3E94F536E4246" in run("sm4", IMK, IMK)
    assert f"Plaintext: {IMK}" in run("sm4", IMK, "681EDF34D206965E86B3E94F536E4246", "--decrypt")
    assert "SM3: 66C7F0F462EEEDD9" in run("sm3", "abc", "--ascii")


def test_cert_recovery_public_vector() -> None:
    # emv-tools dda_test.c (proxmark3): M/Chip test CA 05 → issuer 528588 → ICC 5285881254345653.
    out = run(
        "cert",
        v.DDA_CA_MODULUS.hex(),
        v.DDA_ISSUER_CERT.hex(),
        "--issuer-remainder",
        v.DDA_ISSUER_REMAINDER.hex(),
        "--icc-cert",
        v.DDA_ICC_CERT.hex(),
        "--static-data",
        v.DDA_STATIC_DATA.hex(),
    )
    assert "Issuer identifier: 528588" in out and "ICC PAN: 5285881254345653" in out
    bad = runner.invoke(app, ["cert", v.DDA_CA_MODULUS.hex(), v.SDA_ISSUER_CERT.hex()])
    assert bad.exit_code == 1 and isinstance(bad.exception, SystemExit) and "INVALID" in bad.output


@pytest.mark.parametrize("command", sorted(c.name or "" for c in app.registered_commands))
@pytest.mark.parametrize(
    "garbage", [["zz"], ["zz", "zz"], ["0", "1", "2"], ["00", "00", "--sk", "zz", "--atc", "1"]]
)
def test_garbage_is_a_usage_error_never_a_traceback(command: str, garbage: list[str]) -> None:
    result = runner.invoke(app, [command, *garbage])
    assert result.exit_code in (1, 2) and isinstance(result.exception, SystemExit), (command, result.output)
