"""Three paths of the terminal's online client over the whole chain on loopback (``tests/pos/chain.py``),
faults from the proxy between the terminal and the acquirer (``tests/pos/proxy.py``):

- a refund advice (0220) whose answer is lost stays in the terminal's store-and-forward queue, is delivered
  at the next online contact or by ``citycard pos flush``, and the issuer credits the account once;
- an approval whose MAC does not verify (field 64 damaged, or an answer field changed without signing again)
  is not believed: a reversal (39 = ``96``) is queued before the outcome, delivered, and the account nets to
  zero;
- ``citycard pos void --rrn`` through the real entry point (``citycard.cli.run``).

The terminal's journal is the registered terminal's own (``$CITYCARD_HOME/terminals/<TID>/journal.db``)
sealed under the command line's data key, so ``citycard pos`` commands share it with the clients here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pytest

from citycard import bootstrap
from citycard.acquirer import TransactionKey
from citycard.chip.card import Card as ChipCard
from citycard.cli import run
from citycard.cli.pos import DEMO_DATA_KEY
from citycard.codec.iso8583 import decode_framed, encode_framed
from citycard.config import settings
from citycard.db.acquirer_repositories import AcquirerUnitOfWork
from citycard.demokeys import DemoKeys
from citycard.files import card_image_path, load_card, save_card
from citycard.hosts.terminal import AcquirerClient
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.kernel.events import OutcomeKind
from citycard.pos.online import TerminalIdentity
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal

from tests.pos.chain import MID, PIN, TID, Chain, chain
from tests.pos.proxy import Proxy, drop

DEADLINE_S = 20.0
PAIR = b"\x02\x30"  # 0230, the answer to a refund advice


class Terminal:
    def __init__(self, net: Chain) -> None:
        self.net = net
        self.image_path = card_image_path(net.home / "cards", "ICBC", net.pan)
        rid, index, key = DemoKeys.load_or_create(net.home / "demo-keys.json").ca_public_key()
        self.config = TerminalConfig(
            capks=(CaPublicKey(bytes.fromhex(rid), index, key.modulus, key.exponent),)
        )
        self.journal = SqliteJournal(net.home / "terminals" / TID / "journal.db", TID)
        self.hsm = bootstrap.terminal_hsm(settings(), TID)

    def client(self, port: int | None = None, timeout_s: float = 10.0) -> AcquirerClient:
        return AcquirerClient(
            "127.0.0.1",
            port or self.net.port,
            identity=TerminalIdentity(TID, MID),
            hsm=self.hsm,
            journal=self.journal,
            data_key=DEMO_DATA_KEY,
            timeout_s=timeout_s,
        )

    def pos(self, client: AcquirerClient) -> PosTerminal:
        return PosTerminal(
            self.config, self.journal, data_key=DEMO_DATA_KEY, host=client, pin_pad=client.pin_pad
        )

    @contextmanager
    def card(
        self, interface: Literal["contact", "contactless"] = "contact"
    ) -> Iterator[Callable[[bytes], bytes]]:
        """The card image file, tapped and written back (the command line reads the same file)."""
        image = load_card(self.image_path)
        chip = ChipCard(image, os.urandom)
        chip.power_on(interface)
        yield chip.transmit
        save_card(self.image_path, image)

    @contextmanager
    def proxy(self) -> Iterator[Proxy]:
        proxy = Proxy(self.net.port)
        self.net.loop.run(proxy.start())
        try:
            yield proxy
        finally:
            self.net.loop.run(proxy.stop())

    def acquirer_record(self, batch: int, stan: int) -> object:
        with self.net.issuer.database.unit_of_work(AcquirerUnitOfWork, read_only=True) as uow:
            return uow.transactions.get(TransactionKey(TID, batch, stan))

    def available(self) -> int:
        return int(self.net.status()["deposit_available_fen"])

    def balanced(self) -> bool:
        with self.net.issuer.database.unit_of_work() as uow:
            return bool(uow.ledger.totals().balanced)


@pytest.fixture
def terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Terminal]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield Terminal(net)


def _eventually(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, "not applied at the issuer in time"
        time.sleep(0.05)


def _purchase(terminal: Terminal, amount_fen: int) -> object:
    with terminal.client() as client, terminal.card() as tap:
        result = terminal.pos(client).purchase(tap, amount_fen, pin=lambda _: PIN)
    assert result.approved and result.outcome.kind is OutcomeKind.APPROVED_ONLINE, result.outcome.reason
    assert result.entry is not None
    return result.entry


@pytest.mark.parametrize("delivery", ["next contact", "pos flush"])
def test_a_refund_advice_whose_answer_is_lost_is_delivered_later_and_credited_once(
    terminal: Terminal, delivery: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sale: Any = _purchase(terminal, 20_000)
    assert terminal.available() == 50_000 - 20_000
    with terminal.proxy() as proxy:
        proxy.mtis = frozenset({PAIR})
        proxy.answers.append(drop)  # the acquirer took the advice; its 0230 never reaches the terminal
        with terminal.client(proxy.port, timeout_s=2.0) as client:
            refund, code = client.refund(sale, 5_000)
    assert code == "00" and refund.state == "approved" and refund.kind == "refund"
    (queued,) = terminal.journal.advices()
    assert queued.kind == "advice" and queued.txn_id == refund.txn_id and queued.stan == refund.stan
    stored: Any = terminal.acquirer_record(refund.batch, refund.stan)  # persisted before it answered
    assert stored is not None and stored.kind == "refund" and stored.amount_fen == 5_000
    rrn = stored.rrn
    if delivery == "next contact":  # every online operation flushes the queue first
        with terminal.client() as client, terminal.card() as tap:
            assert terminal.pos(client).balance_inquiry(tap, pin=lambda _: PIN).approved
    else:
        capsys.readouterr()
        assert run(["pos", "flush", "--terminal", TID]) == 0, capsys.readouterr()
        out = capsys.readouterr().out
        assert f"advice of {refund.txn_id} (reason 00) answered 00" in out, out
        assert "1 sent, 0 still queued" in out, out
    assert terminal.journal.advices() == []
    (sent,) = terminal.journal.advices(pending=False)
    assert (
        sent.txn_id == refund.txn_id and sent.response_code == "00" and sent.attempts == 1
    )  # sent once from the queue
    stored = terminal.acquirer_record(refund.batch, refund.stan)
    assert stored is not None and stored.rrn == rrn  # the repeat is the same advice, not a second refund
    _eventually(lambda: terminal.available() == 50_000 - 15_000)
    time.sleep(0.5)  # the acquirer's store-and-forward has had time to repeat: still credited once
    assert terminal.available() == 50_000 - 15_000
    assert terminal.balanced()


def _mac_flipped(frame: bytes) -> bytes:
    """Field 64 (the last 8 bytes of the frame) with one bit changed."""
    return frame[:-1] + bytes([frame[-1] ^ 0x01])


def _auth_code_changed(frame: bytes) -> bytes:
    """Field 38 changed on the way, the MAC left as it was."""
    parsed, message = decode_framed(frame)
    assert message.auth_code is not None
    return encode_framed(replace(message, auth_code="999999"), parsed.tpdu, parsed.header)


@pytest.mark.parametrize("damage", [_mac_flipped, _auth_code_changed], ids=["field 64", "field 38"])
def test_an_approval_with_a_wrong_mac_is_not_believed_and_is_reversed(
    terminal: Terminal, damage: Callable[[bytes], bytes]
) -> None:
    before = terminal.available()
    with terminal.proxy() as proxy:
        proxy.answers.append(damage)
        with terminal.client(proxy.port) as client, terminal.card() as tap:
            result = terminal.pos(client).purchase(tap, 15_000, pin=lambda _: PIN)
        assert not result.approved, result.outcome
        assert result.outcome.kind not in (OutcomeKind.APPROVED_ONLINE, OutcomeKind.APPROVED_OFFLINE)
        assert result.entry is not None and result.entry.state != "approved"
        (queued,) = terminal.journal.advices()  # persisted before the outcome
        assert queued.kind == "reversal" and queued.reason == "96" and queued.txn_id == result.entry.txn_id
        assert terminal.available() == before - 15_000  # the issuer did approve and post it
    with terminal.client() as client:
        flushed = client.flush()
    assert [a.txn_id for a in flushed.answered] == [queued.txn_id] and flushed.pending == 0
    _eventually(lambda: terminal.available() == before)
    time.sleep(0.5)
    assert terminal.available() == before and terminal.balanced()


def test_pos_void_by_rrn_through_the_entry_point(
    terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    sale: Any = _purchase(terminal, 15_000)
    record = terminal.journal.online_record(txn_id=sale.txn_id)
    assert record is not None and len(record.rrn) == 12
    assert terminal.available() == 50_000 - 15_000
    capsys.readouterr()
    argv = ["pos", "void", "--card", terminal.net.pan, "--pin", PIN, "--terminal", TID]
    assert run([*argv, "--rrn", "000000000000"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --rrn/--stan: no online purchase approved here with RRN 000000000000", err
    assert terminal.available() == 50_000 - 15_000
    assert run([*argv, "--rrn", record.rrn]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "APPROVED ONLINE" in out, out
    assert terminal.available() == 50_000  # the issuer reversed the purchase
    (void,) = [e for e in terminal.journal.entries() if e.kind == "void"]
    assert void.state == "approved" and void.amount_fen == 15_000
    stored: Any = terminal.acquirer_record(void.batch, void.stan)
    assert stored is not None and stored.kind == "void" and stored.original_rrn == record.rrn
    assert void.original_txn_id == sale.txn_id  # the journal links the void to its purchase
    # A second void of the same purchase is refused by the terminal itself: the card is not asked, nothing
    # goes online (no new STAN, no new journal entry), one error line, exit 1.
    stan = terminal.journal.counter("stan")
    assert run([*argv, "--rrn", record.rrn]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"error: {sale.txn_id} is already voided ({void.txn_id}, approved): not voided twice"
    ), captured
    assert terminal.journal.counter("stan") == stan
    assert [e.txn_id for e in terminal.journal.entries() if e.kind == "void"] == [void.txn_id]
    assert terminal.available() == 50_000 and terminal.balanced()


def test_pos_flush_names_each_torn_load_whose_reversal_is_held(
    terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    """The clerk's view of a torn load waiting for its card: `pos flush` counts it held, not queued, and
    names it — the card (masked), the amount, what paid it, when it tore — with what settles it."""
    with terminal.client() as client, terminal.card() as tap:

        def gone_at_put_data(apdu: bytes) -> bytes:
            if apdu[1] == 0xDA:  # PUT DATA 9F79, after the card's TC: the card left before it
                raise OSError("card left the field")
            return tap(apdu)

        torn = terminal.pos(client).load(gone_at_put_data, 10_000, pin=lambda _: PIN, cash=True)
    assert torn.entry is not None and torn.entry.state == "torn", torn.entry
    capsys.readouterr()
    assert run(["pos", "flush", "--terminal", TID]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "0 sent, 0 still queued, 1 held for the card's load log" in out, out
    masked = torn.entry.pan_masked
    assert masked and "*" in masked and terminal.net.pan not in out, out
    assert (
        f"held: EC load of CNY 100.00 in cash to {masked}, torn {torn.entry.created:%Y-%m-%d %H:%M} "
        f"(batch {torn.entry.batch}, STAN {torn.entry.stan:06d}): settled at that card's next load here"
    ) in out, out
