"""The fare rules as properties (Hypothesis) over random days of taps on the documented network, and the
rules one by one."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.transit import Category, Concession, Tap, TripRecord, TripStatus, decide
from citycard.transit.record import day_number, month_number

START = dt.datetime(2026, 11, 25, 6, 0)
STUDENT = Concession(Category.STUDENT, dt.date(2027, 6, 30))

taps = st.lists(
    st.tuples(
        st.integers(0, 240),  # minutes since the last tap
        st.sampled_from([1, 5, 12]),
        st.integers(1, 7),  # stop (clipped to the line)
        st.booleans(),  # tap-out
    ),
    max_size=25,
)


NO_CONCESSION = Concession()


def _ride(network, history, concession=NO_CONCESSION):
    """Apply the taps in order, as a validator would, carrying the record; yields (tap, fare)."""
    record, now = TripRecord(), START
    for minutes, line_id, stop, out in history:
        now += dt.timedelta(minutes=minutes)
        line = network.lines[line_id]
        tap = Tap(
            now, line_id, min(stop, len(line.stops)) if line.distance else 0, out and line.distance, "BUS1"
        )
        fare = decide(network, tap, concession, record)
        yield tap, fare, record
        record = fare.record


@settings(max_examples=200, deadline=None)
@given(taps, st.sampled_from([Concession(), STUDENT, Concession(Category.ELDERLY, dt.date(2030, 1, 1))]))
def test_caps_bound_every_day_and_month_and_no_fare_is_negative(network, history, concession):
    paid_by_day: dict[int, int] = {}
    paid_by_month: dict[int, int] = {}
    for tap, fare, before in _ride(network, history, concession):
        assert 0 <= fare.amount_fen <= max(fare.full_fen, 0)
        if fare.refused:
            assert fare.amount_fen == 0 and fare.record == before
            continue
        day, month = day_number(tap.now), month_number(tap.now)
        paid_by_day[day] = paid_by_day.get(day, 0) + fare.amount_fen
        paid_by_month[month] = paid_by_month.get(month, 0) + fare.amount_fen
        assert paid_by_day[day] <= network.daily_cap_fen
        assert paid_by_month[month] <= network.monthly_cap_fen
        assert fare.record.day_fen == paid_by_day[day]  # the card keeps what the rules charged
        if concession.category is Category.ELDERLY:
            assert fare.amount_fen == 0


@settings(max_examples=200, deadline=None)
@given(taps)
def test_a_fare_never_exceeds_the_maximum_of_the_rides_it_pays(network, history):
    most = max(line.max_fare_fen for line in network.lines.values())
    for _, fare, _ in _ride(network, history):
        assert fare.amount_fen <= 2 * most  # at most a missed tap-out and this ride
        assert fare.penalty_fen <= most


def test_a_ride_on_a_flat_line(network):
    fare = decide(network, Tap(START, 1, terminal_id="BUS1"), Concession(), TripRecord())
    assert fare.amount_fen == 200 and fare.record.status is TripStatus.DONE and fare.record.line == 1


def test_distance_line_charges_at_tap_out(network):
    tap_in = decide(network, Tap(START, 12, 1), Concession(), TripRecord())
    assert tap_in.amount_fen == 0 and tap_in.record.status is TripStatus.ON_BOARD
    later = START + dt.timedelta(minutes=25)
    tap_out = decide(network, Tap(later, 12, 6, tap_out=True), Concession(), tap_in.record)
    assert tap_out.amount_fen == 500 and tap_out.record.status is TripStatus.DONE


def test_a_missing_tap_out_costs_the_maximum_fare(network):
    tap_in = decide(network, Tap(START, 12, 3), Concession(), TripRecord())
    next_day = decide(network, Tap(START + dt.timedelta(hours=2), 1), Concession(), tap_in.record)
    assert next_day.amount_fen == 500 + 200 and next_day.penalty_fen == 500
    assert "tap-out missing on line 12" in next_day.reason
    stale = decide(
        network, Tap(START + dt.timedelta(hours=4), 12, 4, tap_out=True), Concession(), tap_in.record
    )
    assert stale.amount_fen == 500 + 500  # too old to close: the open ride and this tap-out without tap-in


def test_transfer_discount_once_within_the_window(network):
    first = decide(network, Tap(START, 1), Concession(), TripRecord())
    second = decide(network, Tap(START + dt.timedelta(minutes=30), 5), Concession(), first.record)
    assert second.transfer and second.amount_fen == 100
    third = decide(network, Tap(START + dt.timedelta(minutes=40), 1), Concession(), second.record)
    assert not third.transfer and third.amount_fen == 200  # a transfer's transfer is a full fare
    late = decide(network, Tap(START + dt.timedelta(minutes=91), 5), Concession(), first.record)
    assert not late.transfer and late.amount_fen == 200
    same_line = decide(network, Tap(START + dt.timedelta(minutes=30), 1), Concession(), first.record)
    assert not same_line.transfer


def test_double_tap_is_refused_and_the_record_unchanged(network):
    first = decide(network, Tap(START, 1, terminal_id="BUS1"), Concession(), TripRecord())
    again = decide(
        network, Tap(START + dt.timedelta(seconds=20), 1, terminal_id="BUS2"), Concession(), first.record
    )
    assert again.refused and again.amount_fen == 0 and again.record == first.record
    later = decide(network, Tap(START + dt.timedelta(seconds=61), 1), Concession(), first.record)
    assert not later.refused and later.amount_fen == 200


def test_the_daily_cap_and_a_new_day(network):
    record = replace(
        TripRecord(), day=day_number(START), day_fen=900, month=month_number(START), month_fen=900
    )
    capped = decide(network, Tap(START, 1), Concession(), record)
    assert capped.amount_fen == 100 and capped.capped and "cap reached" in capped.reason
    free = decide(network, Tap(START + dt.timedelta(hours=2), 5), Concession(), capped.record)
    assert free.amount_fen == 0 and free.record.day_fen == 1000
    tomorrow = decide(network, Tap(START + dt.timedelta(days=1), 1), Concession(), free.record)
    assert tomorrow.amount_fen == 200 and tomorrow.record.day_fen == 200 and tomorrow.record.month_fen == 1200


def test_concession_valid_until(network):
    expired = Concession(Category.STUDENT, dt.date(2026, 11, 24))
    assert decide(network, Tap(START, 1), STUDENT, TripRecord()).amount_fen == 100
    assert decide(network, Tap(START, 1), expired, TripRecord()).amount_fen == 200
    elderly = Concession(Category.ELDERLY, dt.date(2030, 1, 1))
    assert decide(network, Tap(START, 1), elderly, TripRecord()).amount_fen == 0
