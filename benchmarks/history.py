"""Earlier traffic for the PostgreSQL benchmarks of issue 8 (``e2e``, ``auth``, ``chain``): the tables an
authorization looks up and grows start with rows of a platform that has been running, then the database is
analyzed.

Why: psycopg prepares the hot statements on the server, and PostgreSQL makes a prepared statement's generic
plan at its sixth execution and keeps it until the tables' statistics change (autovacuum's first ``ANALYZE``
of them, up to a minute into a run). Made on near-empty tables, the issuer's read ahead looks its request
ids and unpredictable numbers up by hashing a sequential scan of the whole table, so on a fresh database
every authorization written makes the next read ahead slower (docs/performance.md, "e2e", "a fresh
database's plans"). A platform's tables hold history and its plans are the index plans from the start; a
benchmark that starts at full load on empty tables measures a fresh database's first minute instead.

``CITYCARD_BENCH_HISTORY`` (default 100 000) rows a table; 0 measures the fresh start. The rows belong to
cards, terminals and request ids that are not a run's, so nothing of a run meets them: authorizations and
unpredictable numbers of PANs of BIN 999999 under request ids ``history-N``, acquirer records of terminals
``H…`` under RRNs from 900000000000 (the acquirer's sequence starts at 1).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from citycard.db import Database

__all__ = ["HISTORY", "HISTORY_ID", "HISTORY_TABLES", "count_history", "make_history"]

HISTORY = int(os.environ.get("CITYCARD_BENCH_HISTORY", "100000"))
"""Rows of earlier traffic in each table an authorization grows (the module docstring)."""
HISTORY_ID = "history-"
"""The request ids of the history's authorizations start so (a run's are its own: ``<acquirer id>-<RRN>``,
``c<client>-<n>``, ...)."""
_BIN = "999999"
"""The history's cards' PANs start so (no run issues a card of this BIN)."""
_TERMINAL = "H"
"""The history's acquirer records are of terminals whose IDs start so (a run's are its own, ``BT…``)."""
_ROWS_OF: dict[str, str] = {
    "issuer_authorizations": f"starts_with(request_id, '{HISTORY_ID}')",
    "issuer_unpredictable_numbers": f"starts_with(pan, '{_BIN}')",
    "acquirer_transactions": f"starts_with(terminal_id, '{_TERMINAL}')",
}
"""Each table the history grows, and which of its rows are the history's."""
HISTORY_TABLES: tuple[str, ...] = tuple(_ROWS_OF)
"""The tables the history grows (:func:`make_history` adds as many rows to each)."""


def make_history(db: Database, rows: int) -> None:
    """``rows`` of earlier traffic in each table an authorization grows, made in SQL, then ``ANALYZE``
    (PostgreSQL: the module docstring)."""
    series = f"FROM generate_series(1, {int(rows)}) AS g"
    pan = f"'{_BIN}' || lpad(g::text, 10, '0')"
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO issuer_authorizations (request_id, pan, kind, fingerprint, response_code,"
            " amount_fen, response, transfer_ids, created_ns)"
            f" SELECT '{HISTORY_ID}' || g, {pan}, 'purchase', md5(g::text), '00', 1 + mod(g, 5000), '', '', g"
            f" {series}"
        )
        connection.exec_driver_sql(
            f"INSERT INTO issuer_unpredictable_numbers (pan, un, atc) SELECT {pan}, '00000000', 1 {series}"
        )
        connection.exec_driver_sql(
            "INSERT INTO acquirer_transactions (terminal_id, batch, stan, merchant_id, rrn, kind, amount_fen,"
            " status, response_code, created_ns, updated_ns)"
            f" SELECT '{_TERMINAL}' || lpad((g / 100000)::text, 7, '0'), 1, mod(g, 100000),"
            " 'HISTORY00000001', (900000000000 + g)::text, 'purchase', 1 + mod(g, 5000), 'answered', '00',"
            f" g, g {series}"
        )
    with db.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def count_history(run_sql: Callable[[str], Any]) -> dict[str, int]:
    """The history's rows in each table it grows, counted with ``run_sql`` (e.g. a connection's
    ``exec_driver_sql``)."""
    return {
        table: run_sql(f"SELECT count(*) FROM {table} WHERE {where}").scalar_one()
        for table, where in _ROWS_OF.items()
    }
