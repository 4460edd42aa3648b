"""The switch's routes to the banks' issuer front ends (``switch_routes``).

Read with the routing table while the switch runs: a bank added to the network, or a front end moved, is
routed without the switch being started again (``citycard serve route``).

Revision ID: 0035_switch_routes
Revises: 0034_settled_batches
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035_switch_routes"
down_revision = "0034_settled_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "switch_routes",
        sa.Column("bank_code", sa.String(8), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("switch_routes")
