"""SQL tables of settlement (SQLAlchemy 2 Core) on the shared :data:`citycard.db.tables.metadata`.

A settled day keeps its record (``settlement_days``: the fee schedule it was settled with, as TOML text, so
that its files can be written again byte for byte), every participant's net position, every merchant's
totals and payout, and its totals by industry and by (source, kind). ``settlement_accounts`` maps the
accounts settlement made (owner, ledger code) to their ledger ids, allocated from
:data:`SETTLEMENT_ID_BASE` (below the issuer's ``ISSUER_ID_BASE``). Settlement reads clearing's
``clearing_items`` and ``clearing_runs`` (``citycard.db.settlement_repositories``). Migration
``0013_settlement``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, PrimaryKeyConstraint, String, Table, Text

from .tables import metadata

__all__ = [
    "SETTLEMENT_ID_BASE",
    "settlement_accounts",
    "settlement_days",
    "settlement_merchants",
    "settlement_positions",
    "settlement_totals",
]

SETTLEMENT_ID_BASE = 1 << 39
"""First ledger account id settlement allocates (the issuer's start at 1 << 40)."""

settlement_accounts = Table(
    "settlement_accounts",
    metadata,
    Column("owner", String(32), nullable=False),  # bank code, CENTER, or BANK/MERCHANT
    Column("code", Integer, nullable=False),
    Column("account_id", BigInteger, nullable=False, unique=True),
    PrimaryKeyConstraint("owner", "code"),
)

settlement_days = Table(
    "settlement_days",
    metadata,
    Column("settlement_date", String(8), primary_key=True),
    Column("schedule_toml", Text, nullable=False),
    Column("item_count", BigInteger, nullable=False),
    Column("transfer_count", Integer, nullable=False),
    Column("settled_ns", BigInteger, nullable=False),
)

settlement_positions = Table(
    "settlement_positions",
    metadata,
    Column("settlement_date", String(8), nullable=False),
    Column("participant", String(8), nullable=False),
    Column("issued_gross_fen", BigInteger, nullable=False),
    Column("issuer_fee_fen", BigInteger, nullable=False),
    Column("acquired_net_fen", BigInteger, nullable=False),
    Column("acquirer_fee_fen", BigInteger, nullable=False),
    Column("network_fee_fen", BigInteger, nullable=False),
    Column("net_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("settlement_date", "participant"),
)

settlement_merchants = Table(
    "settlement_merchants",
    metadata,
    Column("settlement_date", String(8), nullable=False),
    Column("bank", String(8), nullable=False),
    Column("merchant_id", String(15), nullable=False),
    Column("industry", String(16), nullable=True),
    Column("item_count", BigInteger, nullable=False),
    Column("gross_fen", BigInteger, nullable=False),
    Column("discount_fen", BigInteger, nullable=False),
    Column("issuer_fee_fen", BigInteger, nullable=False),
    Column("network_fee_fen", BigInteger, nullable=False),
    Column("acquirer_fee_fen", BigInteger, nullable=False),
    Column("balance_fen", BigInteger, nullable=False),
    Column("payout_fen", BigInteger, nullable=False),
    Column("payout_date", String(8), nullable=False),
    Column("payout_transfer_id", BigInteger, nullable=True),
    PrimaryKeyConstraint("settlement_date", "bank", "merchant_id"),
    Index("ix_settlement_merchants_merchant", "merchant_id", "settlement_date"),
)

settlement_totals = Table(
    "settlement_totals",
    metadata,
    Column("settlement_date", String(8), nullable=False),
    Column("dimension", String(8), nullable=False),  # 'industry' or 'kind'
    Column("key", String(32), nullable=False),
    Column("item_count", BigInteger, nullable=False),
    Column("gross_fen", BigInteger, nullable=False),
    Column("discount_fen", BigInteger, nullable=False),
    PrimaryKeyConstraint("settlement_date", "dimension", "key"),
)
