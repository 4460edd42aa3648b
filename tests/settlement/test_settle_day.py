"""Settlement of a cleared day on SQLite and PostgreSQL: every ledger account, file and figure to the fen;
net positions sum to zero; a rerun posts nothing and writes the same bytes; a kill -9 in the middle leaves
nothing, and the run after it everything."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from citycard.db import Database
from citycard.db.settlement_repositories import SettlementUnitOfWork, clearing_runs
from citycard.db.settlement_tables import settlement_accounts, settlement_days, settlement_merchants
from citycard.durable import StagedFolder
from citycard.settlement import Account, NotCleared, settle_day, write_files
from citycard.settlement.model import CENTER

from tests.db.dbtargets import KINDS, fresh_database
from tests.settlement.day import (
    BUS,
    DAY,
    HOSPITAL,
    NEXT_DAY,
    RESTAURANT,
    SUPERMARKET,
    add_banks,
    network_settlement,
    prepare,
)

pytestmark = pytest.mark.xdist_group("settlement")


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        add_banks(db)
        yield db


def read(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def settle(database: Database, folder: Path, day: str = DAY) -> Any:
    with StagedFolder(folder) as stage:
        return settle_day(
            lambda: database.unit_of_work(SettlementUnitOfWork), day, clock=lambda: 7, sink=stage
        )


def balances(database: Database) -> dict[tuple[str, int], int]:
    """Credit balance of every settlement account by (owner, code), and of the network settlement accounts."""
    with database.unit_of_work(read_only=True) as uow:
        rows = uow.session.execute(select(settlement_accounts)).all()
        ids = {(r.owner, r.code): r.account_id for r in rows}
        for bank, account in network_settlement(database).items():
            ids[bank, Account.NETWORK_SETTLEMENT] = account
        found = {a.id: a.credit_balance_fen for a in uow.ledger.lookup_accounts(ids.values())}
        return {key: found[i] for key, i in ids.items()}


def ledger_snapshot(database: Database) -> tuple[Any, ...]:
    with database.unit_of_work(read_only=True) as uow:
        return (
            uow.ledger.totals(),
            tuple(uow.ledger.balances()),
            tuple(t.id for t in uow.ledger.journal(limit=10**5)),
        )


EXPECTED_BALANCES = {
    ("ICBC", Account.NETWORK_SETTLEMENT): 0,  # 27745.00 of the day's spending at ICBC cards, all settled
    ("BOC", Account.NETWORK_SETTLEMENT): 0,
    ("ICBC", Account.INTERBANK): 0,
    ("BOC", Account.INTERBANK): 0,
    (CENTER, Account.CENTER_SETTLEMENT): 0,
    ("ICBC", Account.INTERCHANGE_INCOME): 102,  # 32 + 88 - 18
    ("BOC", Account.INTERCHANGE_INCOME): 31,  # 26 + 5 + 3 - 3
    ("ICBC", Account.ACQUIRING_INCOME): 22,  # supermarket 11 + 9 + 2
    ("BOC", Account.ACQUIRING_INCOME): 43,  # restaurant 54 - 11 + 2 - 2
    (CENTER, Account.NETWORK_FEE_INCOME): 15,  # 4 + 3 + 1 + 8 - 1
    (f"ICBC/{SUPERMARKET}", Account.MERCHANT_PAYABLE): 0,
    (f"ICBC/{BUS}", Account.MERCHANT_PAYABLE): 0,
    (f"BOC/{RESTAURANT}", Account.MERCHANT_PAYABLE): 0,
    (f"BOC/{HOSPITAL}", Account.MERCHANT_PAYABLE): 0,
    ("ICBC", Account.MERCHANT_PAYOUTS): 19250 + 550,
    ("BOC", Account.MERCHANT_PAYOUTS): 19930 + 30000,
}

POSITIONS_CSV = textwrap.dedent(
    """\
    H,settlement_date,20261125,items,12
    record,participant,issued_gross_fen,issuer_fee_fen,acquired_net_fen,acquirer_fee_fen,network_fee_fen,net_position_fen
    D,BOC,42198,31,49930,43,0,7806
    D,ICBC,27745,102,19800,22,0,-7821
    D,CENTER,0,0,0,0,15,15
    T,total,69943,133,69730,65,15,0
    """
).encode()

RESTAURANT_CSV = textwrap.dedent(
    """\
    H,settlement_date,20261125,merchant_id,104110058120001,acquirer_bank,BOC,industry,catering
    record,item_id,source,source_ref,kind,sign,txn_time_utc,terminal_id,pan,rrn,issuer_bank,acquirer_bank,merchant_id,mcc,industry,amount_fen,discount_fen,issuer_fee_fen,network_fee_fen,acquirer_fee_fen,net_fen
    D,4,online,000000000004,purchase,1,2026-11-25T02:04:00.000Z,FOOD0001,621226******0017,000000000004,ICBC,BOC,104110058120001,5812,catering,25050,150,88,8,54,24900
    D,5,online,000000000005,refund,-1,2026-11-25T02:05:00.000Z,FOOD0001,621226******0017,000000000005,ICBC,BOC,104110058120001,5812,catering,-5000,-30,-18,-1,-11,-4970
    D,10,online,000000000010,purchase,1,2026-11-25T02:10:00.000Z,FOOD0001,621661******0025,000000000010,BOC,BOC,104110058120001,5812,catering,888,5,3,0,2,883
    D,11,online,000000000011,void,-1,2026-11-25T02:11:00.000Z,FOOD0001,621661******0025,000000000011,BOC,BOC,104110058120001,5812,catering,-888,-5,-3,0,-2,-883
    T,items,4,gross_fen,20050,discount_fen,120,net_fen,19930
    P,payout_date,20261126,payable_fen,19930,payout_fen,19930
    """
).encode()


def test_a_day_settles_to_the_fen(database: Database, tmp_path: Path) -> None:
    prepare(database)
    before = balances(database)
    assert (
        before["ICBC", Account.NETWORK_SETTLEMENT] == 27745
        and before["BOC", Account.NETWORK_SETTLEMENT] == 42198
    )
    result = settle(database, tmp_path / "out")
    assert result.posted
    positions = {p.participant: p.net_fen for p in result.record.positions}
    assert positions == {"BOC": 7806, "ICBC": -7821, CENTER: 15} and sum(positions.values()) == 0
    assert balances(database) == EXPECTED_BALANCES
    with database.unit_of_work(read_only=True) as uow:
        assert uow.ledger.totals().balanced and uow.ledger.audit() == []
        assert uow.session.execute(select(clearing_runs.c.status)).scalar() == "settled"
        paid = dict(
            uow.session.execute(
                select(settlement_merchants.c.merchant_id, settlement_merchants.c.payout_fen)
            ).all()
        )
    assert paid == {SUPERMARKET: 19250, BUS: 550, RESTAURANT: 19930, HOSPITAL: 30000}

    files = read(tmp_path / "out")
    assert sorted(files) == [
        "MANIFEST",
        "bank-BOC.csv",
        "bank-ICBC.csv",
        "industries.csv",
        f"merchant-{BUS}.csv",
        f"merchant-{SUPERMARKET}.csv",
        f"merchant-{RESTAURANT}.csv",
        f"merchant-{HOSPITAL}.csv",
        "positions.csv",
        "reconciliation.csv",
    ]
    assert files["positions.csv"] == POSITIONS_CSV
    assert files[f"merchant-{RESTAURANT}.csv"] == RESTAURANT_CSV
    for line in files["MANIFEST"].decode().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256(files[name]).hexdigest() == digest
    for bank, net in (("ICBC", -7821), ("BOC", 7806)):  # each item's effect adds up to the bank's position
        rows = [r.split(",") for r in files[f"bank-{bank}.csv"].decode().splitlines()]
        assert sum(int(r[-1]) for r in rows if r[0] == "D") == net
        assert rows[-1][-1] == str(net)
    ICBC_rows = [r for r in files["bank-ICBC.csv"].decode().splitlines() if r.startswith("D,")]
    assert len(ICBC_rows) == 9  # its cards (1, 4, 5, 7, 8, 12) and its merchants (1-3, 6-8, 12)
    assert not any(c.isdigit() and len(c) >= 16 for r in ICBC_rows for c in r.split(","))  # no clear PAN
    assert b"\r" not in b"".join(files.values())
    industries = files["industries.csv"].decode().splitlines()
    assert "D,catering,4,20050,120" in industries and "D,hospital,1,30000,0" in industries
    reconciliation = files["reconciliation.csv"].decode().splitlines()
    assert "T,settled,owed to merchants,4,69730," in reconciliation
    assert "T,paid,payouts value date 20261126,4,69730," in reconciliation


def test_a_rerun_posts_nothing_and_writes_the_same_bytes(database: Database, tmp_path: Path) -> None:
    prepare(database)
    first = settle(database, tmp_path / "a")
    snapshot = ledger_snapshot(database)
    again = settle(database, tmp_path / "b")
    assert first.posted and not again.posted
    assert ledger_snapshot(database) == snapshot
    assert read(tmp_path / "a") == read(tmp_path / "b")


def test_a_day_not_cleared_is_refused_and_changes_nothing(database: Database, tmp_path: Path) -> None:
    prepare(database)
    snapshot = ledger_snapshot(database)
    with pytest.raises(NotCleared, match="2026-11-26 has not been cleared"):
        settle(database, tmp_path / "x", day=NEXT_DAY)
    assert ledger_snapshot(database) == snapshot and not (tmp_path / "x").exists()


def test_negative_payable_is_carried_to_the_next_day(database: Database, tmp_path: Path) -> None:
    from tests.settlement.day import item

    prepare(database)
    settle(database, tmp_path / "d1")
    refund_only = [item(20, "online", "refund", -1, 10000, "ICBC", RESTAURANT)]
    prepare_next(database, NEXT_DAY, refund_only)
    second = settle(database, tmp_path / "d2", day=NEXT_DAY)
    (row,) = second.record.merchants
    assert (row.net_fen, row.balance_fen, row.payout_fen) == (-10000 + 60, -9940, 0)
    third_items = [item(30, "online", "purchase", 1, 20000, "BOC", RESTAURANT)]
    prepare_next(database, "20261127", third_items)
    third = settle(database, tmp_path / "d3", day="20261127")
    (row,) = third.record.merchants
    assert (row.net_fen, row.balance_fen, row.payout_fen) == (20000 - 120, 19880 - 9940, 9940)
    recon = (tmp_path / "d3" / "reconciliation.csv").read_text().splitlines()
    assert f"X,settled-paid,BOC/{RESTAURANT},1,9940,earlier days' balance carried in (-9940 fen)" in recon


def prepare_next(database: Database, day: str, items: list[Any]) -> None:
    from citycard.ledger.model import Transfer

    from tests.settlement.contract import insert_cleared_day
    from tests.settlement.day import CARD_ACCOUNT

    settlement = network_settlement(database)
    with database.unit_of_work() as uow:
        transfers = []
        for it in items:
            card, bank = CARD_ACCOUNT[it.issuer_bank], settlement[it.issuer_bank]
            debit, credit = (card, bank) if it.sign > 0 else (bank, card)
            transfers.append(Transfer(10**6 + int(day) * 100 + it.id, debit, credit, it.amount_fen, code=21))
        assert all(r.value == "ok" for r in uow.ledger.create_transfers(transfers))
        uow.commit()
    insert_cleared_day(database, day, items)


CHILD = """
import os, signal, sys
from citycard.db import Database
from citycard.db.settlement_repositories import SettlementUnitOfWork, SqlSettlementStore
from citycard.settlement import settle_day

url, schema, folder, when = sys.argv[1:5]
database = Database.open(url, schema=schema or None)
original = getattr(SqlSettlementStore, when)

def killed(self, *args, **kwargs):
    result = original(self, *args, **kwargs)
    self.session.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle: after the writes, before the commit

setattr(SqlSettlementStore, when, killed)
settle_day(lambda: database.unit_of_work(SettlementUnitOfWork), sys.argv[2 + 3], clock=lambda: 7, sink=None)
"""


@pytest.mark.parametrize("when", ["ensure_accounts", "payable_balances", "save"])
def test_kill_9_in_the_middle_leaves_nothing_then_the_rerun_settles_it_all(
    database: Database, tmp_path: Path, when: str
) -> None:
    prepare(database)
    snapshot = ledger_snapshot(database)
    url = database.engine.url.render_as_string(hide_password=False)
    schema = _schema_of(database)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, url, schema, str(tmp_path), when, DAY],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert ledger_snapshot(database) == snapshot
    with database.unit_of_work(read_only=True) as uow:
        assert uow.session.execute(select(clearing_runs.c.status)).scalar() == "cleared"
        assert uow.session.execute(select(func.count()).select_from(settlement_days)).scalar() == 0
        assert uow.session.execute(select(func.count()).select_from(settlement_accounts)).scalar() == 0
    result = settle(database, tmp_path / "after")
    assert result.posted and balances(database) == EXPECTED_BALANCES
    assert (tmp_path / "after" / "positions.csv").read_bytes() == POSITIONS_CSV


def _schema_of(database: Database) -> str:
    if database.engine.dialect.name != "postgresql":
        return ""
    with database.engine.connect() as connection:
        return str(connection.exec_driver_sql("SHOW search_path").scalar()).split(",")[0].strip('" ')


CHILD_FILES = """
import os, signal, sys
from citycard import durable
from citycard.db import Database
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.settlement import files, settle_day

url, schema, folder, when = sys.argv[1:5]
database = Database.open(url, schema=schema or None)
files.FLUSH_BYTES = 200  # every file in several writes: the kill lands inside one
flush, publish = files._Csv.flush, durable.StagedFolder.__exit__
count = 0

def killing_flush(self):
    global count
    flush(self)
    count += 1
    if when == f"flush-{count}":
        self.fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def killing_publish(self, *exc):
    if when == "publish":
        os.kill(os.getpid(), signal.SIGKILL)
    return publish(self, *exc)

files._Csv.flush = killing_flush
durable.StagedFolder.__exit__ = killing_publish
with durable.StagedFolder(folder) as stage:
    settle_day(lambda: database.unit_of_work(SettlementUnitOfWork), "20261125", clock=lambda: 7, sink=stage)
"""


@pytest.mark.parametrize("settled_before", [False, True])
@pytest.mark.parametrize("when", ["flush-3", "flush-12", "publish"])
def test_kill_9_while_writing_the_files_publishes_nothing_then_the_rerun_writes_them_all(
    database: Database, tmp_path: Path, when: str, settled_before: bool
) -> None:
    """The day's files are staged and published together: a kill -9 in the middle of a file, between two
    files or just before publishing leaves the day's folder as it was (absent, or the files of an earlier
    run, untouched); the rerun writes them all, the same bytes, and removes what the killed run left."""
    prepare(database)
    day_folder = tmp_path / "settlement" / DAY
    earlier = {}
    if settled_before:
        settle(database, day_folder)
        earlier = read(day_folder)
    url = database.engine.url.render_as_string(hide_password=False)
    child = subprocess.run(
        [sys.executable, "-c", CHILD_FILES, url, _schema_of(database), str(day_folder), when],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    staging = [p.name for p in day_folder.parent.iterdir() if p.name.endswith(".partial")]
    assert len(staging) == 1  # what the killed run wrote, never published
    if settled_before:
        assert read(day_folder) == earlier
    else:
        assert not day_folder.exists()
    with database.unit_of_work(read_only=True) as uow:  # the ledger side was committed before the files
        assert uow.session.execute(select(clearing_runs.c.status)).scalar() == "settled"
    again = settle(database, day_folder)
    assert not again.posted
    files = read(day_folder)
    assert files["positions.csv"] == POSITIONS_CSV and files[f"merchant-{RESTAURANT}.csv"] == RESTAURANT_CSV
    assert len(files) == 10 and (not earlier or files == earlier)
    for line in files["MANIFEST"].decode().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256(files[name]).hexdigest() == digest
    assert sorted(p.name for p in day_folder.parent.iterdir()) == [DAY]  # the dead run's staging removed


class Recording:
    """A sink that keeps every write of every file."""

    def __init__(self) -> None:
        self.writes: dict[str, list[bytes]] = {}

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[Any]:
        assert name not in self.writes
        chunks = self.writes[name] = []

        class Writer:
            def write(self, data: bytes) -> int:
                chunks.append(bytes(data))
                return len(data)

        yield Writer()


def test_files_are_streamed_in_bounded_writes_with_the_same_bytes(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from citycard.settlement import files as settlement_files

    prepare(database)
    result = settle(database, tmp_path / "whole")
    whole = read(tmp_path / "whole")
    monkeypatch.setattr(settlement_files, "FLUSH_BYTES", 100)
    sink = Recording()
    names = write_files(lambda: database.unit_of_work(SettlementUnitOfWork), result.record, sink)
    assert names == sorted(whole) and list(sink.writes)[-1] == "MANIFEST"  # the manifest last
    assert {name: b"".join(chunks) for name, chunks in sink.writes.items()} == whole
    bank = sink.writes["bank-ICBC.csv"]
    longest_row = max(len(r) for r in whole["bank-ICBC.csv"].splitlines(keepends=True))
    assert len(bank) > 5 and all(len(chunk) < 100 + longest_row for chunk in bank)
