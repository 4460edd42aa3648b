"""``citycard up`` as a real process: on free loopback ports it starts the issuer front end of every bank, the
switch and the acquirer; a terminal's online purchase goes through them to the bank's books; SIGTERM stops
it cleanly (exit 0, nothing left queued); a stop stuck on its database ends at ``--stop-timeout``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from citycard import bootstrap
from citycard.cli import run
from citycard.cli.demo import holder_id_number
from citycard.config import settings
from citycard.issuer.views import CardSearch, find_cards

pytestmark = pytest.mark.xdist_group("demo")
PIN = "123456"


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("CITYCARD_DATABASE_URL", raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    return tmp_path


def _run(*argv: str) -> None:
    assert run(list(argv)) == 0, argv


def _deposit_fen(pan: str) -> int:
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan)
        assert card is not None and card.deposit_account_id is not None
        (account,) = uow.ledger.lookup_accounts([card.deposit_account_id])
    return account.credit_balance_fen


def _shop() -> None:
    """ICBC's merchant with a POS terminal (ICBC must exist)."""
    shop = ("CITYMART0000001", "--name", "Mart", "--mcc", "5411", "--district", "X", "--bank", "ICBC")
    _run("merchant", "add", *shop)
    _run("terminal", "add", "SHOP0001", "--merchant", "CITYMART0000001")


def _card(bank: str, holder: str, number: int) -> str:
    """A registered card of ``bank`` with 300.00 on its deposit account; its PAN."""
    id_number = holder_id_number(number)
    _run("card", "issue", "--bank", bank, "--holder", holder, "--id-number", id_number, "--pin", PIN)
    with bootstrap.open_issuer(settings()) as issuer, issuer.unit_of_work(read_only=True) as uow:
        (card,) = find_cards(uow, issuer.hsm, CardSearch(id_number=id_number), limit=1).cards
    _run("card", "deposit", card.pan, "300.00")
    return card.pan


def _up(*options: str) -> subprocess.Popen[str]:
    """``citycard up`` as a process on free ports, without the web console, with ``options``."""
    command = [sys.executable, "-c", "from citycard.cli import main; main()", "up"]
    return subprocess.Popen(
        [*command, "--acquirer", "127.0.0.1:0", "--switch", "127.0.0.1:0", "--no-web", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def _seeded() -> str:
    """Two banks, a merchant of the first with a POS terminal, a registered card of the second with 300.00."""
    _run("bank", "add", "ICBC", "--bin", "621226")
    _run("bank", "add", "BOC", "--bin", "621661")
    _shop()
    return _card("BOC", "WANG/FANG", 7)


def test_up_serves_a_purchase_through_the_chain_and_stops_cleanly_on_sigterm(home: Path) -> None:
    pan = _seeded()
    proc = _up("--status-every", "0.1")
    try:
        banner: list[str] = []
        while not any(line.startswith("acquirer listening") for line in banner):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "".join(banner) + proc.stderr.read()  # type: ignore[union-attr]
            banner.append(line)
        text = "".join(banner)
        assert re.search(r"issuer front end of BOC listening on 127\.0\.0\.1:\d+", text), text
        assert re.search(r"issuer front end of ICBC listening on 127\.0\.0\.1:\d+", text), text
        assert "switch listening on 127.0.0.1:" in text and "(2 BIN ranges)" in text
        acquirer = re.search(r"acquirer listening on (127\.0\.0\.1:\d+)", text).group(1)  # type: ignore[union-attr]
        # a BOC card at an ICBC merchant's terminal: acquirer (ICBC) -> switch -> BOC's issuer front end
        online = ["--terminal", "SHOP0001", "--acquirer", acquirer]
        _run("pos", "purchase", "--card", pan, "--amount", "120.00", "--pin", PIN, *online)
        assert _deposit_fen(pan) == 30_000 - 12_000
        _run("pos", "balance", "--card", pan, "--online", "--pin", PIN, *online)
        # each service's status line, with the time, printed when it changed: the purchase and the balance
        # inquiry moved the acquirer, the switch and BOC's front end
        status = re.compile(r"^\d\d:\d\d:\d\d (issuer BOC|issuer ICBC|switch|acquirer): (.*)$")
        last: dict[str, str] = {}

        def counted(service: str, what: str) -> int:  # the count before ``what`` on its last line, or 0
            found = re.search(rf"([\d,]+) {what}", last.get(service, ""))
            return 0 if found is None else int(found.group(1).replace(",", ""))

        watchdog = threading.Timer(60, proc.kill)  # a line that never comes ends the read, not the suite
        watchdog.start()
        try:
            while not (
                counted("issuer BOC", "to the issuer service") >= 2  # the purchase and the balance inquiry
                and counted("switch", "answered by the issuers") >= 2
                and counted("acquirer", "answered;") >= 2  # and a sign-on, when the terminal made one
            ):
                line = proc.stdout.readline()  # type: ignore[union-attr]
                assert line, f"no more output; last status lines {last}"
                match = status.match(line)
                if match is not None:
                    last[match.group(1)] = match.group(2)
        finally:
            watchdog.cancel()
        assert "BOC up, ICBC up" in last["switch"] and "switch up" in last["acquirer"], last
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopping: no new requests" in out and out.rstrip().endswith("stopped"), out
    assert "0 reversal(s) and advice(s) queued" in out
    assert "Traceback" not in err
    assert _deposit_fen(pan) == 18_000  # nothing reversed or posted twice on the way down


def test_up_whose_stop_is_stuck_on_its_database_ends_at_the_stop_timeout(home: Path) -> None:
    """--for begins the stop (no signal); the services' last reports wait on a database another writer
    holds locked; the process ends 1 s into the stop, exit status 1, saying what waited."""
    _run("bank", "add", "ICBC", "--bin", "621226")
    proc = _up("--for", "3", "--report-every", "0.2", "--stop-timeout", "1")
    lock = None
    try:
        deadline = time.monotonic() + 30
        while lock is None:  # once the services reported, a writer takes the database until the end
            assert time.monotonic() < deadline and proc.poll() is None, "up never reported"
            time.sleep(0.05)
            database = home / "citycard.db"
            if not database.exists():
                continue
            with (
                contextlib.suppress(sqlite3.OperationalError),
                contextlib.closing(sqlite3.connect(database)) as db,
            ):
                if db.execute("SELECT count(*) FROM center_services").fetchone()[0]:
                    lock = sqlite3.connect(database, isolation_level=None)
                    lock.execute("BEGIN EXCLUSIVE")
        out, err = proc.communicate(timeout=30)
    finally:
        if lock is not None:
            lock.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (out, err)
    assert "stopping: no new requests" in out and not out.rstrip().endswith("\nstopped"), out
    assert err.startswith("exiting now (status 1): the stop took more than 1 s.\nstill waiting:\n"), err
    assert "in citycard/db/" in err and "Traceback" not in err


def test_a_bank_added_while_up_runs_gets_a_front_end_and_its_cards_go_online(home: Path) -> None:
    """Up with ICBC alone; BOC added, a card of it issued and funded from another shell while it runs: within
    seconds up starts BOC's front end and links the switch to it; the card's purchase at ICBC's terminal is
    approved by BOC's books; the new front end reports to the center and stops with the others."""
    _run("bank", "add", "ICBC", "--bin", "621226")
    _shop()
    proc = _up("--report-every", "0.5")
    watchdog = threading.Timer(90, proc.kill)  # a line that never comes ends the read, not the suite
    watchdog.start()
    try:
        lines: list[str] = []
        while not any(line.startswith("acquirer listening") for line in lines):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "".join(lines)
            lines.append(line)
        acquirer = re.search(r"acquirer listening on (127\.0\.0\.1:\d+)", "".join(lines)).group(1)  # type: ignore[union-attr]
        assert "issuer front end of BOC" not in "".join(lines)

        _run("bank", "add", "BOC", "--bin", "621661")
        pan = _card("BOC", "LI/LEI", 8)
        while True:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "no front end for BOC"
            if line.startswith("issuer front end of BOC listening on 127.0.0.1:"):
                assert "(a bank added while running)" in line, line
                break
        online = ["--terminal", "SHOP0001", "--acquirer", acquirer]
        _run("pos", "purchase", "--card", pan, "--amount", "45.00", "--pin", PIN, *online)
        assert _deposit_fen(pan) == 30_000 - 4_500
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.rstrip().endswith("stopped") and "Traceback" not in err, (out, err)
    with contextlib.closing(sqlite3.connect(home / "citycard.db")) as db:
        rows = dict(db.execute("SELECT name, stopped_ns IS NOT NULL FROM center_services").fetchall())
    assert rows == {"acquirer": 1, "switch": 1, "issuer ICBC": 1, "issuer BOC": 1}  # all reported, stopped
