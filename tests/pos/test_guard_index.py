"""The validator's guards read the journal by an index, not by scanning it: ``SqliteJournal.recent`` (the
window of a state by creation time) and what the double-tap, deny-list and torn-fare guards make of it.
The journal is the only state (no cache in memory), so a restart sees exactly what was committed: the
kill tests in ``test_pos.py`` refuse a double tap after a kill and restart; these check the index itself,
a journal written before it, a window busier than the 50 rows the guards used to read, and a double tap
after the validator is closed and opened again."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3

from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal

from tests.kernel.cardlab import NOW, TerminalClock, new_card, terminal_config


def _validator(path, clock: TerminalClock, seed: int = 17, **cfg) -> PosTerminal:
    journal = SqliteJournal(path, "BUS00042", sync_outcomes=False)
    return PosTerminal(terminal_config(**cfg), journal, clock=clock, rng=random.Random(seed).randbytes)


def _balance(pos: PosTerminal, card) -> int:
    out = pos.inquiry(card.transmit, K.EC_BALANCE, "contactless")
    assert out.kind is OutcomeKind.COMPLETED
    return out.ec_balance_fen


def _fill(journal: SqliteJournal, states_at: list[tuple[str, dt.datetime]]) -> list[str]:
    ids = []
    for state, created in states_at:
        entry = journal.begin("purchase", "contactless", 200, created, "00000000")
        journal.finish(entry.txn_id, state)  # type: ignore[arg-type]
        ids.append(entry.txn_id)
    return ids


def test_recent_is_the_window_newest_first_with_inclusive_bounds_and_filters(tmp_path):
    journal = SqliteJournal(tmp_path / "j.db", "BUS00042")
    at = [NOW + dt.timedelta(seconds=s, microseconds=m) for s, m in [(0, 0), (1, 500_000), (2, 0), (3, 0)]]
    ids = _fill(journal, [("approved", at[0]), ("approved", at[1]), ("declined", at[2]), ("approved", at[3])])
    other = journal.begin("purchase", "contact", 200, at[2], "00000000")
    journal.finish(other.txn_id, "approved")
    seen = journal.recent(("approved",), at[0], at[3], interface="contactless")
    assert [e.txn_id for e in seen] == [ids[3], ids[1], ids[0]]  # newest first, both bounds included
    assert [e.txn_id for e in journal.recent(("approved",), at[1], at[1])] == [ids[1]]  # with a fraction
    window = (NOW + dt.timedelta(seconds=1), NOW + dt.timedelta(seconds=1, microseconds=999_999))
    assert [e.txn_id for e in journal.recent(("approved",), *window)] == [ids[1]]
    both = journal.recent(("approved", "declined"), at[2])  # a tie in time: the later STAN first
    assert [e.txn_id for e in both] == [ids[3], other.txn_id, ids[2]]
    assert [e.txn_id for e in journal.recent(("approved",), limit=2)] == [ids[3], other.txn_id]
    assert journal.recent(("refund",)) == []
    assert journal.recent(("approved",), at[3] + dt.timedelta(microseconds=1)) == []


def test_recent_reads_through_the_index_not_the_table(tmp_path):
    """The plan SQLite chooses for the guards' look-ups: a search of the (state, created) index, never a
    scan of the journal (whose cost would grow with every fare of the day)."""
    journal = SqliteJournal(tmp_path / "j.db", "BUS00042")
    _fill(journal, [("approved", NOW + dt.timedelta(seconds=i)) for i in range(20)])
    statements: list[str] = []
    journal._db.set_trace_callback(statements.append)
    journal.recent(("approved", "recovered"), NOW, NOW + dt.timedelta(seconds=60), kind="purchase")
    journal.recent(("refund",), kind="purchase")
    journal._db.set_trace_callback(None)
    assert len(statements) == 2
    for sql in statements:
        plan = " / ".join(row[3] for row in journal._db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX txn_state_created" in plan, plan
        assert "SCAN txn" not in plan, plan


def test_a_journal_written_before_the_index_gets_it_on_open(tmp_path):
    path = tmp_path / "old.db"
    journal = SqliteJournal(path, "BUS00042")
    ids = _fill(journal, [("approved", NOW), ("refund", NOW + dt.timedelta(seconds=1))])
    journal.close()
    with sqlite3.connect(path) as db:  # the index of the journals written before this one
        db.execute("DROP INDEX txn_state_created")
        db.execute("CREATE INDEX txn_state ON txn (state)")
    db.close()
    again = SqliteJournal(path, "BUS00042")
    indexes = {row[1] for row in again._db.execute("PRAGMA index_list(txn)")}
    assert "txn_state_created" in indexes and "txn_state" not in indexes
    assert [e.txn_id for e in again.recent(("approved", "refund"))] == ids[::-1]
    again.close()


def test_a_double_tap_is_refused_after_the_validator_is_restarted(tmp_path):
    clock = TerminalClock()
    pos = _validator(tmp_path / "v.db", clock)
    card = new_card("contactless", balance_fen=1_000)
    first = pos.validate(card.transmit, 200)
    assert first.approved
    pos.journal.close()  # type: ignore[attr-defined]
    clock.wait(5)
    restarted = _validator(tmp_path / "v.db", clock, seed=18)
    again = restarted.validate(card.transmit, 200)
    assert not again.approved and again.entry is None and first.entry.txn_id in again.outcome.reason
    assert _balance(restarted, card) == 800


def test_a_listed_card_is_refused_before_it_pays_after_a_restart(tmp_path):
    from citycard.kernel.config import ExceptionFile

    from tests.kernel.cardlab import transact

    probe = transact(new_card("contactless", serial=3), K.PURCHASE, 200, interface="contactless")[0]
    listed = ExceptionFile(frozenset({probe.pan}), NOW, 86_400)
    clock = TerminalClock()
    pos = _validator(tmp_path / "v.db", clock, exception_file=listed)
    lost = new_card("contactless", serial=3, balance_fen=1_000)
    first = pos.validate(lost.transmit, 200)
    assert first.entry is not None and first.entry.state == "refund"
    pos.journal.close()  # type: ignore[attr-defined]
    clock.wait(3_600)
    restarted = _validator(tmp_path / "v.db", clock, seed=19, exception_file=listed)
    again = restarted.validate(lost.transmit, 200)
    assert not again.approved and again.entry is None and "exception file" in again.outcome.reason
    assert _balance(restarted, lost) == 800


def test_a_busy_window_is_looked_at_whole(tmp_path):
    """Sixty riders within the window after a card paid: the card is still recognised (the guards used to
    read only the latest 50 approvals, so a busy bus let the 51st-latest rider pay twice)."""
    clock = TerminalClock()
    pos = _validator(tmp_path / "v.db", clock, double_tap_window_s=3_600)
    card = new_card("contactless", balance_fen=1_000)
    assert pos.validate(card.transmit, 200).approved
    for serial in range(10, 70):
        clock.wait(10)
        assert pos.validate(new_card("contactless", serial=serial).transmit, 200).approved
    clock.wait(10)
    again = pos.validate(card.transmit, 200)
    assert not again.approved and "double tap" in again.outcome.reason and again.entry is None
    assert _balance(pos, card) == 800
