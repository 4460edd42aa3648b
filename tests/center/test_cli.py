"""``citycard merchant`` and ``citycard terminal`` through the real entry point (``citycard.cli.run``), on
the SQLite database and HSM under a fresh ``CITYCARD_HOME``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from citycard import bootstrap
from citycard.cli import run
from citycard.config import settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path / "home"))
    assert run(["bank", "add", "ICBC", "--bin", "621226", "--no-products"]) == 0
    assert run(["bank", "add", "BOC"]) == 0
    return tmp_path / "home"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert run(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_merchants_and_terminals_from_the_command_line(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    merchants = [
        ("CITYBUS00000001", "City bus company", "4111", "Xihu district", "ICBC", []),
        ("SUPERMARKET0001", "Lianhua", "5411", "Tonglu county", "BOC", []),
        (
            "DEPTSTORE000001",
            "Department store",
            "5311",
            "Xihu district",
            "ICBC",
            ["--industry", "supermarket"],
        ),
    ]
    for mid, name, mcc, district, bank, extra in merchants:
        argv = ["merchant", "add", mid, "--name", name, "--mcc", mcc, "--district", district, "--bank", bank]
        assert run(argv + extra) == 0
    assert (
        "added merchant CITYBUS00000001 (City bus company, transport, Xihu district), acquired by ICBC"
        in (capsys.readouterr().out)
    )
    listed = _json(capsys, "merchant", "list", "--bank", "ICBC", "--industry", "supermarket", "--json")
    assert [m["merchant_id"] for m in listed["merchants"]] == ["DEPTSTORE000001"]  # type: ignore[index]
    listed = _json(capsys, "merchant", "list", "--district", "Xihu district", "--json")
    assert [m["merchant_id"] for m in listed["merchants"]] == ["CITYBUS00000001", "DEPTSTORE000001"]  # type: ignore[index]

    no_bus = ["terminal", "add", "V0000001", "--merchant", "CITYBUS00000001", "--kind", "validator"]
    assert run(no_bus) == 2  # a validator is registered with its line and vehicle
    assert "a validator needs its bus line and vehicle" in capsys.readouterr().err
    assert run([*no_bus, "--line", "12", "--vehicle", "k12 0815"]) == 2  # not a vehicle ID
    capsys.readouterr()
    assert run(["terminal", "add", "T0000009", "--merchant", "CITYBUS00000001", "--line", "12"]) == 2
    capsys.readouterr()  # a POS runs no line
    assert run([*no_bus, "--line", "12", "--vehicle", "K12-0815"]) == 0
    out = capsys.readouterr().out
    store = home / "terminals" / "V0000001" / "keys"
    assert (
        "added validator terminal V0000001 of merchant CITYBUS00000001 on line 12, vehicle K12-0815;" in out
    )
    assert f"its key store: {store}" in " ".join(out.split())
    kcv = out.split("TMK KCV ")[1][:6]
    platform = bootstrap.build_hsm(settings()).get("terminal/V0000001/tmk")
    own = bootstrap.terminal_hsm(settings(), "V0000001").get("terminal/V0000001/tmk")
    assert platform.kcv == own.kcv == kcv
    assert run(["terminal", "add", "T0000001", "--merchant", "SUPERMARKET0001"]) == 0
    terminals = _json(capsys, "terminal", "list", "--merchant", "CITYBUS00000001", "--json")
    assert terminals == {
        "terminals": [
            {
                "terminal_id": "V0000001",
                "merchant_id": "CITYBUS00000001",
                "kind": "validator",
                "status": "active",
                "tmk_kcv": kcv,
                "created": terminals["terminals"][0]["created"],  # type: ignore[index]
                "line": 12,
                "vehicle": "K12-0815",
            }
        ]
    }
    assert run(["terminal", "close", "V0000001"]) == 0
    assert run(["merchant", "close", "SUPERMARKET0001"]) == 0
    assert "closed merchant SUPERMARKET0001 and 1 terminal(s) of it" in capsys.readouterr().out
    statuses = _json(capsys, "terminal", "list", "--json")
    assert [(t["terminal_id"], t["status"]) for t in statuses["terminals"]] == [  # type: ignore[index]
        ("T0000001", "closed"),
        ("V0000001", "closed"),
    ]
    assert run(["merchant", "list"]) == 0 and "MCC" in capsys.readouterr().out  # a table (its width varies)
    assert run(["terminal", "list"]) == 0 and "TMK KCV" in capsys.readouterr().out
