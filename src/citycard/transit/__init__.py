"""Bus transit on the citizen card: lines, stops and fare tables as data (:mod:`.network`), the trip and
concession records kept on the card (:mod:`.record`), the fare rules (:mod:`.fares`) and the validator's
fare decision taken between the card's SELECT and its GPO (:mod:`.validator`). Pure: no clock, no I/O; the
file formats and the byte layouts are ``docs/transit.md``."""

from .fares import Fare, Tap, decide
from .network import Concessions, Line, Network, NetworkError, Transfer, parse_network
from .record import (
    CARD_ID_LENGTH,
    CONCESSION_LENGTH,
    SEALED_TRIP_LENGTH,
    TRIP_LENGTH,
    Category,
    Concession,
    TripRecord,
    TripRecordError,
    TripStatus,
)
from .validator import TRANSIT_SFI, FareHook, TripSealer

__all__ = [
    "CARD_ID_LENGTH",
    "CONCESSION_LENGTH",
    "SEALED_TRIP_LENGTH",
    "TRANSIT_SFI",
    "TRIP_LENGTH",
    "Category",
    "Concession",
    "Concessions",
    "Fare",
    "FareHook",
    "Line",
    "Network",
    "NetworkError",
    "Tap",
    "Transfer",
    "TripRecord",
    "TripRecordError",
    "TripSealer",
    "TripStatus",
    "decide",
    "parse_network",
]
