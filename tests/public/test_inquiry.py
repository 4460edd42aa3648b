"""An information inquiry only the card's holder can make: the card and its PIN verified online by the
issuer through the real chain (a balance inquiry with the PIN block from the self-service terminal), then
the service center serves that holder's records, once. Another card's PIN or a wrong PIN: declined (the
try counted like any online PIN), and no records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citycard.public.commands import Inquire, SeedRecords
from citycard.public.handlers import inquire, seed_records
from citycard.public.model import InquiryRefused, MalformedInput

from tests.pos.chain import PIN, chain
from tests.public.world import HOSPITAL_DESK, OTHER_PIN, SELF_SERVICE, PublicWorld

LI_MING_ID = "11010519491231002X"  # the chain's holder (tests/pos/chain.py)


def clock() -> int:
    import time

    return time.time_ns()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PublicWorld]:
    with chain(tmp_path / "home", monkeypatch, more_banks={"BOC": "621661"}) as net:
        w = PublicWorld(net, tmp_path)
        assert seed_records(SeedRecords(7, "20261203"), w.public(), clock) == 2
        yield w


def _verify(world: PublicWorld, pan: str, pin: str, counter: str = "kiosk") -> tuple[bool, str, str]:
    """The balance inquiry with the PIN at a terminal: (approved, RRN, the outcome's reason)."""
    terminal = world.kiosk if counter == "kiosk" else world.desk
    with terminal.client(world.net.port) as client:
        result = terminal.pos(client).balance_inquiry(world.tap(pan), pin=lambda _: pin)
        answer = client.answers.get(result.entry.txn_id) if result.entry is not None else None
    return result.approved, (answer.rrn or "") if answer else "", result.outcome.reason


def _key(world: PublicWorld, pan: str) -> str:
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan)
        assert card is not None and card.holder_id is not None
        holder = uow.cardholders.get(card.holder_id)
        assert holder is not None
        return holder.citizen_key


def test_the_holder_sees_their_own_records_once(world: PublicWorld) -> None:
    approved, rrn, reason = _verify(world, world.net.pan, PIN)
    assert approved, reason
    records = inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock)
    assert records.citizen_key == _key(world, world.net.pan)
    assert records.social_security is not None and records.social_security.contribution_months >= 12
    assert records.medical_insurance is not None
    with pytest.raises(InquiryRefused, match="used for an inquiry already"):
        inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock)

    approved, rrn, reason = _verify(world, world.other_pan, OTHER_PIN)
    assert approved, reason
    other = inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock)
    assert other.citizen_key == _key(world, world.other_pan) != records.citizen_key


def test_one_holders_cards_of_two_banks_reach_the_same_records_and_no_one_elses(world: PublicWorld) -> None:
    """Li Ming holds an ICBC card (the chain's) and a BOC card: each bank hashes the ID number under its own
    key (two ``id_hash``), but the records belong to the holder (one ``citizen_key``), so the self-service
    terminal serves the same records through either card, verified by either bank's PIN check."""
    boc_pan = world.card_at("BOC", "Li Ming", LI_MING_ID, "112233")
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        holders = [uow.cardholders.get(uow.cards.get(p).holder_id or 0) for p in (world.net.pan, boc_pan)]
    icbc_holder, boc_holder = holders
    assert icbc_holder is not None and boc_holder is not None
    assert icbc_holder.id != boc_holder.id and icbc_holder.id_hash != boc_holder.id_hash
    assert seed_records(SeedRecords(7, "20261203"), world.public(), clock) == 0  # the citizen has records

    served = []
    for pan, pin in ((world.net.pan, PIN), (boc_pan, "112233")):
        approved, rrn, reason = _verify(world, pan, pin)
        assert approved, reason
        served.append(inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock))
    by_icbc, by_boc = served
    assert by_icbc == by_boc and by_icbc.social_security is not None
    assert by_icbc.citizen_key == _key(world, boc_pan) == _key(world, world.net.pan)

    approved, rrn, reason = _verify(world, world.other_pan, OTHER_PIN)  # Wang Fang's card: her records
    assert approved, reason
    other = inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock)
    assert other.citizen_key != by_icbc.citizen_key and other != by_icbc
    approved, rrn, _ = _verify(world, boc_pan, OTHER_PIN)  # Li Ming's BOC card with Wang Fang's PIN
    assert not approved
    if rrn:
        with pytest.raises(InquiryRefused):
            inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock)


def test_another_cards_pin_or_a_wrong_pin_is_refused_and_counted(world: PublicWorld) -> None:
    for pin in (OTHER_PIN, "000000"):
        approved, rrn, reason = _verify(world, world.net.pan, pin)
        assert not approved and "(55)" in reason, reason  # incorrect PIN
        if rrn:
            with pytest.raises(InquiryRefused, match="declined"):
                inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock)
    assert world.net.status()["online_pin_failures"] == 2
    approved, rrn, reason = _verify(world, world.net.pan, PIN)  # the right PIN resets the count
    assert approved, reason
    assert world.net.status()["online_pin_failures"] == 0


def test_a_verification_elsewhere_or_unknown_opens_nothing(world: PublicWorld) -> None:
    approved, rrn, reason = _verify(world, world.net.pan, PIN, counter="desk")  # at the hospital's desk
    assert approved, reason
    with pytest.raises(InquiryRefused, match="another terminal"):
        inquire(Inquire(SELF_SERVICE, rrn), world.public(), clock)
    with pytest.raises(InquiryRefused, match="RRN unknown"):
        inquire(Inquire(SELF_SERVICE, "999999999999"), world.public(), clock)
    with pytest.raises(InquiryRefused, match="not a balance inquiry"):  # a purchase proves no PIN check
        sale = _purchase(world)
        inquire(Inquire(HOSPITAL_DESK, sale), world.public(), clock)
    for terminal, bad in ((SELF_SERVICE, "12345"), ("self", "000000000001")):
        with pytest.raises(MalformedInput):
            Inquire(terminal, bad)
    with world.public() as uow:
        assert uow.inquiries.approval(HOSPITAL_DESK, rrn) is not None  # nothing was spent


def _purchase(world: PublicWorld) -> str:
    with world.desk.client(world.net.port) as client:
        sale = world.desk.pos(client).purchase(world.tap(), 15_000, pin=lambda _: PIN)
        assert sale.approved and sale.entry is not None, sale.outcome.reason
        rrn = client.answers[sale.entry.txn_id].rrn
    assert rrn is not None
    return rrn
