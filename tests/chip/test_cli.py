"""``citycard card``: new, show, apdu (Typer app tested through its runner)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from citycard.cli.card import app
from citycard.codec.money import parse_yuan
from citycard.files import load_card

runner = CliRunner()


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_parse_yuan_is_exact(fen: int) -> None:
    assert parse_yuan(f"{fen // 100}.{fen % 100:02d}") == fen


@pytest.mark.parametrize("text", ["1.234", "1e3", "-1.00", "", "1,00", ".5", "0x10", "1.5.0", "１.00"])
def test_parse_yuan_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_yuan(text)


def test_parse_yuan_forms() -> None:
    assert parse_yuan("100") == 10_000 and parse_yuan("100.5") == 10_050 and parse_yuan("0.07") == 7


def _new(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "card.json"
    result = runner.invoke(
        app, ["new", "--out", str(out), "--keys", str(tmp_path / "keys.json"), "--serial", "77", *args]
    )
    assert result.exit_code == 0, result.output
    return out


def test_new_show_apdu(tmp_path: Path) -> None:
    out = _new(tmp_path, "--holder", "WANG WU", "--ec-balance", "50.00", "--ec-limit", "500.00")
    image = load_card(out)
    assert image.get_int("A000000333010101.ec_balance") == 5000
    assert image.get_int("A000000333010101.ec_limit") == 50_000
    pan = image.applications[0].data["5A"].hex().upper().rstrip("F")
    shown = runner.invoke(app, ["show", str(out)], terminal_width=200)
    assert shown.exit_code == 0 and "WANG WU" in shown.output and "50.00" in shown.output
    assert pan not in shown.output and pan[:6] in shown.output
    revealed = runner.invoke(app, ["show", str(out), "--reveal"], terminal_width=200)
    assert pan in revealed.output
    cdol1 = "0000000010000000000000000156000000000001562611250011223344120000" + "00" * 20
    result = runner.invoke(
        app,
        [
            "apdu",
            str(out),
            "00A4040008A00000033301010100",
            "80A800000B8309010000000010000156",
            "80AE400034" + cdol1,
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "Application cryptogram" in result.output and "= TC" in result.output
    select = "00A4040008A00000033301010100"
    records = runner.invoke(app, ["apdu", str(out), select, "00B2011400", "00B2021400"], terminal_width=80)
    assert records.exit_code == 0 and pan not in records.output and pan[:6] + "******" in records.output
    assert "< 70" in records.output  # the raw response stays on its line, however long
    revealed = runner.invoke(app, ["apdu", str(out), select, "00B2011400", "--reveal"], terminal_width=80)
    assert pan in revealed.output
    assert "9000 (normal processing)" in result.output
    after = load_card(out)
    assert after.get_int("A000000333010101.ec_balance") == 4000
    assert after.get_int("A000000333010101.atc") == 1
    shown = runner.invoke(app, ["show", str(out)], terminal_width=200)
    assert "10.00" in shown.output and "40.00" in shown.output


def test_apdu_errors(tmp_path: Path) -> None:
    out = _new(tmp_path, "--no-contactless", "--credit")
    result = runner.invoke(app, ["apdu", str(out), "00B2"], terminal_width=200)
    assert "6700 (wrong length)" in result.output
    result = runner.invoke(app, ["apdu", str(out), "zz"])
    assert result.exit_code == 2 and "not hex" in result.output
    result = runner.invoke(app, ["apdu", str(out), "0"])
    assert result.exit_code == 2 and "not hex" in result.output
    result = runner.invoke(app, ["apdu", str(tmp_path / "missing.json"), "00"])
    assert result.exit_code == 2 and "cannot read card image" in result.output
    result = runner.invoke(
        app, ["apdu", str(out), "--interface", "contactless", "00A404000E325041592E5359532E444446303100"]
    )
    assert "9000" in result.output and "A000000333" not in result.output  # no contactless application


def test_new_rejects_bad_amounts(tmp_path: Path) -> None:
    result = runner.invoke(app, ["new", "--out", str(tmp_path / "x.json"), "--ec-balance", "1.001"])
    assert result.exit_code == 2 and "--ec-balance" in result.output
    assert not (tmp_path / "x.json").exists()
    keys = ["--keys", str(tmp_path / "k.json")]
    result = runner.invoke(app, ["new", "--out", str(tmp_path / "x.json"), *keys, "--bin", "12AB56"])
    assert result.exit_code == 2 and "bin" in result.output
    result = runner.invoke(
        app, ["new", "--out", str(tmp_path / "x.json"), *keys, "--ec-balance", "20.00", "--ec-limit", "10.00"]
    )
    assert result.exit_code == 2 and "exceeds the EC balance limit" in result.output
    assert not (tmp_path / "x.json").exists()


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    """A card image that cannot be written or read is a clear message, not a traceback."""
    (tmp_path / "dir").mkdir()
    result = runner.invoke(app, ["new", "--out", str(tmp_path / "dir"), "--keys", str(tmp_path / "k.json")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "cannot write card image" in result.output
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    result = runner.invoke(app, ["show", str(tmp_path / "other.json")])
    assert result.exit_code == 2 and "cannot read card image" in result.output
    result = runner.invoke(app, ["show", str(tmp_path / "dir")])
    assert result.exit_code == 2 and "cannot read card image" in result.output


def test_new_dual_cda(tmp_path: Path) -> None:
    image = load_card(_new(tmp_path, "--dual", "--cda"))
    assert [a.kind for a in image.applications] == ["debit", "credit"]
    assert image.applications[0].data["82"] == bytes.fromhex("7D00")


def test_apdu_echo_hides_pin_data(tmp_path: Path) -> None:
    """A VERIFY typed at ``card apdu`` is echoed with its header only, --reveal or not; the card answers."""
    out = _new(tmp_path)
    gpo, verify = "80A800000B8309010000000010000156", "0020008008 26123456FFFFFFFF"
    for extra in ([], ["--reveal"]):
        args = ["apdu", str(out), "00A4040008A00000033301010100", gpo, verify, *extra]
        result = runner.invoke(app, args, terminal_width=200)
        assert result.exit_code == 0 and "> 0020008008 ****************" in result.output, result.output
        assert "123456F" not in result.output and "9000 (normal processing)" in result.output


def test_new_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = _new(tmp_path)
    before = out.read_bytes()
    keys = ["--keys", str(tmp_path / "keys.json")]
    result = runner.invoke(app, ["new", "--out", str(out), *keys, "--serial", "78"])
    assert result.exit_code == 2 and "--force" in result.output and out.read_bytes() == before
    result = runner.invoke(app, ["new", "--out", str(out), *keys, "--serial", "78", "--force"])
    assert result.exit_code == 0 and out.read_bytes() != before


@pytest.mark.parametrize(
    ("args", "option", "why"),
    [
        (["--ec-single-limit", "2000.00"], "--ec-single-limit", "exceeds the EC balance limit"),
        (["--credit", "--ec-balance", "5.00"], "--ec-balance", "no electronic cash"),
    ],
)
def test_new_refuses_inconsistent_limits(tmp_path: Path, args: list[str], option: str, why: str) -> None:
    out = tmp_path / "x.json"
    result = runner.invoke(app, ["new", "--out", str(out), "--keys", str(tmp_path / "k.json"), *args])
    assert result.exit_code == 2 and option in result.output and why in result.output, result.output
    assert not out.exists()


def test_apdu_that_is_not_hex_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A mistyped VERIFY (a stray character) is refused before the card is touched, without printing the
    PIN digits back: the error names the command by its position."""
    out = _new(tmp_path)
    before = out.read_bytes()
    result = runner.invoke(
        app, ["apdu", str(out), "00A4040008A00000033301010100", "0020008008 26147258FFFFFFFX"]
    )
    assert result.exit_code == 2 and "command 2 is not hex" in result.output, result.output
    assert "147258" not in result.output and out.read_bytes() == before


def test_apdu_says_why_a_command_is_out_of_sequence(tmp_path: Path) -> None:
    """A 6985 for the card's sequence (chip.sequence) is explained: the phase the card is in, and where the
    command is taken; a 6985 for another reason is not."""
    out = _new(tmp_path)
    select = "00A4040008A00000033301010100"
    result = runner.invoke(app, ["apdu", str(out), select, "008200000A" + "00" * 10], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert (
        "out of sequence: the card is in SELECTED (an application selected, no processing options yet); "
        "EXTERNAL AUTHENTICATE is taken in ONLINE, QPBOC_ONLINE"
    ) in result.output
    # UPDATE CAPP DATA CACHE in its phase, on the contact interface: 6985 for the interface, not the sequence
    capp = "80DE02AC30" + "00" * 48
    result = runner.invoke(app, ["apdu", str(out), select, capp], terminal_width=300)
    assert "6985" in result.output and "out of sequence" not in result.output
