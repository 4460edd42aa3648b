"""Registry fixtures: a migrated database (SQLite and PostgreSQL) with the banks ICBC and BOC, the platform
HSM and a terminal key store per terminal (in memory), and a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from citycard.center.ports import CenterDeps
from citycard.db import Database
from citycard.db.center_repositories import CenterUnitOfWork
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.soft import MemoryKeyStore, SoftHsm
from citycard.issuer.commands import AddBank
from citycard.issuer.handlers import IssuerService

from tests.db.dbtargets import KINDS, fresh_database
from tests.issuer.conftest import START_NS


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        bank_hsm = SoftHsm(bytes(range(32)))

        def issuer_uow() -> IssuerUnitOfWork:
            return db.unit_of_work(IssuerUnitOfWork)

        issuer = IssuerService(issuer_uow, bank_hsm, lambda: START_NS)
        for code in ("ICBC", "BOC"):
            issuer.add_bank(AddBank(code, f"{code} city branch"))
        yield db


@pytest.fixture
def uow(database: Database) -> Callable[[], CenterUnitOfWork]:
    return lambda: database.unit_of_work(CenterUnitOfWork)


@pytest.fixture
def platform_hsm() -> SoftHsm:
    return SoftHsm(bytes(range(32)))


@pytest.fixture
def terminal_hsms() -> dict[str, SoftHsm]:
    return {}


@pytest.fixture
def deps(platform_hsm: SoftHsm, terminal_hsms: dict[str, SoftHsm]) -> CenterDeps:
    now = [START_NS]

    def clock() -> int:
        now[0] += 1_000_000_000
        return now[0]

    def own(terminal_id: str) -> SoftHsm:
        return terminal_hsms.setdefault(terminal_id, SoftHsm(bytes(range(1, 33)), MemoryKeyStore()))

    return CenterDeps(clock, platform_hsm, own)
