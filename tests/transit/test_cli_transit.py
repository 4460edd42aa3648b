"""``citycard transit`` and ``citycard pos validate --line`` through the real entry point: a student's
card personalised with the transit file, a flat ride, a distance ride in and out; bad input is one
``error:`` line and leaves the card and the installed fare table as they were."""

from __future__ import annotations

import json

import pytest

from citycard.cli import run
from citycard.transit import TripRecord, TripStatus

from tests.transit.conftest import EXAMPLE

TRANSIT = "A000000333010101.transit"
VALIDATE = ["pos", "validate", "--card", "{card}", "--line"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _trip(card) -> TripRecord:
    return TripRecord.decode(bytes.fromhex(json.loads(card.read_text())["nvm"][TRANSIT][1])[:32])


def test_load_lines_fares_and_a_ride(home, capsys):
    assert run(["transit", "load", str(EXAMPLE)]) == 0
    assert (home / "fares.toml").read_text() == EXAMPLE.read_text()
    assert "installed 'Citycard Bus': 3 line(s)" in capsys.readouterr().out
    assert run(["transit", "lines", "--json"]) == 0
    lines = json.loads(capsys.readouterr().out)
    assert [(line["id"], line["kind"], line["max_fare_fen"]) for line in lines["lines"]] == [
        (1, "flat", 200),
        (5, "flat", 200),
        (12, "distance", 500),
    ]
    assert run(["transit", "fares", "--line", "12", "--json"]) == 0
    fares = json.loads(capsys.readouterr().out)
    assert fares["fares_fen"][0] == [200, 200, 200, 300, 300, 500, 500]
    card = home / "rider.json"
    argv = ["card", "new", "--out", str(card), "--ec-balance", "20.00", "--serial", "5", "--transit"]
    assert run([*argv, "--concession", "student", "--concession-until", "2099-12-31"]) == 0
    assert run(["pos", "validate", "--card", str(card), "--line", "1", "--journal", "a.db"]) == 0
    assert "concession 50%: CNY 1.00" in capsys.readouterr().out
    in_argv = ["pos", "validate", "--card", str(card), "--line", "12", "--stop", "Museum"]
    assert run([*in_argv, "--journal", "b.db"]) == 0
    assert _trip(card).status is TripStatus.ON_BOARD and _trip(card).boarding_stop == 2
    out_argv = ["pos", "validate", "--card", str(card), "--line", "12", "--stop", "7", "--tap-out"]
    assert run([*out_argv, "--journal", "c.db"]) == 0
    assert "line 12 stop 2 to 7: CNY 5.00" in capsys.readouterr().out
    assert _trip(card).status is TripStatus.DONE


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["transit", "load", "{bad}"], 1, "fare table lines[0].fare_fen: must be an integer"),
        (["transit", "load", "{home}/missing.toml"], 1, "no fare table at"),
        (["transit", "fares", "--line", "99"], 2, "line 99 is not in the fare table"),
        (["pos", "validate", "--card", "{card}", "--line", "12"], 2, "give the stop"),
        ([*VALIDATE, "12", "--stop", "Moon"], 2, "no stop 'Moon'"),
        (["pos", "validate", "--card", "{card}", "--line", "1", "--tap-out"], 2, "flat fare: no tap-out"),
        ([*VALIDATE, "1", "--fare", "2.00"], 2, "either --fare or --line"),
        (["pos", "validate", "--card", "{card}", "--line", "1", "--fares", "{bad}"], 1, "fare_fen"),
        (["card", "new", "--out", "{home}/x.json", "--concession", "student"], 2, "give --transit"),
        (["card", "new", "--out", "{home}/x.json", "--transit", "--concession", "x"], 2, "one of elderly"),
    ],
)
def test_bad_input_is_one_error_line_and_changes_nothing(home, capsys, argv, status, message):
    assert run(["transit", "load", str(EXAMPLE)]) == 0
    card = home / "rider.json"
    assert (
        run(["card", "new", "--out", str(card), "--ec-balance", "20.00", "--serial", "5", "--transit"]) == 0
    )
    bad = home / "bad.toml"
    bad.write_text('[network]\nname = "x"\n[[lines]]\nid = 1\nname = "a"\nfare_fen = -2\n')
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()}
    filled = [a.format(home=home, card=card, bad=bad) for a in argv]
    assert run(filled) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and message in captured.err
    assert {p.name: p.read_bytes() for p in home.iterdir() if p.is_file()} == before


def test_the_validator_configuration_names_its_line_vehicle_and_fare_table(home, capsys):
    (home / "fares.toml").write_text(EXAMPLE.read_text())
    config = home / "bus.toml"
    config.write_text(
        '[terminal]\nterminal_id = "BUS01201"\ntype = "26"\n'
        '[validator]\nline = 12\nvehicle = "K12-0815"\nfares = "fares.toml"\n'
    )
    card = home / "rider.json"
    assert (
        run(["card", "new", "--out", str(card), "--ec-balance", "20.00", "--serial", "6", "--transit"]) == 0
    )
    argv = [
        "pos",
        "validate",
        "--card",
        str(card),
        "--config",
        str(config),
        "--stop",
        "3",
        "--journal",
        "v.db",
    ]
    capsys.readouterr()
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "vehicle K12-0815, tap-in on line 12 at stop 3" in out
    assert _trip(card).line == 12 and _trip(card).terminal_id == "BUS01201"
    config.write_text('[validator]\nline = "twelve"\n')
    assert run(argv) == 1
    assert "validator.line must be an integer" in capsys.readouterr().err


def test_the_validator_reads_its_line_and_vehicle_from_the_registry(home, capsys, monkeypatch):
    """A validator registered with ``terminal add --kind validator --line 12 --vehicle K12-0815`` runs line
    12 without a line in its configuration (and the registry wins over one there); the fare's journal entry
    and the depot export carry the line and vehicle."""
    from citycard.sqlite_journal import SqliteJournal

    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    assert run(["bank", "add", "ICBC", "--bin", "621226", "--no-products"]) == 0
    argv = ["merchant", "add", "CITYBUS00000001", "--name", "City bus", "--mcc", "4131"]
    assert run([*argv, "--district", "Xihu district", "--bank", "ICBC"]) == 0
    argv = ["terminal", "add", "BUS01201", "--merchant", "CITYBUS00000001", "--kind", "validator"]
    assert run([*argv, "--line", "12", "--vehicle", "K12-0815"]) == 0
    assert run(["transit", "load", str(EXAMPLE)]) == 0
    config = home / "validator.toml"
    config.write_text(
        '[terminal]\nterminal_id = "BUS01201"\ntype = "26"\n[validator]\nline = 1\nvehicle = "OLD-1"\n'
    )
    card = home / "rider.json"
    assert (
        run(["card", "new", "--out", str(card), "--ec-balance", "20.00", "--serial", "7", "--transit"]) == 0
    )
    capsys.readouterr()
    validate = ["pos", "validate", "--card", str(card), "--config", str(config), "--journal", "v.db"]
    assert run([*validate, "--stop", "1"]) == 0
    assert "vehicle K12-0815, tap-in on line 12 at stop 1" in capsys.readouterr().out
    assert run([*validate, "--stop", "5", "--tap-out"]) == 0
    assert "line 12 stop 1 to 5: CNY 3.00" in capsys.readouterr().out
    journal = SqliteJournal(home / "v.db", "BUS01201")
    entries = journal.entries()
    assert [(e.kind, e.amount_fen, e.line, e.vehicle) for e in entries] == [
        ("purchase", 300, 12, "K12-0815"),
        ("tap", 0, 12, "K12-0815"),
    ]
    (exported,) = journal.export(home / "out")
    journal.close()
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [(r["kind"], r["line"], r["vehicle"]) for r in rows] == [
        ("tap", 12, "K12-0815"),
        ("purchase", 12, "K12-0815"),
    ]
