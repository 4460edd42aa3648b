"""Handlers of the public services: ``(command, unit of work, clock)`` (Cosmic Python)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from citycard.codec.pan import mask_pan

from .commands import DisableApplication, EnableApplication, Inquire, SeedRecords
from .model import (
    APPLICATIONS,
    AppStatus,
    CardApplication,
    CitizenRecords,
    InquiryRefused,
    NotFound,
    PublicError,
    check_inquiry,
    moved,
    simulated_records,
)
from .ports import PublicUnitOfWork

__all__ = [
    "applications_of",
    "disable_application",
    "enable_application",
    "inquire",
    "records_of",
    "seed_records",
]

Clock = Callable[[], int]
SEED_BATCH = 1000
"""Citizens seeded per transaction."""


def enable_application(cmd: EnableApplication, uow: PublicUnitOfWork, clock: Clock) -> CardApplication:
    with uow:
        if not uow.apps.card_exists(cmd.pan, for_update=True):
            raise NotFound("no such card")
        if not uow.apps.card_registered(cmd.pan):
            raise PublicError(
                f"card {mask_pan(cmd.pan)} is not registered: an industry application is kept for the card's "
                "registered holder"
            )
        current = uow.apps.get(cmd.pan, cmd.app, for_update=True)
        status = moved(current.status if current else None, "enable", cmd.app)
        app = CardApplication(cmd.pan, cmd.app, status, dict(cmd.data), _version(current, clock))
        uow.apps.put(app)
        uow.commit()
    return app


def disable_application(cmd: DisableApplication, uow: PublicUnitOfWork, clock: Clock) -> CardApplication:
    with uow:
        if not uow.apps.card_exists(cmd.pan, for_update=True):
            raise NotFound("no such card")
        current = uow.apps.get(cmd.pan, cmd.app, for_update=True)
        status = moved(current.status if current else None, "disable", cmd.app)
        assert current is not None and status is AppStatus.DISABLED
        app = CardApplication(cmd.pan, cmd.app, status, current.data, _version(current, clock))
        uow.apps.put(app)
        uow.commit()
    return app


def applications_of(pan: str, uow: PublicUnitOfWork) -> dict[str, CardApplication | None]:
    """Every application of the registry (:data:`~.model.APPLICATIONS`, in its order) with its state on
    the card ``pan`` (None: never put on it); :class:`NotFound` for an unknown card."""
    with uow:
        if not uow.apps.card_exists(pan):
            raise NotFound(f"no card {mask_pan(pan)}")
        found = {a.app_code: a for a in uow.apps.of_card(pan)}
    return {code: found.get(code) for code in APPLICATIONS}


def _version(current: CardApplication | None, clock: Clock) -> int:
    """The change's time, above the one it replaces: it is the version the issuer's write of the chip
    state is conditioned on (a record read before this change is not written over it)."""
    now = clock()
    return now if current is None else max(now, current.changed_ns + 1)


def inquire(cmd: Inquire, uow: PublicUnitOfWork, clock: Clock) -> CitizenRecords:
    """The records of the holder whose card and PIN the issuer just verified at ``cmd.terminal_id``
    (:func:`~.model.check_inquiry`); the verification is spent (one inquiry each)."""
    now = clock()
    with uow:
        approval = uow.inquiries.approval(cmd.terminal_id, cmd.rrn)
        citizen = check_inquiry(approval, cmd.terminal_id, now)
        assert approval is not None
        if not uow.inquiries.mark_used(approval.request_id, cmd.terminal_id, citizen, now):
            raise InquiryRefused("this verification was used for an inquiry already: verify the card again")
        records = uow.records.get(citizen) or CitizenRecords(citizen, None, None)
        uow.commit()
    return records


def records_of(citizen_key: str, uow: PublicUnitOfWork) -> CitizenRecords:
    """A citizen's own records (the citizen portal, once its login has said who the citizen is)."""
    with uow:
        return uow.records.get(citizen_key) or CitizenRecords(citizen_key, None, None)


def seed_records(cmd: SeedRecords, uow: PublicUnitOfWork, clock: Clock) -> int:
    """Records for every registered cardholder that has none (deterministic from the seed); how many."""
    done = 0
    while True:
        with uow:
            keys = uow.records.citizens_without_records(SEED_BATCH)
            for key in keys:
                done += uow.records.add(simulated_records(key, cmd.seed, today=cmd.today), clock())
            uow.commit()
        if len(keys) < SEED_BATCH:
            return done


def today(clock: Clock) -> str:
    """YYYYMMDD of the clock's time (UTC)."""
    return dt.datetime.fromtimestamp(clock() / 1e9, dt.UTC).strftime("%Y%m%d")
