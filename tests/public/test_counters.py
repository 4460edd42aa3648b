"""A hospital registration fee paid at the hospital's desk through the real chain (terminal → acquirer →
switch → issuer front end → issuer, loopback sockets), online from the deposit account and offline from
the EC wallet, its reference (field 48) in the terminal's journal, the acquirer's record or upload, and the
issuer's authorization record, all naming the hospital as merchant; bad input refused with nothing moved."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from citycard.codec.iso8583 import ServiceReference, ServiceReferenceError, parse
from citycard.codec.iso8583.wire import decode_message
from citycard.kernel.events import OutcomeKind

from tests.pos.chain import PIN, chain
from tests.public.world import HOSPITAL, HOSPITAL_DESK, PublicWorld

REF = "HR-202612030017"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PublicWorld]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield PublicWorld(net, tmp_path)


def test_registration_fee_paid_online_carries_its_reference_to_the_issuer(world: PublicWorld) -> None:
    before = world.net.status()["deposit_available_fen"]
    with world.desk.client(world.net.port) as client:
        pos = world.desk.pos(client)
        sale = pos.purchase(world.tap(), 15_000, pin=lambda _: PIN, service_ref=REF)
        assert sale.approved and sale.outcome.kind is OutcomeKind.APPROVED_ONLINE, sale.outcome.reason
        assert sale.entry is not None and sale.entry.service_ref == REF
        answer = client.answers[sale.entry.txn_id]
    assert world.net.status()["deposit_available_fen"] == before - 15_000
    record = world.acquirer_record(HOSPITAL_DESK, sale.entry.batch, sale.entry.stan)
    assert record.service_ref == REF and record.merchant_id == HOSPITAL and record.response_code == "00"
    assert answer.rrn == record.rrn
    with world.net.issuer.unit_of_work(read_only=True) as uow:
        (stored,) = [
            a
            for a in (
                uow.authorizations.get(f"{bank.institution_id}-{record.rrn}") for bank in uow.banks.list()
            )
            if a is not None
        ]
    assert stored.service_ref == REF and stored.merchant_id == HOSPITAL and stored.kind == "purchase"


def test_registration_fee_paid_offline_from_the_ec_wallet_uploads_its_reference(world: PublicWorld) -> None:
    with world.desk.client(world.net.port) as client:
        pos = world.desk.pos(client)
        assert pos.load(world.tap(), 10_000, pin=lambda _: PIN).approved  # electronic cash on the chip
        sale = pos.purchase(world.tap(), 1_250, service_ref=REF)
        assert sale.approved and sale.outcome.kind is OutcomeKind.APPROVED_OFFLINE, sale.outcome.reason
        assert sale.entry is not None and sale.entry.service_ref == REF
        done = client.upload()
    assert done.acknowledged == (sale.entry.txn_id,) and not done.failed
    kept = world.upload(HOSPITAL_DESK, sale.entry.batch, sale.entry.stan)
    assert kept.service_ref == REF and kept.merchant_id == HOSPITAL and kept.amount_fen == 1_250
    message = parse(decode_message(kept.message))
    assert message.additional_data == "900112202612030017"
    assert ServiceReference.from_field48(message.additional_data).text == REF


def test_a_malformed_reference_is_refused_before_the_card_is_asked(world: PublicWorld) -> None:
    before = world.net.status()
    with world.desk.client(world.net.port) as client:
        pos = world.desk.pos(client)
        for bad in ("HR-", "XX-123", "HR-12AB", "HR-" + "1" * 29, "202612030017"):
            with pytest.raises(ServiceReferenceError):
                pos.purchase(world.tap(), 15_000, pin=lambda _: PIN, service_ref=bad)
    assert world.desk.journal.entries() == []
    assert world.net.status() == before


def test_the_fees_clear_to_the_hospital_with_their_reference(world: PublicWorld) -> None:
    """Clearing (the day of the transactions) copies the reference to ``clearing_items.service_ref``:
    the online fee from the issuer's authorization, the offline one from the 0320's field 48."""
    from sqlalchemy import select

    from citycard.clearing import ClearingPolicy
    from citycard.clearing.calendar import clearing_date_of
    from citycard.db.clearing_repositories import ClearingEngine
    from citycard.db.clearing_tables import clearing_items

    with world.desk.client(world.net.port) as client:
        pos = world.desk.pos(client)
        online = pos.purchase(world.tap(), 15_000, pin=lambda _: PIN, service_ref=REF)
        assert pos.load(world.tap(), 10_000, pin=lambda _: PIN).approved
        offline = pos.purchase(world.tap(), 1_250, service_ref="HR-202612030018")
        assert online.approved and offline.approved and offline.outcome.kind is OutcomeKind.APPROVED_OFFLINE
        assert client.upload().acknowledged
    policy = ClearingPolicy()
    issuer = world.net.issuer
    engine = ClearingEngine(
        issuer.database, issuer.hsm, policy, record_offline_clearing=issuer.service.record_offline_clearing
    )
    day = clearing_date_of(time.time_ns(), policy.cutovers.of("ICBC"))
    engine.run(day)
    with issuer.database.engine.connect() as c:
        rows = c.execute(
            select(clearing_items.c.kind, clearing_items.c.amount_fen, clearing_items.c.service_ref)
            .where(clearing_items.c.merchant_id == HOSPITAL, clearing_items.c.industry == "hospital")
            .order_by(clearing_items.c.amount_fen)
        ).all()
    assert [tuple(r) for r in rows] == [("purchase", 1_250, "HR-202612030018"), ("purchase", 15_000, REF)]
