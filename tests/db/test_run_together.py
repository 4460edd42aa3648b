"""``driver.run_together``: statements sent to PostgreSQL in one pipeline — every statement's rows back in
order after ONE wait (the ``Sync`` and ``Query`` messages in libpq's trace of the protocol), a failing
statement raised as SQLAlchemy's error with the rest skipped, and the transaction usable again after
``ROLLBACK TO SAVEPOINT``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from citycard.db.driver import DriverStatement, execute_driver_command, execute_driver_sql, run_together

from tests.db.dbtargets import fresh_database
from tests.db.protocol import sent, waits


def test_statements_sent_together_answer_in_order_after_one_wait(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as db, db.engine.connect() as c:
        execute_driver_sql(c, "SELECT 1", {})  # the transaction is open (BEGIN waits on its own)
        statements: list[tuple[str, dict[str, Any] | None]] = [
            ("SAVEPOINT s", None),
            ("SELECT %(x)s::int, 'a'", {"x": 1}),
            ("SELECT generate_series(1, %(n)s::int)", {"n": 3}),
            ("RELEASE SAVEPOINT s", None),
        ]
        pgconn: Any = c.connection.driver_connection.pgconn  # type: ignore[union-attr]
        with sent(pgconn) as together:
            rows = run_together(c, statements)
        assert rows == [[], [(1, "a")], [(1,), (2,), (3,)], []]
        assert waits(together) == 1
        assert together.count("Execute") == 4
        with sent(pgconn) as alone:  # the same statements one after the other: a wait each
            for sql, params in statements:
                if params is None:
                    execute_driver_command(c, sql)
                else:
                    execute_driver_sql(c, sql, params)
        assert waits(alone) == 4


def test_every_statement_is_seen_by_the_engine_listeners(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as db, db.engine.connect() as c:
        seen: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: seen.append(sql))
        execute_driver_sql(c, "SELECT 1", {})
        run_together(
            c, [("SAVEPOINT s", None), ("SELECT %(x)s::int", {"x": 2}), ("RELEASE SAVEPOINT s", None)]
        )
        assert seen == ["SELECT 1", "SAVEPOINT s", "SELECT %(x)s::int", "RELEASE SAVEPOINT s"]


def test_a_failing_statement_skips_the_rest_and_the_savepoint_undoes_the_lot(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path) as db, db.engine.connect() as c:
        execute_driver_command(c, "CREATE TEMPORARY TABLE t (id int PRIMARY KEY)")
        execute_driver_sql(c, "INSERT INTO t VALUES (%(id)s) RETURNING id", {"id": 1})
        insert = "INSERT INTO t VALUES (%(id)s) RETURNING id"
        seven, nine = "SELECT %(x)s::int * 7", "SELECT %(x)s::int * 9"
        with pytest.raises(IntegrityError, match="together"):
            run_together(
                c,
                [
                    ("SAVEPOINT s", None),
                    (insert, {"id": 2}),
                    (seven, {"x": 1}),  # a statement new to the connection, prepared before the failure
                    (insert, {"id": 1}),  # a unique-key violation
                    (insert, {"id": 3}),  # skipped by the server
                    (nine, {"x": 1}),  # new too, never reached
                    ("RELEASE SAVEPOINT s", None),
                ],
            )
        execute_driver_command(c, "ROLLBACK TO SAVEPOINT s")
        assert execute_driver_sql(c, "SELECT id FROM t ORDER BY id", {}) == [(1,)]
        ((four,),) = run_together(c, [(insert, {"id": 4})])[0]  # the connection goes on as before
        assert four == 4
        assert execute_driver_sql(c, "SELECT id FROM t ORDER BY id", {}) == [(1,), (4,)]
        for x in range(6):  # psycopg's bookkeeping of prepared statements survived the aborted pipeline
            assert run_together(c, [(seven, {"x": x}), (nine, {"x": x})]) == [[(7 * x,)], [(9 * x,)]]
            assert execute_driver_sql(c, seven, {"x": x}) == [(7 * x,)]


def test_a_transaction_opened_with_its_first_statement_commits_or_rolls_back_as_the_session_says(
    tmp_path: Path,
) -> None:
    """``DriverStatement.rows_beginning`` (the issuer's read ahead): ``BEGIN`` and the statement after one
    wait, on a connection the session took in autocommit; the statements after it are in that transaction,
    which the session's commit keeps and its rollback undoes (psycopg sends either, the server reporting
    the transaction open); back in the pool the connection is out of autocommit again."""
    from sqlalchemy import Column, Integer, MetaData, Table, bindparam, insert, select

    probe = Table("rb_probe", MetaData(), Column("a", Integer))
    with fresh_database("postgresql", tmp_path) as db:
        with db.engine.begin() as c:
            c.exec_driver_sql("CREATE TABLE rb_probe (a integer)")
        first = DriverStatement(insert(probe).values(a=bindparam("a")).returning(probe.c.a))
        for a, keep in ((1, True), (2, False)):
            with db.session_factory() as session:
                connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                pgconn: Any = connection.connection.driver_connection.pgconn  # type: ignore[union-attr]
                with sent(pgconn) as messages:
                    rows = first.rows_beginning(connection, {"a": a})
                assert [tuple(row) for row in rows] == [(a,)]
                assert waits(messages) == 1 and messages.count("Execute") == 2  # BEGIN and the insert
                execute_driver_sql(
                    connection, "INSERT INTO rb_probe VALUES (%(a)s) RETURNING a", {"a": a + 10}
                )
                with db.engine.connect() as other:  # not committed yet: nobody else sees either row
                    committed_before = [] if keep else [1, 11]
                    assert sorted(other.execute(select(probe.c.a)).scalars()) == committed_before
                if keep:
                    session.commit()
                else:
                    session.rollback()
        with db.engine.connect() as c:
            assert sorted(c.execute(select(probe.c.a)).scalars()) == [1, 11]
            assert c.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
