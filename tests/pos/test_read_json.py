"""Read commands of the card and the terminal in words and in JSON: ``card show`` dates and transaction
types in words, ``pos balance | log | journal --json`` with amounts in integer fen and PANs masked."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.pos.chain import chain
from tests.pos.test_cli_pos import _app


def _run(*args: str) -> str:
    result = CliRunner().invoke(_app(), list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_card_show_and_pos_reads_in_words_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with chain(tmp_path, monkeypatch) as net:  # a card the bank issued; its loads go online to the bank
        image = net.pan
        _run("pos", "load", "--card", image, "--amount", "100", "--pin", "123456")
        _run("pos", "purchase", "--card", image, "--amount", "12.50")
        _run("pos", "load", "--card", image, "--amount", "10", "--pin", "123456")
    today = dt.date.today().isoformat()

    shown = _run("card", "show", image)
    assert re.search(r"valid\s+│ 20\d\d-\d\d-\d\d to 20\d\d-\d\d-\d\d", shown), shown
    txn_rows = [line for line in shown.splitlines() if "12.50" in line]
    assert txn_rows and today in txn_rows[0] and "purchase" in txn_rows[0]  # not 261203 and 00
    view = json.loads(_run("card", "show", image, "--json"))
    assert view["pan"].startswith("621226") and "*" in view["pan"] and view["holder"]
    (debit,) = view["applications"]
    assert debit["ec_balance_fen"] == 9_750 and debit["electronic_cash"] is True
    load_record, purchase, _ = debit["transaction_log"]  # most recent first
    assert load_record["type"] == "EC load" and load_record["amount_fen"] == 1_000
    assert purchase["date"] == today and purchase["type"] == "purchase" and purchase["amount_fen"] == 1_250
    load, _ = debit["load_log"]
    assert (load["before_fen"], load["after_fen"]) == (8_750, 9_750) and load["date"] == today

    balance = json.loads(_run("pos", "balance", "--card", image, "--json"))
    assert balance["ec_balance_fen"] == 9_750 and balance["ec_balance_limit_fen"] == 100_000
    log = json.loads(_run("pos", "log", "--card", image, "--json"))
    assert log["log"] == "transaction" and log["records"][1] == purchase  # as the card's own log says
    assert [r["type"] for r in log["records"]] == ["EC load", "purchase", "EC load"]
    loads = json.loads(_run("pos", "log", "--load", "--card", image, "--json"))
    assert loads["records"][0]["after_fen"] == 9_750
    assert "purchase" in _run("pos", "log", "--card", image)
    journal = json.loads(_run("pos", "journal", "--json"))
    amounts = sorted(e["amount_fen"] for e in journal["entries"])
    assert amounts == [1_000, 1_250, 10_000] and journal["batch"] == 1
    assert all("*" in e["card"] for e in journal["entries"])
    assert view["pan"][-4:] in json.dumps(journal) and view["pan"] not in re.sub(
        r"\*", "", json.dumps(journal)
    )
