"""Transit concessions from the issuer, end to end (docs/transit.md, "Concessions from the issuer"): the
bank queues a registered holder's concession → the card's next online purchase through the real chain
(terminal → acquirer → switch → issuer front end → issuer) carries the issuer script UPDATE RECORD
``84 DC 01 AC`` MACed in the HSM → a bus validator, offline, charges the concession fare from the card's
transit file → the card's next ARQC confirms the record. A revoked or expired concession pays the full
fare; an unregistered card, a past date and a card without the transit file are refused, nothing written.
At issuance the card is personalised with the transit file and the holder's concession."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from citycard.chip.card import Card as ChipCard
from citycard.codec.transitfile import Category, Concession
from citycard.db.issuer_tables import issuer_card_transit
from citycard.files import card_image_path, load_card
from citycard.issuer.commands import (
    ActivateCard,
    AddProduct,
    IssueCards,
    LoadEcFromAccount,
    MalformedRequest,
    ReplaceCard,
    ReportLost,
    RevokeConcession,
    SetConcession,
)
from citycard.issuer.decision import beijing_date
from citycard.issuer.model import CardStateError, NoTransitFile, RecordState
from citycard.issuer.usecases.concessions import UnregisteredConcession
from citycard.kernel.events import OutcomeKind
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal
from citycard.transit import FareHook, Network, Tap, TripSealer

from tests.chip.conftest import counter_rng
from tests.pos.chain import PIN, chain
from tests.public.world import PublicWorld

TODAY = beijing_date(time.time_ns())  # the bank's day (UTC+8), as the issuer checks a date
SOON = TODAY + dt.timedelta(days=30)  # a last day not past even when the run crosses Beijing's midnight


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PublicWorld]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield PublicWorld(net, tmp_path)


def _buy(world: PublicWorld, pan: str | None = None) -> None:
    """An online contact purchase at the hospital desk (above the EC balance: online): the card's next online
    contact."""
    with world.desk.client(world.net.port) as client:
        sale = world.desk.pos(client).purchase(world.tap(pan), 5_000, pin=lambda _: PIN)
    assert sale.approved and sale.outcome.kind is OutcomeKind.APPROVED_ONLINE, sale.outcome.reason


def _ride(world: PublicWorld, network: Network, sealer: TripSealer, when: dt.datetime, tid: str):
    """One tap on flat line 1 (CNY 2.00; students 50 %, elderly free) at validator ``tid``, offline."""
    journal = SqliteJournal(world.net.home.parent / f"{tid}.db", tid)
    config = world.desk.config
    pos = PosTerminal(config, journal, clock=lambda: when, rng=random.Random(tid).randbytes)
    hook = FareHook(network, Tap(when, 1, 0, False, tid), sealer)
    result = pos.validate(world.tap(interface="contactless"), 0, extension=hook)
    assert result.approved, result.outcome.reason
    return result.entry.amount_fen, hook


def _record(world: PublicWorld, pan: str | None = None):
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan or world.net.pan)
        assert card is not None
        return uow.card_records.transit(card.pan), card.records_pending


def _on_chip(world: PublicWorld, pan: str | None = None) -> Concession:
    chip = world.chips.get(pan or world.net.pan)
    if chip is None:  # not yet in the field: its personalised image
        image = load_card(card_image_path(world.net.home / "cards", "ICBC", pan or world.net.pan))
        chip = ChipCard(image, counter_rng(b"x"))
    (transit,) = [v for k, v in chip.image.nvm.items() if k.endswith(".transit")]
    return Concession.decode(bytes.fromhex(transit[0]))


def test_a_concession_queued_at_the_bank_reaches_the_chip_and_the_validator(
    world: PublicWorld, network: Network, sealer: TripSealer
) -> None:
    service = world.net.issuer.service
    assert _on_chip(world) == Concession()  # issued with the transit file, no concession
    until = TODAY + dt.timedelta(days=200)
    service.load_ec_from_account(LoadEcFromAccount(world.net.pan, 2_000, "ec-1"))
    _buy(world)  # PUT DATA 9F79: the EC balance for the bus
    record = service.set_concession(SetConcession(world.net.pan, "student", until))
    assert record.state is RecordState.PENDING and _record(world)[1]
    assert _on_chip(world) == Concession()  # nothing on the chip before its next online contact

    morning = dt.datetime.combine(TODAY, dt.time(7, 30))
    before, hook = _ride(world, network, sealer, morning, "BUS00101")
    assert before == 200 and "concession" not in hook.fare.reason

    _buy(world)  # the answer carries UPDATE RECORD 84 DC 01 AC, MACed in the HSM
    assert _on_chip(world) == Concession(Category.STUDENT, until)
    state, pending = _record(world)
    assert state is not None and state.state is RecordState.SENT and pending

    fare, hook = _ride(world, network, sealer, morning + dt.timedelta(hours=2), "BUS00102")
    assert fare == 100 and "concession 50%" in hook.fare.reason

    _buy(world)  # its ARQC's CVR: the last online transaction's scripts all processed
    state, pending = _record(world)
    assert state is not None and state.state is RecordState.WRITTEN and not pending

    # the same concession again: nothing to send
    assert service.set_concession(SetConcession(world.net.pan, "student", until)).state is RecordState.WRITTEN
    assert not _record(world)[1]

    # expired on the chip: the validator's day after the last valid day pays the full fare
    after = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(8, 0))
    late, hook = _ride(world, network, sealer, after, "BUS00103")
    assert late == 200 and "concession" not in hook.fare.reason

    service.revoke_concession(RevokeConcession(world.net.pan))
    _buy(world)
    assert _on_chip(world) == Concession()
    full, _ = _ride(world, network, sealer, morning + dt.timedelta(hours=5), "BUS00104")
    assert full == 200
    with pytest.raises(CardStateError, match="no concession to revoke"):
        service.revoke_concession(RevokeConcession(world.net.pan))


def test_what_the_bank_refuses_writes_nothing(world: PublicWorld) -> None:
    service = world.net.issuer.service
    with pytest.raises(MalformedRequest, match="past"):
        service.set_concession(SetConcession(world.net.pan, "elderly", TODAY - dt.timedelta(days=1)))
    with pytest.raises(MalformedRequest, match="category"):
        SetConcession(world.net.pan, "veteran", TODAY)
    service.add_product(AddProduct("ICBC", "ec-anon", "Anonymous EC card", "621226", registered=False))
    (anonymous,) = service.issue_cards(IssueCards("ICBC", "ec-anon"))
    assert _on_chip(world, anonymous.pan) == Concession()  # it has the transit file all the same
    with pytest.raises(UnregisteredConcession):
        service.set_concession(SetConcession(anonymous.pan, "student", SOON))
    # a card personalised before the issuer's cards carried the transit file (migration 0024 gives it no row)
    with world.net.issuer.unit_of_work() as uow:
        uow.session.execute(delete(issuer_card_transit).where(issuer_card_transit.c.pan == world.net.pan))
        uow.commit()
    with pytest.raises(NoTransitFile, match="no transit file"):
        service.set_concession(SetConcession(world.net.pan, "student", SOON))
    assert _record(world) == (None, False)  # nothing queued, the card not marked


def test_a_concession_at_issuance_is_personalised_and_follows_to_the_replacement(world: PublicWorld) -> None:
    service = world.net.issuer.service
    until = TODAY + dt.timedelta(days=3650)
    (card,) = service.issue_cards(
        IssueCards(
            "ICBC",
            "debit-ec",
            holder_name="Zhao Lan",
            id_number="110105194901010013",
            concession="elderly",
            concession_until=until,
        )
    )
    service.activate(ActivateCard(card.pan))
    assert _on_chip(world, card.pan) == Concession(Category.ELDERLY, until)
    record, pending = _record(world, card.pan)
    assert record is not None and record.state is RecordState.WRITTEN and not pending
    service.report_lost(ReportLost(card.pan))
    new = service.replace_card(ReplaceCard(card.pan))
    assert _on_chip(world, new.pan) == Concession(Category.ELDERLY, until)
    with pytest.raises(MalformedRequest, match="registered holder"):
        IssueCards("ICBC", "debit-ec", concession="student", concession_until=until)


def test_the_service_centers_transit_application_is_the_concession_the_validators_read(
    world: PublicWorld, network: Network, sealer: TripSealer
) -> None:
    """Enabling the transit concession application (docs/public-services.md) on a registered card also
    rewrites its transit file's record 1: both records go to the chip with the next online contact."""
    from citycard.public.commands import DisableApplication, EnableApplication
    from citycard.public.handlers import disable_application, enable_application

    service = world.net.issuer.service
    service.load_ec_from_account(LoadEcFromAccount(world.net.pan, 2_000, "ec-2"))
    until = TODAY + dt.timedelta(days=100)
    data = {"category": "elderly", "valid_until": until.strftime("%Y%m%d")}
    enable_application(EnableApplication(world.net.pan, "transit", data), world.public(), time.time_ns)
    record, pending = _record(world)
    assert record is not None and record.state is RecordState.PENDING and pending
    _buy(world)  # PUT DATA 9F79, UPDATE RECORD SFI 22 record 1 and SFI 21 record 1
    assert _on_chip(world) == Concession(Category.ELDERLY, until)
    morning = dt.datetime.combine(TODAY, dt.time(7, 30))
    free, hook = _ride(world, network, sealer, morning, "BUS00101")
    assert free == 0 and "concession 0%" in hook.fare.reason
    _buy(world)  # the next ARQC confirms both
    record, pending = _record(world)
    assert record is not None and record.state is RecordState.WRITTEN and not pending
    disable_application(DisableApplication(world.net.pan, "transit"), world.public(), time.time_ns)
    _buy(world)
    assert _on_chip(world) == Concession()


def _center_transit(world: PublicWorld) -> tuple[str, dict[str, str], str, int] | None:
    """The service center's transit application of the card: status, data, chip state, version."""
    with world.public() as uow:
        app = uow.apps.get(world.net.pan, "transit")
    return None if app is None else (app.status.value, dict(app.data), app.chip, app.changed_ns)


def test_the_banks_concession_updates_the_service_centers_transit_application(world: PublicWorld) -> None:
    """The other direction: a concession the bank grants or revokes (SetConcession, RevokeConcession) makes
    the service center's transit application (SFI 22 record 1) match, in the same transaction, and the
    card's applications file gets it with the concession record."""
    from citycard.pos.apps import read_applications

    service = world.net.issuer.service
    assert _center_transit(world) is None
    until = TODAY + dt.timedelta(days=300)
    data = {"category": "student", "valid_until": until.strftime("%Y%m%d")}
    service.set_concession(SetConcession(world.net.pan, "student", until))
    granted = _center_transit(world)
    assert granted is not None and granted[:3] == ("enabled", data, "pending")
    _buy(world)  # UPDATE RECORD SFI 21 record 1 and SFI 22 record 1
    records = read_applications(world.tap())
    assert records is not None and {r.app: (r.state, dict(r.data)) for r in records}["transit"] == (
        "enabled",
        data,
    )
    assert _on_chip(world) == Concession(Category.STUDENT, until)
    _buy(world)  # confirmed
    assert _center_transit(world) == ("enabled", data, "written", granted[3])

    service.set_concession(SetConcession(world.net.pan, "student", until))  # the same: nothing changes
    assert _center_transit(world) == ("enabled", data, "written", granted[3])
    later = until + dt.timedelta(days=365)  # renewed: the new last day
    service.set_concession(SetConcession(world.net.pan, "student", later))
    renewed = _center_transit(world)
    assert renewed is not None and renewed[1]["valid_until"] == later.strftime("%Y%m%d")
    assert renewed[2] == "pending" and renewed[3] > granted[3]

    service.revoke_concession(RevokeConcession(world.net.pan))
    revoked = _center_transit(world)
    assert revoked is not None and revoked[:3] == ("disabled", renewed[1], "pending")  # its data kept
    _buy(world)
    records = read_applications(world.tap())
    assert records is not None and {r.app: r.state for r in records}["transit"] == "disabled"
    assert _on_chip(world) == Concession()
