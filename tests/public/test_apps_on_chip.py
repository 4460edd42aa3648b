"""Industry applications written on the chip (docs/public-services.md, "On the chip"), end to end through
the real chain: the service center enables an application → the card's next online purchase (terminal →
acquirer → switch → issuer front end → issuer) carries an issuer script UPDATE RECORD of the applications
file → the chip's file holds the application → any terminal reads it offline → the card's next ARQC
confirms the script and the service center shows it written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citycard.codec.appfile import APP_FILE_SFI
from citycard.issuer.commands import ReplaceCard, ReportLost
from citycard.kernel.events import OutcomeKind
from citycard.pos.apps import read_applications
from citycard.public.commands import DisableApplication, EnableApplication
from citycard.public.handlers import disable_application, enable_application

from tests.pos.chain import PIN, chain
from tests.public.world import PublicWorld

LIBRARY = {"reader_number": "12345678", "deposit_fen": "10000"}


def clock() -> int:
    import time

    return time.time_ns()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PublicWorld]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield PublicWorld(net, tmp_path)


def _on_chip(world: PublicWorld, pan: str | None = None) -> dict[str, tuple[str, dict[str, str]]]:
    """What a terminal reads offline from the card's applications file (a fresh power-on, no host)."""
    records = read_applications(world.tap(pan))
    assert records is not None, "the card has no applications file"
    return {r.app: (r.state, dict(r.data)) for r in records}


def _center(world: PublicWorld) -> dict[str, str]:
    with world.public() as uow:
        return {a.app_code: a.chip for a in uow.apps.of_card(world.net.pan)}


def _written_from_personalisation(world: PublicWorld, pan: str, apps: list[str]) -> None:
    """The service center shows ``apps`` enabled and written on the card, and nothing waits to be sent."""
    with world.public() as uow:
        assert [(a.app_code, a.status.value, a.chip) for a in uow.apps.of_card(pan)] == [
            (app, "enabled", "written") for app in apps
        ]
    assert not _pending(world, pan)


def _pending(world: PublicWorld, pan: str | None = None) -> bool:
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan or world.net.pan)
        assert card is not None
        return card.records_pending


def _buy(world: PublicWorld, fen: int = 100) -> None:
    with world.desk.client(world.net.port) as client:
        sale = world.desk.pos(client).purchase(world.tap(), fen, pin=lambda _: PIN)
    assert sale.approved and sale.outcome.kind is OutcomeKind.APPROVED_ONLINE, sale.outcome.reason


def test_an_enabled_application_reaches_the_chip_at_the_next_online_purchase(world: PublicWorld) -> None:
    absent = _on_chip(world)  # personalised at issuance: the file, every application absent
    assert absent == {"transit": ("absent", {}), "library": ("absent", {}), "health": ("absent", {})}
    assert not _pending(world)

    enable_application(EnableApplication(world.net.pan, "library", LIBRARY), world.public(), clock)
    assert _center(world) == {"library": "pending"} and _pending(world)
    assert _on_chip(world)["library"] == ("absent", {})  # nothing on the chip before it goes online

    _buy(world)  # the answer carries 84 DC 02 B4 <record> <MAC>
    assert _on_chip(world)["library"] == ("enabled", LIBRARY)
    assert _on_chip(world)["transit"] == ("absent", {})
    assert _center(world) == {"library": "sent"} and _pending(world)  # the card has not said so yet

    _buy(world)  # its ARQC's CVR: the last online transaction's one script command processed
    assert _center(world) == {"library": "written"} and not _pending(world)

    disable_application(DisableApplication(world.net.pan, "library"), world.public(), clock)
    assert _center(world) == {"library": "pending"}
    _buy(world)
    assert _on_chip(world)["library"] == ("disabled", LIBRARY)
    _buy(world)
    assert _center(world) == {"library": "written"} and not _pending(world)


def test_a_script_the_card_did_not_apply_is_sent_again(world: PublicWorld) -> None:
    """The card answered, took the approval, but never ran the script (here: the terminal dropped it, as
    when the card is pulled after the second GENERATE AC): its next ARQC reports no script processed, so the
    issuer sends the record again, and confirms it only after the card applied it."""
    health = {"insurance_number": "3301021980123456", "blood_type": "AB"}
    enable_application(EnableApplication(world.net.pan, "health", health), world.public(), clock)
    chip = world.tap()

    def no_update_record(apdu: bytes) -> bytes:
        if apdu[:2] == b"\x84\xdc":
            assert apdu[3] == APP_FILE_SFI << 3 | 0x04 and apdu[2] == 3  # record 3: health
            return b"\x6a\x82"  # not run: the card reports nothing processed
        return chip(apdu)

    with world.desk.client(world.net.port) as client:
        sale = world.desk.pos(client).purchase(no_update_record, 100, pin=lambda _: PIN)
    assert sale.approved, sale.outcome.reason
    assert _center(world) == {"health": "sent"} and _on_chip(world)["health"] == ("absent", {})
    _buy(world)  # re-sent: written on the chip this time
    assert _on_chip(world)["health"] == ("enabled", health)
    assert _center(world) == {"health": "sent"}
    _buy(world)
    assert _center(world) == {"health": "written"} and not _pending(world)


def test_a_replacement_card_is_personalised_with_the_applications_enabled(world: PublicWorld) -> None:
    """Issuance of a successor (a lost card replaced): the applications enabled on the old card are on the
    new chip from personalisation, written, with nothing to send by script."""
    enable_application(EnableApplication(world.net.pan, "library", LIBRARY), world.public(), clock)
    service = world.net.issuer.service
    service.report_lost(ReportLost(world.net.pan))
    new = service.replace_card(ReplaceCard(world.net.pan))
    assert _on_chip(world, new.pan)["library"] == ("enabled", LIBRARY)
    _written_from_personalisation(world, new.pan, ["library"])


def test_a_new_card_of_a_holder_is_personalised_with_the_applications_they_have_enabled(
    world: PublicWorld,
) -> None:
    """Issuance of another card (another product) to a holder who has applications enabled on a live card:
    the new chip carries those enabled (not the disabled ones), written from personalisation; a holder
    without any gets every application absent."""
    from citycard.issuer.commands import AddProduct, IssueCards

    enable_application(EnableApplication(world.net.pan, "library", LIBRARY), world.public(), clock)
    health = {"insurance_number": "3301021980123456", "blood_type": "AB"}
    enable_application(EnableApplication(world.net.pan, "health", health), world.public(), clock)
    disable_application(DisableApplication(world.net.pan, "health"), world.public(), clock)
    service = world.net.issuer.service
    service.add_product(AddProduct("ICBC", "youth-ec", "Youth card", "621226", registered=True))
    (new,) = service.issue_cards(
        IssueCards("ICBC", "youth-ec", holder_name="Li Ming", id_number="11010519491231002X")
    )
    on_chip = _on_chip(world, new.pan)
    assert on_chip == {"transit": ("absent", {}), "library": ("enabled", LIBRARY), "health": ("absent", {})}
    _written_from_personalisation(world, new.pan, ["library"])
    (other,) = service.issue_cards(
        IssueCards("ICBC", "youth-ec", holder_name="Zhao Yun", id_number="110105199001010010")
    )
    assert {state for state, _ in _on_chip(world, other.pan).values()} == {"absent"}
