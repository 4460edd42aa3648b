"""``citycard serve issuer`` and ``citycard serve switch`` as real processes: each prints where it listens,
answers over TCP (an echo test through the switch, a purchase of an unknown card refused 15 or 03), and
stops cleanly on SIGTERM and on Ctrl-C (SIGINT), exit status 0; a stop stuck on its database ends at
``--stop-timeout``, or at once on a second signal, exit status 1, saying what waited."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from citycard.cli import run as cli
from citycard.codec.iso8583 import ResponseCode
from citycard.hosts.switch import echo_test
from citycard.net.link import Iso8583Link

from tests.hosts.conftest import ACQUIRER_TPDU, FAST_LINK
from tests.net.support import run

pytestmark = pytest.mark.xdist_group("concurrent-processes")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    assert cli(["bank", "add", "ICBC", "--bin", "621226"]) == 0
    yield {**os.environ, "CITYCARD_HOME": str(tmp_path)}


def _start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], int, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", "from citycard.cli import main; main()", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    found = re.search(r"listening on 127\.0\.0\.1:(\d+)", banner)
    if found is None:
        process.kill()
        raise AssertionError(f"no banner: {banner!r} {process.communicate(timeout=10)}")
    return process, int(found.group(1)), banner


def _stop(process: subprocess.Popen[str], sig: signal.Signals) -> str:
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    return out


def test_serve_issuer_and_switch_answer_over_tcp_and_stop_cleanly(home: dict[str, str]) -> None:
    issuer, issuer_port, issuer_banner = _start(home, "issuer", "--bank", "icbc", "--port", "0")
    try:
        switch, switch_port, switch_banner = _start(
            home, "switch", "--issuer", f"ICBC=127.0.0.1:{issuer_port}", "--port", "0"
        )
    except BaseException:
        issuer.kill()
        raise

    async def scenario() -> None:
        for port in (switch_port, issuer_port):
            async with Iso8583Link("127.0.0.1", port, tpdu=ACQUIRER_TPDU, limits=FAST_LINK) as link:
                answer = await link.request(echo_test(1))
                assert answer.mti == "0830" and answer.response_code is ResponseCode.APPROVED

    try:
        run(scenario())
        for process in (switch, issuer):  # SIGHUP reads the routing table again; they go on serving
            process.send_signal(signal.SIGHUP)
        run(scenario())
        assert switch.poll() is None and issuer.poll() is None
        taken = subprocess.run(  # the issuer's port is taken: one error line, exit status 1
            [
                sys.executable,
                "-c",
                "from citycard.cli import main; main()",
                "serve",
                "switch",
                "--issuer",
                f"ICBC=127.0.0.1:{issuer_port}",
                "--port",
                str(issuer_port),
            ],
            env=home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taken.returncode == 1 and taken.stderr.startswith(
            f"error: cannot listen on 127.0.0.1:{issuer_port}"
        )
        assert len(taken.stderr.splitlines()) == 1
    finally:
        switch_out = _stop(switch, signal.SIGTERM)
        issuer_out = _stop(issuer, signal.SIGINT)
    assert f"ICBC -> 127.0.0.1:{issuer_port}" in switch_banner and "1 BIN ranges" in switch_banner
    assert "issuer front end of ICBC" in issuer_banner
    assert switch_out.rstrip().endswith("stopped") and issuer_out.rstrip().endswith("stopped")


def _reports(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    return {str(r["name"]): r for r in _all_reports(capsys)}


def _all_reports(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert cli(["serve", "status", "--json"]) == 0
    services: list[dict[str, object]] = json.loads(capsys.readouterr().out)["services"]
    return services


def _until(
    capsys: pytest.CaptureFixture[str], done: Callable[[dict[str, dict[str, object]]], bool]
) -> dict[str, dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        reports = _reports(capsys)
        if done(reports) or time.monotonic() > deadline:
            return reports
        time.sleep(0.1)


def test_serve_reports_to_the_center_and_a_killed_service_reads_not_reporting(
    home: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["serve", "status"]) == 0
    assert capsys.readouterr().out.startswith("no service has reported")
    issuer, issuer_port, _ = _start(home, "issuer", "--bank", "icbc", "--port", "0", "--report-every", "0.2")
    try:
        route = f"ICBC=127.0.0.1:{issuer_port}"
        switch, switch_port, _ = _start(
            home, "switch", "--issuer", route, "--port", "0", "--report-every", "0.2"
        )
    except BaseException:
        issuer.kill()
        raise
    try:
        reports = _until(capsys, lambda r: {"switch", "issuer ICBC"} <= set(r))
        switch_report, issuer_report = reports["switch"], reports["issuer ICBC"]
        assert (switch_report["address"], switch_report["pid"], switch_report["health"]) == (
            f"127.0.0.1:{switch_port}",
            switch.pid,
            "running",
        )
        assert (issuer_report["address"], issuer_report["pid"]) == (f"127.0.0.1:{issuer_port}", issuer.pid)
        assert "ICBC" in str(switch_report["status"]) and not switch_report["attention"]

        switch.kill()  # gone without a word: its row stays "running" until it is late
        switch.communicate(timeout=30)
        reports = _until(capsys, lambda r: r["switch"]["health"] != "running")
        assert (reports["switch"]["health"], reports["switch"]["attention"]) == ("not reporting", True)
        assert reports["issuer ICBC"]["health"] == "running"
        assert cli(["serve", "status"]) == 0
        table = capsys.readouterr().out
        assert "not reporting" in table and "issuer ICBC" in table
        assert cli(["serve", "forget", "issuer ICBC"]) == 0  # running: kept
        assert capsys.readouterr().out.startswith(f"kept issuer ICBC at 127.0.0.1:{issuer_port}")
        assert cli(["serve", "forget", "switch", "--address", f"127.0.0.1:{switch_port}"]) == 0
        assert capsys.readouterr().out.startswith(f"forgot switch at 127.0.0.1:{switch_port}")
        assert set(_reports(capsys)) == {"issuer ICBC"}
        assert cli(["serve", "forget", "switch"]) == 2  # nothing left of it
    finally:
        if switch.poll() is None:
            switch.kill()
        issuer_out = _stop(issuer, signal.SIGTERM)
    assert issuer_out.rstrip().endswith("stopped")
    stopped = _reports(capsys)["issuer ICBC"]
    assert (stopped["health"], stopped["attention"]) == ("stopped", False) and stopped["stopped"]


def _database(home: dict[str, str]) -> Path:
    found = sorted(Path(home["CITYCARD_HOME"]).glob("*.db"))
    assert len(found) == 1, found
    return found[0]


def _stuck_stop(home: dict[str, str], *options: str) -> tuple[subprocess.Popen[str], sqlite3.Connection]:
    """A switch reporting every 0.2 s whose database is then locked by another writer (held by the caller
    until it closes the connection given back): its reports, the last one included, wait on the lock (the
    busy timeout is 30 s), as they would on a database server that stopped answering."""
    switch, _, _ = _start(
        home, "switch", "--issuer", "ICBC=127.0.0.1:9", "--port", "0", "--report-every", "0.2", *options
    )
    try:
        database = _database(home)
        _until_reported(database)
        lock = sqlite3.connect(database, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
    except BaseException:
        switch.kill()
        raise
    return switch, lock


def _until_reported_at(capsys: pytest.CaptureFixture[str], address: str, status: str, failure: str) -> None:
    """Until the service at ``address`` reports ``status`` in its status line (30 s at most)."""
    deadline = time.monotonic() + 30
    while not any(r["address"] == address and status in str(r["status"]) for r in _all_reports(capsys)):
        assert time.monotonic() < deadline, f"{failure} ({address})"
        time.sleep(0.1)


def _until_reported(database: Path) -> None:
    deadline = time.monotonic() + 30
    with contextlib.closing(sqlite3.connect(database)) as db:
        while not db.execute("SELECT count(*) FROM center_services").fetchone()[0]:
            assert time.monotonic() < deadline, "the switch never reported"
            time.sleep(0.05)


def test_a_stop_stuck_on_its_database_ends_the_process_at_the_stop_timeout_saying_what_waited(
    home: dict[str, str],
) -> None:
    switch, lock = _stuck_stop(home, "--stop-timeout", "1")
    try:
        started = time.monotonic()
        switch.send_signal(signal.SIGTERM)
        out, err = switch.communicate(timeout=20)
        took = time.monotonic() - started
    finally:
        lock.close()
        if switch.poll() is None:
            switch.kill()
    assert switch.returncode == 1, (out, err)
    assert took < 15, took  # the lock's 30 s were not waited for
    assert out.rstrip().endswith("stopping: no new requests; those in flight finish"), out  # the last report
    assert err.startswith("exiting now (status 1): the stop took more than 1 s.\nstill waiting:\n"), err
    waiting = [line for line in err.splitlines() if line.startswith("  ")]
    assert any("in citycard/db/" in line for line in waiting), err  # the report waiting on the lock
    assert "rolled back by the server" in err and "Traceback" not in err


def test_a_second_signal_while_stopping_ends_the_process_at_once(home: dict[str, str]) -> None:
    switch, lock = _stuck_stop(home, "--stop-timeout", "0")  # no bound: only the second signal ends it
    try:
        switch.send_signal(signal.SIGTERM)
        assert switch.stdout is not None
        assert switch.stdout.readline().startswith("stopping:")
        time.sleep(0.5)
        assert switch.poll() is None  # still waiting on the lock
        switch.send_signal(signal.SIGINT)
        out, err = switch.communicate(timeout=20)
    finally:
        lock.close()
        if switch.poll() is None:
            switch.kill()
    assert switch.returncode == 1, (out, err)
    assert err.startswith("exiting now (status 1): a second signal came while stopping."), err


def test_a_service_killed_then_started_again_on_another_port_leaves_no_report_in_red(
    home: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The first switch killed (SIGKILL: no last report); the second, on another free port of the same
    machine, removes the first's report at its first report (its process is gone) and says so."""
    args = ("switch", "--issuer", "ICBC=127.0.0.1:9", "--port", "0", "--report-every", "0.2")
    first, first_port, _ = _start(home, *args)
    try:
        _until(capsys, lambda r: "switch" in r)
    finally:
        first.kill()
        first.communicate(timeout=30)
    second, second_port, _ = _start(home, *args)
    try:
        reports = _until(capsys, lambda r: r.get("switch", {}).get("pid") == second.pid)
        assert [(r["address"], r["health"]) for r in reports.values()] == [
            (f"127.0.0.1:{second_port}", "running")
        ]
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    forgot = f"switch: forgot its report at 127.0.0.1:{first_port} (pid {first.pid}): that process no longer"
    assert f"{forgot} runs on" in err, err


def test_the_switch_follows_the_routes_kept_for_the_banks_a_bank_added_a_front_end_moved_a_route_removed(
    home: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No --issuer: ICBC's route (citycard serve route) is read at the start; BOC added, its front end
    started and routed while the switch runs, is linked within seconds; BOC's front end moved to another
    port is linked again there; BOC's route removed, its link is closed. Each link "up" in the switch's
    status line, as the center reads it."""
    icbc, icbc_port, _ = _start(home, "issuer", "--bank", "icbc", "--port", "0")
    started = [icbc]
    try:
        assert cli(["serve", "route", "icbc", f"127.0.0.1:{icbc_port}"]) == 0
        switch, _, banner = _start(home, "switch", "--port", "0", "--report-every", "0.2")
        started.append(switch)
        assert f"ICBC -> 127.0.0.1:{icbc_port} (route)" in banner
        assert "ICBC up" in str(
            _until(capsys, lambda r: "ICBC up" in str(r.get("switch")))["switch"]["status"]
        )

        assert cli(["bank", "add", "BOC", "--bin", "621661"]) == 0
        boc, boc_port, _ = _start(home, "issuer", "--bank", "boc", "--port", "0")
        started.append(boc)
        assert cli(["serve", "route", "BOC", f"127.0.0.1:{boc_port}"]) == 0
        status = _until(capsys, lambda r: "BOC up" in str(r.get("switch")))["switch"]["status"]
        assert "BOC up, ICBC up" in str(status), status

        moved, moved_port, _ = _start(home, "issuer", "--bank", "boc", "--port", "0", "--report-every", "0.2")
        started.append(moved)
        assert cli(["serve", "route", "BOC", f"127.0.0.1:{moved_port}"]) == 0
        capsys.readouterr()
        assert cli(["serve", "routes", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["routes"] == [
            {"bank": "BOC", "front_end": f"127.0.0.1:{moved_port}"},
            {"bank": "ICBC", "front_end": f"127.0.0.1:{icbc_port}"},
        ]
        at_new = f"127.0.0.1:{moved_port}"  # the switch connects to the new front end at its next reload
        _until_reported_at(capsys, at_new, "1 connection(s) open", "the switch never connected there")
        boc.send_signal(signal.SIGTERM)  # the old front end goes: the switch must be on the new one
        boc.communicate(timeout=30)
        time.sleep(1.5)  # reports every 0.2 s: on the old link alone, BOC would read down by now
        assert "BOC up, ICBC up" in str(_reports(capsys)["switch"]["status"])

        assert cli(["serve", "route", "BOC", "--remove"]) == 0  # the switch lets BOC's link go
        reports = _until(capsys, lambda r: "switch" in r and "BOC" not in str(r["switch"]["status"]))
        status = str(reports["switch"]["status"])
        assert "ICBC up" in status and "BOC" not in status, status
        _until_reported_at(capsys, at_new, "0 connection(s) open", "the switch kept its connection there")
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        outs = [process.communicate(timeout=30) for process in started]
    assert f"switch: bank BOC moved to 127.0.0.1:{moved_port}" in outs[1][1], outs[1][1]
    assert "switch: bank BOC linked to its issuer front end" in outs[1][1]
    assert f"switch: bank BOC's route removed: its link to 127.0.0.1:{moved_port} closed" in outs[1][1]
