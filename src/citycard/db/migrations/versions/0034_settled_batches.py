"""Each terminal's last batch settled balanced (``acquirer_settled_batches``).

After a 0500 answered ``00`` the batch is closed: a request that names it (or an earlier one) in 60.2 is
answered ``77`` (batch number mismatch, sign on again), and a sign-on's 0810 carries the next batch, which the
terminal takes (docs/iso8583.md, "Batch settlement").

Revision ID: 0034_settled_batches
Revises: 0033_service_reports
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034_settled_batches"
down_revision = "0033_service_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acquirer_settled_batches",
        sa.Column("terminal_id", sa.String(8), primary_key=True),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("settled_ns", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("acquirer_settled_batches")
