"""Settlement of cleared days: its accounts, each settled day's record, net positions, merchant totals and
payouts, and totals by industry and kind (issue 9, ``citycard.db.settlement_tables``).

Revision ID: 0013_settlement
Revises: 0012_web
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_settlement"
down_revision = "0012_web"
branch_labels = None
depends_on = None


def _fen(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "settlement_accounts",
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", "code", name=op.f("pk_settlement_accounts")),
        sa.UniqueConstraint("account_id", name=op.f("uq_settlement_accounts_account_id")),
    )
    op.create_table(
        "settlement_days",
        sa.Column("settlement_date", sa.String(length=8), nullable=False),
        sa.Column("schedule_toml", sa.Text(), nullable=False),
        sa.Column("item_count", sa.BigInteger(), nullable=False),
        sa.Column("transfer_count", sa.Integer(), nullable=False),
        sa.Column("settled_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("settlement_date", name=op.f("pk_settlement_days")),
    )
    op.create_table(
        "settlement_positions",
        sa.Column("settlement_date", sa.String(length=8), nullable=False),
        sa.Column("participant", sa.String(length=8), nullable=False),
        *(
            _fen(name)
            for name in (
                "issued_gross_fen",
                "issuer_fee_fen",
                "acquired_net_fen",
                "acquirer_fee_fen",
                "network_fee_fen",
                "net_fen",
            )
        ),
        sa.PrimaryKeyConstraint("settlement_date", "participant", name=op.f("pk_settlement_positions")),
    )
    op.create_table(
        "settlement_merchants",
        sa.Column("settlement_date", sa.String(length=8), nullable=False),
        sa.Column("bank", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("industry", sa.String(length=16), nullable=True),
        *(
            _fen(name)
            for name in (
                "item_count",
                "gross_fen",
                "discount_fen",
                "issuer_fee_fen",
                "network_fee_fen",
                "acquirer_fee_fen",
                "balance_fen",
                "payout_fen",
            )
        ),
        sa.Column("payout_date", sa.String(length=8), nullable=False),
        sa.Column("payout_transfer_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint(
            "settlement_date", "bank", "merchant_id", name=op.f("pk_settlement_merchants")
        ),
    )
    op.create_index(
        "ix_settlement_merchants_merchant", "settlement_merchants", ["merchant_id", "settlement_date"]
    )
    op.create_table(
        "settlement_totals",
        sa.Column("settlement_date", sa.String(length=8), nullable=False),
        sa.Column("dimension", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        *(_fen(name) for name in ("item_count", "gross_fen", "discount_fen")),
        sa.PrimaryKeyConstraint("settlement_date", "dimension", "key", name=op.f("pk_settlement_totals")),
    )


def downgrade() -> None:
    op.drop_table("settlement_totals")
    op.drop_index("ix_settlement_merchants_merchant", table_name="settlement_merchants")
    op.drop_table("settlement_merchants")
    op.drop_table("settlement_positions")
    op.drop_table("settlement_days")
    op.drop_table("settlement_accounts")
