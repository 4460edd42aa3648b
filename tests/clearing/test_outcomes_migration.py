"""Migration ``0026_clearing_outcomes`` moves the decisions kept in ``clearing_presentments`` (``outcome``,
``card_account``) to ``clearing_outcomes``, leaves the undecided records undecided, and its downgrade puts
them back — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from citycard.db import Database, downgrade, migrate

from tests.db.dbtargets import KINDS, fresh_database

BEFORE = "0025_account_loads"
ROWS = (("T0000001/1/1", "clear", 7), ("T0000001/1/2", "exception", None), ("T0000001/1/3", None, None))


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db


def _stage_before(database: Database) -> None:
    with database.engine.begin() as c:
        for ref, outcome, account in ROWS:
            stan = int(ref.rsplit("/", 1)[1])
            c.execute(
                text(
                    "INSERT INTO clearing_presentments (ref, clearing_date, terminal_id, batch, stan,"
                    " pan_masked, psn, received_ns, outcome, card_account)"
                    " VALUES (:r, '20261125', 'T0000001', 1, :s, '', '01', 1, :o, :a)"
                ),
                {"r": ref, "s": stan, "o": outcome, "a": account},
            )


def test_0026_moves_the_decisions_and_its_downgrade_puts_them_back(database: Database) -> None:
    downgrade(database.engine, BEFORE)
    _stage_before(database)
    migrate(database.engine)
    with database.engine.connect() as c:
        moved = c.execute(
            text("SELECT clearing_date, ref, outcome, card_account FROM clearing_outcomes")
        ).all()
        staged = c.execute(text("SELECT count(*) FROM clearing_presentments")).scalar_one()
    assert sorted(tuple(r) for r in moved) == [("20261125", ref, o, a) for ref, o, a in ROWS if o is not None]
    assert staged == len(ROWS)
    columns = {col["name"] for col in inspect(database.engine).get_columns("clearing_presentments")}
    assert not columns & {"outcome", "card_account"}
    indexes = {i["name"] for i in inspect(database.engine).get_indexes("clearing_presentments")}
    assert indexes == {"ix_clearing_presentments_card"}

    downgrade(database.engine, BEFORE)
    with database.engine.connect() as c:
        back = c.execute(
            text("SELECT ref, outcome, card_account FROM clearing_presentments ORDER BY ref")
        ).all()
    assert [tuple(r) for r in back] == list(ROWS)
    assert "clearing_outcomes" not in inspect(database.engine).get_table_names()
    migrate(database.engine)
