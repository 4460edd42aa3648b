"""A PIN UNBLOCK pending for a card (``pending_pin_unblock``): the PBOC PIN CHANGE/UNBLOCK command with P2
``00`` (reset the chip's PIN try counter, keep the PIN; MAC under the card's script MAC session key from the
HSM), sent at the card's next online contact transaction. Existing cards have none pending.

Revision ID: 0011_issuer_pin_unblock
Revises: 0010_ledger_shards
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_issuer_pin_unblock"
down_revision = "0010_ledger_shards"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # in place (ALTER TABLE … ADD COLUMN): copying the table would drop the PAN-suffix expression index on
    # SQLite, which cannot reflect it (0006)
    op.add_column(
        "issuer_cards",
        sa.Column("pending_pin_unblock", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("issuer_cards", "pending_pin_unblock")  # in place (SQLite 3.35+), as it was added
