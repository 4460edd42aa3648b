"""``citycard card serve`` as a user runs it, read by a standard PC/SC tool (pcsc-tools' ``scriptor``),
stopped with Ctrl-C (SIGINT), with the card image saved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from citycard.chip.personalise import ProductProfile, personalise
from citycard.demokeys import DemoKeys
from citycard.files import load_card, save_card

from tests.pcsc.pcsc_helpers import connect_reader, require_vpcd, vpcd_slot

pytestmark = pytest.mark.pcsc

CITYCARD = [sys.executable, "-c", "from citycard.cli import main; main()"]


def test_serve_answers_scriptor_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    require_vpcd()
    scriptor = "/usr/bin/scriptor"
    if not os.path.exists(scriptor):
        pytest.fail("pcsc-tools is not installed (.ci/run installs it)")
    path = tmp_path / "card.json"
    save_card(path, personalise(ProductProfile(opening_balance_fen=4_200), 7, DemoKeys.generate()))
    before = load_card(path).to_json()
    with vpcd_slot():
        server = subprocess.Popen(
            [*CITYCARD, "card", "serve", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            connect_reader().disconnect()  # wait until pcscd sees the card
            script = "00A404000E315041592E5359532E444446303100\n00A4040008A00000033301010100\n80CA9F7900\n"
            tool = subprocess.run(
                [scriptor], input=script, capture_output=True, text=True, timeout=30, check=False
            )
        finally:
            server.send_signal(signal.SIGINT)
            out, _ = server.communicate(timeout=10)
    assert tool.returncode == 0, tool.stdout + tool.stderr
    replies = "".join(tool.stdout.split()).upper()  # scriptor prints "> command" then "< response"
    assert replies.count("<") == 3, tool.stdout
    assert "<6F20840E315041592E5359532E4444463031" in replies  # the PSE FCI
    # GET DATA 9F79: the EC balance 42.00 as n12, then 9000
    assert "<9F7906000000004200900" in replies, tool.stdout
    assert server.returncode == 0, out
    assert "stopped; card image saved" in out
    after = load_card(path)
    assert after.to_json() == before  # …so the saved image is byte-for-byte the one served
