"""The array literals clearing sends as text (``text_array``, ``int_array``) read back on PostgreSQL as the
values they were made of, and :class:`DriverStatement` rows are named tuples of the statement's columns on
both dialects (made without ``_make``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    select,
)

from citycard.db import Database
from citycard.db.driver import (
    DriverStatement,
    UnnestRows,
    bool_array,
    bytes_array,
    execute_driver_sql,
    int_array,
    text_array,
)
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
        st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12), max_size=8
    ),
    numbers=st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=8),
    blobs=st.lists(st.none() | st.binary(max_size=12), max_size=8),
    flags=st.lists(st.none() | st.booleans(), max_size=8),
)
def test_array_literals_read_back_as_the_values(
    postgres: Database,
    strings: list[str | None],
    numbers: list[int | None],
    blobs: list[bytes | None],
    flags: list[bool | None],
) -> None:
    params = {
        "t": text_array(strings),
        "i": int_array(numbers),
        "b": bytes_array(blobs),
        "f": bool_array(flags),
    }
    with postgres.engine.connect() as c:
        ((texts, ints, bytes_, bools),) = execute_driver_sql(
            c, "SELECT %(t)s::text[], %(i)s::bigint[], %(b)s::bytea[], %(f)s::boolean[]", params
        )
    assert (texts, ints, bytes_, bools) == (strings, numbers, blobs, flags)


_ROWS = Table(
    "unnest_rows",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("name", String(8)),
    Column("amount", BigInteger),
    Column("blob", LargeBinary),
    Column("flag", Boolean),
)


def test_unnest_rows_sends_any_number_of_rows_in_one_statement_of_the_same_text(postgres: Database) -> None:
    unnest = UnnestRows(list(_ROWS.c), keys={"name": "who"})
    sql = f"INSERT INTO unnest_rows SELECT * FROM {unnest.source} RETURNING id"
    rows = [
        {"id": 1, "who": 'a"b\\', "amount": -(2**63), "blob": b"\x00\xff", "flag": True},
        {"id": 2, "who": None, "amount": None, "blob": None, "flag": None},
        {"id": 3, "who": "", "amount": 0, "blob": b"", "flag": False},
    ]
    with postgres.engine.begin() as c:
        _ROWS.create(c)
        assert execute_driver_sql(c, sql, unnest.params(rows[:1])) == [(1,)]
        assert execute_driver_sql(c, sql, unnest.params(rows[1:])) == [(2,), (3,)]
        assert execute_driver_sql(c, sql, unnest.params([])) == []
        back = [tuple(r) for r in c.execute(select(_ROWS).order_by(_ROWS.c.id))]
        _ROWS.drop(c)
    assert back == [tuple(r.values()) for r in rows]


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
