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
    MAC_LENGTH,
    SEALED_TRIP_LENGTH,
    TRIP_LENGTH,
    Concession,
    TripRecord,
    TripRecordError,
    card_identity,
)

__all__ = ["CARD_ID_RECORD", "CONCESSION_RECORD", "TRANSIT_SFI", "TRIP_RECORD", "FareHook", "TripSealer"]

TRANSIT_SFI = 21
"""The transit file: the first issuer-specific SFI (EMV 4.3 Book 3 §5.3.2.2: 21 to 30)."""
CONCESSION_RECORD = 1
TRIP_RECORD = 2
CARD_ID_RECORD = 3


@dataclass(frozen=True)
class TripSealer:
    """The validators' secure module for trip records (a PSAM's role): the HSM and its transit key."""

    hsm: Hsm
    key: KeyHandle

    def seal(self, pan: str, psn: str, body: bytes) -> bytes:
        """``body`` ‖ its MAC, as the card keeps it."""
        return body + self.hsm.transit_record_mac(self.key, pan, psn, body)

    def open(self, pan: str, psn: str, sealed: bytes) -> bytes | None:
        """The record's 32 bytes when its MAC is right, else None."""
        if len(sealed) != SEALED_TRIP_LENGTH:
            return None
        body, mac = sealed[:TRIP_LENGTH], sealed[TRIP_LENGTH:]
        return body if self.hsm.verify_transit_record_mac(self.key, pan, psn, body, mac) else None


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
        return (CONCESSION_RECORD, TRIP_RECORD, CARD_ID_RECORD)

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
            sealed = records[TRIP_RECORD]
            if sealed == bytes(len(sealed)):
                trip = TripRecord()  # never written (a new card)
            else:
                body = self.sealer.open(pan, psn, sealed)
                self.unsealed = body is None
                trip = TripRecord() if body is None else TripRecord.decode(body)
        except TripRecordError as exc:
            self.error = exc
            return Decision(refuse=f"{exc}; not charged")
        fare = decide(self.network, self.tap, concession, trip)
        if self.unsealed:
            fare = _note(fare, "trip record MAC wrong: taken as no record")
        self.fare = fare
        if fare.refused:
            return Decision(refuse=fare.refused)
        record = self.sealer.seal(pan, psn, fare.record.encode())
        assert len(record) == TRIP_LENGTH + MAC_LENGTH
        return Decision(fare.amount_fen, (RecordUpdate(TRIP_RECORD, record),))


def _note(fare: Fare, note: str) -> Fare:
    return replace(fare, reason=f"{note}; {fare.reason}")
