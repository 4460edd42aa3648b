"""What the terminal application records about each transaction, and the port its journal implements.

A transaction enters the journal *before* the card is asked to move money (GENERATE AC, or the qPBOC GPO)
as ``pending``; it leaves ``pending`` exactly once, to ``approved``, ``declined``, ``refund`` (the card paid —
a qPBOC card debits its EC balance in the GPO — but the terminal then declined, e.g. on the exception file or
a failed fDDA), ``torn`` (the card went away after the debiting command) or ``void`` (it never reached the
card). An approval is written durably
before the outcome is shown. A ``torn`` transaction is resolved on a later tap by the card's own
transaction log (``recovered``: the card was charged; ``void``: it was not), so a fare is never charged twice.
Offline approvals are queued for upload (0320 batch upload by the network), and so are ``refund`` entries:
the card's money left its EC balance with a TC, so the issuer must see the TC to give it back — money is
never lost between the card and the books.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["FOLLOW_UP_STANDS", "Funding", "Journal", "JournalEntry", "State"]

State = Literal["pending", "approved", "declined", "refund", "torn", "recovered", "void"]
Funding = Literal["account", "cash", "other account"]
"""What paid an EC load: the cardholder's designated account (圈存), cash at the counter, another account."""
FOLLOW_UP_STANDS: frozenset[State] = frozenset({"approved", "torn", "pending"})
"""States of a journaled void or refund that may stand at the issuer: it counts against its purchase (a
second void is refused, a refund beyond what is left of the purchase too)."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    txn_id: str  # idempotency key: terminal id ‖ STAN ‖ batch, also in the upload file
    stan: int
    batch: int
    state: State
    kind: str
    interface: str
    amount_fen: int
    created: dt.datetime
    pan_masked: str = ""
    pan_token: str = ""  # SHA-256 of PAN ‖ PSN, to recognise the card again without storing the PAN
    pan_sealed: str = ""  # hex: the PAN enciphered under the terminal data key (pos.sealing), for upload
    psn: str = ""  # 5F34, two digits
    expiry: str = ""  # 5F24 as YYMM
    aid: str = ""
    outcome: str = ""
    reason: str = ""
    cryptogram: str = ""  # hex TC / AAC / ARQC
    atc: int | None = None
    tvr: str = ""
    tsi: str = ""
    field55: str = ""  # hex BER-TLV
    ec_balance_fen: int | None = None
    un: str = ""  # 9F37, with date/time and amount what the card's log records
    export_id: int | None = None
    service_ref: str = ""  # a public service's reference (``HR-202612030017``): field 48 of its 0200 / 0320
    original_txn_id: str = ""  # a void: the purchase it cancels (its ``txn_id``)
    line: int | None = None  # a validator's fare: the bus line it ran (the registry's, docs/transit.md)
    vehicle: str = ""  # … and the vehicle
    funding: Funding | Literal[""] = ""  # an EC load: what paid it (a reversed cash load's cash goes back)


class Journal(Protocol):
    """The journal port; :mod:`citycard.sqlite_journal` is the adapter."""

    def begin(
        self, kind: str, interface: str, amount_fen: int, created: dt.datetime, un: str, **card: str | int
    ) -> JournalEntry:
        """A ``pending`` entry; ``card`` holds what the terminal read of the card before its debiting
        command (``pan_masked``, ``pan_token``, ``pan_sealed``, ``psn``), so that a terminal stopped in the
        middle still knows which card its ``torn`` entry belongs to."""
        ...

    def finish(self, txn_id: str, state: State, **fields: object) -> JournalEntry: ...

    def get(self, txn_id: str) -> JournalEntry: ...

    def entries(self, state: State | None = None, limit: int = 100) -> list[JournalEntry]: ...

    def recent(
        self,
        states: Collection[State],
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        kind: str | None = None,
        interface: str | None = None,
        pan_token: str | None = None,
        limit: int = 50,
    ) -> list[JournalEntry]:
        """Entries in ``states`` created in [``since``, ``until``] (None: unbounded), of ``kind``,
        ``interface`` and ``pan_token`` when given, newest first: an indexed look-up whose cost does not
        grow with the journal (the validator's guards ask it on every tap)."""
        ...

    def current_batch(self) -> int: ...

    def follow_ups_of(self, txn_id: str) -> list[JournalEntry]:
        """The voids and refunds journaled for the purchase ``txn_id`` (any state), oldest first."""
        ...
