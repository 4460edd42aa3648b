"""Rotation of the data key that seals the acquirer's stored messages (``RecordProtection.rotate``,
``citycard.db.record_keys.reseal_rows``) while the chain runs (``tests/pos/chain.py``): rows written before
the rotation stay readable, new ones are sealed under the new version, a re-seal pass in small batches runs
while the terminal keeps uploading, and at the end every row is under the new version and reads back the
same (the messages and the PANs sealed alone); a value altered in place does not open and is left alone;
the operator's commands report each sealed column."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from citycard.db.acquirer_tables import acquirer_uploads
from citycard.db.record_keys import SEALED_COLUMNS, ResealReport, SealedColumn, reseal_rows
from citycard.hsm.api import SealedDataError
from citycard.hsm.protection import RecordProtection

from tests.pos.chain import PIN, chain
from tests.pos.test_online import World


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield World(net, tmp_path)


def _sealed(world: World, columns: tuple[SealedColumn, ...] = SEALED_COLUMNS) -> list[bytes]:
    """Every stored sealed value of ``columns``."""
    with world.net.issuer.database.engine.connect() as connection:
        return [
            bytes(row[0])
            for c in columns
            for row in connection.execute(select(c.sealed).where(c.sealed.is_not(None)))
        ]


def _offline_sales(world: World, client, amounts: list[int]) -> list:  # type: ignore[no-untyped-def]
    pos = world.pos(client)
    sales = [pos.purchase(world.tap(), amount) for amount in amounts]
    assert all(sale.approved and sale.entry is not None for sale in sales)
    assert not client.upload().failed
    return sales


def test_rotation_and_reseal_while_the_terminal_uploads_lose_nothing(world: World) -> None:
    protection = RecordProtection.open(world.net.issuer.hsm)
    with world.client() as client:
        assert world.pos(client).load(world.tap(), 20_000, pin=lambda _: PIN).approved
        sales = _offline_sales(world, client, [100, 200, 300, 400])
        before = _sealed(world)
        assert before and {RecordProtection.key_version(s) for s in before} == {1}

        assert protection.rotate() == 2
        reports: list[ResealReport] = []
        pass_ = threading.Thread(
            target=lambda: reports.append(reseal_rows(world.net.issuer.database, protection, batch=1))
        )
        pass_.start()
        sales += _offline_sales(world, client, [500, 600])  # the acquirer keeps writing meanwhile
        pass_.join(60)
        assert (
            reports
            and reports[0].unreadable == 0
            and reports[0].resealed >= len(before) - reports[0].changed_meanwhile
        )
    final = reseal_rows(
        world.net.issuer.database, protection, batch=2
    )  # rows the running host sealed under v1
    assert final.unreadable == 0
    after = _sealed(world)
    assert len(after) == len(before) + 2 * 2 and {RecordProtection.key_version(s) for s in after} == {2}
    for sale in sales:  # every upload reads back whole under the new version
        kept = world.net.upload(sale.entry.batch, sale.entry.stan)
        assert kept is not None and kept.amount_fen == sale.entry.amount_fen
    again = reseal_rows(world.net.issuer.database, protection)
    assert again.resealed == 0 and again.current == len(after)


def test_a_sealed_value_altered_in_place_is_counted_and_left_alone(world: World) -> None:
    protection = RecordProtection.open(world.net.issuer.hsm)
    with world.client() as client:
        assert world.pos(client).load(world.tap(), 20_000, pin=lambda _: PIN).approved
        _offline_sales(world, client, [100, 200])
    messages = tuple(c for c in SEALED_COLUMNS if c.name == "acquirer_uploads.sealed")
    (first, second) = _sealed(world, messages)
    damaged = first[:-1] + bytes([first[-1] ^ 1])
    with world.net.issuer.database.engine.begin() as connection:
        connection.execute(
            update(acquirer_uploads).where(acquirer_uploads.c.sealed == first).values(sealed=damaged)
        )
    protection.rotate()
    report = reseal_rows(world.net.issuer.database, protection)
    assert (report.resealed, report.unreadable) == (1 + 2, 1)  # the other message, both PANs sealed alone
    assert report.column("acquirer_uploads.sealed").unreadable == 1
    assert damaged in _sealed(world, messages)  # left as it was: loud where it is read
    with pytest.raises(SealedDataError):
        protection.unseal(damaged, b"citycard/acquirer_uploads/anything")
    assert RecordProtection.key_version(second) == 1


def test_the_operator_commands(world: World) -> None:
    from typer.testing import CliRunner

    from citycard.cli import app

    with world.client() as client:
        assert world.pos(client).load(world.tap(), 20_000, pin=lambda _: PIN).approved
        _offline_sales(world, client, [100])
    runner = CliRunner()
    r = runner.invoke(app, ["records", "rotate"])
    assert r.exit_code == 0 and "version 2 made" in r.output, r.output
    r = runner.invoke(app, ["records", "reseal", "--batch", "1"])
    assert r.exit_code == 0 and "version 2: 2 re-sealed" in r.output, r.output
    for name in ("acquirer_uploads.sealed", "acquirer_uploads.pan_sealed"):  # the message, the PAN alone
        assert f"  {name}: 1 re-sealed, 0 already current" in r.output, r.output
    assert "  clearing_presentments.pan_sealed: 0 re-sealed" in r.output, r.output
    r = runner.invoke(app, ["records", "show"])
    assert r.exit_code == 0 and "version 2: 2 value(s)" in r.output and "version 1" not in r.output, r.output
    assert "  acquirer_uploads.pan_sealed: 1 row(s)" in r.output, r.output
    port = world.net.servers["issuer"].port
    r = runner.invoke(app, ["zone", "rotate", "ICBC", "--to", f"127.0.0.1:{port}"])
    assert r.exit_code == 0 and "ICBC: version 2 in use" in r.output, r.output
    r = runner.invoke(app, ["zone", "show"])
    assert r.exit_code == 0 and "ICBC: version 2" in r.output and "acquirer: version 1" in r.output, r.output
    with world.client() as client:  # the chain works on under the new key
        assert world.pos(client).purchase(world.tap(), 20_100, pin=lambda _: PIN).approved
