"""Migration 0008_registry keeps the issuer's registry of 0005 as the center's, both ways, on both
databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from citycard.center import views
from citycard.center.model import RegistryStatus, TerminalKind
from citycard.db import downgrade, migrate
from citycard.db.center_repositories import CenterUnitOfWork

from tests.db.dbtargets import KINDS, fresh_database


@pytest.mark.parametrize("kind", KINDS)
def test_the_issuers_registry_becomes_the_centers(kind: str, tmp_path: Path) -> None:
    with fresh_database(kind, tmp_path) as db:
        downgrade(db.engine, "0007_issuer_network")
        with db.engine.begin() as c:
            c.execute(
                text("INSERT INTO issuer_merchants VALUES ('M1', 'Shop', '5411'), ('OTHER', 'x', '4111')")
            )
            c.execute(
                text("INSERT INTO issuer_terminals VALUES ('T1', 'M1', 'active'), ('T2', 'M1', 'inactive')")
            )
        migrate(db.engine)
        with db.unit_of_work(CenterUnitOfWork, read_only=True) as uow:
            merchant = uow.merchants.get("M1")
            t1, t2 = uow.terminals.get("T1"), uow.terminals.get("T2")
            binding = uow.terminals.binding("T1")
        assert merchant is not None and (merchant.name, merchant.mcc, merchant.status) == (
            "Shop",
            "5411",
            "active",
        )
        assert merchant.industry is None and merchant.bank_code is None and merchant.district == ""
        assert t1 is not None and t1.status is RegistryStatus.ACTIVE and t1.kind is TerminalKind.POS
        assert t2 is not None and t2.status is RegistryStatus.CLOSED and t2.tmk_kcv == ""
        assert binding is not None and binding.merchant == merchant
        assert views.binding_refusal(binding, "M1") == ("58", "merchant M1 has no acquiring bank")
        downgrade(db.engine, "0007_issuer_network")
        with db.engine.connect() as c:
            rows = c.execute(text("SELECT terminal_id, status FROM issuer_terminals ORDER BY terminal_id"))
            assert rows.all() == [("T1", "active"), ("T2", "inactive")]
            assert c.execute(text("SELECT count(*) FROM issuer_merchants")).scalar_one() == 2
        migrate(db.engine)
