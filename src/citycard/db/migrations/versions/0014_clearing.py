"""Clearing (issue 9): ``clearing_items`` and ``clearing_runs`` (read by settlement), the exception queue
``clearing_exceptions``, the staged offline records ``clearing_presentments`` and the TCs presented per card
``clearing_tcs`` (``citycard.db.clearing_tables``). New tables only.

Revision ID: 0014_clearing
Revises: 0013_settlement
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_clearing"
down_revision = "0013_settlement"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clearing_exceptions",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("opened_date", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.Column("pan_masked", sa.String(length=19), nullable=False),
        sa.Column("atc", sa.Integer(), nullable=True),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("issuer_bank", sa.String(length=8), nullable=False),
        sa.Column("acquirer_bank", sa.String(length=8), nullable=False),
        sa.Column("cleared", sa.SmallInteger(), nullable=False),
        sa.Column("opened_ns", sa.BigInteger(), nullable=False),
        sa.Column("resolved_ns", sa.BigInteger(), nullable=True),
        sa.Column("pending_item", sa.String(length=12), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_exceptions")),
        sa.UniqueConstraint("ref", name=op.f("uq_clearing_exceptions_ref")),
    )
    with op.batch_alter_table("clearing_exceptions", schema=None) as batch_op:
        batch_op.create_index("ix_clearing_exceptions_pending", ["pending_item", "id"], unique=False)
        batch_op.create_index("ix_clearing_exceptions_status", ["status", "id"], unique=False)

    op.create_table(
        "clearing_items",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("clearing_date", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("source_ref", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sign", sa.SmallInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("issuer_bank", sa.String(length=8), nullable=False),
        sa.Column("acquirer_bank", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("mcc", sa.String(length=4), nullable=False),
        sa.Column("industry", sa.String(length=16), nullable=True),
        sa.Column("pan_masked", sa.String(length=19), nullable=False),
        sa.Column("atc", sa.Integer(), nullable=True),
        sa.Column("txn_ns", sa.BigInteger(), nullable=False),
        sa.Column("rrn", sa.String(length=12), nullable=True),
        sa.Column("service_ref", sa.String(length=32), nullable=True),
        sa.Column("transfer_id", sa.BigInteger(), nullable=True),
        sa.Column("exception_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("source IN ('online', 'offline')", name=op.f("ck_clearing_items_source")),
        sa.CheckConstraint("amount_fen > 0", name=op.f("ck_clearing_items_amount_positive")),
        sa.CheckConstraint("sign IN (1, -1)", name=op.f("ck_clearing_items_sign")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_items")),
        sa.UniqueConstraint("source", "source_ref", name="uq_clearing_items_source_ref"),
    )
    with op.batch_alter_table("clearing_items", schema=None) as batch_op:
        batch_op.create_index("ix_clearing_items_date", ["clearing_date", "id"], unique=False)

    op.create_table(
        "clearing_presentments",
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("clearing_date", sa.String(length=8), nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("stan", sa.Integer(), nullable=False),
        sa.Column("pan", sa.String(length=19), nullable=True),
        sa.Column("pan_masked", sa.String(length=19), nullable=False),
        sa.Column("psn", sa.String(length=2), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("field55", sa.LargeBinary(), nullable=True),
        sa.Column("journal_amount_fen", sa.BigInteger(), nullable=True),
        sa.Column("journal_field55", sa.LargeBinary(), nullable=True),
        sa.Column("journal_state", sa.String(length=16), nullable=True),
        sa.Column("journal_created_ns", sa.BigInteger(), nullable=True),
        sa.Column("service_ref", sa.String(length=32), nullable=True),
        sa.Column("received_ns", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("ref", name=op.f("pk_clearing_presentments")),
    )
    with op.batch_alter_table("clearing_presentments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_clearing_presentments_day", ["clearing_date", "outcome", "ref"], unique=False
        )
        batch_op.create_index("ix_clearing_presentments_key", ["terminal_id", "batch", "stan"], unique=True)

    op.create_table(
        "clearing_runs",
        sa.Column("clearing_date", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("online_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("online_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("offline_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("offline_fen", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("exception_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_ns", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("finished_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("clearing_date", name=op.f("pk_clearing_runs")),
    )
    op.create_table(
        "clearing_tcs",
        sa.Column("pan", sa.String(length=19), nullable=False),
        sa.Column("psn", sa.String(length=2), nullable=False),
        sa.Column("atc", sa.Integer(), nullable=False),
        sa.Column("cryptogram", sa.String(length=16), nullable=False),
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("txn_date", sa.String(length=8), nullable=False),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("pan", "psn", "atc", name=op.f("pk_clearing_tcs")),
    )


def downgrade() -> None:
    op.drop_table("clearing_tcs")
    op.drop_table("clearing_runs")
    with op.batch_alter_table("clearing_presentments", schema=None) as batch_op:
        batch_op.drop_index("ix_clearing_presentments_key")
        batch_op.drop_index("ix_clearing_presentments_day")

    op.drop_table("clearing_presentments")
    with op.batch_alter_table("clearing_items", schema=None) as batch_op:
        batch_op.drop_index("ix_clearing_items_date")

    op.drop_table("clearing_items")
    with op.batch_alter_table("clearing_exceptions", schema=None) as batch_op:
        batch_op.drop_index("ix_clearing_exceptions_status")
        batch_op.drop_index("ix_clearing_exceptions_pending")

    op.drop_table("clearing_exceptions")
