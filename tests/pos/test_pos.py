"""The terminal application: journal, torn transactions, receipts, upload queue and exports, validator,
and a journal that survives a kill at every durable step."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from citycard.chip.card import Card
from citycard.chip.image import CardImage
from citycard.codec.money import format_amount
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K
from citycard.pos.receipt import render_receipt
from citycard.pos.terminal import PosTerminal, pan_token
from citycard.sqlite_journal import JournalError, SqliteJournal

from tests.kernel.cardlab import NOW, PIN, demo_keys, issuer_stub, new_card, terminal_config

ROOT = Path(__file__).resolve().parents[2]


def _pos(tmp_path, name="journal.db", **cfg) -> PosTerminal:
    rnd = random.Random(11)
    return PosTerminal(
        terminal_config(**cfg),
        SqliteJournal(tmp_path / name, "CITY0001"),
        clock=lambda: NOW,
        rng=rnd.randbytes,
    )


def _balance(pos: PosTerminal, card) -> int:
    out = pos.inquiry(card.transmit, K.EC_BALANCE, card.interface)
    assert out.kind is OutcomeKind.COMPLETED
    return out.ec_balance_fen


def test_offline_purchase_is_journaled_receipted_and_exported(tmp_path):
    pos = _pos(tmp_path)
    card = new_card("contact", balance_fen=10_000)
    result = pos.purchase(card.transmit, 1_250)
    entry = result.entry
    assert result.approved and entry is not None and entry.state == "approved"
    assert (entry.stan, entry.batch) == (1, 1) and entry.cryptogram == result.outcome.cryptogram.hex().upper()
    assert entry.field55 and entry.ec_balance_fen == 8_750 and "*" in entry.pan_masked
    receipt = render_receipt(pos.config, result.outcome, entry, amount_fen=1_250)
    assert "CNY 12.50" in receipt and "EC BALANCE" in receipt and "CNY 87.50" in receipt
    assert result.outcome.pan not in receipt and entry.pan_masked in receipt
    files = pos.journal.export(tmp_path / "out")
    assert len(files) == 1
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [r["txn_id"] for r in rows] == [entry.txn_id] and rows[0]["field55"] == entry.field55
    assert pos.journal.export(tmp_path / "out") == []  # nothing twice
    second = pos.purchase(card.transmit, 100)
    assert second.entry.stan == 2


def test_online_purchase_declined_and_void(tmp_path):
    pos = _pos(tmp_path)
    card = new_card("contact", balance_fen=0)
    approved = pos.purchase(card.transmit, 5_000, online=issuer_stub().authorize, pin=lambda r: PIN)
    assert approved.outcome.kind is OutcomeKind.APPROVED_ONLINE and approved.entry.state == "approved"
    declined = pos.purchase(new_card("contact", balance_fen=0).transmit, 5_000, pin=lambda r: PIN)
    assert declined.entry.state == "declined"
    assert pos.journal.upload_queue() == []  # online approvals are not batch-uploaded


def test_validator_fare_and_deny_list(tmp_path):
    pos = _pos(tmp_path)
    card = new_card("contactless", balance_fen=1_000)
    result = pos.validate(card.transmit, 200)
    assert result.outcome.kind is OutcomeKind.APPROVED_OFFLINE and result.entry.state == "approved"
    assert _balance(pos, card) == 800
    from citycard.kernel.config import ExceptionFile

    denied = _pos(tmp_path, "j2.db", exception_file=ExceptionFile(frozenset({result.outcome.pan}), NOW, 60))
    lost = new_card("contactless", balance_fen=1_000)
    again = denied.validate(lost.transmit, 200)
    assert not again.approved and "exception file" in again.outcome.reason
    # qPBOC: the card debited itself in the GPO before the terminal saw the PAN on the deny list. The fare
    # is refused, but the card's TC goes up for the issuer to refund it; nothing is silently lost.
    assert _balance(denied, lost) == 800
    assert again.entry.state == "refund" and again.entry.cryptogram
    assert [e.txn_id for e in denied.journal.upload_queue()] == [again.entry.txn_id]


@pytest.mark.parametrize("sync_outcomes", [True, False])
def test_a_validator_journal_makes_one_durable_commit_per_tap(tmp_path, sync_outcomes):
    """A validator's journal fsyncs the pending row only; its outcome is durable by the next tap's pending
    row and at close, so after closing every outcome is there (docs/performance.md "transit")."""
    rnd = random.Random(8)
    clock = [NOW]
    journal = SqliteJournal(tmp_path / "v.db", "BUS00001", sync_outcomes=sync_outcomes)
    pos = PosTerminal(terminal_config(), journal, clock=lambda: clock[0], rng=rnd.randbytes)
    for _ in range(3):
        clock[0] += dt.timedelta(minutes=5)
        before = journal.durable_commits
        assert pos.validate(new_card("contactless", balance_fen=1_000).transmit, 200).approved
        assert journal.durable_commits - before == (2 if sync_outcomes else 1)
    journal.close()
    again = SqliteJournal(tmp_path / "v.db", "BUS00001")
    assert again.recovered_on_open == 0
    assert [e.state for e in again.entries()] == ["approved"] * 3
    again.close()


def _pull_after(card, ins: int, *, processed: bool):
    """The card leaves the field at the first command ``ins``: after processing it or before."""
    inner = card.transmit
    state = {"pulled": False}

    def transmit(apdu: bytes) -> bytes:
        if apdu[1] == ins and not state["pulled"]:
            state["pulled"] = True
            if processed:
                inner(apdu)
            raise OSError("card left the field")
        return inner(apdu)

    return transmit


def test_torn_fare_recovered_on_next_tap_never_charged_twice(tmp_path):
    pos = _pos(tmp_path)
    card = new_card("contactless", balance_fen=1_000)
    first = pos.validate(_pull_after(card, 0xA8, processed=True), 200)
    assert first.outcome.kind is OutcomeKind.TERMINATED and first.entry.state == "torn"
    assert _balance(pos, card) == 800  # the card did pay
    card.power_on("contactless")
    second = pos.validate(card.transmit, 200)
    assert second.approved and "already paid" in second.outcome.reason
    assert [e.state for e in second.recovered] == ["recovered"] and second.recovered[0].atc is not None
    assert _balance(pos, card) == 800  # not charged twice
    assert [e.txn_id for e in pos.journal.upload_queue()] == [first.entry.txn_id]
    third = pos.validate(card.transmit, 200)  # within the double-tap window: refused, not charged
    assert not third.approved and "double tap" in third.outcome.reason and _balance(pos, card) == 800
    pos.clock = lambda: NOW + dt.timedelta(seconds=61)
    fourth = pos.validate(card.transmit, 200)  # a later, new fare is charged normally
    assert fourth.entry.state == "approved" and _balance(pos, card) == 600


def test_torn_before_the_card_processed_is_not_recovered(tmp_path):
    pos = _pos(tmp_path)
    card = new_card("contactless", balance_fen=1_000)
    first = pos.validate(_pull_after(card, 0xA8, processed=False), 200)
    assert first.entry.state == "torn" and _balance(pos, card) == 1_000
    card.power_on("contactless")
    second = pos.validate(card.transmit, 200)
    assert second.outcome.kind is OutcomeKind.APPROVED_OFFLINE and not second.recovered
    assert _balance(pos, card) == 800  # charged exactly once
    assert pos.journal.get(first.entry.txn_id).state == "torn"


def test_ec_load_with_issuer_stub(tmp_path):
    pos = _pos(tmp_path)
    card = new_card("contact", balance_fen=500)
    result = pos.load(card.transmit, 10_000, online=issuer_stub().authorize, pin=lambda r: PIN)
    assert result.outcome.kind is OutcomeKind.APPROVED_ONLINE, result.outcome.reason
    assert _balance(pos, card) == 10_500 and result.outcome.ec_balance_fen == 10_500


def test_journal_refuses_bad_transitions(tmp_path):
    journal = SqliteJournal(tmp_path / "j.db", "T1")
    e = journal.begin("purchase", "contact", 1, NOW, "00")
    journal.finish(e.txn_id, "approved", cryptogram="AA")
    assert journal.finish(e.txn_id, "approved").cryptogram == "AA"  # replay: recorded once
    with pytest.raises(JournalError):
        journal.finish(e.txn_id, "declined")
    with pytest.raises(JournalError):
        journal.finish("nope", "approved")


def test_a_full_disk_under_the_journal_is_a_file_system_error(tmp_path):
    """SQLite's "database or disk is full" when the terminal records an outcome is the file system refusing
    (an ``OSError`` naming the journal: the command's one ``error:`` line, exit 1), never a crash; nothing
    half-written: the row keeps its state before."""
    journal = SqliteJournal(tmp_path / "j.db", "T1")
    e = journal.begin("purchase", "contact", 1, NOW, "00")
    pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
    journal._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from here on
    with pytest.raises(OSError, match="database or disk is full") as caught:
        for _ in range(200):
            journal.finish(e.txn_id, "approved", cryptogram="AB" * 2000)
    assert caught.value.filename == str(tmp_path / "j.db")
    assert journal.get(e.txn_id).state == "pending"


def test_stan_wraps_and_batches(tmp_path):
    journal = SqliteJournal(tmp_path / "j.db", "T1")
    journal._db.execute("INSERT OR REPLACE INTO counters VALUES ('stan', 999999)")
    assert journal.begin("purchase", "contact", 1, NOW, "").stan == 1
    assert journal.close_batch() == 2 and journal.begin("purchase", "contact", 1, NOW, "").batch == 2


def test_format_amount_exact():
    assert format_amount(1250) == "12.50" and format_amount(5) == "0.05" and format_amount(-100) == "-1.00"


# -- crash safety: a real kill at every durable step -----------------------------------------------------

POINTS = ["begin:before-commit", "begin:after-commit", "finish:before-commit", "finish:after-commit"]


def _child(*args: str, sync_outcomes: bool = True) -> subprocess.CompletedProcess[str]:
    sync = "1" if sync_outcomes else "0"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CITYCARD_TEST_SYNC_OUTCOMES": sync}
    return subprocess.run(
        [sys.executable, str(ROOT / "tests" / "pos" / "killrun.py"), *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def world(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_bytes(demo_keys().to_json())
    image = tmp_path / "card.json"
    image.write_bytes(new_card("contactless", balance_fen=1_000).image.to_json())
    return keys, image, tmp_path / "journal.db"


def _reopen(keys, image, db):
    card = Card(CardImage.from_json(image.read_bytes()), random.Random(3).randbytes)
    card.power_on("contactless")
    rnd = random.Random(12)
    pos = PosTerminal(
        terminal_config(), SqliteJournal(db, "CITY0001"), clock=lambda: NOW + dt.timedelta(seconds=5),
        rng=rnd.randbytes,
    )  # fmt: skip
    return pos, card


@pytest.mark.parametrize("sync_outcomes", [True, False], ids=["two-fsyncs", "validator-one-fsync"])
@pytest.mark.parametrize("point", POINTS)
def test_journal_survives_a_kill_at_each_step(world, point, sync_outcomes):
    """The same at every step whether the outcome is fsynced (every terminal) or left to the next durable
    commit (a validator's journal, one fsync per tap): a killed process loses no committed row."""
    keys, image, db = world
    child = _child(str(keys), str(image), str(db), point, "200", sync_outcomes=sync_outcomes)
    assert child.returncode == 137, child.stderr
    pos, card = _reopen(keys, image, db)
    rows = pos.journal.entries()
    charged = 1_000 - _balance(pos, card)
    if point == "begin:before-commit":
        assert rows == [] and charged == 0
    elif point == "begin:after-commit":  # killed before the GPO was sent: torn, card not charged
        assert [r.state for r in rows] == ["torn"] and charged == 0
    elif point == "finish:before-commit":  # the card paid, the approval was not yet durable
        assert [r.state for r in rows] == ["torn"] and charged == 200
    else:
        assert [r.state for r in rows] == ["approved"] and charged == 200
    # the passenger taps again: whatever happened, the fare is paid exactly once
    result = pos.validate(card.transmit, 200)
    if point == "finish:after-commit":  # that first fare had completed: 5 s later this is a double tap
        assert not result.approved and "double tap" in result.outcome.reason and result.entry is None
    else:
        assert result.approved
    assert 1_000 - _balance(pos, card) == 200
    paid = [e for e in pos.journal.entries() if e.state in ("approved", "recovered")]
    assert len(paid) == 1
    queued = pos.journal.upload_queue()
    assert len({e.txn_id for e in queued}) == len(queued) == len(paid)


@pytest.mark.parametrize("sync_outcomes", [True, False], ids=["two-fsyncs", "validator-one-fsync"])
@pytest.mark.parametrize("point", ["finish:before-commit", "finish:after-commit"])
def test_a_kill_while_recovering_a_torn_fare(world, point, sync_outcomes):
    """Killed at the approval (the card paid; torn on restart), then killed again while the next tap resolves
    that torn fare from the card's log. Before the recovery commit: the torn fare is resolved again on the
    third tap, which opens the gate without a charge. After it: the fare is durably recorded as paid, so the
    third tap, 5 s later, is a double tap refused without a charge — the same rule as a kill just after a
    durable approval (docs/terminal.md)."""
    keys, image, db = world
    first = _child(str(keys), str(image), str(db), "finish:before-commit", "200", sync_outcomes=sync_outcomes)
    assert first.returncode == 137
    second = _child(str(keys), str(image), str(db), point, "200", sync_outcomes=sync_outcomes)
    assert second.returncode == 137, second.stderr
    pos, card = _reopen(keys, image, db)
    committed = point == "finish:after-commit"
    assert [r.state for r in pos.journal.entries()] == ["recovered" if committed else "torn"]
    assert 1_000 - _balance(pos, card) == 200  # the second tap charged nothing
    result = pos.validate(card.transmit, 200)
    if committed:  # the fare is durably paid, 5 s ago: a double tap, refused without a charge
        assert not result.approved and "double tap" in result.outcome.reason
    else:
        assert result.approved and "already paid" in result.outcome.reason
    assert 1_000 - _balance(pos, card) == 200
    states = sorted(e.state for e in pos.journal.entries())
    assert states == ["recovered"]
    assert len(pos.journal.upload_queue()) == len(states)  # each paid fare uploaded once


@pytest.mark.parametrize("point", ["export:before-commit", "export:assigned", "export:file-written"])
def test_export_survives_a_kill(world, tmp_path, point):
    keys, image, db = world
    assert _child(str(keys), str(image), str(db), "none", "200").returncode == 0
    out = tmp_path / "exports"
    assert _child(str(keys), str(image), str(db), point, "0", str(out)).returncode == 137
    pos, _ = _reopen(keys, image, db)
    pos.journal.export(out)
    pos.journal.export(out)
    lines = [line for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert len(lines) == 1 and not list(out.glob("*.tmp"))


def test_pan_sealed_at_rest_and_in_the_export(tmp_path):
    from citycard.pos.sealing import SealError, unseal_pan

    key = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    rnd = random.Random(4)
    pos = PosTerminal(
        terminal_config(), SqliteJournal(tmp_path / "j.db", "CITY0001"), clock=lambda: NOW, rng=rnd.randbytes,
        data_key=key,
    )  # fmt: skip
    result = pos.purchase(new_card("contact", balance_fen=1_000).transmit, 100)
    pan = result.outcome.pan
    (row,) = [
        json.loads(line) for f in pos.journal.export(tmp_path / "out") for line in f.read_text().splitlines()
    ]
    assert unseal_pan(key, bytes.fromhex(row["pan_sealed"])) == pan
    assert row["psn"] == "01" and len(row["expiry"]) == 4 and row["pan_token"] == ""
    pos.journal.close()
    for path in [tmp_path / "j.db", *tmp_path.glob("j.db-*"), *(tmp_path / "out").iterdir()]:
        assert pan.encode() not in path.read_bytes(), path
    with pytest.raises(SealError):
        unseal_pan(bytes(16), bytes.fromhex(row["pan_sealed"]))


def test_torn_fare_recovered_much_later_does_not_make_a_free_ride(tmp_path):
    clock = {"now": NOW}
    rnd = random.Random(13)
    pos = PosTerminal(
        terminal_config(),
        SqliteJournal(tmp_path / "j.db", "BUS1"),
        clock=lambda: clock["now"],
        rng=rnd.randbytes,
    )
    card = new_card("contactless", balance_fen=1_000)
    first = pos.validate(_pull_after(card, 0xA8, processed=True), 200)
    assert first.entry.state == "torn"
    clock["now"] = NOW + dt.timedelta(minutes=30)  # a new trip, not a re-tap
    card.power_on("contactless")
    later = pos.validate(card.transmit, 200)
    assert [e.state for e in later.recovered] == ["recovered"]
    assert later.entry.state == "approved" and later.entry.txn_id != first.entry.txn_id
    assert _balance(pos, card) == 600  # two trips, two fares, each charged once


def test_pos_retry_after_a_torn_contact_purchase_is_not_charged_twice(tmp_path):
    pos = _pos(tmp_path)
    card = new_card("contact", balance_fen=5_000)
    first = pos.purchase(_pull_after(card, 0xAE, processed=True), 1_250)
    assert first.entry.state == "torn" and _balance(pos, card) == 3_750
    card.power_on("contact")
    retry = pos.purchase(card.transmit, 1_250)
    assert retry.approved and "already paid" in retry.outcome.reason
    assert _balance(pos, card) == 3_750
    other = pos.purchase(card.transmit, 300)  # a different sale is a new one
    assert other.entry.state == "approved" and _balance(pos, card) == 3_450


# -- torn transactions are matched on the card and on their own kind --------------------------------------


def test_card_b_does_not_ride_free_on_card_a_torn_fare(tmp_path):
    """Card A's fare tears in the GPO (the validator never learns which card it was); card B pays the same
    fare in the same second. Card B's record at that date, time and amount is its own fare: tapping again,
    card B pays again, and card A's torn fare stays open until card A comes back."""
    pos = _pos(tmp_path)
    card_a = new_card("contactless", balance_fen=1_000)
    card_b = new_card("contactless", balance_fen=1_000)
    torn = pos.validate(_pull_after(card_a, 0xA8, processed=True), 200)
    assert torn.entry.state == "torn" and torn.entry.pan_token == ""
    first_b = pos.validate(card_b.transmit, 200)
    assert first_b.entry.state == "approved" and not first_b.recovered
    pos.clock = lambda: NOW + dt.timedelta(seconds=61)  # past the double-tap window: a new trip
    again_b = pos.validate(card_b.transmit, 200)
    assert again_b.entry is not None and again_b.entry.state == "approved" and not again_b.recovered
    assert "already paid" not in again_b.outcome.reason and _balance(pos, card_b) == 600
    assert pos.journal.get(torn.entry.txn_id).state == "torn"
    card_a.power_on("contactless")
    back_a = pos.validate(card_a.transmit, 200)
    assert "already paid" in back_a.outcome.reason and _balance(pos, card_a) == 800
    assert [e.txn_id for e in back_a.recovered] == [torn.entry.txn_id]
    pan_a = card_a.image.applications[0].data["5A"].hex().upper().rstrip("F")
    assert back_a.recovered[0].pan_token == pan_token(pan_a, "01")  # now bound to card A


def test_another_card_does_not_clear_a_torn_contact_purchase(tmp_path):
    """A contact purchase tears after the first GENERATE AC: the terminal had read card A's PAN and PSN. Card
    B buys the same amount in the same second and then again: both sales are charged; only card A
    recovers its torn sale."""
    pos = _pos(tmp_path)
    card_a = new_card("contact", balance_fen=5_000)
    card_b = new_card("contact", balance_fen=5_000)
    torn = pos.purchase(_pull_after(card_a, 0xAE, processed=True), 1_250)
    assert torn.entry.state == "torn" and torn.entry.pan_token
    for expected in (3_750, 2_500):
        sale = pos.purchase(card_b.transmit, 1_250)
        assert sale.entry.state == "approved" and not sale.recovered and _balance(pos, card_b) == expected
    assert pos.journal.get(torn.entry.txn_id).state == "torn"
    card_a.power_on("contact")
    retry = pos.purchase(card_a.transmit, 1_250)
    assert "already paid" in retry.outcome.reason and _balance(pos, card_a) == 3_750
    assert retry.recovered[0].pan_token == torn.entry.pan_token


def _load_torn_at(tmp_path, ins: int, *, processed: bool):
    """An EC load of CNY 20.00 on a card holding CNY 5.00, torn at the last command ``ins`` (the issuer
    script's PUT DATA 9F79 comes before the second GENERATE AC)."""
    pos = _pos(tmp_path)
    card = new_card("contact", balance_fen=500)
    calls = {"n": 0}
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        if apdu[1] == ins:
            calls["n"] += 1
            if ins != 0xAE or calls["n"] == 2:
                if processed:
                    inner(apdu)
                raise OSError("card left the field")
        return inner(apdu)

    torn = pos.load(transmit, 2_000, online=issuer_stub().authorize, pin=lambda r: PIN)
    assert torn.entry.state == "torn" and torn.entry.kind == "ec_load"
    card.power_on("contact")
    return pos, card, torn


def test_ec_load_torn_after_second_generate_ac_is_not_taken_as_a_purchase(tmp_path):
    pos, card, torn = _load_torn_at(tmp_path, 0xAE, processed=True)
    assert _balance(pos, card) == 2_500  # the card took the load (and logged its TC, 9C = 60)
    sale = pos.purchase(card.transmit, 2_000)
    assert "already paid" not in sale.outcome.reason and sale.entry.state == "approved" and not sale.recovered
    assert _balance(pos, card) == 500 and pos.journal.get(torn.entry.txn_id).state == "torn"
    card.power_on("contact")
    retry = pos.load(card.transmit, 2_000, online=issuer_stub().authorize, pin=lambda r: PIN)
    assert "already loaded" in retry.outcome.reason
    assert [e.txn_id for e in retry.recovered] == [torn.entry.txn_id] and _balance(pos, card) == 500


def test_torn_load_the_card_did_not_take_is_loaded_again(tmp_path):
    pos, card, torn = _load_torn_at(tmp_path, 0xDA, processed=False)
    assert _balance(pos, card) == 500
    retry = pos.load(card.transmit, 2_000, online=issuer_stub().authorize, pin=lambda r: PIN)
    assert retry.entry.state == "approved" and not retry.recovered and _balance(pos, card) == 2_500
    assert pos.journal.get(torn.entry.txn_id).state == "torn"


class _Stopped(BaseException):
    """The terminal process stops (power cut) at a journal step."""


def test_a_contact_sale_cut_off_mid_journal_still_names_its_card(tmp_path):
    """The terminal stops after GENERATE AC, before the outcome is recorded: the ``pending`` row becomes
    ``torn`` on restart and already holds the card's PAN token and PSN (read before the debit), so only
    that card can resolve it."""

    def stop(point: str) -> None:
        if point == "finish:before-commit":
            raise _Stopped(point)

    rnd = random.Random(21)
    pos = PosTerminal(
        terminal_config(), SqliteJournal(tmp_path / "j.db", "CITY0001", fault=stop), clock=lambda: NOW,
        rng=rnd.randbytes, data_key=bytes(range(16)),
    )  # fmt: skip
    card_a = new_card("contact", balance_fen=5_000)
    with pytest.raises(_Stopped):
        pos.purchase(card_a.transmit, 1_250)
    pos.journal.close()
    pos = _pos(tmp_path, "j.db")
    (torn,) = pos.journal.entries()
    pan_a = card_a.image.applications[0].data["5A"].hex().upper().rstrip("F")
    assert torn.state == "torn" and torn.pan_token == pan_token(pan_a, "01") and torn.psn == "01"
    assert torn.pan_masked == f"{pan_a[:6]}******{pan_a[-4:]}" and torn.pan_sealed
    card_b = new_card("contact", balance_fen=5_000)
    assert not pos.purchase(card_b.transmit, 1_250).recovered
    card_a.power_on("contact")
    retry = pos.purchase(card_a.transmit, 1_250)
    assert "already paid" in retry.outcome.reason and _balance(pos, card_a) == 3_750


@pytest.mark.parametrize(
    ("kind", "code", "line"),
    [
        (OutcomeKind.DECLINED_ONLINE, b"58", "(declined online (58): transaction not permitted to terminal)"),
        (OutcomeKind.DECLINED_ONLINE, b"91", "(declined online (91): issuer or switch inoperative)"),
        (OutcomeKind.DECLINED_ONLINE, b"X9", "(declined online (X9))"),  # not one of the profile's codes
        (OutcomeKind.DECLINED_OFFLINE, b"Z3", "(declined online (Z3))"),  # 8A of the terminal's own, offline
    ],
)
def test_a_receipt_of_a_decline_online_says_what_its_response_code_means(kind, code, line):
    from citycard.kernel.events import Outcome

    outcome = Outcome(kind=kind, reason=f"declined online ({code.decode()})", data={"8A": code})
    receipt = render_receipt(terminal_config(), outcome, None, amount_fen=100)
    assert line in receipt.splitlines()


def test_a_purchases_follow_ups_are_found_by_index_in_new_and_older_journals(tmp_path):
    """``follow_ups_of`` (voids and refunds of a purchase, read before each void or refund) searches a
    partial index rather than the whole journal, in a new journal and in one written before
    ``original_txn_id`` existed (the column and the index are added when it is opened)."""
    import sqlite3
    from contextlib import closing

    old = tmp_path / "old.db"
    SqliteJournal(old, "T0000001").close()
    with closing(sqlite3.connect(old)) as db:  # as a journal written before the column
        db.execute("DROP INDEX IF EXISTS txn_follow_ups")
        db.execute("ALTER TABLE txn DROP COLUMN original_txn_id")
    for path in (tmp_path / "new.db", old):
        journal = SqliteJournal(path, "T0000001")
        statements: list[str] = []
        journal._db.set_trace_callback(statements.append)
        assert journal.follow_ups_of("T0000001-000001-000001") == []
        journal._db.set_trace_callback(None)
        (select,) = [s for s in statements if s.startswith("SELECT")]
        plan = " ".join(str(row[3]) for row in journal._db.execute("EXPLAIN QUERY PLAN " + select))
        assert "USING INDEX txn_follow_ups" in plan, (path.name, plan)
        journal.close()


def _written_before(tmp_path, table: str, column: str, write):
    """A journal at ``tmp_path/old.db`` written by ``write`` and then stripped of ``table.column``, as one
    written before the column existed; its path and what ``write`` returned."""
    import sqlite3
    from contextlib import closing

    old = tmp_path / "old.db"
    journal = SqliteJournal(old, "T0000001")
    written = write(journal)
    journal.close()
    with closing(sqlite3.connect(old)) as db:
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    return old, written


def test_a_loads_funding_is_journaled_in_new_and_older_journals(tmp_path):
    """What paid an EC load (``funding``: a reversed cash load's cash goes back to the holder) is kept with
    its entry; a journal written before the column gets it when opened, its earlier rows without one."""
    old, earlier = _written_before(
        tmp_path, "txn", "funding", lambda j: j.begin("ec_load", "contact", 5_000, NOW, "")
    )
    for path in (tmp_path / "new.db", old):
        journal = SqliteJournal(path, "T0000001")
        if path == old:
            assert journal.get(earlier.txn_id).funding == ""
        cash = journal.begin("ec_load", "contact", 10_000, NOW, "", funding="cash")
        assert journal.finish(cash.txn_id, "torn").funding == "cash"
        assert journal.get(cash.txn_id).funding == "cash"
        journal.close()


def test_a_held_reversal_is_not_sent_until_released_or_dropped_in_new_and_older_journals(tmp_path):
    """The journal's store-and-forward queue holds a message (``hold``: an EC load torn after the card's
    TC) apart from the pending ones until the terminal releases it (sent in its place) or drops it (kept,
    never sent); a journal written before the column gets it when it is opened, its rows not held."""
    from citycard.sqlite_journal import DROPPED, HELD

    old, _ = _written_before(
        tmp_path, "saf", "hold", lambda j: j.queue_advice("T-1", "reversal", 7, "06", "0400AA", "SEALED", NOW)
    )
    for path in (tmp_path / "new.db", old):
        journal = SqliteJournal(path, "T0000001")
        if path == old:
            assert [(a.txn_id, a.hold) for a in journal.advices()] == [("T-1", "")]
        journal.queue_advice("T-2", "reversal", 8, "06", "0400BB", "SEALED", NOW, hold=HELD)
        journal.queue_advice("T-3", "reversal", 9, "06", "0400CC", "SEALED", NOW, hold=HELD)
        pending = [a.txn_id for a in journal.advices()]
        assert "T-2" not in pending and "T-3" not in pending
        held = journal.advice_for("T-2", "reversal")
        assert held is not None and held.hold == HELD and journal.advice_for("T-2", "advice") is None
        assert journal.release_advice("T-2", "reversal") and not journal.release_advice("T-2", "reversal")
        assert journal.drop_advice("T-3", "reversal") and not journal.release_advice("T-3", "reversal")
        assert [a.txn_id for a in journal.advices()][-1] == "T-2"
        assert "T-3" not in [a.txn_id for a in journal.advices()]
        every = {a.txn_id: a.hold for a in journal.advices(pending=False)}
        assert every["T-2"] == "" and every["T-3"] == DROPPED and HELD not in every.values()
        journal.close()
