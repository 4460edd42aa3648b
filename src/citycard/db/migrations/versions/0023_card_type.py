"""Card types (issue 9, settlement's fee caps): ``issuer_products.card_type`` (``debit`` or ``credit``; every
existing product is a debit product, the programme's cards) and ``clearing_items.card_type`` (the card's
product's, written by clearing; NULL for items cleared before this revision, which settlement prices as debit,
as it priced them then).

Revision ID: 0023_card_type
Revises: 0022_clearing_staged_columns
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_card_type"
down_revision = "0022_clearing_staged_columns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issuer_products") as products:
        products.add_column(sa.Column("card_type", sa.String(8), nullable=False, server_default="debit"))
    with op.batch_alter_table("clearing_items") as items:
        items.add_column(sa.Column("card_type", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clearing_items") as items:
        items.drop_column("card_type")
    with op.batch_alter_table("issuer_products") as products:
        products.drop_column("card_type")
