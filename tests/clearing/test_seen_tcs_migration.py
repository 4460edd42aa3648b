"""Migration ``0031_seen_tcs_narrow``: the TCs clearing remembered before it (fingerprint, cryptogram and
date as text, with a masked PAN) are carried over as bytes and numbers, still found by the card's
fingerprint — a TC of an earlier day kept in the old form still catches a clone presented after the
upgrade — and the downgrade gives the old rows back (the masked PAN from the TC's presentment) — on SQLite
and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from citycard.db import Database, downgrade, migrate
from citycard.issuer.handlers import IssuerService

from tests.clearing.test_day import DAY, Day, engine
from tests.db.dbtargets import KINDS, fresh_database
from tests.issuer.conftest import Clock

BEFORE = "0030_presentment_field55"
FINGERPRINT = "0f" * 32
MASKED = "621234******4566"
OLD_ROWS = [  # pan_fingerprint, psn, atc, pan_masked, cryptogram, terminal_id, amount_fen, txn_date, ref
    (FINGERPRINT, "01", 7, MASKED, "00112233445566AA", "POS00001", 250, "20261124", "POS00001/1/1"),
    (FINGERPRINT, "01", 9, "", "FFEEDDCCBBAA9988", "POS00002", 1_000, "20261125", "POS00002/3/4"),
]  # fmt: skip
_INSERT_OLD = text(
    "INSERT INTO clearing_seen_tcs (pan_fingerprint, psn, atc, pan_masked, cryptogram, terminal_id,"
    " amount_fen, txn_date, ref) VALUES (:f, :p, :a, :m, :c, :t, :amount, :d, :r)"
)


@pytest.fixture(params=KINDS)
def bare(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db


def _old(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = ("f", "p", "a", "m", "c", "t", "amount", "d", "r")
    return [dict(zip(names, row, strict=True)) for row in rows]


def test_0031_converts_the_rows_and_its_downgrade_gives_them_back(bare: Database) -> None:
    downgrade(bare.engine, BEFORE)
    with bare.engine.begin() as c:
        c.execute(_INSERT_OLD, _old(OLD_ROWS))
        c.execute(  # the first TC's presentment: where the downgrade finds its masked PAN
            text(
                "INSERT INTO clearing_presentments (ref, clearing_date, terminal_id, batch, stan, pan_masked,"
                " psn, received_ns) VALUES ('POS00001/1/1', '20261124', 'POS00001', 1, 1, :m, '01', 1)"
            ),
            {"m": OLD_ROWS[0][3]},
        )
    migrate(bare.engine)
    with bare.engine.connect() as c:
        new = c.execute(
            text(
                "SELECT pan_fingerprint, psn, atc, amount_fen, txn_date, cryptogram, terminal_id, ref"
                " FROM clearing_seen_tcs ORDER BY atc"
            )
        ).all()
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in new] == [
        (bytes.fromhex(f), p, a, amount, int(d), bytes.fromhex(cr), t, r)
        for f, p, a, _, cr, t, amount, d, r in OLD_ROWS
    ]
    columns = [col["name"] for col in inspect(bare.engine).get_columns("clearing_seen_tcs")]
    assert "pan_masked" not in columns and columns[:3] == ["pan_fingerprint", "psn", "atc"]
    key = inspect(bare.engine).get_pk_constraint("clearing_seen_tcs")
    assert key["constrained_columns"] == ["pan_fingerprint", "psn", "atc"]

    downgrade(bare.engine, BEFORE)
    with bare.engine.connect() as c:
        back = c.execute(text("SELECT * FROM clearing_seen_tcs ORDER BY atc")).all()
    assert [tuple(r) for r in back] == OLD_ROWS  # the second's presentment is not there: no masked PAN
    migrate(bare.engine)


def test_a_tc_remembered_before_0031_still_catches_the_clone(
    banks: IssuerService, database: Database, clock: Clock, day: Day, tmp_path: Path
) -> None:
    """Card k's first TC (the ATC its clone spends again) remembered by an earlier run in the old form, by
    its fingerprint's hex digits: after the upgrade, both of today's records of that ATC are clones, and the
    other records clear as in tests/clearing/test_day.py."""
    clearing = engine(database, banks, clock, batch_size=3)
    k, k1 = day.cards["k"], day.entries["k1"]
    downgrade(database.engine, BEFORE)
    fingerprint = clearing.protection.pan_fingerprint(k.pan)
    earlier = (fingerprint, k.psn, k1.atc, "", "00" * 8, "POS00009", 900, "20261125", "POS00009/1/1")
    with database.engine.begin() as c:
        c.execute(_INSERT_OLD, _old([earlier]))
    migrate(database.engine)
    clearing.import_journal(tmp_path / "exports", DAY)
    summary = clearing.run(DAY)
    assert summary.exceptions.get("clone", 0) == 2
    assert summary.offline_count == 6
