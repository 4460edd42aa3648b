"""A card image file is one card: locked for a whole session, saved without crashing after the sale, and
refused with one line when it is not a valid image (``citycard.files.CardFile`` and the ``pos``/``card``
commands over it)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from citycard import files
from citycard.chip.image import cell_key
from citycard.cli import card as card_cli
from citycard.cli import pos as pos_cli
from citycard.sqlite_journal import SqliteJournal

from tests.kernel.cardlab import demo_keys

ROOT = Path(__file__).resolve().parents[2]
AID = "A000000333010101"


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(card_cli.app, name="card")
    app.add_typer(pos_cli.app, name="pos")
    return app


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    (tmp_path / "demo-keys.json").write_bytes(demo_keys().to_json())
    image = tmp_path / "card.json"
    result = CliRunner().invoke(
        _app(), ["card", "new", "--out", str(image), "--ec-balance", "100.00", "--serial", "7"]
    )
    assert result.exit_code == 0, result.output
    return tmp_path, image


def _cell(image: Path, name: str) -> object:
    return json.loads(image.read_bytes())["nvm"][cell_key(AID, name)]


# -- one session at a time ---------------------------------------------------------------------------------


@pytest.mark.xdist_group("concurrent-processes")
def test_six_concurrent_purchases_debit_the_card_once_each_with_unique_atcs(home):
    tmp_path, image = home
    env = {
        **os.environ,
        "CITYCARD_HOME": str(tmp_path),
        "CITYCARD_LOCK_TIMEOUT_S": "600",  # a loaded test machine: they queue, none gives up
        "PYTHONPATH": str(ROOT / "src"),
    }
    command = [sys.executable, "-c", "from citycard.cli import main; main()"]
    args = ["pos", "purchase", "--card", str(image), "--amount", "1.00"]
    runs = [
        subprocess.Popen(
            [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    outputs = [run.communicate(timeout=180) for run in runs]
    approved = sum(
        run.returncode == 0 and "APPROVED" in out for run, (out, _) in zip(runs, outputs, strict=True)
    )
    assert approved == 6, [err for _, err in outputs]
    assert _cell(image, "ec_balance") == 10_000 - 100 * approved  # debited exactly once per approval
    log = _cell(image, "txn_log")
    assert isinstance(log, list) and len(log) == 6
    atcs = [int(record[-4:], 16) for record in log]  # 9F36 closes the 9F4F record
    assert len(set(atcs)) == 6 and _cell(image, "atc") == max(atcs) == 6
    journal = SqliteJournal(tmp_path / "pos-journal.db", "CITY0001")
    entries = journal.entries()
    journal.close()
    assert sorted(e.atc for e in entries if e.state == "approved") == sorted(atcs)


def test_a_held_card_image_is_a_clear_error_after_the_timeout(home, monkeypatch):
    _, image = home
    before = image.read_bytes()
    monkeypatch.setenv("CITYCARD_LOCK_TIMEOUT_S", "0")
    with files.exclusive_lock(files.card_lock_path(image), "test"):  # another session holds the card
        result = CliRunner().invoke(_app(), ["pos", "purchase", "--card", str(image), "--amount", "1.00"])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
        assert f"error: card image {image} is in use by another process (waited 0 s)" in result.output
        result = CliRunner().invoke(
            _app(), ["card", "apdu", str(image), "00A404000E325041592E5359532E444446303100"]
        )
        assert result.exit_code == 1 and "in use by another process" in result.output
    assert image.read_bytes() == before


def test_a_card_image_reached_by_a_symlink_is_one_card(home, monkeypatch):
    """A link to the image (``ln -s ~/.local/share/citycard/card.json card.json``) is the same card: the
    purchase debits the image itself, not a copy put in place of the link, and the image's lock holds for
    both names — else each name would be a card of its own, spending the same money twice."""
    tmp_path, image = home
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "elsewhere" / "mine.json"
    link.symlink_to(image)
    result = CliRunner().invoke(_app(), ["pos", "purchase", "--card", str(link), "--amount", "1.00"])
    assert result.exit_code == 0 and "APPROVED OFFLINE" in result.output, result.output
    assert link.is_symlink() and _cell(image, "ec_balance") == 9_900
    before = image.read_bytes()
    monkeypatch.setenv("CITYCARD_LOCK_TIMEOUT_S", "0")
    with files.exclusive_lock(files.card_lock_path(image), "test"):  # a session on the image's own name
        result = CliRunner().invoke(_app(), ["pos", "purchase", "--card", str(link), "--amount", "1.00"])
        assert result.exit_code == 1 and "in use by another process" in result.output, result.output
    assert image.read_bytes() == before and link.is_symlink()


def test_a_hard_linked_card_image_is_refused(home):
    """Two hard links are two names with two locks, and the first save (a rename) makes them two cards with
    the same money: such an image is refused with one line, and left as it is."""
    tmp_path, image = home
    other = tmp_path / "again.json"
    os.link(image, other)
    before = image.read_bytes()
    for name in (image, other):
        result = CliRunner().invoke(_app(), ["pos", "purchase", "--card", str(name), "--amount", "1.00"])
        assert result.exit_code == 2, result.output
        assert result.output.strip().endswith("has 2 hard links: each name would become a card of its own")
    assert image.read_bytes() == before and os.stat(image).st_ino == os.stat(other).st_ino


# -- the last save ---------------------------------------------------------------------------------------


def _disk_full_after(monkeypatch, *, sale_saved: bool) -> None:
    """``atomic_write`` raises ENOSPC for a card image with a debited balance — only once one has been
    written when ``sale_saved`` (the disk fills up right after the sale was saved)."""
    real = files.atomic_write
    state = {"debit_written": False}

    def write(path, data: bytes) -> None:
        debited = json.loads(data)["nvm"][cell_key(AID, "ec_balance")] < 10_000
        if debited and (state["debit_written"] or not sale_saved):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        state["debit_written"] |= debited
        real(path, data)

    monkeypatch.setattr(files, "atomic_write", write)


def test_disk_full_after_the_sale_is_saved_reports_the_sale_approved(home, monkeypatch):
    tmp_path, image = home
    _disk_full_after(monkeypatch, sale_saved=True)
    result = CliRunner().invoke(_app(), ["pos", "purchase", "--card", str(image), "--amount", "12.50"])
    assert result.exit_code == 0, result.output
    assert "APPROVED OFFLINE" in result.output and "CNY 87.50" in result.output  # the receipt
    assert _cell(image, "ec_balance") == 8_750
    journal = SqliteJournal(tmp_path / "pos-journal.db", "CITY0001")
    assert [e.state for e in journal.entries()] == ["approved"]
    journal.close()


def test_disk_full_at_the_debit_is_a_warning_and_the_retry_debits_once(home, monkeypatch):
    """The save after GENERATE AC fails: the card did not durably debit. The command ends with a warning
    line (no traceback), the journal holds the sale ``torn``; the retry finds no record in the card's log
    and charges it once."""
    tmp_path, image = home
    _disk_full_after(monkeypatch, sale_saved=False)
    result = CliRunner().invoke(_app(), ["pos", "purchase", "--card", str(image), "--amount", "12.50"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"warning: card image {image} could not be saved" in result.output
    assert _cell(image, "ec_balance") == 10_000
    monkeypatch.undo()
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    retry = CliRunner().invoke(_app(), ["pos", "purchase", "--card", str(image), "--amount", "12.50"])
    assert retry.exit_code == 0 and "APPROVED OFFLINE" in retry.output, retry.output
    assert _cell(image, "ec_balance") == 8_750  # once
    journal = SqliteJournal(tmp_path / "pos-journal.db", "CITY0001")
    assert sorted(e.state for e in journal.entries()) == ["approved", "torn"]
    journal.close()


# -- a bad image is one line, exit 2, and left untouched ----------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "value", "says"),
    [
        ("ec_balance", -100, "must be an integer 0 to 999999999999"),
        ("atc", 70_000, "must be an integer 0 to 65535"),
    ],
)
def test_a_bad_image_is_one_error_line_and_left_untouched(home, cell, value, says):
    _, image = home
    doc = json.loads(image.read_bytes())
    doc["nvm"][cell_key(AID, cell)] = value
    image.write_text(json.dumps(doc))
    before = image.read_bytes()
    for args in (
        ["pos", "purchase", "--card", str(image), "--amount", "1.00"],
        ["pos", "balance", "--card", str(image)],
        ["card", "apdu", str(image), "00A404000E325041592E5359532E444446303100"],
        ["card", "show", str(image)],
    ):
        result = CliRunner().invoke(_app(), args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot read card image"), result.output
        assert f"nvm {cell_key(AID, cell)}: {says}" in lines[0]
    assert image.read_bytes() == before
