"""The fare rules: what one tap costs, decided from the tap, the fare table and what the card carries
(its concession and trip records), with no clock, no journal and no network — so a validator decides
offline, in one tap (``docs/transit.md`` "Fare rules").

Order of the rules, each applied to the result of the one before:

1. **Double tap**: the card's last tap was the same kind of tap (boarding or alighting) on this line
   within ``double_tap_s``: refused, nothing charged, the record unchanged.
2. **Missing tap-out**: the card is on board a distance line and this is not its tap-out there (or the
   ride is older than ``max_trip_s``): that ride costs the line's maximum fare, charged now.
3. **The ride**: a flat line charges its fare at boarding; a distance line records the boarding stop and
   charges nothing, then charges the fare of the stops travelled at tap-out (PBOC segmented charging: the
   actual fare is debited at tap-out, the tap-in is recorded on the card). A tap-out with no tap-in pays
   the line's maximum fare.
4. **Concession**: a registered holder's category, valid on the day, pays its percent (rounded down).
5. **Transfer**: boarding another line within ``window_s`` of the last tap of a ride that was not itself
   a transfer takes ``discount_fen`` off this ride (never below zero).
6. **Caps**: what the card paid today and this month (kept in the trip record) never goes past the daily
   and monthly caps: the charge is cut to what is left.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from citycard.codec.money import format_amount

from .network import Line, Network
from .record import Concession, TripRecord, TripStatus, day_number, month_number, seconds

__all__ = ["Fare", "Tap", "decide"]


@dataclass(frozen=True, slots=True)
class Tap:
    now: dt.datetime
    line: int
    stop: int = 0  # 1-based; required on distance lines
    tap_out: bool = False
    terminal_id: str = ""


@dataclass(frozen=True, slots=True)
class Fare:
    """The decision: charge ``amount_fen`` and write ``record``, or ``refused`` (nothing charged)."""

    amount_fen: int
    record: TripRecord
    reason: str
    refused: str | None = None
    full_fen: int = 0  # before concession, transfer and caps
    penalty_fen: int = 0  # a missing tap-out's maximum fare, in amount_fen
    transfer: bool = False
    capped: bool = False


def decide(
    network: Network, tap: Tap, concession: Concession, record: TripRecord, *, unknown_ride: bool = False
) -> Fare:
    """The fare of ``tap`` by the rules (docs/transit.md "Fare rules"). ``unknown_ride``: the card's trip
    record was not the one its last validator wrote (replayed or forged on a card that binds its records,
    :mod:`.validator`), so ``record`` is none and a ride may be open: a tap that is not a tap-out pays the
    network's maximum fare as a missing tap-out (a tap-out already pays its line's maximum, rule 3)."""
    line = network.line(tap.line)
    assert line is not None, f"line {tap.line} is not in the fare table"
    assert not line.distance or 1 <= tap.stop <= len(line.stops), "a distance line needs a stop"
    now_s = seconds(tap.now)
    percent = network.concessions.percent(_category(concession, tap.now.date()))
    double = _double_tap(network, line, tap, record, now_s)
    if double is not None:
        return Fare(0, record, double, refused=double)
    notes: list[str] = []
    penalty = 0
    on_board = record.status is TripStatus.ON_BOARD
    closing = on_board and tap.tap_out and record.line == tap.line
    if closing and now_s - record.boarding_s > network.max_trip_s:
        closing = False
    if on_board and not closing:
        missed = network.line(record.line)
        full_penalty = missed.max_fare_fen if missed is not None else _max_fare(network)
        penalty = full_penalty * percent // 100
        notes.append(f"tap-out missing on line {record.line}: maximum fare {_yuan(penalty)}")
    elif unknown_ride and not tap.tap_out:
        penalty = _max_fare(network) * percent // 100
        notes.append(f"last ride unknown: maximum fare {_yuan(penalty)} as a missing tap-out")
    transfer = False
    if tap.tap_out and closing:
        full = line.fare_between(record.boarding_stop, tap.stop)
        transfer = record.transfer
        new = replace(record, status=TripStatus.DONE, tapped_out=True)
        notes.append(f"line {line.id} stop {record.boarding_stop} to {tap.stop}: {_yuan(full)}")
    elif tap.tap_out:
        full = line.max_fare_fen
        new = TripRecord(TripStatus.DONE, line.id, 0, False, True, now_s, now_s)
        notes.append(f"no tap-in on line {line.id}: maximum fare {_yuan(full)}")
    else:
        transfer = _transfer(network, line, record, now_s, penalty > 0)
        status = TripStatus.ON_BOARD if line.distance else TripStatus.DONE
        new = TripRecord(status, line.id, tap.stop if line.distance else 0, transfer, False, now_s, now_s)
        full = 0 if line.distance else line.fare_fen or 0
        notes.append(
            f"tap-in on line {line.id} at stop {tap.stop}: fare at tap-out"
            if line.distance
            else f"line {line.id}: {_yuan(full)}"
        )
    ride = full * percent // 100
    if percent != 100 and full:
        notes.append(f"concession {percent}%: {_yuan(ride)}")
    if transfer and ride:
        ride = max(0, ride - network.transfer.discount_fen)
        notes.append(f"transfer: {_yuan(ride)}")
    due = penalty + ride
    day, month = day_number(tap.now), month_number(tap.now)
    day_fen = record.day_fen if record.day == day else 0
    month_fen = record.month_fen if record.month == month else 0
    amount = _capped(network, due, day_fen, month_fen)
    if amount < due:
        notes.append(f"cap reached: {_yuan(amount)}")
    new = replace(
        new,
        last_tap_s=now_s,
        terminal_id=tap.terminal_id[:8],
        day=day,
        day_fen=day_fen + amount,
        month=month,
        month_fen=month_fen + amount,
    )
    return Fare(
        amount,
        new,
        "; ".join(notes),
        full_fen=full + penalty,
        penalty_fen=min(penalty, amount),
        transfer=transfer,
        capped=amount < due,
    )


def _category(concession: Concession, today: dt.date) -> str:
    return concession.category.name.lower() if concession.applies(today) else "none"


def _double_tap(network: Network, line: Line, tap: Tap, record: TripRecord, now_s: int) -> str | None:
    if record.status is TripStatus.NONE or record.line != tap.line or not network.double_tap_s:
        return None
    age = now_s - record.last_tap_s
    if not 0 <= age < network.double_tap_s:
        return None
    last_out = record.tapped_out
    if last_out != tap.tap_out:
        return None
    way = "out" if last_out else "in"
    return f"double tap: this card tapped {way} on line {line.id} {age} s ago; not charged"


def _transfer(network: Network, line: Line, record: TripRecord, now_s: int, missed: bool) -> bool:
    rule = network.transfer
    return (
        bool(rule.window_s and rule.discount_fen)
        and not missed
        and record.status is TripStatus.DONE
        and record.line != line.id
        and not record.transfer
        and 0 <= now_s - record.last_tap_s <= rule.window_s
    )


def _capped(network: Network, due: int, day_fen: int, month_fen: int) -> int:
    amount = due
    if network.daily_cap_fen:
        amount = min(amount, max(0, network.daily_cap_fen - day_fen))
    if network.monthly_cap_fen:
        amount = min(amount, max(0, network.monthly_cap_fen - month_fen))
    return amount


def _max_fare(network: Network) -> int:
    return max(line.max_fare_fen for line in network.lines.values())


def _yuan(fen: int) -> str:
    return f"CNY {format_amount(fen)}"
