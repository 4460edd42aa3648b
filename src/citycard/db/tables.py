"""SQL tables of the ledger (SQLAlchemy 2 Core) and the one :data:`metadata` every table module joins.

Other table modules (``citycard.db.issuer_tables`` and later ones) import :data:`metadata` from here and
define their tables on it; list them in :data:`TABLE_MODULES` so that Alembic's environment and the
schema test see every table (:func:`load_all_tables`). Amounts, balances, ids and times are ``BIGINT``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    text,
)

__all__ = [
    "BALANCE_COLUMNS",
    "TABLE_MODULES",
    "ledger_account_shards",
    "ledger_accounts",
    "ledger_transfers",
    "load_all_tables",
    "metadata",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""The metadata of every citycard table (naming convention so migrations name constraints alike)."""

TABLE_MODULES: tuple[str, ...] = (
    "citycard.db.tables",
    "citycard.db.issuer_tables",
    "citycard.db.acquirer_tables",
    "citycard.db.center_tables",
    "citycard.db.web_tables",
    "citycard.db.settlement_tables",
    "citycard.db.clearing_tables",
    "citycard.db.public_tables",
    "citycard.db.switch_repositories",
)
"""Modules that define tables on :data:`metadata` (a module not present yet is skipped)."""

ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("ledger", Integer, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("limit_fen", BigInteger, nullable=True),
    Column("user_data", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    # 0: the balances are the four columns above. N > 0: a sharded ("hot") account, see below.
    Column("shards", SmallInteger, nullable=False, server_default=text("0")),
    CheckConstraint(
        "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0",
        name="balances_not_negative",
    ),
)

BALANCE_COLUMNS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")

ledger_account_shards = Table(
    "ledger_account_shards",
    metadata,
    Column("account_id", BigInteger, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("shard", SmallInteger, nullable=False),
    *(Column(name, BigInteger, nullable=False) for name in BALANCE_COLUMNS),
    PrimaryKeyConstraint("account_id", "shard"),
)
"""Balance changes of a sharded account (``ledger_accounts.shards`` = N > 0): rows 0..N-1 hold changes
(deltas, a row may be negative) and the account's balances are its own columns plus the sums of its rows.
Writers add to the row of their connection's shard, so concurrent writers do not queue on one row lock.
Only accounts without a balance rule (no flags, no limit) are sharded: no decision reads their balance."""


def _where(predicate: str) -> dict[str, Any]:
    """The keywords of a partial index (rows where ``predicate`` holds), on PostgreSQL and SQLite alike."""
    return {"postgresql_where": text(predicate), "sqlite_where": text(predicate)}


ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    # No foreign keys to ledger_accounts (revision 0027: two SPI look-ups per row, half the insert's cost):
    # the ledger writes a transfer only after reading both accounts in its transaction, a plain one locked
    # FOR UPDATE, and triggers on ledger_accounts (made by that revision) refuse to delete or re-key an
    # account that a transfer names.
    Column("debit_account_id", BigInteger, nullable=False),
    Column("credit_account_id", BigInteger, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    # Set only on posts and voids; unique (a partial index: rows without one are not in it), so a pending
    # transfer is resolved at most once.
    Column("pending_id", BigInteger, ForeignKey("ledger_transfers.id"), nullable=True),
    Column("ledger", Integer, nullable=False),
    Column("code", Integer, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("user_data", BigInteger, nullable=False),
    Column("timeout_s", Integer, nullable=False),
    Column("timestamp_ns", BigInteger, nullable=False),
    # Deadline of a pending transfer with a timeout while it is open (NULL once posted, voided or expired),
    # so that expiry finds due transfers by index; and when it expired. Bookkeeping, not transfer content.
    Column("expires_at_ns", BigInteger, nullable=True),
    Column("expired_at_ns", BigInteger, nullable=True),
    CheckConstraint("amount_fen > 0", name="amount_positive"),
    CheckConstraint("debit_account_id <> credit_account_id", name="accounts_different"),
    Index("ix_ledger_transfers_debit_time", "debit_account_id", "timestamp_ns"),
    Index("ix_ledger_transfers_credit_time", "credit_account_id", "timestamp_ns"),
    Index("ix_ledger_transfers_time", "timestamp_ns", "id"),
    Index("ix_ledger_transfers_expires", "expires_at_ns", **_where("expires_at_ns IS NOT NULL")),
    Index("uq_ledger_transfers_pending_id", "pending_id", unique=True, **_where("pending_id IS NOT NULL")),
)


def load_all_tables() -> MetaData:
    """Import every module of :data:`TABLE_MODULES` that exists and return the shared metadata."""
    for name in TABLE_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    return metadata
