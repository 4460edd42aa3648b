"""Issuer: banks, BIN ranges, products, cardholders, cards, authorizations, deny lists
(tables of citycard.db.issuer_tables).

Revision ID: 0002_issuer
Revises: 0001_ledger
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_issuer"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None

ISSUER_ID_BASE = 1 << 40  # citycard.db.issuer_tables.ISSUER_ID_BASE, frozen here as migrations must be


def upgrade() -> None:
    op.create_table(
        "issuer_authorizations",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("pan", sa.String(length=19), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("response_code", sa.String(length=2), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("transfer_ids", sa.String(length=256), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("reversed_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_issuer_authorizations")),
    )
    op.create_index(
        "ix_issuer_authorizations_pan", "issuer_authorizations", ["pan", "created_ns"], unique=False
    )
    op.create_table(
        "issuer_banks",
        sa.Column("code", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("cash_account_id", sa.BigInteger(), nullable=False),
        sa.Column("settlement_account_id", sa.BigInteger(), nullable=False),
        sa.Column("fee_account_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_issuer_banks")),
    )
    op.create_table(
        "issuer_cardholders",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("id_last4", sa.String(length=4), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("deposit_account_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issuer_cardholders")),
        sa.UniqueConstraint("id_hash", name=op.f("uq_issuer_cardholders_id_hash")),
    )
    op.create_table(
        "issuer_sequences",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("next_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_issuer_sequences")),
    )
    op.create_table(
        "issuer_unpredictable_numbers",
        sa.Column("pan", sa.String(length=19), nullable=False),
        sa.Column("un", sa.String(length=8), nullable=False),
        sa.Column("atc", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("pan", "un", name=op.f("pk_issuer_unpredictable_numbers")),
    )
    op.create_table(
        "issuer_bin_ranges",
        sa.Column("bin", sa.String(length=8), nullable=False),
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("pan_length", sa.Integer(), nullable=False),
        sa.Column("next_serial", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["issuer_banks.code"], name=op.f("fk_issuer_bin_ranges_bank_code_issuer_banks")
        ),
        sa.PrimaryKeyConstraint("bin", name=op.f("pk_issuer_bin_ranges")),
    )
    op.create_table(
        "issuer_deny_list",
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("pan", sa.String(length=19), nullable=False),
        sa.Column("psn", sa.String(length=2), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("added_ns", sa.BigInteger(), nullable=False),
        sa.Column("removed_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["issuer_banks.code"], name=op.f("fk_issuer_deny_list_bank_code_issuer_banks")
        ),
        sa.PrimaryKeyConstraint("bank_code", "pan", name=op.f("pk_issuer_deny_list")),
    )
    op.create_table(
        "issuer_deny_list_versions",
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_code"],
            ["issuer_banks.code"],
            name=op.f("fk_issuer_deny_list_versions_bank_code_issuer_banks"),
        ),
        sa.PrimaryKeyConstraint("bank_code", name=op.f("pk_issuer_deny_list_versions")),
    )
    op.create_table(
        "issuer_products",
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("bin", sa.String(length=8), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.Column("ec_balance_limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("ec_single_limit_fen", sa.BigInteger(), nullable=False),
        sa.Column("ec_reset_threshold_fen", sa.BigInteger(), nullable=False),
        sa.Column("issue_fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("annual_fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("validity_years", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["issuer_banks.code"], name=op.f("fk_issuer_products_bank_code_issuer_banks")
        ),
        sa.ForeignKeyConstraint(
            ["bin"], ["issuer_bin_ranges.bin"], name=op.f("fk_issuer_products_bin_issuer_bin_ranges")
        ),
        sa.PrimaryKeyConstraint("bank_code", "code", name=op.f("pk_issuer_products")),
    )
    op.create_table(
        "issuer_cards",
        sa.Column("pan", sa.String(length=19), nullable=False),
        sa.Column("psn", sa.String(length=2), nullable=False),
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("product_code", sa.String(length=32), nullable=False),
        sa.Column("holder_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expiry", sa.String(length=4), nullable=False),
        sa.Column("ec_float_account_id", sa.BigInteger(), nullable=False),
        sa.Column("deposit_account_id", sa.BigInteger(), nullable=True),
        sa.Column("issued_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("highest_atc", sa.Integer(), nullable=False),
        sa.Column("pvv", sa.String(length=4), nullable=True),
        sa.Column("pvki", sa.Integer(), nullable=False),
        sa.Column("pending_script", sa.String(length=8), nullable=True),
        sa.Column("pending_ec_credit_fen", sa.BigInteger(), nullable=False),
        sa.Column("lost_at_ns", sa.BigInteger(), nullable=True),
        sa.Column("offline_cleared_until_ns", sa.BigInteger(), nullable=False),
        sa.Column("replaced_by", sa.String(length=19), nullable=True),
        sa.Column("closed_at_ns", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bank_code", "product_code"],
            ["issuer_products.bank_code", "issuer_products.code"],
            name=op.f("fk_issuer_cards_bank_code_issuer_products"),
        ),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["issuer_banks.code"], name=op.f("fk_issuer_cards_bank_code_issuer_banks")
        ),
        sa.ForeignKeyConstraint(
            ["holder_id"],
            ["issuer_cardholders.id"],
            name=op.f("fk_issuer_cards_holder_id_issuer_cardholders"),
        ),
        sa.PrimaryKeyConstraint("pan", name=op.f("pk_issuer_cards")),
    )
    op.create_index("ix_issuer_cards_bank", "issuer_cards", ["bank_code", "pan"], unique=False)
    op.create_index("ix_issuer_cards_holder", "issuer_cards", ["holder_id"], unique=False)

    sequences = sa.table(
        "issuer_sequences", sa.column("name", sa.String), sa.column("next_value", sa.BigInteger)
    )
    op.bulk_insert(sequences, [{"name": "ledger_account", "next_value": ISSUER_ID_BASE}])


def downgrade() -> None:
    op.drop_index("ix_issuer_cards_holder", table_name="issuer_cards")
    op.drop_index("ix_issuer_cards_bank", table_name="issuer_cards")
    op.drop_table("issuer_cards")
    op.drop_table("issuer_products")
    op.drop_table("issuer_deny_list_versions")
    op.drop_table("issuer_deny_list")
    op.drop_table("issuer_bin_ranges")
    op.drop_table("issuer_unpredictable_numbers")
    op.drop_table("issuer_sequences")
    op.drop_table("issuer_cardholders")
    op.drop_table("issuer_banks")
    op.drop_index("ix_issuer_authorizations_pan", table_name="issuer_authorizations")
    op.drop_table("issuer_authorizations")
