"""Transit concessions from the issuer (docs/transit.md, "Concessions from the issuer"): a registered
holder's category (elderly, student, disabled) and its last valid day, kept in the concession record of the
card's transit file (SFI 21, record 1; layout ``citycard.codec.transitfile``) that the validators read
offline.

- At issuance every card of the issuer's products is personalised with the transit file; a registered
  holder's concession given at issuance is in record 1 from the start (:func:`transit_record`).
- Afterwards :func:`set_concession` and :func:`revoke_concession` queue the new record 1: it goes to the
  chip as an issuer script ``UPDATE RECORD 84 DC 01 AC`` (MAC made in the HSM under the card's
  secure-messaging session key) with the answer to the card's next online contact transaction, and the
  card's next ARQC confirms it (``decision.plan_scripts`` / ``confirm_records``, as for the industry
  applications file).

Handlers ``(command, uow, deps)``; a refusal (:class:`~..model.IssuerError`, a malformed command) writes
nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from citycard.chip.pboc import TRANSIT_SFI
from citycard.codec.pan import mask_pan
from citycard.codec.transitfile import Category, Concession

from ..commands import MalformedRequest, RevokeConcession, SetConcession
from ..model import (
    Card,
    CardAction,
    CardRecord,
    CardStateError,
    IssuerError,
    NoTransitFile,
    RecordState,
)
from ..ports import IssuerUnitOfWork
from .deps import Deps, beijing_date, card_for_update

__all__ = [
    "CONCESSION_RECORD",
    "TRANSIT_SFI",
    "UnregisteredConcession",
    "concession_of",
    "revoke_concession",
    "set_concession",
    "transit_record",
]

CONCESSION_RECORD = 1


class UnregisteredConcession(IssuerError):
    """A concession belongs to a registered holder (their category is checked at the counter)."""

    def __init__(self, pan: str) -> None:
        super().__init__(f"card {mask_pan(pan)} is unregistered: a concession needs a registered holder")


def concession_of(category: str | None, until: dt.date | None) -> Concession:
    """The record's value for a category name (``commands.CONCESSION_CATEGORIES``) and last day; none
    without a category."""
    if category is None:
        return Concession()
    return Concession(Category[category.upper()], until)


def transit_record(concession: Concession, state: RecordState, version_ns: int) -> CardRecord:
    """Record 1 of the transit file as the issuer keeps it."""
    return CardRecord(TRANSIT_SFI, CONCESSION_RECORD, concession.encode(), state, version_ns)


def set_concession(cmd: SetConcession, uow: IssuerUnitOfWork, deps: Deps) -> CardRecord:
    """Grant or renew the card's concession (a registered card with the transit file); its last day may not
    be past. The same concession already on the chip is not sent again."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        if not card.registered:
            raise UnregisteredConcession(card.pan)
        if cmd.valid_until < beijing_date(deps.clock()):
            raise MalformedRequest("valid_until", f"{cmd.valid_until.isoformat()} is past")
        current = uow.card_records.transit(card.pan)
        record = _queue(card, current, concession_of(cmd.category, cmd.valid_until), uow, deps)
        uow.commit()
    return record


def revoke_concession(cmd: RevokeConcession, uow: IssuerUnitOfWork, deps: Deps) -> CardRecord:
    """Withdraw the card's concession: record 1 written as all zeros (no concession) at its next online
    contact."""
    with uow:
        card = card_for_update(uow, cmd.pan)
        current = uow.card_records.transit(card.pan)
        if current is not None and Concession.decode(current.data) == Concession():
            raise CardStateError(f"card {mask_pan(card.pan)} has no concession to revoke")
        record = _queue(card, current, Concession(), uow, deps)
        uow.commit()
    return record


def _queue(
    card: Card, current: CardRecord | None, concession: Concession, uow: IssuerUnitOfWork, deps: Deps
) -> CardRecord:
    """Queue ``concession`` as the card's record 1 (``current``: the record the issuer keeps, read once by
    the caller) for its next online contact."""
    card.require(CardAction.SET_CONCESSION)
    if current is None:
        raise NoTransitFile(card.pan)
    data = concession.encode()
    if current.data == data and current.state is RecordState.WRITTEN:
        return current  # on the chip already
    record = transit_record(concession, RecordState.PENDING, deps.clock())
    if record.version <= current.version:  # a version is the change's time; it only goes forward
        record = replace(record, version=current.version + 1)
    uow.card_records.put_transit(card.pan, record)
    if not card.records_pending:
        uow.cards.update(replace(card, records_pending=True))
    return record
