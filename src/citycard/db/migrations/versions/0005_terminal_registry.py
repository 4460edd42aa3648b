"""The issuer's minimal merchant and terminal registry (ISO 8583 fields 42 and 41): once a terminal is
registered, authorizations must come from a registered, active terminal of the merchant they name.

Existing databases get empty tables: nothing is checked until terminals are registered.

Revision ID: 0005_terminal_registry
Revises: 0004_authorization_terminal
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_terminal_registry"
down_revision = "0004_authorization_terminal"
branch_labels = None
depends_on = None


def upgrade() -> None:
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


def downgrade() -> None:
    op.drop_table("issuer_terminals")
    op.drop_table("issuer_merchants")
