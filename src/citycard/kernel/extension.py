"""An industry application's records read and rewritten inside one contactless purchase, between the
final SELECT and the GPO: the terminal reads the records (READ RECORD on the application's SFI), asks its
application what to charge (:meth:`Extension.decide`, pure), stages the new records in the card (UPDATE
CAPP DATA CACHE, ``80 DE``) and sends the GPO for that amount; the card writes the staged records in the
same atomic commit as the debit it approves with a TC, and forgets them otherwise.

The mechanism follows the extended application of the PBOC 3.0 contactless small-payment specification
(JR/T 0025.14: application data updated with the payment, in one tap) and the e-purse's composite
purchase (UPDATE CAPP DATA CACHE, JR/T 0025.1); the record contents are the application's
(``docs/transit.md`` for the bus trip record). A decision may refuse the tap before the GPO: nothing is
charged and the card is not changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Decision", "Extension", "RecordUpdate"]

MAX_RECORDS = 8


@dataclass(frozen=True, slots=True)
class RecordUpdate:
    number: int
    data: bytes

    def __post_init__(self) -> None:
        assert 1 <= self.number <= 0xFE and 0 < len(self.data) <= 0xFF


@dataclass(frozen=True, slots=True)
class Decision:
    """Charge ``amount_fen`` (0: a tap that moves no money, still authenticated by a TC) and stage
    ``updates``; or ``refuse`` (a reason) before the GPO."""

    amount_fen: int = 0
    updates: tuple[RecordUpdate, ...] = ()
    refuse: str = ""

    def __post_init__(self) -> None:
        assert 0 <= self.amount_fen < 10**12 and len(self.updates) <= MAX_RECORDS


class Extension(Protocol):
    @property
    def sfi(self) -> int: ...

    @property
    def records(self) -> tuple[int, ...]:
        """The record numbers to read before deciding (at most :data:`MAX_RECORDS`)."""
        ...

    def decide(self, records: Mapping[int, bytes]) -> Decision:
        """Pure: the records read (absent ones left out) → the decision. Must not raise for any bytes: a
        record it cannot read is a refusal."""
        ...
