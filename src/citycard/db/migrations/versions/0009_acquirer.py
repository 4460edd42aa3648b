"""The acquirer: transaction records (RRN per terminal, batch and STAN), the RRN sequence, the
store-and-forward queue (reversals and advices) and the offline upload store (issue 8).

Revision ID: 0009_acquirer
Revises: 0008_registry
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_acquirer"
down_revision = "0008_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acquirer_sequences",
        sa.Column("name", sa.String(length=32), primary_key=True),
        sa.Column("next_value", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "acquirer_transactions",
        sa.Column("terminal_id", sa.String(length=8), primary_key=True),
        sa.Column("batch", sa.Integer(), primary_key=True),
        sa.Column("stan", sa.Integer(), primary_key=True),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("rrn", sa.String(length=12), nullable=False, unique=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("pan_masked", sa.String(length=19), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_code", sa.String(length=2), nullable=True),
        sa.Column("original_rrn", sa.String(length=12), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_ns", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "acquirer_saf",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("rrn", sa.String(length=12), nullable=False),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ns", sa.BigInteger(), nullable=False),
        sa.Column("response_code", sa.String(length=2), nullable=True),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("kind", "rrn", name="uq_acquirer_saf_kind_rrn"),
    )
    op.create_index("ix_acquirer_saf_due", "acquirer_saf", ["status", "next_attempt_ns", "id"])
    op.create_table(
        "acquirer_uploads",
        sa.Column("terminal_id", sa.String(length=8), primary_key=True),
        sa.Column("batch", sa.Integer(), primary_key=True),
        sa.Column("stan", sa.Integer(), primary_key=True),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("pan_masked", sa.String(length=19), nullable=True),
        sa.Column("message", sa.LargeBinary(), nullable=False),
        sa.Column("received_ns", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acquirer_uploads")
    op.drop_index("ix_acquirer_saf_due", table_name="acquirer_saf")
    op.drop_table("acquirer_saf")
    op.drop_table("acquirer_transactions")
    op.drop_table("acquirer_sequences")
