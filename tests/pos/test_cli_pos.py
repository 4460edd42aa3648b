"""``citycard pos`` end to end on an emulated card image file."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from citycard.cli import card as card_cli
from citycard.cli import pos as pos_cli
from citycard.kernel.config import parse_config

from tests.kernel.cardlab import demo_keys
from tests.pos.chain import chain
from tests.pos.test_online import _eventually


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(card_cli.app, name="card")
    app.add_typer(pos_cli.app, name="pos")
    return app


def test_pos_cli_purchase_balance_log_load_journal(tmp_path, monkeypatch):
    """A card issued by the bank: EC load online through the acquirer to the issuer, then an offline EC
    purchase, its balance and logs, the journal exported, and the offline purchase uploaded once."""
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        card = net.pan
        r = runner.invoke(app, ["pos", "load", "--card", card, "--amount", "100", "--pin", "123456"])
        assert r.exit_code == 0 and "APPROVED ONLINE" in r.output and "CNY 100.00" in r.output, r.output
        assert net.status()["ec_balance_fen"] == 10_000  # the issuer's EC float moved with the chip
        r = runner.invoke(app, ["pos", "purchase", "--card", card, "--amount", "12.50", "--trace"])
        assert r.exit_code == 0, r.output
        assert "APPROVED OFFLINE" in r.output and "CNY 87.50" in r.output and "GENERATE AC 1" in r.output
        r = runner.invoke(app, ["pos", "balance", "--card", card])
        assert r.exit_code == 0 and "87.50" in r.output
        r = runner.invoke(app, ["pos", "log", "--card", card])
        assert r.exit_code == 0 and "12.50" in r.output
        r = runner.invoke(app, ["pos", "log", "--load", "--card", card])
        assert r.exit_code == 0 and "100.00" in r.output
        r = runner.invoke(app, ["pos", "journal", "--export", str(tmp_path / "out")])
        assert r.exit_code == 0 and "upload-000001" in r.output
        for _ in range(2):  # the second run uploads nothing new
            r = runner.invoke(app, ["pos", "upload"])
            assert r.exit_code == 0, r.output
        assert "uploaded 0 offline" in r.output and net.uploads() == 1
        r = runner.invoke(app, ["pos", "journal", "--close-batch"])
        assert r.exit_code == 0 and "now batch 2" in r.output
        r = runner.invoke(app, ["pos", "purchase", "--card", card, "--amount", "12.505"])
        assert r.exit_code == 2 and "--amount" in r.output  # 12.505 is not an exact amount in fen
        r = runner.invoke(app, ["pos", "validate", "--card", card, "--fare", "2.00"])
        assert ("GO" in r.output) == (r.exit_code == 0)


def test_an_unreachable_acquirer_is_one_error_line(tmp_path, monkeypatch):
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        address = f"127.0.0.1:{net.port}"
    r = runner.invoke(app, ["pos", "load", "--card", net.pan, "--amount", "10", "--pin", "123456"])
    assert (
        r.exit_code == 1 and r.output.strip() == f"error: acquirer {address} unreachable (connection refused)"
    )


def test_a_purchase_declined_because_the_acquirer_is_unreachable_says_so(tmp_path, monkeypatch):
    """The card declines offline (Z3) what it could not take online; the receipt shows the decline and the
    command's last line says why (it went unsaid when the decline's exit came first)."""
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        address = f"127.0.0.1:{net.port}"
    r = runner.invoke(app, ["pos", "purchase", "--card", net.pan, "--amount", "900.00", "--pin", "123456"])
    assert r.exit_code == 1 and "DECLINED OFFLINE" in r.output
    assert r.output.strip().endswith(f"error: acquirer {address} unreachable (connection refused)"), r.output


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "terminal.example.toml"


def _world(tmp_path, monkeypatch, balance="100.00"):
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    (tmp_path / "demo-keys.json").write_bytes(demo_keys().to_json())
    runner, app = CliRunner(), _app()
    image = tmp_path / "card.json"
    r = runner.invoke(app, ["card", "new", "--out", str(image), "--ec-balance", balance, "--serial", "9"])
    assert r.exit_code == 0, r.output
    return runner, app, image


def _balance(runner, app, image) -> str:
    r = runner.invoke(app, ["pos", "balance", "--card", str(image)])
    assert r.exit_code == 0, r.output
    return r.output


def test_the_shipped_example_configuration_is_accepted(tmp_path, monkeypatch):
    """docs/terminal.example.toml parses in full (its CAPK checksum verifies) and drives a purchase; its
    deny list has a maximum age: the same file with an old ``updated`` declines the EC offline purchase."""
    text = EXAMPLE.read_text(encoding="utf-8")
    cfg = parse_config(text)
    assert cfg.aids[0].aid.hex().upper() == "A000000333010101"
    assert cfg.capk(bytes.fromhex("A000000333"), 0xF0) is not None
    assert (
        cfg.exception_file.pans == frozenset({"6234560000000016"}) and cfg.exception_file.max_age_s == 86400
    )
    runner, app, image = _world(tmp_path, monkeypatch)
    now = dt.datetime.now().replace(microsecond=0)
    for updated, approved in ((now, True), (now - dt.timedelta(days=2), False)):
        conf = tmp_path / "terminal.toml"
        conf.write_text(
            re.sub(r"(?m)^updated = \S+", f"updated = {updated.isoformat()}", text), encoding="utf-8"
        )
        r = runner.invoke(
            app, ["pos", "purchase", "--card", str(image), "--amount", "1.25", "--config", str(conf)]
        )
        assert ("APPROVED OFFLINE" in r.output) is approved, r.output
        assert r.exit_code == (0 if approved else 1)
    assert "98.75" in _balance(runner, app, image)  # one purchase of exactly 125 fen


def test_config_and_capk_file_errors_are_clear(tmp_path, monkeypatch):
    runner, app, image = _world(tmp_path, monkeypatch)
    text = EXAMPLE.read_text(encoding="utf-8")
    capk = text[text.index("[[capk]]") : text.index("# The deny list")]
    good = tmp_path / "capks.toml"
    good.write_text(capk, encoding="utf-8")
    r = runner.invoke(app, ["pos", "balance", "--card", str(image), "--capks", str(good)])
    assert r.exit_code == 0, r.output
    bad = tmp_path / "bad-capks.toml"
    bad.write_text(capk.replace("7B20DFF1", "7B20DFF2"), encoding="utf-8")
    r = runner.invoke(app, ["pos", "purchase", "--card", str(image), "--amount", "1.00", "--capks", str(bad)])
    assert r.exit_code == 2 and "--capks" in r.output and "checksum" in r.output, r.output
    conf = tmp_path / "t.toml"
    conf.write_text(text.replace("7B20DFF1", "7B20DFF2"), encoding="utf-8")
    r = runner.invoke(
        app, ["pos", "purchase", "--card", str(image), "--amount", "1.00", "--config", str(conf)]
    )
    assert r.exit_code == 2 and "--config" in r.output and "checksum" in r.output, r.output
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit)
    r = runner.invoke(app, ["pos", "journal", "--state", "paid"])
    assert r.exit_code == 2 and "--state" in r.output and "recovered" in r.output


def test_reader_amounts_and_trace(tmp_path, monkeypatch):
    runner, app, image = _world(tmp_path, monkeypatch)
    r = runner.invoke(app, ["pos", "purchase", "--reader", "no-such-reader-7f3a", "--amount", "1.00"])
    assert r.exit_code == 2 and "--reader" in r.output, r.output  # no reader (or no pcscd): a clear error
    r = runner.invoke(app, ["pos", "purchase", "--amount", "1.00"])
    assert r.exit_code == 2 and "--card and --reader" in r.output
    for option, value in (
        ("--amount", "0"),
        ("--amount", "0.00"),
        ("--amount", "1.001"),
        ("--amount", "1e2"),
    ):
        r = runner.invoke(app, ["pos", "purchase", "--card", str(image), option, value])
        assert r.exit_code == 2 and option in r.output, (value, r.output)
    r = runner.invoke(app, ["pos", "validate", "--card", str(image), "--fare", "2.005"])
    assert r.exit_code == 2 and "--fare" in r.output
    r = runner.invoke(app, ["pos", "validate", "--card", str(image), "--fare", "2.1", "--trace"])
    assert r.exit_code == 0 and "GO" in r.output, r.output
    assert "> GET PROCESSING OPTIONS" in r.output and "9F26 Application cryptogram" in r.output
    pan = json.loads(image.read_text())  # the trace masks the PAN unless --reveal
    digits = re.findall(r"623456\d{10}", json.dumps(pan))
    assert digits and digits[0] not in r.output and "623456******" in r.output
    assert "97.90" in _balance(runner, app, image)  # 100.00 - 2.10, exactly


def test_contactless_over_the_limit_tries_another_interface(tmp_path, monkeypatch):
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch, deposit_fen=200_000) as net:
        r = runner.invoke(
            app,
            ["pos", "purchase", "--card", net.pan, "--amount", "1500.00", "--contactless", "--pin", "123456"],
        )
        assert "try another interface" in r.output and "CNY 1000.00" in r.output, r.output
        assert "card inserted (contact)" in r.output and "APPROVED ONLINE" in r.output and r.exit_code == 0
        assert net.status()["deposit_available_fen"] == 200_000 - 150_000


def test_wrong_online_pin_is_declined_by_the_issuer(tmp_path, monkeypatch):
    """qPBOC online with the online PIN the card's CTQ asks for: enciphered under the terminal's PIK,
    translated on the way, verified by the issuer, which says 55 and posts nothing."""
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        r = runner.invoke(
            app,
            ["pos", "purchase", "--card", net.pan, "--amount", "50.00", "--contactless", "--pin", "999999"],
        )
        assert r.exit_code == 1 and "DECLINED" in r.output and "(55)" in r.output, r.output
        assert net.status()["deposit_available_fen"] == 50_000


def card_file_of(pan: str) -> Path:
    from citycard.cli.card import card_file

    return card_file(Path(pan))


def _pin_tries(image: Path) -> int:
    return int(json.loads(image.read_text())["nvm"]["pin.tries"])


def test_wrong_pin_is_sent_once_then_the_transaction_stops(tmp_path, monkeypatch):
    """A wrong --pin costs one of the card's tries, not all three: without a keyboard the terminal stops."""
    runner, app, image = _world(tmp_path, monkeypatch, balance="0.00")
    monkeypatch.setattr(pos_cli, "_interactive", lambda: False)
    r = runner.invoke(app, ["pos", "purchase", "--card", str(image), "--amount", "50.00", "--pin", "999999"])
    assert r.exit_code == 1 and "wrong PIN: 2 tries left" in r.output, r.output
    assert "PIN entry cancelled" in r.output and "APPROVED" not in r.output
    assert r.output.count("> VERIFY") == 0 and _pin_tries(image) == 2  # no trace asked; the card says 2
    r = runner.invoke(
        app, ["pos", "purchase", "--card", str(image), "--amount", "50.00", "--pin", "999999", "--trace"]
    )
    assert r.output.count("> VERIFY") == 1 and _pin_tries(image) == 1, r.output


def test_wrong_pin_at_a_terminal_is_asked_again(tmp_path, monkeypatch):
    runner, app = CliRunner(), _app()
    monkeypatch.setattr(pos_cli, "_interactive", lambda: True)
    with chain(tmp_path, monkeypatch) as net:
        r = runner.invoke(
            app,
            ["pos", "purchase", "--card", net.pan, "--amount", "50.00", "--pin", "999999", "--trace"],
            input="123456\n",
        )
        assert r.exit_code == 0 and "wrong PIN: 2 tries left" in r.output and "APPROVED ONLINE" in r.output
        image = card_file_of(net.pan)
        assert r.output.count("> VERIFY") == 2 and _pin_tries(image) == 3, r.output  # reset by the right PIN


def test_validator_deny_list_stops_the_card_and_queues_the_refund(tmp_path, monkeypatch):
    runner, app, image = _world(tmp_path, monkeypatch)
    pan = re.findall(r"623456\d{10}", image.read_text())[0]
    conf = tmp_path / "bus.toml"
    now = dt.datetime.now().replace(microsecond=0).isoformat()
    conf.write_text(
        f'[terminal]\nterminal_id = "BUS00042"\n[exception_file]\npans = ["{pan}"]\nupdated = {now}\n'
        "max_age_s = 3600\n",
        encoding="utf-8",
    )
    r = runner.invoke(app, ["pos", "validate", "--card", str(image), "--fare", "2.00", "--config", str(conf)])
    assert r.exit_code == 1 and "STOP" in r.output and "exception file" in r.output, r.output
    assert "BUS00042-000001-000001 is queued for a refund" in r.output
    r = runner.invoke(
        app, ["pos", "journal", "--state", "refund", "--config", str(conf), "--export", str(tmp_path / "up")]
    )
    assert r.exit_code == 0 and "refund" in r.output and "BUS00042-upload-000001.jsonl" in r.output, r.output
    (line,) = (tmp_path / "up" / "BUS00042-upload-000001.jsonl").read_text().splitlines()
    row = json.loads(line)
    assert row["state"] == "refund" and row["amount_fen"] == 200 and row["cryptogram"] and pan not in line


def test_reader_without_pyscard_is_one_clear_line(tmp_path, monkeypatch):
    """pyscard is the optional ``pcsc`` extra: without it ``--reader`` says what to install, exit 2."""
    import sys

    runner, app, _image = _world(tmp_path, monkeypatch)
    monkeypatch.setitem(sys.modules, "smartcard", None)  # import smartcard -> ImportError
    monkeypatch.setitem(sys.modules, "smartcard.System", None)
    monkeypatch.setitem(sys.modules, "smartcard.CardConnection", None)
    r = runner.invoke(app, ["pos", "purchase", "--reader", "any", "--amount", "1.00"])
    assert r.exit_code == 2, r.output
    assert "make pcsc" in r.output and "citycard[pcsc]" in r.output
    assert "Traceback" not in r.output


def test_trace_never_shows_the_pin(tmp_path, monkeypatch):
    """VERIFY's PIN block is masked in a trace (header shown, data as asterisks), with --reveal too."""
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        for extra in ([], ["--reveal"]):
            r = runner.invoke(
                app,
                [
                    "pos",
                    "purchase",
                    "--card",
                    net.pan,
                    "--amount",
                    "50",
                    "--pin",
                    "123456",
                    "--trace",
                    *extra,
                ],
            )
            assert r.exit_code == 0 and "> VERIFY" in r.output, r.output
            assert "0020008008 ****************" in r.output, r.output
            assert "26123456FFFFFFFF" not in r.output and "123456F" not in r.output


def test_signon_balance_and_flush_on_the_command_line(tmp_path, monkeypatch):
    """``pos signon`` prints the new keys' check values; ``pos balance --online`` asks the bank; ``pos flush``
    has nothing queued."""
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        r = runner.invoke(app, ["pos", "signon", "--terminal", "CITY0001"])
        assert r.exit_code == 0 and re.search(r"PIK KCV [0-9A-F]{8}, MAK KCV [0-9A-F]{8}", r.output), r.output
        r = runner.invoke(app, ["pos", "balance", "--online", "--card", net.pan, "--pin", "123456", "--json"])
        assert r.exit_code == 0 and json.loads(r.output)["available_fen"] == 50_000, r.output
        r = runner.invoke(app, ["pos", "flush"])
        assert r.exit_code == 0 and "0 sent, 0 still queued" in r.output, r.output


def test_void_and_refund_on_the_command_line(tmp_path, monkeypatch):
    """A purchase approved online is voided with the card present, another refunded in part."""
    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        argv = ["pos", "purchase", "--card", net.pan, "--contactless", "--pin", "123456", "--amount"]
        r = runner.invoke(app, [*argv, "150.00"])
        assert r.exit_code == 0 and "APPROVED ONLINE" in r.output, r.output
        journal = json.loads(runner.invoke(app, ["pos", "journal", "--json"]).output)
        sale = next(e for e in journal["entries"] if e["amount_fen"] == 15_000)
        void = [
            "pos",
            "void",
            "--card",
            net.pan,
            "--contactless",
            "--pin",
            "123456",
            "--stan",
            str(sale["stan"]),
        ]
        r = runner.invoke(app, void)
        assert r.exit_code == 0 and "APPROVED ONLINE" in r.output, r.output
        r = runner.invoke(app, [*argv, "80.00"])
        assert r.exit_code == 0, r.output
        journal = json.loads(runner.invoke(app, ["pos", "journal", "--json"]).output)
        sale = next(e for e in journal["entries"] if e["amount_fen"] == 8_000)
        r = runner.invoke(app, ["pos", "refund", "--stan", str(sale["stan"]), "--amount", "30.00"])
        assert r.exit_code == 0 and "approved (00)" in r.output, r.output
        _eventually(lambda: net.status()["deposit_available_fen"] == 50_000 - 5_000)  # refund by SAF
        r = runner.invoke(app, ["pos", "refund", "--stan", str(sale["stan"]), "--amount", "60.00"])
        assert r.exit_code == 1 and "only CNY 50.00 of it is left to refund" in r.output, r.output
        journal = json.loads(runner.invoke(app, ["pos", "journal", "--json"]).output)
        assert [e["amount_fen"] for e in journal["entries"] if e["kind"] == "refund"] == [3_000]  # none sent
        r = runner.invoke(app, ["pos", "settle"])
        assert r.exit_code == 0, r.output
        void[-1:] = [str(sale["stan"]), "--batch", "1"]  # the 80.00 of the settled batch 1
        r = runner.invoke(app, void)
        assert r.exit_code == 1 and "settled (now batch 2)" in r.output and "refund it instead" in r.output, (
            r.output
        )
        r = runner.invoke(
            app, ["pos", "refund", "--stan", str(sale["stan"]), "--batch", "1", "--amount", "50.00"]
        )
        assert r.exit_code == 0 and "approved (00)" in r.output, r.output


def test_a_tap_says_each_torn_transaction_it_settled_and_a_reversed_cash_loads_cash(tmp_path, capsys):
    """What the clerk reads after a tap that settled torn transactions: a purchase or a load recovered from
    the card's log; a load not on the load log, reversed at the issuer (its reversal answered) or with its
    reversal still queued, and a cash one's cash to hand back."""
    from citycard.sqlite_journal import SqliteJournal

    now = dt.datetime(2026, 12, 7, 9, 30)
    journal = SqliteJournal(tmp_path / "journal.db", "T0000001")

    def settled(kind: str, funding: str, state: str, answered: str | None = None):
        entry = journal.begin(kind, "contact", 10_000, now, "", **({"funding": funding} if funding else {}))
        journal.finish(entry.txn_id, "torn")
        if answered is not None:
            advice = journal.queue_advice(entry.txn_id, "reversal", 9, "06", "0400", "SEALED", now)
            if answered:
                journal.advice_answered(advice.saf_id, answered)
        return journal.finish(entry.txn_id, state)  # type: ignore[arg-type]

    taps = [
        settled("ec_load", "cash", "void", answered="00"),
        settled("ec_load", "account", "void", answered=""),
        settled("ec_load", "account", "recovered"),
        settled("purchase", "", "recovered"),
    ]
    pos_cli._say_settled(journal, taps)
    lines = capsys.readouterr().out.splitlines()
    journal.close()
    assert lines == [
        f"torn load {taps[0].txn_id} of CNY 100.00 is not on the card's load log: reversed at the issuer; "
        "give the holder back CNY 100.00 in cash",
        f"torn load {taps[1].txn_id} of CNY 100.00 is not on the card's load log: its reversal is queued for "
        "the issuer (sent at the next online message; citycard pos flush)",
        f"recovered torn load {taps[2].txn_id} (on the card's load log)",
        f"recovered torn transaction {taps[3].txn_id} (charged per the card's log)",
    ]
