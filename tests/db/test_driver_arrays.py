"""The array literals clearing sends as text (``text_array``, ``int_array``) read back on PostgreSQL as the
values they were made of, and :class:`DriverStatement` rows are named tuples of the statement's columns on
both dialects (made without ``_make``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, select

from citycard.db import Database
from citycard.db.driver import DriverStatement, execute_driver_sql, int_array, text_array
from citycard.db.issuer_tables import issuer_banks

from tests.db.dbtargets import fresh_database

AWKWARD = [
    "",
    " ",
    "NULL",
    "null",
    'a"b',
    "a\\b",
    "\\",
    '"',
    "{}",
    "{a,b}",
    "a,b",
    " lead",
    "trail ",
    "汉字",
    "x'y",
]


def test_a_text_array_of_awkward_strings_reads_back_as_they_are(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as db, db.engine.connect() as c:
        ((back,),) = execute_driver_sql(c, "SELECT %(x)s::text[]", {"x": text_array(AWKWARD)})
        assert back == AWKWARD
        ((empty,),) = execute_driver_sql(c, "SELECT %(x)s::text[]", {"x": text_array([])})
        assert empty == []


@settings(max_examples=60, deadline=None)
@given(
    strings=st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12), max_size=8
    ),
    numbers=st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=8),
)
def test_array_literals_read_back_as_the_values(
    postgres: Database, strings: list[str], numbers: list[int | None]
) -> None:
    with postgres.engine.connect() as c:
        ((texts, ints),) = execute_driver_sql(
            c, "SELECT %(t)s::text[], %(i)s::bigint[]", {"t": text_array(strings), "i": int_array(numbers)}
        )
    assert (texts, ints) == (strings, numbers)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    with fresh_database("postgresql", tmp_path_factory.mktemp("arrays")) as db:
        yield db


def test_driver_statement_rows_are_named_tuples_of_its_columns(database: Database) -> None:
    b = issuer_banks
    statement = DriverStatement(
        select(b.c.code, b.c.settlement_account_id).where(b.c.code.in_(bindparam("codes", expanding=True))),
        arrays={"codes": "VARCHAR[]"},
    )
    with database.engine.begin() as c:
        c.execute(b.insert(), [_bank("B1", 11), _bank("B2", 12)])
        codes: object = ["B1", "B2"] if c.dialect.driver != "psycopg" else text_array(["B1", "B2"])
        rows = sorted(statement.rows(c, {"codes": codes}))
    assert [type(r) for r in rows] == [statement.row, statement.row]
    assert [(r.code, r.settlement_account_id) for r in rows] == [("B1", 11), ("B2", 12)]
    assert rows[0]._fields == ("code", "settlement_account_id")


def _bank(code: str, account: int) -> dict[str, object]:
    """A bank row (no foreign keys: its accounts are ids only)."""
    return {
        "code": code,
        "name": f"bank {code}",
        "cash_account_id": account + 100,
        "settlement_account_id": account,
        "fee_account_id": account + 200,
        "institution_id": f"0000{account:04d}",
    }
