"""Issuer lookups: indexes for card listings and searches (by status, PAN suffix, phone) and for naming
the owners of ledger accounts (cards by EC float and deposit account).

Revision ID: 0006_issuer_lookups
Revises: 0005_terminal_registry
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_issuer_lookups"
down_revision = "0005_terminal_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_issuer_cardholders_phone", "issuer_cardholders", ["phone"], unique=False)
    op.create_index("ix_issuer_cards_status", "issuer_cards", ["status", "pan"], unique=False)
    op.create_index("ix_issuer_cards_ec_float", "issuer_cards", ["ec_float_account_id"], unique=False)
    op.create_index("ix_issuer_cards_deposit", "issuer_cards", ["deposit_account_id"], unique=False)
    op.create_index(
        "ix_issuer_cards_pan_last4", "issuer_cards", [sa.text("substr(pan, length(pan) - 3)")], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_issuer_cards_pan_last4", table_name="issuer_cards")
    op.drop_index("ix_issuer_cards_deposit", table_name="issuer_cards")
    op.drop_index("ix_issuer_cards_ec_float", table_name="issuer_cards")
    op.drop_index("ix_issuer_cards_status", table_name="issuer_cards")
    op.drop_index("ix_issuer_cardholders_phone", table_name="issuer_cardholders")
