"""An index of the acquirer's records that follow up another (voids and refunds) by ``original_rrn``.

A refund is an advice: the acquirer answers it 0230 at once and forwards it later. Before it accepts one it
now reads the purchase's voids and refunds (``acquirer.model.refund_refusal``): a refund beyond what is left
of the purchase, or of a voided, reversed or declined purchase, is refused at once instead of being
acknowledged to the terminal and declined by the issuer later. Partial (``original_rrn IS NOT NULL``), so
the purchases, which follow up nothing, add no entry to it.

Revision ID: 0032_refund_follow_ups
Revises: 0031_seen_tcs_by_shard
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032_refund_follow_ups"
down_revision = "0031_seen_tcs_by_shard"
branch_labels = None
depends_on = None

_WHERE = sa.text("original_rrn IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_acquirer_transactions_original_rrn",
        "acquirer_transactions",
        ["original_rrn"],
        postgresql_where=_WHERE,
        sqlite_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_acquirer_transactions_original_rrn", table_name="acquirer_transactions")
