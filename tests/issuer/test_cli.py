"""The issuer's CLI end to end on an SQLite file under a temporary ``CITYCARD_HOME``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from citycard.cli import bank, card, card_issuer, denylist, ledger

from tests.issuer.conftest import HOLDER_ID


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    monkeypatch.delenv("CITYCARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("CITYCARD_HSM_MASTER_KEY", raising=False)
    app = typer.Typer()
    card_issuer.register(card.app)
    app.add_typer(bank.app, name="bank")
    app.add_typer(ledger.app, name="ledger")
    app.add_typer(denylist.app, name="denylist")
    app.add_typer(card.app, name="card")
    return app


def run(app: typer.Typer, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_bank_card_ledger_and_deny_list(cli: typer.Typer, tmp_path: Path) -> None:
    run(cli, "bank", "add", "ABC")
    assert "a BIN is 6-8 digits" in run(cli, "bank", "add", "ICBC", "--bin", "6212", code=2)
    assert "ICBC" not in run(cli, "bank", "list")  # the BIN is checked before the bank is created
    run(cli, "bank", "add", "ICBC")
    again = run(cli, "bank", "add", "ICBC", "--bin", "621226")  # run again: the bank is kept, the rest added
    assert "kept bank ICBC" in again and "added BIN 621226" in again and "added product anon-ec" in again
    assert "belongs to bank ICBC" in run(cli, "bank", "add", "ABC", "--bin", "621226", code=1)
    assert "overlaps BIN 621226 of bank ICBC" in run(cli, "bank", "add", "ABC", "--bin", "6212261", code=1)
    assert "overlaps BIN 621226 of bank ICBC" in run(cli, "bank", "add", "ICBC", "--bin", "62122601", code=1)
    assert "6212261" not in run(cli, "bank", "list") and "62122601" not in run(cli, "bank", "list")
    assert "not an amount" in run(cli, "bank", "add", "BOC", "--bin", "621661", "--ec-limit", "5.001", code=2)
    run(cli, "bank", "add", "BOC", "--bin", "621661", "--ec-limit", "500.50")
    listing = run(cli, "bank", "list")
    assert "ICBC" in listing and "1000.00" in listing and "500.50" in listing
    out = run(
        cli, "card", "issue", "--bank", "ICBC", "--holder", "Zhang San", "--id-number", HOLDER_ID, "--reveal"
    )
    pan = next(word for word in out.split() if word.startswith("621226") and len(word) == 19)
    assert (tmp_path / "cards" / "ICBC" / pan[-4:-1] / f"{pan}.json").exists()
    shown = run(cli, "card", "show", pan)  # the chip's CLI finds the issuer's image by PAN
    assert "621226*********0018" in shown and "Zhang San" in shown
    assert "error" in run(
        cli, "card", "issue", "--bank", "ICBC", "--holder", "Zhang San", "--id-number", HOLDER_ID, code=1
    )
    assert "check character" in run(
        cli,
        "card",
        "issue",
        "--bank",
        "ICBC",
        "--holder",
        "Li Si",
        "--id-number",
        "110105194912310021",
        code=2,
    )
    assert "KCV" in run(
        cli, "bank", "import-kek", "bureau-kek", "--component", "11" * 32, "--component", "22" * 32
    )
    run(
        cli,
        "card",
        "issue",
        "--bank",
        "BOC",
        "--product",
        "anon-ec",
        "--count",
        "3",
        "--bureau-kek",
        "bureau-kek",
    )
    records = [json.loads(line) for line in (tmp_path / "perso" / "BOC.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["key_blocks"]["udk_ac"].startswith("D") for r in records)
    anonymous = Path(records[0]["image"]).stem
    refusal = run(cli, "card", "report-lost", anonymous, code=1)
    assert refusal.count("\n") == 1 and "its loss is the holder's loss" in refusal  # one line, no traceback
    assert run(cli, "card", "issue", "--bank", "CCB", code=2) == "error: no bank CCB\n"
    assert run(cli, "card", "report-lost", "1234", code=2) == "error: no card ****\n"
    run(cli, "card", "deposit", pan, "500.00")
    assert "offset stored" in run(cli, "card", "set-pin", pan, "--pin", "246810")
    assert run(cli, "card", "issue", "--bank", "CCB", "--pin", "1234", code=2) == "error: no bank CCB\n"
    too_many = ("--product", "anon-ec", "--count", "2", "--pin", "1234")
    refusal = run(cli, "card", "issue", "--bank", "BOC", *too_many, code=2)
    assert "pin_block" in refusal and refusal.count("\n") == 1
    out = run(cli, "card", "issue", "--bank", "BOC", "--product", "anon-ec", "--pin", "975310", "--reveal")
    boc = next(word for word in out.split() if word.startswith("621661") and len(word) == 19)
    chip = json.loads((tmp_path / "cards" / "BOC" / boc[-4:-1] / f"{boc}.json").read_text())
    assert chip["nvm"]["pin.value"] == "975310"  # personalised with the holder's PIN, not 123456
    assert "not an amount" in run(cli, "card", "deposit", pan, "1.505", code=2)
    assert "positive" in run(cli, "card", "deposit", pan, "0", code=2)
    assert "balanced" in run(cli, "ledger", "balance", "--pan", pan)
    assert "500.00" in run(cli, "ledger", "journal", "--pan", pan)
    run(cli, "card", "report-lost", pan, "--id-number", HOLDER_ID)
    assert "cooling period (7 days) is not over" in run(cli, "card", "refund", pan, code=1)
    with pytest.MonkeyPatch.context() as env:  # the cooling period comes from the settings
        env.setenv("CITYCARD_COOLING_PERIOD_DAYS", "0")
        assert "have not cleared yet" in run(cli, "card", "refund", pan, code=1)
    run(cli, "card", "replace", pan)
    assert "0 card(s) expired" in run(cli, "bank", "expire", "--bank", "ICBC")
    assert "charged 0.00" in run(cli, "bank", "annual-fees", "--bank", "ICBC", "--period", "2026")
    run(cli, "denylist", "export", "--bank", "ICBC", "--out", str(tmp_path / "dl.json"))
    doc = json.loads((tmp_path / "dl.json").read_text())
    body = json.loads(base64.b64decode(doc["body"]))
    assert body["issuer"] == "ICBC" and [e["pan"] for e in body["entries"]] == [pan]
    keys = run(cli, "bank", "keys")
    assert "icbc-imk-ac" in keys and "E0" in keys
    kcv = next(line.split("│")[6].strip() for line in keys.splitlines() if "icbc-deny-list" in line)
    dl = str(tmp_path / "dl.json")
    assert "signature valid" in run(cli, "denylist", "verify", dl, "--kcv", f"ICBC={kcv}")
    boc_kcv = next(line.split("│")[6].strip() for line in keys.splitlines() if "boc-deny-list" in line)
    assert "not the trusted" in run(cli, "denylist", "verify", dl, "--kcv", f"ICBC={boc_kcv}", code=1)
    assert "names issuer 'ICBC'" in run(cli, "denylist", "verify", dl, "--kcv", f"BOC={kcv}", code=1)
    doc["body"] = base64.b64encode(base64.b64decode(doc["body"]).replace(b'"lost"', b'"gone"')).decode()
    (tmp_path / "altered.json").write_text(json.dumps(doc))
    assert "does not verify" in run(cli, "denylist", "verify", str(tmp_path / "altered.json"), code=1)
    master = (tmp_path / "hsm" / "master.key").read_text().strip()
    assert master not in (tmp_path / "citycard.db").read_bytes().hex().upper()


def test_setup_failures_are_one_line(cli: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unusable master key (exit status 2) or an unreachable database (1) is one ``error:`` line,
    password masked."""
    monkeypatch.setenv("CITYCARD_HSM_MASTER_KEY", "zz")
    assert run(cli, "bank", "list", code=2) == "error: HSM master key is not hexadecimal\n"
    monkeypatch.setenv("CITYCARD_HSM_MASTER_KEY", "00" * 32)
    monkeypatch.setenv("CITYCARD_DATABASE_URL", "postgresql+psycopg://audit:s3cret@127.0.0.1:1/none")
    out = run(cli, "bank", "list", code=1)
    assert out.startswith("error: database postgresql+psycopg://audit:***@127.0.0.1:1/none: ")
    assert out.count("\n") == 1 and "s3cret" not in out


def test_bank_institution_ids(cli: typer.Typer) -> None:
    assert "(institution 01000001)" in run(cli, "bank", "add", "ICBC")
    assert "(institution 01040000)" in run(cli, "bank", "add", "BOC", "--institution", "01040000")
    assert "institution_id: must be 8-8 decimal digits" in run(
        cli, "bank", "add", "ABC", "--institution", "123", code=2
    )
    assert "01040000 is bank BOC's" in run(cli, "bank", "add", "ABC", "--institution", "01040000", code=1)
    listing = run(cli, "bank", "list")
    assert "01000001" in listing and "01040000" in listing and "ABC" not in listing
    banks = json.loads(run(cli, "bank", "list", "--json"))["banks"]
    assert {b["code"]: b["institution_id"] for b in banks} == {"BOC": "01040000", "ICBC": "01000001"}
