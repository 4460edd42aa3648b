"""The validator's fare decision as a kernel :class:`~citycard.kernel.extension.Extension`: it reads the
card's transit file (SFI 21: the concession record 1, the trip record 2 with its MAC, the card identity
record 3), checks the trip record's MAC in the validators' secure module, applies the fare rules
(:func:`.fares.decide`) and stages the new trip record with its MAC, which the card writes with the fare's
debit.

The MAC (``docs/transit.md`` "Trip record MAC") is 4 bytes over the 32 bytes of the record, under the
card's transit key, derived in the HSM from the validators' transit key (``E6``) with the PAN and PSN of
record 3. A trip record whose MAC is wrong (written by anything but a validator holding the transit key) is
taken as **no record**: the tap is charged as on a new card (no transfer discount, no card-side double-tap
refusal, the day and month totals for the caps counted afresh from this tap) and a genuine record is
written over it; ``unsealed`` says so.

On a card with the transit write counter (record 4, kept by the card itself: one more in each commit of a
trip record) the MAC is bound to it — over the record ‖ the counter after the write (version 03) — so an
earlier genuine record written back by a rogue terminal (a replay), or any record not written by a
validator, no longer verifies; as only a rogue terminal makes such a record, and it may hide an open
distance ride, that tap also pays the network's maximum fare as a missing tap-out (``docs/transit.md``
"Replay"). Cards without record 4 keep the version-02 MAC over the record alone.

A card without the transit file, or whose transit file has no card identity record (personalised before
the MAC), pays the line's full fare (the maximum fare on a distance line) and keeps no trip (no concession,
transfer or cap); nothing is written. A card whose records do not follow the layout is refused before the
GPO (:class:`~.record.TripRecordError` in the reason): nothing is charged, nothing written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from citycard.hsm.api import Hsm, KeyHandle
from citycard.kernel.extension import Decision, RecordUpdate

from .fares import Fare, Tap, decide
from .network import Network
from .record import (
    COUNTER_LENGTH,
    MAC_LENGTH,
    SEALED_TRIP_LENGTH,
    TRIP_LENGTH,
    TRIP_VERSION,
    TRIP_VERSION_BOUND,
    Concession,
    TripRecord,
    TripRecordError,
    card_identity,
)

__all__ = [
    "CARD_ID_RECORD",
    "CONCESSION_RECORD",
    "COUNTER_RECORD",
    "TRANSIT_SFI",
    "TRIP_RECORD",
    "FareHook",
    "TripSealer",
]

TRANSIT_SFI = 21
"""The transit file: the first issuer-specific SFI (EMV 4.3 Book 3 §5.3.2.2: 21 to 30)."""
CONCESSION_RECORD = 1
TRIP_RECORD = 2
CARD_ID_RECORD = 3
COUNTER_RECORD = 4
"""The card's transit write counter (2 bytes): counted by the card itself in each commit of a staged trip
record; absent on cards personalised before it."""


@dataclass(frozen=True)
class TripSealer:
    """The validators' secure module for trip records (a PSAM's role): the HSM and its transit key."""

    hsm: Hsm
    key: KeyHandle

    def seal(self, pan: str, psn: str, body: bytes, counter: int | None = None) -> bytes:
        """``body`` ‖ its MAC, as the card keeps it; with ``counter`` (the card's transit write counter once
        it has committed this record) the MAC is over ``body`` ‖ the counter (2 bytes), binding the record
        to that write (docs/transit.md "Replay")."""
        return body + self.hsm.transit_record_mac(self.key, pan, psn, _bound(body, counter))

    def open(self, pan: str, psn: str, sealed: bytes, counter: int | None = None) -> bytes | None:
        """The record's 32 bytes when its MAC is right (with ``counter``: bound to the card's counter now),
        else None."""
        if len(sealed) != SEALED_TRIP_LENGTH:
            return None
        body, mac = sealed[:TRIP_LENGTH], sealed[TRIP_LENGTH:]
        ok = self.hsm.verify_transit_record_mac(self.key, pan, psn, _bound(body, counter), mac)
        return body if ok else None


def _bound(body: bytes, counter: int | None) -> bytes:
    assert counter is None or 0 <= counter <= 0xFFFF
    return body if counter is None else body + counter.to_bytes(COUNTER_LENGTH, "big")


def _counter(data: bytes | None) -> int | None:
    """The card's transit write counter (record 4); None on a card personalised before it."""
    if data is None:
        return None
    if len(data) != COUNTER_LENGTH:
        raise TripRecordError("transit write counter", f"{len(data)} bytes, expected {COUNTER_LENGTH}")
    return int.from_bytes(data, "big")


@dataclass
class FareHook:
    """One tap's decision. After the kernel ran, ``fare`` is what was decided (None: the card had no
    transit file, or its records were refused — then ``error`` says why); ``unsealed``: the card's trip
    record had a wrong MAC and was taken as no record."""

    network: Network
    tap: Tap
    sealer: TripSealer
    fare: Fare | None = field(default=None, init=False)
    error: TripRecordError | None = field(default=None, init=False)
    unsealed: bool = field(default=False, init=False)

    @property
    def sfi(self) -> int:
        return TRANSIT_SFI

    @property
    def records(self) -> tuple[int, ...]:
        return (CONCESSION_RECORD, TRIP_RECORD, CARD_ID_RECORD, COUNTER_RECORD)

    def _trip(self, pan: str, psn: str, sealed: bytes, counter: int | None) -> TripRecord:
        """The card's trip record if it is the one its last validator wrote: all zeros on a card that never
        rode (its counter 0), else a right MAC — bound to the counter on a card that has one. Anything
        else is taken as no record (``unsealed``). A right MAC over bytes of another version than the card's
        kind is a validator's bug: :class:`TripRecordError`."""
        if sealed == bytes(len(sealed)):
            self.unsealed = bool(counter)  # zeros over a written record: wiped by a rogue terminal
            return TripRecord()
        body = self.sealer.open(pan, psn, sealed, counter)
        if body is None:
            self.unsealed = True
            return TripRecord()
        expected = TRIP_VERSION if counter is None else TRIP_VERSION_BOUND
        if body[0] != expected:
            raise TripRecordError("trip version", f"{body[0]:02X}, expected {expected:02X} on this card")
        return TripRecord.decode(body)

    def decide(self, records: Mapping[int, bytes]) -> Decision:
        if TRIP_RECORD not in records or CARD_ID_RECORD not in records:
            line = self.network.line(self.tap.line)
            assert line is not None
            if self.tap.tap_out:  # it paid the maximum fare at tap-in
                return Decision(refuse="no transit file on the card: its fare was paid at tap-in")
            return Decision(line.max_fare_fen if line.distance else line.fare_fen or 0)
        try:
            concession = (
                Concession.decode(records[CONCESSION_RECORD])
                if CONCESSION_RECORD in records
                else Concession()
            )
            pan, psn = card_identity(records[CARD_ID_RECORD])
            counter = _counter(records.get(COUNTER_RECORD))
            trip = self._trip(pan, psn, records[TRIP_RECORD], counter)
        except TripRecordError as exc:
            self.error = exc
            return Decision(refuse=f"{exc}; not charged")
        unknown = self.unsealed and counter is not None  # only a rogue terminal: its ride may be open
        fare = decide(self.network, self.tap, concession, trip, unknown_ride=unknown)
        if self.unsealed:
            why = "not the card's last (replayed or forged)" if unknown else "MAC wrong"
            fare = _note(fare, f"trip record {why}: taken as no record")
        self.fare = fare
        if fare.refused:
            return Decision(refuse=fare.refused)
        if counter is None:
            record = self.sealer.seal(pan, psn, fare.record.encode())
        else:  # the card counts this write in the commit: bound to the counter after it
            body = fare.record.encode(TRIP_VERSION_BOUND)
            record = self.sealer.seal(pan, psn, body, (counter + 1) & 0xFFFF)
        assert len(record) == TRIP_LENGTH + MAC_LENGTH
        return Decision(fare.amount_fen, (RecordUpdate(TRIP_RECORD, record),))


def _note(fare: Fare, note: str) -> Fare:
    return replace(fare, reason=f"{note}; {fare.reason}")
