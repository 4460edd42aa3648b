"""A validator's bus line and vehicle in the registry (issue 11): ``center_terminals.line`` (NULL for a POS
and for validators registered before) and ``vehicle`` ('' for those), set by ``citycard terminal add
--kind validator --line N --vehicle K12-0815`` and read by the validator (docs/transit.md).

Revision ID: 0016_validator_line_vehicle
Revises: 0015_public_services
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_validator_line_vehicle"
down_revision = "0015_public_services"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("center_terminals", sa.Column("line", sa.Integer(), nullable=True))
    op.add_column("center_terminals", sa.Column("vehicle", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("center_terminals", "vehicle")
    op.drop_column("center_terminals", "line")
