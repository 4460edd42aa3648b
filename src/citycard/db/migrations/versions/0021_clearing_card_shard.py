"""Clearing by card (issue 9, speed): ``clearing_presentments.card_shard``, the card's shard (a hash of its
PAN, ``citycard.db.clearing_repositories.card_shard``; NULL while the card is not known), set when the record
is staged, and an index to take a shard's undecided records card by card. Clearing decides each card's
records of the day in one batch and several processes each take their own shards.

Revision ID: 0021_clearing_card_shard
Revises: 0020_acquirer_rrn_sequence
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021_clearing_card_shard"
down_revision = "0020_acquirer_rrn_sequence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clearing_presentments", sa.Column("card_shard", sa.SmallInteger(), nullable=True))
    op.create_index(
        "ix_clearing_presentments_card",
        "clearing_presentments",
        ["clearing_date", "card_shard", "pan", "ref"],
    )


def downgrade() -> None:
    op.drop_index("ix_clearing_presentments_card", table_name="clearing_presentments")
    op.drop_column("clearing_presentments", "card_shard")
