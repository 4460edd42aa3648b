"""``citycard clearing`` through the real entry point: a day cleared (``--json``), and bad input refused
with one ``error:`` line, exit status 2 and nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from citycard.cli import run
from citycard.db.clearing_tables import clearing_presentments, clearing_runs


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path / "home"))
    assert run(["bank", "add", "ICBC", "--bin", "621226"]) == 0
    return tmp_path / "home"


def _counts(home: Path) -> tuple[int, int]:
    engine = create_engine(f"sqlite:///{home / 'citycard.db'}")
    try:
        with engine.connect() as c:
            runs = c.execute(select(func.count()).select_from(clearing_runs)).scalar_one()
            staged = c.execute(select(func.count()).select_from(clearing_presentments)).scalar_one()
            return int(runs), int(staged)
    finally:
        engine.dispose()


def test_run_json_and_rerun(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["clearing", "run", "--date", "2026-11-25", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    # cleared, and settled when settlement runs after it in the same command
    assert first["status"] in ("cleared", "settled") and first["offline"] == {"count": 0, "amount_fen": 0}
    assert run(["clearing", "run", "--date", "2026-11-25", "--json", "--workers", "2"]) == 0  # SQLite: one
    again = json.loads(capsys.readouterr().out)
    clearing = ("date", "online", "offline", "returns", "by_kind", "exceptions")
    assert {k: again[k] for k in clearing} == {k: first[k] for k in clearing}
    assert run(["clearing", "exceptions", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["clearing", "run", "--date", "2026-02-30"], "--date: '2026-02-30' is not a date YYYY-MM-DD"),
        (["clearing", "run", "--date", "2026-11-25", "--import", "{root}/none"], "is not a folder"),
        (["clearing", "run", "--date", "2026-11-25", "--workers", "0"], "--workers"),
        (["clearing", "run", "--date", "2026-11-25", "--workers", "17"], "--workers"),
        (["clearing", "run", "--date", "2026-11-25", "--import", "{root}/bad"], "bad-upload-000001.jsonl:2"),
        (["clearing", "exceptions", "--resolve", "7", "--action", "pay"], "--action: 'pay'"),
        (["clearing", "exceptions", "--resolve", "7"], "--resolve and --action go together"),
        (["clearing", "exceptions", "--resolve", "7", "--action", "accept"], "no clearing exception 7"),
        (["clearing", "exceptions", "--status", "lost"], "--status: 'lost'"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_changed(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    good = {"terminal_id": "POS00001", "batch": 1, "stan": 1, "amount_fen": 100, "field55": "9F2608",
            "created": "2026-11-25T10:00:00", "state": "approved", "psn": "01", "pan_masked": ""}  # fmt: skip
    (bad / "bad-upload-000001.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    capsys.readouterr()
    before = _counts(home)
    status = run([a.format(root=tmp_path) for a in argv])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert _counts(home) == before
