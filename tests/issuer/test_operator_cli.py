"""The operator's commands end to end on an SQLite file: card list/find/status with paging and ``--json``,
the ledger newest first with what each transfer was and a bank's totals, right-aligned amounts, bulk
issuance from a CSV file with a report of rejected rows, and card images in per-bank shard folders."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import typer

from citycard.files import card_image_path, find_card_image

from tests.issuer.conftest import HOLDER_ID
from tests.issuer.test_cli import cli, run  # noqa: F401 (the fixture)

OTHER_ID = "110105200001010016"
THIRD_ID = "440301199912310024"


def as_json(app: typer.Typer, *args: str) -> Any:
    return json.loads(run(app, *args, "--json"))


def _banks(app: typer.Typer) -> None:
    run(app, "bank", "add", "ICBC", "--bin", "621226")
    run(app, "bank", "add", "BOC", "--bin", "621661")


def _issue(app: typer.Typer, bank: str, holder: str, id_number: str, phone: str = "") -> str:
    args = ["card", "issue", "--bank", bank, "--holder", holder, "--id-number", id_number, "--reveal"]
    out = run(app, *args, *(["--phone", phone] if phone else []))
    return next(w for w in out.split() if w.isdigit() and len(w) == 19)


def test_card_list_find_status_with_paging_and_json(cli: typer.Typer, tmp_path: Path) -> None:  # noqa: F811
    _banks(cli)
    zhang = _issue(cli, "ICBC", "Zhang San", HOLDER_ID, "13800000001")
    li = _issue(cli, "ICBC", "Li Si", OTHER_ID, "13800000002")
    run(cli, "card", "issue", "--bank", "BOC", "--product", "anon-ec", "--count", "6")

    first = as_json(cli, "card", "list", "--bank", "BOC", "--limit", "4")
    second = as_json(cli, "card", "list", "--bank", "BOC", "--limit", "4", "--offset", "4")
    assert first["total"] == second["total"] == 6 and (first["limit"], second["offset"]) == (4, 4)
    pans = [c["pan"] for c in first["cards"] + second["cards"]]
    assert len(pans) == 6 and pans == sorted(pans) and all("*********" in p for p in pans)  # masked
    assert {c["bank"] for c in first["cards"]} == {"BOC"} and first["cards"][0]["registered"] is False
    table = run(cli, "card", "list", "--bank", "BOC", "--limit", "4")
    assert "cards 1-4 of 6" in table and "more: --offset 4" in table

    found = as_json(cli, "card", "find", "--id-number", HOLDER_ID, "--reveal")
    assert [c["pan"] for c in found["cards"]] == [zhang] and found["total"] == 1
    assert HOLDER_ID not in json.dumps(found)
    assert [
        c["pan"] for c in as_json(cli, "card", "find", "--phone", "13800000002", "--reveal")["cards"]
    ] == [li]
    assert (
        as_json(cli, "card", "find", "--pan-suffix", li[-6:])["cards"][0]["pan"]
        == li[:6] + "*********" + li[-4:]
    )
    assert as_json(cli, "card", "find", "--pan", zhang, "--bank", "BOC")["total"] == 0
    run(cli, "card", "report-lost", zhang)
    assert [c["status"] for c in as_json(cli, "card", "find", "--status", "lost")["cards"]] == ["lost"]
    for args, message in (
        (["card", "find"], "error: say what to find"),
        (["card", "find", "--status", "gone"], "error: status: 'gone' is not one of issued, active"),
        (["card", "find", "--pan-suffix", "12"], "error: pan suffix: must be 4-19 digits"),
        (["card", "find", "--id-number", "110105194912310021"], "error: the check character"),
        (["card", "list", "--bank", "CCB"], "error: no bank CCB"),
        (["card", "status", "6212260000000000000"], "error: no card 621226*********0000"),
    ):
        out = run(cli, *args, code=2)  # bad input: exit status 2
        assert out.startswith(message) and out.count("\n") == 1, out

    run(cli, "card", "deposit", li, "80.00")
    run(cli, "card", "block", li)
    assert as_json(cli, "card", "status", li)["pin_set"] is False
    run(cli, "card", "set-pin", li, "--pin", "246810")
    status = as_json(cli, "card", "status", li)
    assert status["pin_set"] is True and status["pin_change_pending"] is True
    assert status["pan"] == li[:6] + "*********" + li[-4:] and status["status"] == "active"
    assert status["pending_script"] == "block" and status["deposit_available_fen"] == 8_000
    assert status["ec_balance_fen"] == 0 and status["holder_id_last4"] == OTHER_ID[-4:]
    shown = run(cli, "card", "status", li)
    assert "EC balance (the bank's books)" in shown and "block" in shown and "80.00" in shown
    assert OTHER_ID not in shown and li not in shown


def test_ledger_newest_first_says_what_each_transfer_was_and_the_banks_totals(
    cli: typer.Typer,  # noqa: F811
) -> None:
    _banks(cli)
    zhang = _issue(cli, "ICBC", "Zhang San", HOLDER_ID)
    wang = _issue(cli, "BOC", "Wang Wu", THIRD_ID)
    run(cli, "card", "deposit", zhang, "5.00")
    run(cli, "card", "deposit", zhang, "500.00")
    run(cli, "card", "deposit", wang, "12.34")

    journal = as_json(cli, "ledger", "journal", "--bank", "ICBC")
    assert [t["amount_fen"] for t in journal["transfers"]] == [50_000, 500]  # newest first
    assert {t["kind"] for t in journal["transfers"]} == {"cash_deposit"} and journal["transfers"][0][
        "bank"
    ] == "ICBC"
    assert journal["transfers"][0]["card"] == zhang[:6] + "*********" + zhang[-4:]
    assert journal["totals"] == {
        "balanced": True,
        "credits_pending_fen": 0,
        "credits_posted_fen": 50_500,
        "debits_pending_fen": 0,
        "debits_posted_fen": 50_500,
    }
    assert as_json(cli, "ledger", "balance", "--bank", "BOC")["totals"]["debits_posted_fen"] == 1_234
    assert as_json(cli, "ledger", "balance")["totals"]["debits_posted_fen"] == 51_734

    table = run(cli, "ledger", "journal", "--bank", "ICBC")
    rows = [line for line in table.splitlines() if zhang[-4:] in line]
    assert len(rows) == 2 and "500.00" in rows[0] and " 5.00" in rows[1] and "cash" in rows[0]  # newest first
    assert len({len(row.rstrip().removesuffix("│").rstrip()) for row in rows}) == 1  # amounts right-aligned
    assert "ICBC totals: debits 505.00, credits 505.00: balanced" in table
    balance = run(cli, "ledger", "balance", "--bank", "BOC")
    assert "BOC totals: debits 12.34" in balance and "ICBC" not in balance


def test_bulk_issuance_from_csv_issues_good_rows_and_reports_rejects(
    cli: typer.Typer,  # noqa: F811
    tmp_path: Path,
) -> None:
    _banks(cli)
    already = _issue(cli, "ICBC", "Zhao Liu", THIRD_ID)
    holders = tmp_path / "holders.csv"
    holders.write_text(
        "\ufeffholder,id_number,phone,branch\n"
        f"Zhang San,{HOLDER_ID},13800000001,east\n"
        "Bad Check,110105194912310021,,west\n"
        f",{OTHER_ID},,north\n"
        "\n"
        f"Li Si,{OTHER_ID.lower()},13800000002,south\n"
        f"Zhang Again,{HOLDER_ID},,east\n"
        f"Zhao Liu,{THIRD_ID},,east\n",
        encoding="utf-8",
    )
    out = run(cli, "card", "issue", "--bank", "ICBC", "--csv", str(holders))
    assert "2 card(s) issued by ICBC from holders.csv" in out and "4 row(s) rejected" in out
    assert HOLDER_ID not in out and "****002X" in out  # ID numbers masked on the screen
    with (tmp_path / "holders.rejects.csv").open(encoding="utf-8", newline="") as fh:
        rejects = list(csv.DictReader(fh))
    assert [r["row"] for r in rejects] == ["3", "4", "7", "8"]  # rows as a spreadsheet numbers them
    assert [r["branch"] for r in rejects] == ["west", "north", "east", "east"]  # the original columns
    reasons = [r["reason"] for r in rejects]
    assert "check character" in reasons[0] and reasons[1].startswith("holder:")
    assert reasons[2] == "id_number: the same ID number as row 2"
    assert "already has card" in reasons[3] and already[-4:] in reasons[3]
    issued = as_json(cli, "card", "find", "--bank", "ICBC", "--status", "active")
    assert issued["total"] == 3  # the two from the file and the one issued before
    assert as_json(cli, "card", "find", "--phone", "13800000002")["total"] == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("name,id\nZhang San,x\n", encoding="utf-8")
    out = run(cli, "card", "issue", "--bank", "ICBC", "--csv", str(bad), code=2)
    assert out.startswith("error:") and "id_number" in out and out.count("\n") == 1
    out = run(cli, "card", "issue", "--bank", "ICBC", "--product", "anon-ec", "--csv", str(holders), code=2)
    assert "unregistered" in out
    assert "not with --holder" in run(
        cli, "card", "issue", "--bank", "ICBC", "--csv", str(holders), "--count", "2", code=2
    )
    assert as_json(cli, "card", "list", "--bank", "ICBC")["total"] == 3  # nothing issued by the refusals


def test_card_images_in_bank_shard_folders_found_by_pan(
    cli: typer.Typer,  # noqa: F811
    tmp_path: Path,
) -> None:
    _banks(cli)
    run(cli, "card", "issue", "--bank", "BOC", "--product", "anon-ec", "--count", "12")
    pans = [c["pan"] for c in as_json(cli, "card", "list", "--bank", "BOC", "--reveal")["cards"]]
    cards = tmp_path / "cards"
    assert not list(cards.glob("*.json"))  # nothing in the top folder
    assert sorted(p.stem for p in cards.glob("BOC/*/*.json")) == sorted(pans)
    assert len({p.parent for p in cards.glob("BOC/*/*.json")}) > 1  # spread over shard folders
    for pan in pans:
        assert card_image_path(cards, "BOC", pan).is_file() and find_card_image(cards, pan) is not None
    shown = as_json(cli, "card", "show", pans[0])
    assert shown["pan"] == pans[0][:6] + "*********" + pans[0][-4:] and shown["expiry"].startswith("20")
    old = card_image_path(cards, "BOC", pans[1])  # an image in the flat layout of earlier versions
    old.rename(cards / old.name)
    assert find_card_image(cards, pans[1]) == cards / old.name
    assert "PAN" in run(cli, "card", "show", pans[1])
    records = [json.loads(line) for line in (tmp_path / "perso" / "BOC.jsonl").read_text().splitlines()]
    assert all((cards / r["image"]).name.endswith(".json") for r in records)
    assert find_card_image(cards, "6216610000000000") is None and find_card_image(cards, "*") is None


def test_bank_and_denylist_read_commands_speak_json(cli: typer.Typer, tmp_path: Path) -> None:  # noqa: F811
    _banks(cli)
    pan = _issue(cli, "ICBC", "Zhang San", HOLDER_ID)
    banks = as_json(cli, "bank", "list")["banks"]
    assert [b["code"] for b in banks] == ["BOC", "ICBC"]
    assert {p["code"]: p["ec_balance_limit_fen"] for p in banks[1]["products"]} == {
        "anon-ec": 100_000,
        "debit-ec": 100_000,
    }
    keys = as_json(cli, "bank", "keys")["keys"]
    deny_key = next(k for k in keys if k["label"] == "icbc-deny-list")
    assert deny_key["usage"] == "S0" and set(deny_key) == {
        "label",
        "usage",
        "algorithm",
        "mode",
        "exportable",
        "kcv",
    }
    run(cli, "card", "report-lost", pan)
    run(cli, "denylist", "export", "--bank", "ICBC", "--out", str(tmp_path / "dl.json"))
    verified = as_json(
        cli, "denylist", "verify", str(tmp_path / "dl.json"), "--kcv", f"ICBC={deny_key['kcv']}"
    )
    assert verified["valid"] is True and verified["entries"] == 1 and verified["key_trusted"] is True
    assert verified["issuer"] == "ICBC" and verified["key_kcv"] == deny_key["kcv"]
