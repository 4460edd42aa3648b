"""The fixtures of a cleared day (``tests/clearing/test_day.py`` builds it on the issuers' fixtures), for
every test of this folder: the banks and their issuers, the HSM, the clock, the database and the day; and
``fresh``, a migrated database of its own on SQLite and on PostgreSQL (the migration tests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citycard.db import Database

from tests.clearing.test_day import (  # noqa: F401  (fixtures, found by name)
    banks,
    certify_issuer,
    clock,
    database,
    day,
    demo_ca,
    hsm,
    service,
    sink,
)
from tests.db.dbtargets import KINDS, fresh_database


@pytest.fixture(params=KINDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db
