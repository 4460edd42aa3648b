"""Settlement after the real clearing run (tests/clearing's day: the real card, kernel, issuer and acquirer
code; online and offline purchases of ICBC and BOC cards at a supermarket, a pharmacy and a bus company,
with every kind of exception): positions to the fen summing to zero, the issuers' network settlement
accounts down by exactly what cleared, the interbank and center accounts back at zero, payouts, a rerun
posting nothing and writing the same bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from citycard.db import Database
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.durable import StagedFolder
from citycard.issuer.handlers import IssuerService
from citycard.settlement import CENTER, settle_day

from tests.clearing import test_day as clearing_day
from tests.clearing.test_day import DAY, balances, engine, items
from tests.issuer.conftest import Clock

banks = clearing_day.banks
certify_issuer = clearing_day.certify_issuer
clock = clearing_day.clock
database = clearing_day.database
demo_ca = clearing_day.demo_ca
service = clearing_day.service
sink = clearing_day.sink
hsm = clearing_day.hsm
day = clearing_day.day

pytestmark = pytest.mark.xdist_group("settlement")


def settle_into(path: Path, uow: Any, day: str, clock: Clock) -> Any:
    with StagedFolder(path) as folder:
        return settle_day(uow, day, clock=clock, sink=folder)


def test_settlement_after_the_real_clearing_run(
    banks: IssuerService, database: Database, clock: Clock, day: Any, tmp_path: Path
) -> None:
    clearing = engine(database, banks, clock, batch_size=3)
    clearing.import_journal(tmp_path / "exports", DAY)
    assert clearing.run(DAY).status == "cleared"
    cleared = items(database, "20261125")
    before = balances(database, banks)

    def uow() -> SettlementUnitOfWork:
        return database.unit_of_work(SettlementUnitOfWork)

    result = settle_into(tmp_path / "a", uow, "2026-11-25", clock)
    assert result.posted and result.record.item_count == len(cleared) == 10
    spent = {
        bank: sum(i["sign"] * i["amount_fen"] for i in cleared if i["issuer_bank"] == bank) for bank in before
    }
    # ICBC cards: offline 1250 + 300 + 200 + 1000, online 2345; BOC cards: offline 800 + 200 + 900, online
    # 3000 - 500 refunded
    assert spent == {"ICBC": 5_095, "BOC": 4_400}
    assert balances(database, banks) == {bank: before[bank] - spent[bank] for bank in before}
    positions = {p.participant: p for p in result.record.positions}
    assert sum(p.net_fen for p in positions.values()) == 0
    # every merchant is acquired by ICBC but the pharmacy (BOC). The supermarket: 1250 + 300 + 800 + 900
    # + 1000 + 2345 at 0.38 %, per item half up: 5 + 1 + 3 + 3 + 4 + 9 = 25. The bus company: 200 + 200 at
    # 0.20 %: 0 + 0. The pharmacy: 3000 at 0.38 % = 11.4 -> 11, less the refund's 500: 1.9 -> 2; 9.
    merchants = {m.merchant_id: (m.bank, m.gross_fen, m.discount_fen) for m in result.record.merchants}
    assert sorted(merchants.values()) == sorted([("ICBC", 6_595, 25), ("ICBC", 400, 0), ("BOC", 2_500, 9)])
    assert positions[CENTER].net_fen == result.record.positions[-1].network_fee_fen
    with database.unit_of_work(read_only=True) as check:
        assert check.ledger.totals().balanced and check.ledger.audit() == []
    assert sum(m.payout_fen for m in result.record.merchants) == 6_595 - 25 + 400 + 2_500 - 9

    again = settle_into(tmp_path / "b", uow, "20261125", clock)
    assert not again.posted
    a = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert a == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    recon = a["reconciliation.csv"].decode()
    assert "T,settled,owed to merchants,3," in recon
