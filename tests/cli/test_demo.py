"""``citycard demo`` — the main job of ``make run`` — runs its steps end to end from a fresh home, the EC
load online over the network it starts in-process, and leaves a card whose EC balance is exactly what the
load, the purchase and the fare made it."""

from __future__ import annotations

from typer.testing import CliRunner

from citycard.chip.card import Card
from citycard.cli import _register, app
from citycard.codec.tlv import decode_dict
from citycard.crypto.cryptograms import amount_from_bcd
from citycard.files import load_card


def test_demo_runs_every_step(tmp_path) -> None:
    _register()
    result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for marker in ("APPROVED ONLINE", "GENERATE AC 1", "APPROVED OFFLINE", "GO", "uploaded 2", "load log"):
        assert marker in result.output, marker
    (image,) = (tmp_path / "cards").rglob("*.json")
    card = Card(load_card(image), lambda n: bytes(n))
    card.power_on("contact")
    assert card.transmit(bytes.fromhex("00A4040008A00000033301010100"))[-2:] == b"\x90\x00"
    answer = card.transmit(bytes.fromhex("80CA9F7900"))
    # 100.00 loaded in cash online − 12.50 purchase − 2.00 fare
    assert amount_from_bcd(decode_dict(answer[:-2])["9F79"]) == 8_550


def test_demo_runs_again_in_the_same_home(tmp_path) -> None:
    """``make run`` twice: the second demo finds the bank, merchant and terminal and issues a new card."""
    for _ in range(2):
        result = CliRunner().invoke(app, ["demo", "--home", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert "APPROVED ONLINE" in result.output and "APPROVED OFFLINE" in result.output
    assert len(list((tmp_path / "cards").rglob("*.json"))) == 2
