"""Ledger accounts and transfers (citycard.db.tables).

Revision ID: 0001_ledger
Revises: (none, the first revision)
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ledger", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("limit_fen", sa.BigInteger(), nullable=True),
        sa.Column("user_data", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("timestamp_ns", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0",
            name=op.f("ck_ledger_accounts_balances_not_negative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("debit_account_id", sa.BigInteger(), nullable=False),
        sa.Column("credit_account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("pending_id", sa.BigInteger(), nullable=True),
        sa.Column("ledger", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("user_data", sa.BigInteger(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("timestamp_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ns", sa.BigInteger(), nullable=True),
        sa.Column("expired_at_ns", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_ledger_transfers_amount_positive")),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name=op.f("ck_ledger_transfers_accounts_different")
        ),
        sa.ForeignKeyConstraint(
            ["credit_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_transfers_credit_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_transfers_debit_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_transfers_pending_id_ledger_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
        sa.UniqueConstraint("pending_id", name=op.f("uq_ledger_transfers_pending_id")),
    )
    op.create_index(
        "ix_ledger_transfers_credit_time", "ledger_transfers", ["credit_account_id", "timestamp_ns"]
    )
    op.create_index(
        "ix_ledger_transfers_debit_time", "ledger_transfers", ["debit_account_id", "timestamp_ns"]
    )
    op.create_index("ix_ledger_transfers_time", "ledger_transfers", ["timestamp_ns", "id"])
    op.create_index("ix_ledger_transfers_expires", "ledger_transfers", ["expires_at_ns"])


def downgrade() -> None:
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
