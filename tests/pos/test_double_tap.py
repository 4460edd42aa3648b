"""The validator's double-tap guard: a card that paid a fare at this validator within
``double_tap_window_s`` is refused without a new charge. Before the GPO (which debits a qPBOC card) the card
is recognised by its own transaction log; a card whose log cannot be read is recognised after the GPO by
its PAN token and that second fare is journaled ``refund`` so the issuer gives it back."""

from __future__ import annotations

import random

import pytest

from citycard.kernel.config import ConfigError, parse_config
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal

from tests.kernel.cardlab import NOW, TerminalClock, new_card, terminal_config


def _validator(tmp_path, clock: TerminalClock, **cfg) -> PosTerminal:
    rnd = random.Random(17)
    journal = SqliteJournal(tmp_path / "validator.db", "BUS00042")
    return PosTerminal(terminal_config(**cfg), journal, clock=clock, rng=rnd.randbytes)


def _balance(pos: PosTerminal, card) -> int:
    out = pos.inquiry(card.transmit, K.EC_BALANCE, "contactless")
    assert out.kind is OutcomeKind.COMPLETED
    return out.ec_balance_fen


def _no_log(card):
    """A card whose transaction log cannot be read (GET DATA 9F4F refused): recognised only after the GPO."""
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        if apdu[:4] == bytes.fromhex("80CA9F4F"):
            return bytes.fromhex("6A88")
        return inner(apdu)

    card.transmit = transmit
    return card


def test_three_taps_two_seconds_apart_charge_one_fare(tmp_path):
    clock = TerminalClock()
    pos = _validator(tmp_path, clock)
    card = new_card("contactless", balance_fen=1_000)
    taps = []
    for _ in range(3):
        taps.append(pos.validate(card.transmit, 200))
        clock.wait(2)
    assert taps[0].approved and taps[0].entry.state == "approved"
    for tap in taps[1:]:
        assert tap.outcome.kind is OutcomeKind.DECLINED_OFFLINE and tap.entry is None
        assert "double tap" in tap.outcome.reason and taps[0].entry.txn_id in tap.outcome.reason
    assert _balance(pos, card) == 800  # charged once: the card was never asked to pay again
    assert [e.state for e in pos.journal.entries()] == ["approved"]
    assert [e.txn_id for e in pos.journal.upload_queue()] == [taps[0].entry.txn_id]


def test_after_the_window_and_for_another_card_the_fare_is_charged(tmp_path):
    clock = TerminalClock()
    pos = _validator(tmp_path, clock, double_tap_window_s=30)
    card, other = new_card("contactless", balance_fen=1_000), new_card("contactless", serial=2)
    assert pos.validate(card.transmit, 200).approved
    clock.wait(1)
    assert pos.validate(other.transmit, 200).approved  # the next rider, a second later
    clock.wait(28)
    assert "double tap" in pos.validate(card.transmit, 200).outcome.reason  # 29 s: inside 30 s
    clock.wait(2)
    assert pos.validate(card.transmit, 200).entry.state == "approved"  # 31 s: a new trip
    assert _balance(pos, card) == 600


def test_the_guard_can_be_switched_off(tmp_path):
    clock = TerminalClock()
    pos = _validator(tmp_path, clock, double_tap_window_s=0)
    card = new_card("contactless", balance_fen=1_000)
    for _ in range(3):
        assert pos.validate(card.transmit, 200).approved
        clock.wait(2)
    assert _balance(pos, card) == 400


def test_a_card_without_a_readable_log_is_refunded_on_the_second_tap(tmp_path):
    clock = TerminalClock()
    pos = _validator(tmp_path, clock)
    card = _no_log(new_card("contactless", balance_fen=1_000))
    first = pos.validate(card.transmit, 200)
    clock.wait(2)
    second = pos.validate(card.transmit, 200)
    assert first.approved and not second.approved and "double tap" in second.outcome.reason
    assert second.outcome.cid == 0x40  # the card paid in its GPO before it could be recognised
    assert second.entry is not None and second.entry.state == "refund" and second.entry.cryptogram
    assert _balance(pos, card) == 600
    queued = {e.txn_id: e.state for e in pos.journal.upload_queue()}
    assert queued == {first.entry.txn_id: "approved", second.entry.txn_id: "refund"}  # the issuer refunds


def test_window_from_the_terminal_configuration():
    assert parse_config("").double_tap_window_s == 60
    assert parse_config("[validator]\ndouble_tap_window_s = 90\n").double_tap_window_s == 90
    for text, words in [
        ("[validator]\ndouble_tap_window_s = 3601\n", "at most 3600"),
        ("[validator]\ndouble_tap_window_s = -1\n", "non-negative"),
        ('[validator]\ndouble_tap_window_s = "60"\n', "non-negative"),
        ("validator = 5\n", "[validator]"),
    ]:
        with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse_config(text)


def test_a_listed_card_pays_once_refunded_then_is_refused_before_it_pays(tmp_path):
    from citycard.kernel.config import ExceptionFile

    from tests.kernel.cardlab import transact

    probe = transact(new_card("contactless", serial=3), K.PURCHASE, 200, interface="contactless")[0]
    clock = TerminalClock()
    pos = _validator(tmp_path, clock, exception_file=ExceptionFile(frozenset({probe.pan}), NOW, 86_400))
    lost = new_card("contactless", serial=3, balance_fen=1_000)
    first = pos.validate(lost.transmit, 200)  # qPBOC: the PAN comes with the GPO, after the debit
    assert not first.approved and first.entry.state == "refund" and _balance(pos, lost) == 800
    for wait_s in (2, 600):  # inside and far outside the double-tap window
        clock.wait(wait_s)
        again = pos.validate(lost.transmit, 200)
        assert not again.approved and again.entry is None and "exception file" in again.outcome.reason
        assert first.entry.txn_id in again.outcome.reason
    assert _balance(pos, lost) == 800  # never asked to pay again
    assert [e.txn_id for e in pos.journal.upload_queue()] == [first.entry.txn_id]
    other = new_card("contactless", serial=4, balance_fen=1_000)
    assert pos.validate(other.transmit, 200).approved  # other riders are not affected
