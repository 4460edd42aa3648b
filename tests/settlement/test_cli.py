"""``citycard settlement run | report`` through the real entry point on the SQLite database under a fresh
``CITYCARD_HOME``: the day settled once, files in the home, reports to the fen; bad input is one
``error:`` line, exit status 2, and changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citycard.cli import run
from citycard.config import settings
from citycard.db import Database, migrate

from tests.settlement.day import DAY, RESTAURANT, SUPERMARKET, add_banks, prepare

pytestmark = pytest.mark.xdist_group("settlement")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    url = settings().db_url
    migrate(url)
    database = Database.open(url)
    try:
        add_banks(database)
        prepare(database)
    finally:
        database.close()
    return tmp_path / "home"


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_run_then_report(home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(["settlement", "run", "--date", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-25 settled: 12 items" in out and "payouts 697.30" in out
    folder = home / "settlement" / DAY
    files = _tree(folder)
    assert len(files) == 10
    assert run(["settlement", "run", "--date", DAY, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["posted"] is False and _tree(folder) == files
    assert [(p["participant"], p["net_fen"]) for p in again["positions"]] == [
        ("BOC", 7806),
        ("ICBC", -7821),
        ("CENTER", 15),
    ]

    assert run(["settlement", "report", "--date", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    for text in ("net positions 2026-11-25", "-78.21", "78.06", "gross by industry", "reconciliation"):
        assert text in out
    assert run(["settlement", "report", "--date", "2026-11-25", "--merchant", RESTAURANT, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["merchants"] == [
        {
            "bank": "BOC",
            "discount_fen": 120,
            "gross_fen": 20050,
            "industry": "catering",
            "items": 4,
            "merchant_id": RESTAURANT,
            "net_fen": 19930,
            "payout_date": "2026-11-26",
            "payout_fen": 19930,
        }
    ]
    csv = tmp_path / "csv"
    assert run(["settlement", "report", "--date", "2026-11-25", "--bank", "ICBC", "--csv", str(csv)]) == 0
    written = _tree(csv)
    assert sorted(written) == [
        "bank-ICBC.csv",
        "merchant-104110041310001.csv",
        f"merchant-{SUPERMARKET}.csv",
        "reconciliation.csv",
    ]  # its clearing file (its position in its T rows), its merchants' statements and their reconciliation
    assert all(written[name] == files[name] for name in written if name != "reconciliation.csv")
    rows = [line.split(",") for line in written["reconciliation.csv"].decode().splitlines()]
    # ICBC's merchants' seven items (none captured by the acquirer in this day: all cleared from outside it)
    assert [r[3] for r in rows if r[0] == "X" and r[1] == "captured-cleared"] == ["1"] * 7
    assert ["T", "settled", "owed to merchants", "2", str(19250 + 550), ""] in rows  # nothing carried
    assert ["T", "paid", "payouts value date 20261126", "2", str(19250 + 550), ""] in rows


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["settlement", "run", "--date", "2026-02-30"],
            "error: --date '2026-02-30': not a date (YYYY-MM-DD)",
        ),
        (["settlement", "run", "--date", "2026-11-27"], "error: 2026-11-27 has not been cleared"),
        (["settlement", "report", "--date", "2026-11-25"], "error: 2026-11-25 is cleared but not settled"),
        (["settlement", "report", "--date", "yesterday"], "error: --date 'yesterday': not a date"),
        (
            ["settlement", "run", "--date", DAY, "--fees", "/nonexistent.toml"],
            "error: --fees /nonexistent.toml: cannot read",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    capsys.readouterr()
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    assert not (home / "settlement").exists()


def test_bad_fee_schedule_and_unknown_bank_or_merchant(
    home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fees = tmp_path / "fees.toml"
    fees.write_text("[default]\ndiscount_ppm = 100\nissuer_ppm = 90\nnetwork_ppm = 20\n")
    assert run(["settlement", "run", "--date", DAY, "--fees", str(fees)]) == 2
    assert "acquirer's share would be negative" in capsys.readouterr().err
    assert run(["settlement", "run", "--date", DAY]) == 0
    capsys.readouterr()
    assert run(["settlement", "report", "--date", DAY, "--bank", "ABC"]) == 2
    assert capsys.readouterr().err.startswith("error: --bank 'ABC': took no part")
    assert run(["settlement", "report", "--date", DAY, "--merchant", "X"]) == 2
    assert capsys.readouterr().err.startswith("error: --merchant 'X': had nothing settled")


def test_clearing_run_settles_the_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``citycard clearing run --date D`` clears the day, then settles it (here the day's items are as
    clearing left them: its run finds nothing more to clear), and a second run settles nothing again."""
    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path / "home"))
    assert run(["bank", "add", "ICBC", "--no-products"]) == 0
    assert run(["bank", "add", "BOC", "--no-products"]) == 0
    database = Database.open(settings().db_url)
    try:
        prepare(database)
    finally:
        database.close()
    capsys.readouterr()
    assert run(["clearing", "run", "--date", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    assert "2026-11-25 settled: 12 items" in out and "net positions 2026-11-25" in out
    files = _tree(tmp_path / "home" / "settlement" / DAY)
    assert run(["clearing", "run", "--date", "2026-11-25", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["settlement"]["posted"] is False and body["settlement"]["payout_total_fen"] == 69730
    assert _tree(tmp_path / "home" / "settlement" / DAY) == files


def test_report_of_a_bank_or_merchant_shows_only_theirs(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--bank ICBC``: ICBC's position (not BOC's, not the center's), the merchants ICBC acquires for and
    their industries; ``--merchant``: that merchant's row alone, no bank's position."""
    assert run(["settlement", "run", "--date", DAY]) == 0
    capsys.readouterr()
    assert run(["settlement", "report", "--date", DAY, "--bank", "ICBC", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [(p["participant"], p["net_fen"]) for p in body["positions"]] == [("ICBC", -7821)]
    assert [m["merchant_id"] for m in body["merchants"]] == ["104110041310001", SUPERMARKET]
    assert [(t["industry"], t["items"], t["gross_fen"]) for t in body["industries"]] == [
        ("supermarket", 4, 19343),  # items 1, 2, 3 and the EC cash load 12
        ("transport", 3, 550),
    ]
    assert body["items"] == 7 and body["payout_total_fen"] == 19250 + 550
    # the reconciliation of ICBC's merchants: the acquirer captured none of their items in this test day
    # (the items were inserted as clearing's), so each of the seven is a difference, and no other's
    assert body["reconciliation"]["captured"] == []
    differences = body["reconciliation"]["differences"]
    assert sorted((d["bank"], d["amount_fen"]) for d in differences) == sorted(
        ("ICBC", fen) for fen in (12345, 9999, 1999, 200, 200, 150, 5000)
    )
    assert all(d["reason"].endswith("not captured by the acquirer (a terminal's journal export imported)")
               for d in differences)  # fmt: skip
    assert run(["settlement", "report", "--date", DAY, "--merchant", RESTAURANT, "--json"]) == 0
    differences = json.loads(capsys.readouterr().out)["reconciliation"]["differences"]
    assert sorted(d["amount_fen"] for d in differences) == [888, 888, 5000, 25050]  # items 4, 5, 10, 11

    assert run(["settlement", "report", "--date", DAY, "--bank", "ICBC"]) == 0
    out = capsys.readouterr().out
    assert "ICBC" in out and "-78.21" in out and SUPERMARKET in out and "reconciliation" in out
    assert "198.93" in out  # settled: the gross of ICBC's two merchants (193.43 + 5.50)
    for other in ("BOC", "CENTER", RESTAURANT, "78.06"):
        assert other not in out, other

    assert run(["settlement", "report", "--date", DAY, "--merchant", RESTAURANT]) == 0
    out = capsys.readouterr().out
    assert RESTAURANT in out and "199.30" in out and "reconciliation" in out
    for other in ("ICBC", "CENTER", SUPERMARKET, "net positions", "78.06"):
        assert other not in out, other
