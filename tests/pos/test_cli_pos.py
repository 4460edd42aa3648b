"""``citycard pos`` end to end on an emulated card image file."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from citycard.cli import card as card_cli
from citycard.cli import pos as pos_cli

from tests.kernel.cardlab import demo_keys


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(card_cli.app, name="card")
    app.add_typer(pos_cli.app, name="pos")
    return app


def test_pos_cli_purchase_balance_log_load_journal(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    (tmp_path / "demo-keys.json").write_bytes(demo_keys().to_json())
    runner = CliRunner()
    app = _app()
    image = tmp_path / "card.json"
    r = runner.invoke(app, ["card", "new", "--out", str(image), "--ec-balance", "100.00", "--serial", "5"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["pos", "purchase", "--card", str(image), "--amount", "12.50", "--trace"])
    assert r.exit_code == 0, r.output
    assert "APPROVED OFFLINE" in r.output and "CNY 87.50" in r.output and "GENERATE AC 1" in r.output
    r = runner.invoke(app, ["pos", "balance", "--card", str(image)])
    assert r.exit_code == 0 and "87.50" in r.output
    r = runner.invoke(app, ["pos", "load", "--card", str(image), "--amount", "10", "--pin", "123456"])
    assert r.exit_code == 0 and "APPROVED ONLINE" in r.output and "CNY 97.50" in r.output, r.output
    r = runner.invoke(app, ["pos", "log", "--card", str(image)])
    assert r.exit_code == 0 and "12.50" in r.output
    r = runner.invoke(app, ["pos", "log", "--load", "--card", str(image)])
    assert r.exit_code == 0 and "97.50" in r.output
    r = runner.invoke(app, ["pos", "journal", "--export", str(tmp_path / "out")])
    assert r.exit_code == 0 and "upload-000001" in r.output
    r = runner.invoke(app, ["pos", "journal", "--close-batch"])
    assert r.exit_code == 0 and "now batch 2" in r.output
    r = runner.invoke(app, ["pos", "purchase", "--card", str(image), "--amount", "12.505"])
    assert r.exit_code == 2 and "--amount" in r.output  # 12.505 is not an exact amount in fen
    r = runner.invoke(app, ["pos", "validate", "--card", str(image), "--fare", "2.00"])
    assert ("GO" in r.output) == (r.exit_code == 0)
