"""A rider's day over the real emulated card and the real validator (kernel, journal): flat fare, a
transfer discount, a distance ride tapped in and out, a double tap, a missing tap-out charged the maximum
fare, the daily cap, a concession; bad records on the card are refused with the card unchanged."""

from __future__ import annotations

import datetime as dt
import random

from citycard.chip.image import cell_key
from citycard.chip.pboc import AID_DEBIT
from citycard.hsm.api import KeyUsage
from citycard.hsm.soft import SoftHsm
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal
from citycard.transit import Category, Concession, FareHook, Tap, TripRecord, TripSealer, TripStatus
from citycard.transit.record import card_identity

from tests.kernel.cardlab import NOW, new_card, terminal_config

TRANSIT = cell_key(AID_DEBIT, "transit")


class Bus:
    """Validators on the lines, one clock, the same card carried from bus to bus."""

    def __init__(self, tmp_path, network, card, sealer) -> None:
        self.network, self.card, self.now = network, card, NOW.replace(hour=7)
        self.sealer = sealer
        self.validators: dict[str, PosTerminal] = {}
        self.tmp_path = tmp_path

    def validator(self, terminal_id: str) -> PosTerminal:
        if terminal_id not in self.validators:
            journal = SqliteJournal(self.tmp_path / f"{terminal_id}.db", terminal_id)
            config = terminal_config(terminal_id=terminal_id.encode())
            rng = random.Random(terminal_id).randbytes
            self.validators[terminal_id] = PosTerminal(config, journal, clock=lambda: self.now, rng=rng)
        return self.validators[terminal_id]

    def tap(self, terminal_id: str, line: int, stop: int = 0, *, out: bool = False, after_min: float = 0):
        self.now += dt.timedelta(minutes=after_min)
        hook = FareHook(self.network, Tap(self.now, line, stop, out, terminal_id), self.sealer)
        result = self.validator(terminal_id).validate(self.card.transmit, 0, extension=hook)
        return result, hook

    def balance(self) -> int:
        pos = next(iter(self.validators.values()))
        out = pos.inquiry(self.card.transmit, K.EC_BALANCE, "contactless")
        assert out.kind is OutcomeKind.COMPLETED
        return out.ec_balance_fen

    def trip(self) -> TripRecord:
        return TripRecord.decode(bytes.fromhex(self.card.image.nvm[TRANSIT][1])[:32])


def test_a_riders_day(tmp_path, network, sealer):
    card = new_card("contactless", balance_fen=5_000, transit=True)
    bus = Bus(tmp_path, network, card, sealer)

    first, hook = bus.tap("BUS00101", 1)  # line 1, flat CNY 2.00
    assert first.approved and first.entry.amount_fen == 200 and first.entry.kind == "purchase"
    assert hook.fare.reason == "line 1: CNY 2.00"
    again, _ = bus.tap("BUS00102", 1, after_min=0.3)  # the other door of the same bus: double tap
    assert again.outcome.kind is OutcomeKind.DECLINED_OFFLINE and "double tap" in again.outcome.reason
    assert again.entry is None

    transfer, hook = bus.tap("BUS00501", 5, after_min=30)  # line 5 within 90 minutes: CNY 1.00 off
    assert transfer.approved and transfer.entry.amount_fen == 100 and hook.fare.transfer

    tap_in, _ = bus.tap("BUS01201", 12, 1, after_min=120)  # K12 distance line: nothing charged at tap-in
    assert tap_in.approved and tap_in.entry.kind == "tap" and tap_in.entry.amount_fen == 0
    assert bus.trip().status is TripStatus.ON_BOARD and bus.trip().boarding_stop == 1
    tap_out, hook = bus.tap("BUS01202", 12, 5, out=True, after_min=35)  # 4 stops: CNY 3.00
    assert tap_out.approved and tap_out.entry.amount_fen == 300, hook.fare.reason
    assert bus.trip().status is TripStatus.DONE

    bus.tap("BUS01201", 12, 2, after_min=60)  # tapped in ... and never out
    missed, hook = bus.tap("BUS00101", 1, after_min=240)  # maximum fare CNY 5.00 + CNY 2.00, capped at 10.00
    assert "tap-out missing on line 12" in hook.fare.reason
    assert missed.entry.amount_fen == 10_00 - (200 + 100 + 300) and hook.fare.capped
    after_cap, _ = bus.tap("BUS00501", 5, after_min=120)
    assert after_cap.approved and after_cap.entry.amount_fen == 0 and after_cap.entry.kind == "tap"

    assert bus.balance() == 5_000 - 10_00  # the card paid exactly the daily cap
    assert bus.trip().day_fen == 10_00
    # what goes up at the depot: the fares with money, never the zero taps
    uploads = [e for pos in bus.validators.values() for e in pos.journal.offline_purchases()]
    assert sorted(e.amount_fen for e in uploads) == [100, 200, 300, 400]

    bus.now = bus.now + dt.timedelta(days=1)
    bus.now = bus.now.replace(hour=8)
    next_day, _ = bus.tap("BUS00101", 1)
    assert next_day.entry.amount_fen == 200 and bus.trip().day_fen == 200


def test_a_student_and_an_elderly_rider(tmp_path, network, sealer):
    student = Concession(Category.STUDENT, dt.date(2027, 6, 30)).encode().hex()
    card = new_card("contactless", balance_fen=1_000, transit=True, concession=student)
    bus = Bus(tmp_path, network, card, sealer)
    paid, _ = bus.tap("BUS00101", 1)
    assert paid.entry.amount_fen == 100  # 50 %
    elderly = Concession(Category.ELDERLY, dt.date(2030, 1, 1)).encode().hex()
    card = new_card("contactless", serial=2, balance_fen=1_000, transit=True, concession=elderly)
    bus = Bus(tmp_path / "e", network, card, sealer)
    (tmp_path / "e").mkdir()
    free, hook = bus.tap("BUS00101", 1)
    assert (
        free.approved and free.entry.amount_fen == 0 and hook.fare.reason.endswith("concession 0%: CNY 0.00")
    )
    assert bus.balance() == 1_000


def test_a_malformed_trip_record_is_refused_and_the_card_unchanged(tmp_path, network, sealer):
    """A record with a right MAC that does not follow the layout (a validator's bug, not a forgery)."""
    card = new_card("contactless", balance_fen=1_000, transit=True)
    concession, _, identity, counter = card.image.nvm[TRANSIT]
    pan, psn = card_identity(bytes.fromhex(identity))
    bad = sealer.seal(pan, psn, bytes.fromhex("07" + "00" * 31), 0)  # an unknown record version, MACed
    card.image.nvm[TRANSIT] = [concession, bad.hex().upper(), identity, counter]
    before = card.image.to_json()
    bus = Bus(tmp_path, network, card, sealer)
    result, hook = bus.tap("BUS00101", 1)
    assert result.outcome.kind is OutcomeKind.DECLINED_OFFLINE and result.entry is None
    assert "transit record trip version" in result.outcome.reason and hook.error is not None
    assert card.image.to_json() == before  # no GPO was sent: no ATC, no debit, no record
    assert bus.validator("BUS00101").journal.entries() == []


def test_a_card_without_the_transit_file_pays_the_full_fare(tmp_path, network, sealer):
    card = new_card("contactless", balance_fen=1_000)
    bus = Bus(tmp_path, network, card, sealer)
    flat, _ = bus.tap("BUS00101", 1)
    assert flat.entry.amount_fen == 200
    tap_in, _ = bus.tap("BUS01201", 12, 3, after_min=10)
    assert tap_in.entry.amount_fen == 500  # the maximum fare, at tap-in: the card cannot keep the trip
    tap_out, _ = bus.tap("BUS01202", 12, 4, out=True, after_min=5)
    assert not tap_out.approved and "paid at tap-in" in tap_out.outcome.reason
    assert bus.balance() == 300


def test_a_refused_gpo_drops_the_staged_record(tmp_path, network, sealer):
    """A card too poor for the fare answers the GPO without a TC: the staged trip record is not written."""
    card = new_card("contactless", balance_fen=100, transit=True)
    before = card.image.nvm[TRANSIT]
    bus = Bus(tmp_path, network, card, sealer)
    result, _ = bus.tap("BUS00101", 1)
    assert not result.approved
    assert card.image.nvm[TRANSIT] == before


def _write_trip(card, sealed: bytes) -> None:
    """What a rogue terminal can do: make the card approve a GPO with any staged record (here: directly)."""
    concession, _, identity, *counter = card.image.nvm[TRANSIT]
    card.image.nvm[TRANSIT] = [concession, sealed.hex().upper(), identity, *counter]


def _identity(card) -> tuple[str, str]:
    return card_identity(bytes.fromhex(card.image.nvm[TRANSIT][2]))


def _counter(card) -> int:
    return int(card.image.nvm[TRANSIT][3], 16)


def _cap_reached(now: dt.datetime) -> bytes:
    """A record that would make the next ride free: the daily cap reached, a transfer pending (version 03:
    for a card with the write counter)."""
    from citycard.transit.record import TRIP_VERSION_BOUND, day_number, month_number, seconds

    at = seconds(now)
    return TripRecord(
        TripStatus.DONE, 1, 0, False, False, at, at, "BUS00101",
        day_number(now), 10_00, month_number(now), 10_00,
    ).encode(TRIP_VERSION_BOUND)  # fmt: skip


def test_a_forged_trip_record_is_taken_as_no_record(tmp_path, network, sealer):
    """A rogue terminal writes a record claiming the daily cap reached, with a MAC it made up: the next
    validator takes it as no record (no cap, no transfer); as the card binds its records (the write counter),
    only a rogue terminal writes such a record and may hide an open distance ride by it, so the tap also pays
    the network's maximum fare as a missing tap-out; a genuine record is written back."""
    card = new_card("contactless", balance_fen=2_000, transit=True)
    bus = Bus(tmp_path, network, card, sealer)
    first, _ = bus.tap("BUS00101", 1)
    assert first.entry.amount_fen == 200
    bus.now += dt.timedelta(minutes=20)
    _write_trip(card, _cap_reached(bus.now) + bytes.fromhex("DEADBEEF"))
    forged, hook = bus.tap("BUS00501", 5, after_min=1)  # a transfer and the cap, were the record genuine
    assert forged.approved and forged.entry.amount_fen == 500 + 200 and hook.unsealed
    assert hook.fare.reason.startswith("trip record not the card's last (replayed or forged): taken as no")
    assert "last ride unknown: maximum fare CNY 5.00" in hook.fare.reason and not hook.fare.transfer
    sealed = bytes.fromhex(card.image.nvm[TRANSIT][1])
    assert sealer.open(*_identity(card), sealed, _counter(card)) is not None  # a genuine record again
    assert bus.trip().day_fen == 700  # the day's total counted afresh from this tap
    assert bus.balance() == 2_000 - 900


def test_a_record_copied_from_another_card_or_sealed_under_another_key_is_no_record(
    tmp_path, network, sealer
):
    a = new_card("contactless", balance_fen=1_000, transit=True)
    b = new_card("contactless", serial=2, balance_fen=1_000, transit=True)
    now = NOW.replace(hour=7)
    genuine_for_a = sealer.seal(*_identity(a), _cap_reached(now))
    _write_trip(b, genuine_for_a)  # right MAC, wrong card: the key is the card's own
    bus = Bus(tmp_path, network, b, sealer)
    bus.now = now + dt.timedelta(minutes=1)
    copied, hook = bus.tap("BUS00101", 1)
    assert copied.entry.amount_fen == 700 and hook.unsealed  # the fare and the unknown ride's maximum
    rogue_hsm = SoftHsm(bytes(32))  # a rogue validator with a transit key of its own
    rogue = TripSealer(rogue_hsm, rogue_hsm.generate_key("transit/tk", KeyUsage.EMV_OTHER))
    _write_trip(a, rogue.seal(*_identity(a), _cap_reached(now)))
    bus_a = Bus(tmp_path / "a", network, a, sealer)
    (tmp_path / "a").mkdir()
    bus_a.now = now + dt.timedelta(minutes=1)
    other_key, hook = bus_a.tap("BUS00101", 1)
    assert other_key.entry.amount_fen == 700 and hook.unsealed
    # the same record under the right key, bound to the card's counter, is honoured: the cap is reached
    _write_trip(a, sealer.seal(*_identity(a), _cap_reached(now), _counter(a)))
    honoured, hook = bus_a.tap("BUS00501", 5, after_min=2)
    assert honoured.approved and honoured.entry.amount_fen == 0 and not hook.unsealed and hook.fare.capped


def _replay(card, sealed: bytes) -> None:
    """A rogue terminal writes back an earlier genuine record of the same card: it stages it (80 DE) and
    has the card approve a GPO, so the card commits it — and counts the write, as it counts every one."""
    _write_trip(card, sealed)
    records = card.image.nvm[TRANSIT]
    card.image.nvm[TRANSIT] = [*records[:3], f"{(int(records[3], 16) + 1) & 0xFFFF:04X}"]


def test_a_replayed_earlier_record_of_the_same_card_is_no_record(tmp_path, network, sealer):
    """The rider rides line 1, taps in on distance line 12, then has a rogue terminal write back the record
    of line 1 (genuine, MACed for this very card) to hide the open ride. The record no longer matches the
    card's write counter: taken as no record — the next boarding pays the network's maximum fare as the
    missing tap-out, a tap-out on line 12 its maximum fare as a tap-out without tap-in."""
    card = new_card("contactless", balance_fen=5_000, transit=True)
    bus = Bus(tmp_path, network, card, sealer)
    bus.tap("BUS00101", 1)
    assert _counter(card) == 1
    before_tap_in = bytes.fromhex(card.image.nvm[TRANSIT][1])
    bus.tap("BUS01201", 12, 1, after_min=120)
    assert _counter(card) == 2 and bus.trip().status is TripStatus.ON_BOARD
    _replay(card, before_tap_in)
    assert bus.trip().status is TripStatus.DONE  # what the rogue wanted the next validator to see
    paid = bus.balance()
    tap_out, hook = bus.tap("BUS01202", 12, 2, out=True, after_min=10)  # 1 stop: CNY 2.00 if honest
    assert tap_out.approved and hook.unsealed and tap_out.entry.amount_fen == 500
    assert "no tap-in on line 12: maximum fare CNY 5.00" in hook.fare.reason
    assert sealer.open(*_identity(card), bytes.fromhex(card.image.nvm[TRANSIT][1]), _counter(card))
    assert bus.balance() == paid - 500

    # again, and this time the rider boards another line instead of tapping out
    card = new_card("contactless", serial=4, balance_fen=5_000, transit=True)
    (tmp_path / "b").mkdir()
    bus = Bus(tmp_path / "b", network, card, sealer)
    bus.tap("BUS00101", 1)
    before_tap_in = bytes.fromhex(card.image.nvm[TRANSIT][1])
    bus.tap("BUS01201", 12, 1, after_min=120)
    _replay(card, before_tap_in)
    boarding, hook = bus.tap("BUS00501", 5, after_min=30)
    assert boarding.entry.amount_fen == 500 + 200  # the unknown ride's maximum and this fare, no transfer
    assert "last ride unknown" in hook.fare.reason and not hook.fare.transfer
    # an honest card is never caught: the genuine record written back is honoured on the next tap
    honest, hook = bus.tap("BUS00101", 1, after_min=30)
    assert honest.approved and not hook.unsealed and "unknown" not in hook.fare.reason and _counter(card) == 5
