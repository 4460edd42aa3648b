"""A validator's fares carry its bus line and vehicle from the journal to the bus company's statement:
the 0320 upload has them in field 63 (``codec.iso8583.busride``), the real acquirer keeps them with the
upload, clearing keeps them on the presentment and the item, and the settlement's merchant statement of
the bus company sums its fares by line (``L`` rows). A field 63 of another layout is refused with 30 and
nothing is kept."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.model import TerminalKind
from citycard.clearing import ClearingPolicy
from citycard.clearing.calendar import clearing_date_of
from citycard.cli import run
from citycard.codec.iso8583 import BusRide, Iso8583Error
from citycard.config import settings
from citycard.db.clearing_repositories import ClearingEngine
from citycard.db.clearing_tables import clearing_items, clearing_presentments
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.durable import StagedFolder
from citycard.issuer.commands import LoadEcFromAccount
from citycard.kernel.events import OutcomeKind
from citycard.pos.online import upload_request
from citycard.settlement import settle_day
from citycard.sqlite_journal import SqliteJournal
from citycard.transit import FareHook, Network, Tap, TripSealer

from tests.pos.chain import PIN, chain
from tests.public.world import Counter, PublicWorld

BUS_COMPANY = "CITYBUS00000001"
FRONT, BACK = "BUS00101", "BUS00501"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PublicWorld]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield PublicWorld(net, tmp_path)


def _validator(world: PublicWorld, tid: str, line: int, vehicle: str) -> Counter:
    from citycard import bootstrap

    center = bootstrap.Center(settings(), world.net.issuer.database, world.net.issuer.hsm)
    center.handle(AddTerminal(tid, BUS_COMPANY, TerminalKind.VALIDATOR, line, vehicle))
    journal = SqliteJournal(world.net.home.parent / f"{tid}.db", tid)
    config = replace(world.desk.config, terminal_id=tid.encode(), merchant_id=BUS_COMPANY.encode())
    return Counter(tid, BUS_COMPANY, journal, config)


def test_fares_by_line_from_the_validator_to_the_bus_companys_statement(
    world: PublicWorld,
    network: Network,
    sealer: TripSealer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from citycard import bootstrap

    center = bootstrap.Center(settings(), world.net.issuer.database, world.net.issuer.hsm)
    center.handle(AddMerchant(BUS_COMPANY, "City Bus Company", "4131", "Xihu", "ICBC"))
    world.net.issuer.service.load_ec_from_account(LoadEcFromAccount(world.net.pan, 2_000, "ec-bus"))
    with world.desk.client(world.net.port) as client:  # the load reaches the chip (PUT DATA 9F79)
        sale = world.desk.pos(client).purchase(world.tap(), 5_000, pin=lambda _: PIN)
    assert sale.outcome.kind is OutcomeKind.APPROVED_ONLINE, sale.outcome.reason

    now = dt.datetime.now().replace(microsecond=0) - dt.timedelta(hours=3)
    later = now + dt.timedelta(minutes=30)  # within the transfer window: CNY 1.00 off
    rides = [(FRONT, 1, "K1-0815", now, 200), (BACK, 5, "K5-0042", later, 100)]
    for tid, line, vehicle, when, fen in rides:
        validator = _validator(world, tid, line, vehicle)
        with validator.client(world.net.port) as client:
            pos = validator.pos(client)
            pos.clock = lambda when=when: when  # the ride's time: the second within the transfer window
            hook = FareHook(network, Tap(when, line, 0, False, tid), sealer)
            fare = pos.validate(world.tap(interface="contactless"), 0, extension=hook, bus=(line, vehicle))
            assert fare.approved and fare.entry is not None and fare.entry.amount_fen == fen, hook.fare
            assert client.upload().acknowledged
            kept = world.upload(tid, fare.entry.batch, fare.entry.stan)
            assert (kept.bus_line, kept.vehicle, kept.amount_fen) == (line, vehicle, fen)

    policy = ClearingPolicy()
    issuer = world.net.issuer
    engine = ClearingEngine(
        issuer.database, issuer.hsm, policy, record_offline_clearing=issuer.service.record_offline_clearing
    )
    day = clearing_date_of(time.time_ns(), policy.cutovers.of("ICBC"))
    # the depot's journal exports too, imported before the run stages the uploads: the presentments they
    # make carry the line and vehicle the validators journaled (the uploads' then agree with them)
    exports = tmp_path / "exports"
    for tid, *_ in rides:
        journal = SqliteJournal(world.net.home.parent / f"{tid}.db", tid)
        journal.export(exports)
        journal.close()
    assert engine.import_journal(exports, day) == 2
    with issuer.database.engine.connect() as c:
        p = clearing_presentments.c
        staged = c.execute(select(p.terminal_id, p.bus_line, p.vehicle).order_by(p.terminal_id)).all()
    assert [tuple(r) for r in staged] == [(FRONT, 1, "K1-0815"), (BACK, 5, "K5-0042")]
    engine.run(day)
    with issuer.database.engine.connect() as c:
        rows = c.execute(
            select(clearing_items.c.kind, clearing_items.c.bus_line, clearing_items.c.vehicle)
            .where(clearing_items.c.merchant_id == BUS_COMPANY)
            .order_by(clearing_items.c.bus_line)
        ).all()
    assert [tuple(r) for r in rows] == [("fare", 1, "K1-0815"), ("fare", 5, "K5-0042")]

    with StagedFolder(tmp_path / "settlement") as folder:
        uow = lambda: issuer.database.unit_of_work(SettlementUnitOfWork)  # noqa: E731
        settle_day(uow, day.isoformat(), clock=time.time_ns, sink=folder)
    statement = (tmp_path / "settlement" / f"merchant-{BUS_COMPANY}.csv").read_text(encoding="utf-8")
    lines = [r for r in csv.reader(io.StringIO(statement)) if r and r[0] == "L"]
    assert [r[:6] for r in lines] == [
        ["L", "bus_line", "1", "fares", "1", "gross_fen"],
        ["L", "bus_line", "5", "fares", "1", "gross_fen"],
    ]
    assert [int(r[6]) for r in lines] == [200, 100]  # gross by line
    # and the command line's report of the bus company's day
    capsys.readouterr()
    assert run(["settlement", "report", "--date", day.isoformat(), "--merchant", BUS_COMPANY, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["fares_by_line"] == [
        {"line": 1, "fares": 1, "gross_fen": 200},
        {"line": 5, "fares": 1, "gross_fen": 100},
    ]
    assert run(["settlement", "report", "--date", day.isoformat(), "--merchant", BUS_COMPANY]) == 0
    printed = capsys.readouterr().out
    assert "fares by bus line" in printed and "1.00" in printed


def test_a_field_63_of_another_layout_is_refused_and_nothing_kept(world: PublicWorld) -> None:
    with pytest.raises(Iso8583Error, match="field 63"):
        BusRide.from_field63(b"BL00012k12 0815        ")
    assert BusRide.from_field63(BusRide(12, "K12-0815").to_field63()) == BusRide(12, "K12-0815")
    assert BusRide.of(12, "k12") is None and BusRide.of(None, "K12") is None
    from citycard.hosts.terminal import AcquirerClient

    bad = upload_request(
        identity=world.desk.client(world.net.port).identity,
        pan=world.net.pan, psn="01", expiry="", amount_fen=200, stan=77, batch=1, interface="contactless",
        field55=bytes.fromhex("9F2701409F360200019F2608" + "11" * 8),
    )  # fmt: skip
    good = replace(bad, private63=BusRide(12, "K12-0815").to_field63())
    bad = replace(bad, private63=b"XX" + b"0" * 21)
    with world.desk.client(world.net.port) as client:
        assert isinstance(client, AcquirerClient)
        assert client._send(bad).response_code == "30"
        assert world.net.uploads() == 0
        assert client._send(good).response_code == "00"  # the same upload with a bus ride of the layout
    assert world.net.uploads() == 1
