"""The network services' reports to the center (``center_services``, ``citycard.center.services``).

``citycard serve acquirer|switch|issuer`` write, when they start, every few seconds and when they stop, where
they listen, on which machine and process, and their status line; the console's network page and
``citycard serve status`` show them, and a service whose reports stopped without a word as not reporting.

Revision ID: 0033_service_reports
Revises: 0032_refund_follow_ups
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0033_service_reports"
down_revision = "0032_refund_follow_ups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "center_services",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("hostname", sa.String(300), primary_key=True),
        sa.Column("address", sa.String(300), primary_key=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("reported_ns", sa.BigInteger, nullable=False),
        sa.Column("every_s", sa.Float, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("stopped_ns", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("center_services")
