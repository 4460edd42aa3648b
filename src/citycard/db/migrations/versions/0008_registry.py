"""The Citizen Card Service Center's merchant and terminal registry, made from the issuer's minimal one.

``issuer_merchants`` and ``issuer_terminals`` (revision 0005) become ``center_merchants`` and
``center_terminals`` with the center's columns: a merchant's industry, district or county, acquiring bank
(``issuer_banks.code``), status and creation time; a terminal's kind (pos or validator), the check value of
its master key and its creation time. Rows are kept: a merchant registered before has no industry (NULL),
an empty district, no acquiring bank (NULL), status ``active`` and time 0; a terminal is a ``pos`` with no
TMK check value, and its status ``inactive`` becomes ``closed``. The downgrade copies back the old columns
(a ``closed`` terminal becomes ``inactive``, a closed merchant is kept as it was).

Revision ID: 0008_registry
Revises: 0007_issuer_network
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_registry"
down_revision = "0007_issuer_network"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "center_merchants",
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("mcc", sa.String(length=4), nullable=False),
        sa.Column("industry", sa.String(length=16), nullable=True),
        sa.Column("district", sa.String(length=64), nullable=False),
        sa.Column("bank_code", sa.String(length=8), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'closed')", name=op.f("ck_center_merchants_status")),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["issuer_banks.code"], name=op.f("fk_center_merchants_bank_code_issuer_banks")
        ),
        sa.PrimaryKeyConstraint("merchant_id", name=op.f("pk_center_merchants")),
    )
    op.create_index(
        "ix_center_merchants_bank", "center_merchants", ["bank_code", "merchant_id"], unique=False
    )
    op.create_table(
        "center_terminals",
        sa.Column("terminal_id", sa.String(length=8), nullable=False),
        sa.Column("merchant_id", sa.String(length=15), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("tmk_kcv", sa.String(length=16), nullable=False),
        sa.Column("created_ns", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'closed')", name=op.f("ck_center_terminals_status")),
        sa.CheckConstraint("kind IN ('pos', 'validator')", name=op.f("ck_center_terminals_kind")),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["center_merchants.merchant_id"],
            name=op.f("fk_center_terminals_merchant_id_center_merchants"),
        ),
        sa.PrimaryKeyConstraint("terminal_id", name=op.f("pk_center_terminals")),
    )
    op.create_index(
        "ix_center_terminals_merchant", "center_terminals", ["merchant_id", "terminal_id"], unique=False
    )
    columns = "merchant_id, name, mcc, industry, district, bank_code, status, created_ns"
    op.execute(
        f"INSERT INTO center_merchants ({columns})"
        " SELECT merchant_id, name, mcc, NULL, '', NULL, 'active', 0 FROM issuer_merchants"
    )
    op.execute(
        "INSERT INTO center_terminals (terminal_id, merchant_id, kind, status, tmk_kcv, created_ns)"
        " SELECT terminal_id, merchant_id, 'pos',"
        " CASE WHEN status = 'active' THEN 'active' ELSE 'closed' END, '', 0 FROM issuer_terminals"
    )
    op.drop_table("issuer_terminals")
    op.drop_table("issuer_merchants")


def downgrade() -> None:
    op.create_table(
        "issuer_merchants",
        sa.Column("merchant_id", sa.String(length=15), primary_key=True),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("mcc", sa.String(length=4), nullable=False),
    )
    op.create_table(
        "issuer_terminals",
        sa.Column("terminal_id", sa.String(length=8), primary_key=True),
        sa.Column(
            "merchant_id", sa.String(length=15), sa.ForeignKey("issuer_merchants.merchant_id"), nullable=False
        ),
        sa.Column("status", sa.String(length=8), nullable=False),
    )
    op.execute(
        "INSERT INTO issuer_merchants (merchant_id, name, mcc)"
        " SELECT merchant_id, name, mcc FROM center_merchants"
    )
    op.execute(
        "INSERT INTO issuer_terminals (terminal_id, merchant_id, status) SELECT terminal_id, merchant_id,"
        " CASE WHEN status = 'active' THEN 'active' ELSE 'inactive' END FROM center_terminals"
    )
    op.drop_index("ix_center_terminals_merchant", table_name="center_terminals")
    op.drop_table("center_terminals")
    op.drop_index("ix_center_merchants_bank", table_name="center_merchants")
    op.drop_table("center_merchants")
