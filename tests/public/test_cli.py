"""``citycard pos purchase --service-ref``, ``citycard public inquire|seed|apps|report``, ``merchant report``
and the applications in ``card status``, through the real entry point and the real chain."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citycard.cli import run

from tests.pos.chain import MID, PIN, TID, chain
from tests.public.world import HOSPITAL_DESK, OTHER_PIN, SELF_SERVICE, PublicWorld


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PublicWorld]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield PublicWorld(net, tmp_path)


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert run(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _pay(world: PublicWorld, *extra: str) -> int:
    argv = ["pos", "purchase", "--card", world.net.pan, "--amount", "150.00", "--pin", PIN]
    return run([*argv, "--terminal", HOSPITAL_DESK, *extra])


def test_a_registration_fee_from_the_command_line(
    world: PublicWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.net.status()["deposit_available_fen"]
    assert _pay(world, "--service-ref", "HR-202612030017") == 0
    out = capsys.readouterr().out
    assert "service reference: HR-202612030017" in out
    heading = out[out.index("service reference") :].splitlines()[1]
    assert heading.strip() == "City No.1 Hospital"  # the registry's name of the desk's merchant
    assert "CITYCARD DEMO SHOP" not in out  # not the default configuration's 9F4E
    assert world.net.status()["deposit_available_fen"] == before - 15_000
    report = _json(capsys, "merchant", "report", "--json")
    hospital = [r for r in report if r["industry"] == "hospital"]
    assert hospital == [
        {"district": "Xihu", "industry": "hospital", "merchants": 1, "terminals": 1, "transactions": 1,
         "volume_fen": 15_000}
    ]  # fmt: skip
    assert run(["public", "report"]) == 0
    assert "hospital" in capsys.readouterr().out


def test_bad_references_and_counters_are_refused_with_nothing_moved(
    world: PublicWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.net.status()
    for extra in (["--service-ref", "HR-12AB"], ["--service-ref", "ZZ-1"]):
        assert _pay(world, *extra) == 2
        assert "--service-ref" in capsys.readouterr().err
    argv = ["pos", "purchase", "--card", world.net.pan, "--amount", "1.00", "--pin", PIN, "--terminal", TID]
    assert run([*argv, "--service-ref", "HR-1"]) == 2  # a supermarket is not a hospital's desk
    err = capsys.readouterr().err
    assert f"merchant {MID} (supermarket) is not a hospital registration fee counter" in " ".join(err.split())
    assert world.net.status() == before
    assert world.acquirer_record(HOSPITAL_DESK, 1, 1) is None  # the hospital's desk sent nothing


def test_inquiry_applications_and_card_status(world: PublicWorld, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["public", "seed", "--seed", "3"]) == 0
    assert "records seeded for 2 citizens" in capsys.readouterr().out
    argv = ["public", "inquire", "--terminal", SELF_SERVICE, "--card", world.net.pan]
    records = _json(capsys, *argv, "--pin", PIN, "--json")
    assert records["social_security"]["contribution_months"] >= 12
    assert records["medical_insurance"]["scheme"] in ("employee", "resident")
    assert run([*argv, "--pin", OTHER_PIN]) == 1
    assert "card not verified" in capsys.readouterr().err

    pan = world.net.pan
    library = ["--data", "reader_number=12345678", "--data", "deposit_fen=10000"]
    assert run(["public", "apps", "enable", "--card", pan, "--app", "library", *library]) == 0
    assert run(["public", "apps", "enable", "--card", pan, "--app", "library", "--data", "reader=1"]) == 2
    assert run(["public", "apps", "disable", "--card", pan, "--app", "health"]) == 1  # never enabled
    assert run(["public", "apps", "enable", "--card", "6212269999999999", "--app", "transit", "--data",
                "category=elderly", "--data", "valid_until=20301231"]) == 2  # fmt: skip
    states = _json(capsys, "public", "apps", "list", "--card", pan, "--json")
    assert states["library"] == {
        "status": "enabled",
        "data": {"deposit_fen": "10000", "reader_number": "12345678"},
        "chip": "pending",  # written by script at the card's next online contact
    }
    assert states["health"]["status"] == "not enabled"
    status = _json(capsys, "card", "status", pan, "--json")
    assert status["applications"] == {"health": "not enabled", "library": "enabled", "transit": "not enabled"}
    assert run(["public", "apps", "disable", "--card", pan, "--app", "library"]) == 0
    status = _json(capsys, "card", "status", pan, "--json")
    assert status["applications"]["library"] == "disabled"
    assert run(["public", "apps", "list"]) == 0
    assert "reader_number" in capsys.readouterr().out
