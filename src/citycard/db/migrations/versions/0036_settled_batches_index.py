"""An index on ``acquirer_settled_batches.settled_ns``.

Each acquirer reads the batches settled since its last look every few seconds (``settled_reload_s``, 0034):
without the index that read scans one row per terminal of the city, every time; with it, it reads the few
settled since.

Revision ID: 0036_settled_batches_index
Revises: 0035_switch_routes
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0036_settled_batches_index"
down_revision = "0035_switch_routes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_acquirer_settled_batches_settled", "acquirer_settled_batches", ["settled_ns"])


def downgrade() -> None:
    op.drop_index("ix_acquirer_settled_batches_settled", table_name="acquirer_settled_batches")
