"""The terminal's batch settlement (批结算, 0500/0510) through the whole chain on loopback sockets: online
purchases, a void, a refund and offline EC purchases; ``settle`` uploads the offline ones, sends the batch's
totals, the acquirer balances them against its own records (00) and the batch is closed; the next, empty
batch balances at zero; a journal that disagrees with the acquirer is answered 95, uploads its online
transactions (批上送: the acquirer logs each difference) and its batch is closed out of balance."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from citycard.codec.iso8583.totals import BatchTotals
from citycard.pos.terminal import NotThisBatch

from tests.pos.chain import PIN, chain
from tests.pos.test_online import World, _eventually


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield World(net, tmp_path)


def test_a_batch_balances_and_closes_then_a_tampered_one_is_95_uploaded_and_closed(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with world.client() as client:
        pos = world.pos(client)
        first = pos.purchase(world.tap(), 15_000, pin=lambda _: PIN)
        second = pos.purchase(world.tap(), 2_000, pin=lambda _: PIN)
        assert first.approved and second.approved and first.entry and second.entry
        assert pos.void(world.tap(), first.entry, pin=lambda _: PIN).approved
        _, code = client.refund(second.entry, 500)
        assert code == "00"
        assert pos.load(world.tap(), 10_000, pin=lambda _: PIN).approved  # EC load: not in the totals
        offline = [pos.purchase(world.tap(), amount) for amount in (1_250, 800)]
        assert all(sale.approved for sale in offline)

        done = client.settle()
        assert len(done.upload.acknowledged) == 2
        expected = BatchTotals(debit_fen=2_000 + 1_250 + 800, debit_count=3, credit_fen=500, credit_count=1)
        assert (done.batch, done.totals, done.response_code) == (1, expected, "00")
        assert done.host_totals == expected and done.new_batch == 2

        empty = client.settle()
        assert (empty.batch, empty.totals, empty.response_code, empty.new_batch) == (
            2,
            BatchTotals(),
            "00",
            3,
        )

        sale = pos.purchase(world.tap(), 300)
        online = pos.purchase(world.tap(), 9_000, pin=lambda _: PIN)  # above the chip's EC balance
        assert sale.approved and online.approved and online.entry is not None
        assert online.outcome.kind.value == "approved online"
        with sqlite3.connect(tmp_path / "journal.db") as db:  # the terminal's journal loses a fen
            db.execute("UPDATE txn SET amount_fen = 8999 WHERE txn_id = ?", (online.entry.txn_id,))
        with caplog.at_level(logging.WARNING, logger="citycard.hosts.acquirer"):
            wrong = client.settle()
        assert (wrong.batch, wrong.response_code, wrong.batch_upload, wrong.new_batch) == (3, "95", 1, 4)
        assert wrong.totals == BatchTotals(9_299, 2) and wrong.host_totals == BatchTotals(9_300, 2)
        assert world.journal.current_batch() == 4  # closed out of balance: the acquirer's records rule
        said = [r.getMessage() for r in caplog.records if r.name == "citycard.hosts.acquirer"]
        stan = f"{online.entry.stan:06d}"
        assert any(f"stan {stan}, a purchase of 8999 fen" in m and "of 9000 fen" in m for m in said), said
        assert any("batch 3 closed out of balance after a batch upload of 0001" in m for m in said), said
        with sqlite3.connect(tmp_path / "journal.db") as db:  # as if stopped before it closed its batch
            db.execute("UPDATE counters SET value = 3 WHERE name = 'batch'")
        again = client.settle()  # 95, then 77 to the first record: the acquirer closed batch 3 already
        assert (again.batch, again.response_code, again.batch_upload, again.new_batch) == (3, "95", 1, 4)
        late = pos.purchase(world.tap(), 9_500, pin=lambda _: PIN)
        assert late.approved and late.entry is not None and late.entry.batch == 4


def test_a_purchase_of_a_settled_batch_is_refunded_not_voided(world: World) -> None:
    """消费撤销 is of the current batch only (UnionPay POS practice, docs/terminal.md): once the batch is
    settled, a void of its purchase is refused before the card or the host is asked, and a refund (退货)
    gives the money back (the acquirer refuses such a void too: ``tests/acquirer/test_host.py``). Before
    this rule the void went into the next batch, whose totals then went negative and could not be sent."""
    with world.client() as client:
        pos = world.pos(client)
        sale = pos.purchase(world.tap(), 15_000, pin=lambda _: PIN)
        assert sale.approved and sale.entry is not None
        assert client.settle().new_batch == 2
        before = world.net.status()["deposit_available_fen"]
        with pytest.raises(NotThisBatch, match="refund it instead"):
            pos.void(world.tap(), sale.entry, pin=lambda _: PIN)
        assert [e.kind for e in world.journal.entries()] == ["purchase"]  # nothing journaled
        assert world.net.status()["deposit_available_fen"] == before  # nor posted
        refund, code = client.refund(sale.entry, 15_000)
        assert code == "00" and refund.batch == 2
        assert client.settle().totals == BatchTotals(credit_fen=15_000, credit_count=1)
    _eventually(lambda: world.net.status()["deposit_available_fen"] == before + 15_000)


def test_pos_settle_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from tests.pos.test_cli_pos import _app

    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        r = runner.invoke(app, ["pos", "load", "--card", net.pan, "--amount", "100", "--pin", "123456"])
        assert r.exit_code == 0, r.output
        r = runner.invoke(app, ["pos", "purchase", "--card", net.pan, "--amount", "12.50"])
        assert r.exit_code == 0 and "APPROVED OFFLINE" in r.output, r.output
        r = runner.invoke(app, ["pos", "settle"])
        assert r.exit_code == 0, r.output
        assert "batch 1: debits 1 for 12.50, credits 0 for 0.00; acquirer answered 00" in r.output
        assert "balanced: batch 1 closed; now batch 2" in r.output and net.uploads() == 1
        r = runner.invoke(app, ["pos", "settle", "--json"])
        assert r.exit_code == 0 and '"new_batch": 3' in r.output, r.output
        r = runner.invoke(
            app, ["pos", "purchase", "--card", net.pan, "--amount", "120.00", "--pin", "123456"]
        )
        assert r.exit_code == 0 and "APPROVED ONLINE" in r.output, r.output  # above the chip's balance
        (journal,) = tmp_path.rglob("*journal.db")
        with sqlite3.connect(journal) as db:  # the terminal's journal loses a fen
            db.execute("UPDATE txn SET amount_fen = amount_fen - 1 WHERE batch = 3")
        r = runner.invoke(app, ["pos", "settle"])
        said = " ".join(r.output.split())  # as one line, however the console wrapped it
        assert r.exit_code == 1, r.output
        assert "out of balance: the acquirer has debits 1 for 120.00" in said, said
        assert "its 1 online transaction(s) uploaded (批上送); batch 3 closed out of balance" in said, said
        assert "now batch 4" in said, said


def test_a_terminal_behind_the_acquirers_batch_is_answered_77_and_takes_the_next_batch_at_sign_on(
    world: World, tmp_path: Path
) -> None:
    """The batch settled and closed at the acquirer; the terminal's journal then restored to before the
    settlement (batch 1 again): its online purchase is answered 77, nothing taken from the card's account;
    the terminal signs on again at once, the sign-on names batch 2, which the journal takes, and the next
    purchase goes through."""
    with world.client() as client:
        pos = world.pos(client)
        assert pos.purchase(world.tap(), 1_000, pin=lambda _: PIN).approved
        assert client.settle().response_code == "00" and world.journal.current_batch() == 2
        with sqlite3.connect(tmp_path / "journal.db") as db:  # restored from before the settlement
            db.execute("UPDATE counters SET value = 1 WHERE name = 'batch'")
        assert world.journal.current_batch() == 1
        before = world.net.status()["deposit_available_fen"]
        refused = pos.purchase(world.tap(), 2_000, pin=lambda _: PIN)
        assert not refused.approved and "(77)" in refused.outcome.reason, refused.outcome
        assert world.net.status()["deposit_available_fen"] == before  # never reached the issuer
        assert world.journal.current_batch() == 2  # signed on again after the 77
        assert pos.purchase(world.tap(), 2_000, pin=lambda _: PIN).approved
        assert world.net.status()["deposit_available_fen"] == before - 2_000


def test_pos_purchase_into_a_settled_batch_says_the_terminal_signed_on_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tests.pos.test_cli_pos import _app

    runner, app = CliRunner(), _app()
    with chain(tmp_path, monkeypatch) as net:
        online = ["--card", net.pan, "--pin", PIN]
        r = runner.invoke(app, ["pos", "purchase", *online, "--amount", "10.00"])
        assert r.exit_code == 0 and "APPROVED ONLINE" in r.output, r.output
        r = runner.invoke(app, ["pos", "settle"])
        assert r.exit_code == 0 and "balanced: batch 1 closed; now batch 2" in r.output, r.output
        journal = next(tmp_path.rglob("journal.db"), None) or next(tmp_path.rglob("pos-journal.db"))
        with sqlite3.connect(journal) as db:  # restored from before the settlement
            db.execute("UPDATE counters SET value = 1 WHERE name = 'batch'")
        r = runner.invoke(app, ["pos", "purchase", *online, "--amount", "10.00"])
        assert "DECLINED ONLINE" in r.output and "(77)" in r.output, r.output
        assert "the acquirer had settled batch 1: signed on again, now batch 2" in r.output
        r = runner.invoke(app, ["pos", "purchase", *online, "--amount", "10.00"])
        assert r.exit_code == 0 and "APPROVED ONLINE" in r.output, r.output
