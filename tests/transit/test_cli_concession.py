"""``citycard card concession`` and ``card issue --concession`` on an SQLite home: queued for the next online
contact, shown by ``card status``; bad input is one ``error:`` line, exit 2, nothing queued."""

from __future__ import annotations

import datetime as dt
import json
import time

import typer
from typer.testing import CliRunner

from citycard.issuer.decision import beijing_date

from tests.issuer import test_cli as issuer_cli
from tests.issuer.conftest import HOLDER_ID

cli = issuer_cli.cli  # the bank and card commands in a fresh home
UNTIL = (beijing_date(time.time_ns()) + dt.timedelta(days=300)).isoformat()


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
