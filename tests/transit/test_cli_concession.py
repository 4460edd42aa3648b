"""``citycard card concession`` and ``card issue --concession`` on an SQLite home: queued for the next online
contact, shown by ``card status``; bad input is one ``error:`` line, exit 2, nothing queued."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from citycard.cli import bank, card, card_issuer
from citycard.issuer.decision import beijing_date

from tests.issuer.conftest import HOLDER_ID

UNTIL = (beijing_date(time.time_ns()) + dt.timedelta(days=300)).isoformat()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    monkeypatch.delenv("CITYCARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("CITYCARD_HSM_MASTER_KEY", raising=False)
    app = typer.Typer()
    card_issuer.register(card.app)
    app.add_typer(bank.app, name="bank")
    app.add_typer(card.app, name="card")
    return app


def run(app: typer.Typer, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return " ".join(result.output.split())  # the console wraps long lines


def _pan(out: str) -> str:
    return next(word for word in out.split() if word.startswith("621226") and len(word) == 19)


def _transit(app: typer.Typer, pan: str) -> dict[str, str]:
    return json.loads(run(app, "card", "status", pan, "--json"))["transit"]


def test_concession_by_script_and_at_issuance(cli: typer.Typer) -> None:
    run(cli, "bank", "add", "ICBC", "--bin", "621226")
    pan = _pan(run(cli, "card", "issue", "--bank", "ICBC", "--holder", "Zhang San", "--id-number", HOLDER_ID,
                   "--reveal"))  # fmt: skip
    assert _transit(cli, pan) == {"concession": "none", "valid_until": None, "on_chip": "written"}

    out = run(cli, "card", "concession", pan, "--category", "student", "--until", UNTIL)
    assert f"concession student until {UNTIL}, by script at its next online contact" in out
    assert _transit(cli, pan) == {"concession": "student", "valid_until": UNTIL, "on_chip": "pending"}
    assert "student until" in run(cli, "card", "status", pan)

    assert "one of elderly" in run(
        cli, "card", "concession", pan, "--category", "pilot", "--until", UNTIL, code=2
    )
    assert "is past" in run(cli, "card", "concession", pan, "--category", "elderly", "--until", "2001-01-01",
                            code=2)  # fmt: skip
    assert "YYYY-MM-DD" in run(
        cli, "card", "concession", pan, "--category", "elderly", "--until", "soon", code=2
    )
    assert "--revoke" in run(cli, "card", "concession", pan, code=2)
    assert _transit(cli, pan)["concession"] == "student"  # nothing changed by the refusals

    assert "revoked" in run(cli, "card", "concession", pan, "--revoke")
    assert _transit(cli, pan) == {"concession": "none", "valid_until": None, "on_chip": "pending"}

    elderly = _pan(
        run(cli, "card", "issue", "--bank", "ICBC", "--holder", "Li Si", "--id-number", "110105194901010013",
            "--concession", "elderly", "--concession-until", UNTIL, "--reveal")
    )  # fmt: skip
    assert _transit(cli, elderly) == {"concession": "elderly", "valid_until": UNTIL, "on_chip": "written"}
    out = run(cli, "card", "issue", "--bank", "ICBC", "--product", "anon-ec", "--concession", "student",
              "--concession-until", UNTIL, code=2)  # fmt: skip
    assert "registered holder" in out
