"""The validator's fare decision as a kernel :class:`~citycard.kernel.extension.Extension`: it reads the
card's transit file (SFI 21: the concession record 1 and the trip record 2), applies the fare rules
(:func:`.fares.decide`) and stages the new trip record, which the card writes with the fare's debit.

A card without the transit file pays the line's full fare (the maximum fare on a distance line) and keeps
no trip (no concession, transfer or cap). A card whose records do not follow the layout is refused before
the GPO (:class:`~.record.TripRecordError` in the reason): nothing is charged, nothing written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from citycard.kernel.extension import Decision, RecordUpdate

from .fares import Fare, Tap, decide
from .network import Network
from .record import Concession, TripRecord, TripRecordError

__all__ = ["CONCESSION_RECORD", "TRANSIT_SFI", "TRIP_RECORD", "FareHook"]

TRANSIT_SFI = 21
"""The transit file: the first issuer-specific SFI (EMV 4.3 Book 3 §5.3.2.2: 21 to 30)."""
CONCESSION_RECORD = 1
TRIP_RECORD = 2


@dataclass
class FareHook:
    """One tap's decision. After the kernel ran, ``fare`` is what was decided (None: the card had no
    transit file, or its records were refused — then ``error`` says why)."""

    network: Network
    tap: Tap
    fare: Fare | None = field(default=None, init=False)
    error: TripRecordError | None = field(default=None, init=False)

    @property
    def sfi(self) -> int:
        return TRANSIT_SFI

    @property
    def records(self) -> tuple[int, ...]:
        return (CONCESSION_RECORD, TRIP_RECORD)

    def decide(self, records: Mapping[int, bytes]) -> Decision:
        if TRIP_RECORD not in records:
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
            trip = TripRecord.decode(records[TRIP_RECORD])
        except TripRecordError as exc:
            self.error = exc
            return Decision(refuse=f"{exc}; not charged")
        fare = decide(self.network, self.tap, concession, trip)
        self.fare = fare
        if fare.refused:
            return Decision(refuse=fare.refused)
        return Decision(fare.amount_fen, (RecordUpdate(TRIP_RECORD, fare.record.encode()),))
