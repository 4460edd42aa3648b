"""Every command group given bad input, through the real entry point (``citycard.cli.run``, what the
``citycard`` script's ``main()`` calls): exactly one line ``error: <reason>`` on stderr, nothing on stdout,
no traceback, a non-zero exit status (2 when the input is refused, 1 when the command cannot be carried
out), and nothing changed: every file under the test's folders (SQLite databases compared by content) is
as it was before."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from citycard.cli import run

from tests.issuer.conftest import HOLDER_ID

BORN_2030 = "11010520300101001X"  # check character right, date of birth in the future
REGION_999999 = "999999194912310025"  # check character right, no such province


@dataclass(frozen=True)
class World:
    root: Path
    home: Path  # bank ICBC (BIN 621226), a registered card, an emulated card, a terminal journal
    readonly_home: Path  # a copy of home whose card-image folder cannot be written
    tampered_home: Path  # a copy of home with one key block altered on disk
    pan: str  # the registered card's PAN

    def fill(self, text: str) -> str:
        return text.format(home=self.home, root=self.root, pan=self.pan, card=self.home / "card.json")


def _run(*argv: str) -> None:
    status = run(list(argv))
    assert status == 0, argv


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("bad-input")
    home = root / "home"
    with pytest.MonkeyPatch.context() as env:
        for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
            env.delenv(name, raising=False)
        env.setenv("CITYCARD_HOME", str(home))
        _run("bank", "add", "ICBC", "--bin", "621226")
        _run("card", "issue", "--bank", "ICBC", "--holder", "ZHANG SAN", "--id-number", HOLDER_ID)
        _run("card", "new", "--out", str(home / "card.json"), "--serial", "5", "--ec-balance", "100.00")
        _run("pos", "purchase", "--card", str(home / "card.json"), "--amount", "1.00")
        _run("merchant", "add", "CITYBUS00000001", "--name", "City bus", "--mcc", "4111",
             "--district", "Xihu", "--bank", "ICBC")  # fmt: skip
        _run("terminal", "add", "V0000001", "--merchant", "CITYBUS00000001", "--kind", "validator",
             "--line", "1", "--vehicle", "B1-001")  # fmt: skip
        _run("merchant", "add", "OLDSHOP00000001", "--name", "Old shop", "--mcc", "5411",
             "--district", "Xihu", "--bank", "ICBC")  # fmt: skip
        _run("terminal", "add", "T0000001", "--merchant", "OLDSHOP00000001")
        _run("merchant", "close", "OLDSHOP00000001")
    pan = next((home / "cards").glob("ICBC/*/621226*.json")).stem  # cards/<BANK>/<shard>/<PAN>.json
    (root / "not-sqlite.db").write_text("this is not a database\n")
    (root / "corrupt-keys.json").write_text('{"imk_ac": ')
    (root / "a-folder").mkdir()
    (root / "a-file").write_text("a file, not a folder\n")
    readonly_home = root / "readonly-home"
    shutil.copytree(home, readonly_home, symlinks=True)
    shutil.rmtree(readonly_home / "cards")
    (readonly_home / "cards").symlink_to("/sys/kernel")  # not writable, not even by root
    (root / "readonly").symlink_to("/sys/kernel")
    tampered_home = root / "tampered-home"
    shutil.copytree(home, tampered_home, symlinks=True)
    block = tampered_home / "hsm" / "keys" / "icbc-deny-list.kb"
    text = bytearray(block.read_bytes())
    text[len(text) // 2] ^= 0x01  # one hex digit of the encrypted key data changed
    block.write_bytes(bytes(text))
    yield World(root, home, readonly_home, tampered_home, pan)


def _snapshot(root: Path) -> dict[str, object]:
    """Every file under ``root``: SQLite databases by their SQL dump, other files by their bytes."""
    state: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.name.endswith(("-wal", "-shm")):  # SQLite's own: their content is in the dump
            continue
        if path.is_symlink() or path.is_dir():
            state[name] = "link" if path.is_symlink() else "dir"
        elif path.read_bytes()[:16] == b"SQLite format 3\x00":
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                state[name] = list(db.iterdump())
            finally:
                db.close()
        else:
            state[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


# (case id, argv with {home} {root} {pan} {card} filled in, extra environment, exit status)
CASES: list[tuple[str, list[str], dict[str, str], int]] = [
    # --- usage errors, any group --------------------------------------------------------------------------
    ("no-such-command", ["bank", "nope"], {}, 2),
    ("no-such-option", ["card", "show", "{card}", "--bogus"], {}, 2),
    ("missing-option", ["card", "new"], {}, 2),
    # --- card (chip side) -----------------------------------------------------------------------------
    ("card-new-overwrites", ["card", "new", "--out", "{card}"], {}, 2),
    ("card-new-bin", ["card", "new", "--out", "{root}/x.json", "--bin", "12"], {}, 2),
    ("card-new-amount", ["card", "new", "--out", "{root}/x.json", "--ec-balance", "1.001"], {}, 2),
    ("card-new-single-limit", ["card", "new", "--out", "{root}/x.json", "--ec-single-limit", "2000"], {}, 2),
    ("card-new-credit-ec", ["card", "new", "--out", "{root}/x.json", "--credit", "--ec-balance", "5"], {}, 2),
    ("card-new-corrupt-keys", ["card", "new", "--out", "{root}/x.json", "--keys", "{root}/corrupt-keys.json"],
     {}, 2),
    ("card-new-keys-folder", ["card", "new", "--out", "{root}/x.json", "--keys", "{root}/a-folder"], {}, 2),
    ("card-new-readonly", ["card", "new", "--out", "{root}/readonly/x.json"], {}, 1),
    ("card-show-missing", ["card", "show", "{root}/missing.json"], {}, 2),
    ("card-show-not-an-image", ["card", "show", "{root}/corrupt-keys.json"], {}, 2),
    ("card-apdu-not-hex", ["card", "apdu", "{card}", "00A4zz"], {}, 2),
    ("card-apdu-interface", ["card", "apdu", "{card}", "00A40400", "--interface", "radio"], {}, 2),
    ("card-serve-missing", ["card", "serve", "{root}/missing.json"], {}, 2),
    ("card-serve-vpcd", ["card", "serve", "{card}", "--vpcd", "host:abc"], {}, 2),
    ("serve-card-vpcd", ["serve", "card", "{card}", "--vpcd", "host:abc"], {}, 2),
    ("serve-issuer-no-bank", ["serve", "issuer", "--bank", "NOPE", "--port", "0"], {}, 2),
    ("serve-issuer-port", ["serve", "issuer", "--bank", "ICBC", "--port", "70000"], {}, 2),
    ("serve-switch-no-issuer", ["serve", "switch", "--port", "0"], {}, 2),
    ("serve-switch-address", ["serve", "switch", "--issuer", "ICBC:9585"], {}, 2),
    ("serve-switch-twice", ["serve", "switch", "--issuer", "ICBC=1", "--issuer", "icbc=2"], {}, 2),
    ("serve-switch-no-bank", ["serve", "switch", "--issuer", "NOPE=127.0.0.1:9585", "--port", "0"], {}, 2),
    ("serve-switch-silent", ["serve", "switch", "--issuer", "ICBC=1", "--silent-after", "-1"], {}, 2),
    ("serve-acquirer-silent", ["serve", "acquirer", "--port", "0", "--silent-after", "soon"], {}, 2),
    # --- card (issuer side) ---------------------------------------------------------------------------
    ("issue-no-bank", ["card", "issue", "--bank", "NOPE"], {}, 2),
    ("issue-born-2030", ["card", "issue", "--bank", "ICBC", "--holder", "LI SI", "--id-number", BORN_2030],
     {}, 2),
    ("issue-region", ["card", "issue", "--bank", "ICBC", "--holder", "LI SI", "--id-number", REGION_999999],
     {}, 2),
    ("issue-phone", ["card", "issue", "--bank", "ICBC", "--holder", "LI SI", "--id-number",
                     "440524188001010014", "--phone", "abc"], {}, 2),
    ("issue-bureau-kek", ["card", "issue", "--bank", "ICBC", "--product", "anon-ec", "--bureau-kek", "nope"],
     {}, 2),
    ("issue-count", ["card", "issue", "--bank", "ICBC", "--product", "anon-ec", "--count", "0"], {}, 2),
    ("issue-readonly-cards", ["card", "issue", "--bank", "ICBC", "--product", "anon-ec"],
     {"CITYCARD_HOME": "{root}/readonly-home"}, 1),
    ("list-no-bank", ["card", "list", "--bank", "NOPE"], {}, 2),
    ("list-status", ["card", "list", "--status", "nope", "--json"], {}, 2),
    ("find-nothing", ["card", "find"], {}, 2),
    ("find-suffix", ["card", "find", "--pan-suffix", "12"], {}, 2),
    ("find-id-number", ["card", "find", "--id-number", "123"], {}, 2),
    ("find-phone", ["card", "find", "--phone", "abc"], {}, 2),
    ("status-pan", ["card", "status", "1234", "--json"], {}, 2),
    ("status-no-card", ["card", "status", "6212260000000000000"], {}, 2),
    ("activate-no-card", ["card", "activate", "6212260000000000000"], {}, 2),
    ("deposit-amount", ["card", "deposit", "{pan}", "1.505"], {}, 2),
    ("deposit-zero", ["card", "deposit", "{pan}", "0"], {}, 2),
    ("report-lost-id", ["card", "report-lost", "{pan}", "--id-number", "440524188001010014"], {}, 2),
    ("refund-to", ["card", "refund", "{pan}", "--to", "nowhere"], {}, 2),  # malformed: before the state
    ("block-no-card", ["card", "block", "1234"], {}, 2),
    ("unblock-no-card", ["card", "unblock", "6212260000000000000"], {}, 2),
    ("close-no-card", ["card", "close", "6212260000000000000"], {}, 2),
    ("replace-no-card", ["card", "replace", "6212260000000000000"], {}, 2),
    ("renew-no-card", ["card", "renew", "6212260000000000000"], {}, 2),
    ("set-pin-no-card", ["card", "set-pin", "6212260000000000000", "--pin", "1234"], {}, 2),
    ("issue-pin-no-bank", ["card", "issue", "--bank", "NOPE", "--pin", "1234"], {}, 2),
    # --- bank -------------------------------------------------------------------------------------------
    ("bank-add-bin", ["bank", "add", "ABC", "--bin", "6212"], {}, 2),
    ("bank-add-code", ["bank", "add", "abc"], {}, 2),
    ("bank-add-bin-overlap", ["bank", "add", "ABC", "--bin", "6212261"], {}, 1),
    ("bank-add-ec-limit", ["bank", "add", "ABC", "--bin", "621700", "--ec-limit", "lots"], {}, 2),
    ("annual-fees-no-bank", ["bank", "annual-fees", "--bank", "NOPE", "--period", "2026"], {}, 2),
    ("annual-fees-empty-period", ["bank", "annual-fees", "--bank", "ICBC", "--period", ""], {}, 2),
    ("annual-fees-period", ["bank", "annual-fees", "--bank", "ICBC", "--period", "abc"], {}, 2),
    ("expire-no-bank", ["bank", "expire", "--bank", "NOPE"], {}, 2),
    ("import-kek-hex", ["bank", "import-kek", "kek", "--component", "zz"], {}, 2),
    # --- ledger -----------------------------------------------------------------------------------------
    ("ledger-balance-no-bank", ["ledger", "balance", "--bank", "NOPE"], {}, 2),
    ("ledger-balance-no-card", ["ledger", "balance", "--pan", "6212260000000000000"], {}, 2),
    ("ledger-journal-limit", ["ledger", "journal", "--limit", "0"], {}, 2),
    # --- denylist ---------------------------------------------------------------------------------------
    ("denylist-export-no-bank", ["denylist", "export", "--bank", "NOPE", "--out", "{root}/dl.json"], {}, 2),
    ("denylist-export-readonly", ["denylist", "export", "--bank", "ICBC", "--out", "{root}/readonly/dl.json"],
     {}, 1),
    ("denylist-verify-not-a-list", ["denylist", "verify", "{root}/corrupt-keys.json"], {}, 1),
    # --- pos --------------------------------------------------------------------------------------------
    ("purchase-amount", ["pos", "purchase", "--card", "{card}", "--amount", "1.234"], {}, 2),
    ("purchase-no-card", ["pos", "purchase", "--amount", "1.00"], {}, 2),
    ("pin-not-digits", ["pos", "purchase", "--card", "{card}", "--amount", "1", "--pin", "12ab"], {}, 2),
    ("pin-too-short", ["pos", "purchase", "--card", "{card}", "--amount", "1", "--pin", "123"], {}, 2),
    ("load-pin-too-long", ["pos", "load", "--card", "{card}", "--amount", "1", "--pin", "1" * 13], {}, 2),
    ("load-from-account-not-digits", ["pos", "load", "--card", "{card}", "--amount", "1", "--from-account",
                                      "62166100000000AB", "--from-pin", "654321"], {}, 2),
    ("load-from-pin-alone", ["pos", "load", "--card", "{card}", "--amount", "1", "--from-pin", "654321"],
     {}, 2),
    ("load-from-account-and-cash", ["pos", "load", "--card", "{card}", "--amount", "1", "--cash",
                                    "--from-account", "6216610000000012", "--from-pin", "654321"], {}, 2),
    ("load-from-pin-too-short", ["pos", "load", "--card", "{card}", "--amount", "1", "--from-account",
                                 "6216610000000012", "--from-pin", "12"], {}, 2),
    ("purchase-card-and-reader", ["pos", "purchase", "--card", "{card}", "--reader", "x", "--amount", "1"],
     {}, 2),
    ("purchase-corrupt-keys", ["pos", "purchase", "--card", "{card}", "--amount", "1.00", "--keys",
                               "{root}/corrupt-keys.json"], {}, 2),
    ("purchase-journal-not-sqlite", ["pos", "purchase", "--card", "{card}", "--amount", "1.00", "--journal",
                                     "{root}/not-sqlite.db"], {}, 2),
    ("balance-corrupt-keys", ["pos", "balance", "--card", "{card}", "--keys", "{root}/corrupt-keys.json"],
     {}, 2),
    ("balance-card-missing", ["pos", "balance", "--card", "{root}/missing.json"], {}, 2),
    ("validate-fare", ["pos", "validate", "--card", "{card}", "--fare", "0"], {}, 2),
    ("load-config-missing", ["pos", "load", "--card", "{card}", "--amount", "1", "--config",
                             "{root}/no.toml"], {}, 2),
    ("journal-missing-folder", ["pos", "journal", "--journal", "/nonexistent/dir/j.db"], {}, 2),
    ("journal-not-sqlite", ["pos", "journal", "--journal", "{root}/not-sqlite.db"], {}, 2),
    ("journal-is-a-folder", ["pos", "journal", "--journal", "{root}/a-folder"], {}, 2),
    ("journal-state", ["pos", "journal", "--state", "lost"], {}, 2),
    # --- calc -------------------------------------------------------------------------------------------
    ("calc-kcv-hex", ["calc", "kcv", "zz"], {}, 2),
    ("calc-pin-block-pan", ["calc", "pin-block", "1234", "40123"], {}, 2),
    ("calc-pin-block-pin", ["calc", "pin-block", "12", "4012345678909"], {}, 2),
    ("calc-tlv-short", ["calc", "tlv", "9F02"], {}, 2),
    ("calc-tlv-overrun", ["calc", "tlv", "9F0206000000"], {}, 2),
    ("calc-dol-short", ["calc", "dol", "9F"], {}, 2),
    ("calc-dol-data", ["calc", "dol", "9F0206", "00"], {}, 2),
    ("calc-mac-alg", ["calc", "mac", "00" * 16, "00", "--alg", "5"], {}, 2),
    ("calc-arqc-key", ["calc", "arqc", "00", "--udk", "00"], {}, 2),
    ("calc-icc-mk-pan", ["calc", "icc-mk", "00" * 16, "12AB"], {}, 2),
    ("calc-session-key-atc", ["calc", "session-key", "00" * 16, "1"], {}, 2),
    ("calc-common-sk-r", ["calc", "common-sk", "00" * 16, "0001"], {}, 2),
    ("calc-arqc-verify", ["calc", "arqc-verify", "00", "1122", "--sk", "00" * 16], {}, 2),
    ("calc-arpc-method", ["calc", "arpc", "11" * 8, "--sk", "00" * 16, "--method", "3"], {}, 2),
    ("calc-ec-load-balance", ["calc", "ec-load", "11" * 8, "1.234", "--sk", "00" * 16, "--atc", "0001"],
     {}, 2),
    ("calc-script-header", ["calc", "script", "841E", "11" * 8, "--sk", "00" * 16, "--atc", "0001"], {}, 2),
    ("calc-des-blocks", ["calc", "des", "00" * 16, "0011"], {}, 2),
    ("calc-sm4-key", ["calc", "sm4", "00" * 8, "00" * 16], {}, 2),
    ("calc-sm3-hex", ["calc", "sm3", "xyz"], {}, 2),
    ("calc-cert-hex", ["calc", "cert", "zz", "00"], {}, 2),
    ("log-card-missing", ["pos", "log", "--card", "{root}/missing.json"], {}, 2),
    # --- db ---------------------------------------------------------------------------------------------
    ("db-upgrade-url", ["db", "upgrade"], {"CITYCARD_DATABASE_URL": "nonsense"}, 2),
    ("db-current-url", ["db", "current"], {"CITYCARD_DATABASE_URL": "sqlite+nope:///x.db"}, 2),
    # --- demo, settings and the HSM's key store -------------------------------------------------------------
    ("demo-home-file", ["demo", "--home", "{root}/a-file"], {}, 2),
    ("demo-bogus", ["demo", "--bogus"], {}, 2),
    ("up-acquirer-address", ["up", "--acquirer", "127.0.0.1:port"], {}, 2),
    ("up-switch-port", ["up", "--switch", "127.0.0.1:70000"], {}, 2),
    ("up-issuer-form", ["up", "--issuer", "ICBC"], {}, 2),
    ("up-settings-switch", ["up"], {"CITYCARD_SWITCH": "nowhere"}, 2),
    ("settings-vpcd-port", ["card", "serve", "{card}"], {"CITYCARD_VPCD_PORT": "abc"}, 2),
    ("settings-database-url", ["bank", "list"], {"CITYCARD_DATABASE_URL": "nonsense"}, 2),
    ("settings-home-is-a-file", ["ledger", "balance"], {"CITYCARD_HOME": "{root}/a-file"}, 2),
    # --- merchant and terminal registry ----------------------------------------------------------------
    ("merchant-add-id", ["merchant", "add", "CITYBUS", "--name", "x", "--mcc", "4111", "--district", "Xihu",
                         "--bank", "ICBC"], {}, 2),
    ("merchant-add-mcc", ["merchant", "add", "CITYBUS00000002", "--name", "x", "--mcc", "41A1", "--district",
                          "Xihu", "--bank", "ICBC"], {}, 2),
    ("merchant-add-no-district", ["merchant", "add", "CITYBUS00000002", "--name", "x", "--mcc", "4111",
                                  "--district", "", "--bank", "ICBC"], {}, 2),
    ("merchant-add-industry", ["merchant", "add", "CITYBUS00000002", "--name", "x", "--mcc", "4111",
                               "--district", "Xihu", "--bank", "ICBC", "--industry", "bus"], {}, 2),
    ("merchant-add-industry-not-mcc", ["merchant", "add", "CITYBUS00000002", "--name", "x", "--mcc", "4111",
                                       "--district", "Xihu", "--bank", "ICBC", "--industry", "catering"],
     {}, 2),
    ("merchant-add-unknown-bank", ["merchant", "add", "CITYBUS00000002", "--name", "x", "--mcc", "4111",
                                   "--district", "Xihu", "--bank", "CCB"], {}, 2),
    ("merchant-add-duplicate", ["merchant", "add", "CITYBUS00000001", "--name", "x", "--mcc", "4111",
                                "--district", "Xihu", "--bank", "ICBC"], {}, 1),
    ("merchant-list-industry", ["merchant", "list", "--industry", "bus"], {}, 2),
    ("merchant-close-unknown", ["merchant", "close", "NOSUCHMERCHANT1"], {}, 2),
    ("merchant-close-closed", ["merchant", "close", "OLDSHOP00000001"], {}, 1),
    ("terminal-add-id", ["terminal", "add", "T1", "--merchant", "CITYBUS00000001"], {}, 2),
    ("terminal-add-id-path", ["terminal", "add", "../../x1", "--merchant", "CITYBUS00000001"], {}, 2),
    ("terminal-add-kind", ["terminal", "add", "T0000002", "--merchant", "CITYBUS00000001", "--kind", "atm"],
     {}, 2),
    ("terminal-add-unknown-merchant", ["terminal", "add", "T0000002", "--merchant", "NOSUCHMERCHANT1"],
     {}, 2),
    ("terminal-add-duplicate", ["terminal", "add", "V0000001", "--merchant", "CITYBUS00000001"], {}, 1),
    ("terminal-add-closed-merchant", ["terminal", "add", "T0000002", "--merchant", "OLDSHOP00000001"], {}, 1),
    ("terminal-close-unknown", ["terminal", "close", "T0000009"], {}, 2),
    ("terminal-close-closed", ["terminal", "close", "T0000001"], {}, 1),
    ("settings-cooling-period", ["card", "refund", "{pan}"], {"CITYCARD_COOLING_PERIOD_DAYS": "-1"}, 2),
    ("wrong-master-key", ["bank", "keys"], {"CITYCARD_HSM_MASTER_KEY": "00" * 32}, 2),
    ("master-key-not-hex", ["bank", "list"], {"CITYCARD_HSM_MASTER_KEY": "zz"}, 2),
    ("edited-key-block", ["denylist", "export", "--bank", "ICBC", "--out", "{root}/dl.json"],
     {"CITYCARD_HOME": "{root}/tampered-home"}, 2),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "env", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    status: int,
) -> None:
    for name in ("CITYCARD_DATABASE_URL", "CITYCARD_HSM_MASTER_KEY", "CITYCARD_HSM_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CITYCARD_HOME", str(world.home))
    for name, value in env.items():
        monkeypatch.setenv(name, world.fill(value))
    before = _snapshot(world.root)
    assert run([world.fill(a) for a in argv]) == status
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), (out, err)
    assert "Traceback" not in err and "Usage:" not in err and ".tmp" not in err  # no temporary file named
    assert _snapshot(world.root) == before


def test_the_console_script_prints_one_line(world: World) -> None:
    """The same through ``main()`` in a fresh interpreter, as the ``citycard`` script runs it."""
    env = {**os.environ, "CITYCARD_HOME": str(world.home)}
    result = subprocess.run(
        [sys.executable, "-c", "from citycard.cli import main; main()", "calc", "dol", "9F0206", "00"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "error: DATA: DOL asks for 6 bytes, got 1 at offset 1\n"


def test_a_refusal_naming_no_option_is_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["pos", "balance"]) == 2
    assert capsys.readouterr().err == "error: give exactly one of --card and --reader\n"


def test_help_is_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["calc", "kcv", "--help"]) == 0
    out, err = capsys.readouterr()
    assert "Usage: citycard calc kcv" in out and "Key check value" in out and err == ""
    assert run(["calc"]) == 2  # a group without a command: its help, as click shows it
    out, err = capsys.readouterr()
    assert "pin-block" in out + err and "error:" not in out + err
