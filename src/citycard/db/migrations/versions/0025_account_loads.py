"""EC loads from another account (非指定账户圈存, 0200 620000/91) in clearing and settlement.

``clearing_items.payer_bank``: for an ``ec_account_load`` item, the bank of the account that paid (the
other account's issuer); the item's ``issuer_bank`` is the EC card's, which receives. Existing rows: NULL
(no other kind has a payer).

``issuer_authorizations.kind`` widened from 16 to 24 characters: the other account's leg is recorded as
``ec_load_other_debit`` (19), which PostgreSQL refused in a VARCHAR(16) (SQLite does not check lengths).

Revision ID: 0025_account_loads
Revises: 0024_transit_fares
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_account_loads"
down_revision = "0024_transit_fares"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("clearing_items", sa.Column("payer_bank", sa.String(8), nullable=True))
    with op.batch_alter_table("issuer_authorizations") as batch:
        batch.alter_column("kind", type_=sa.String(24), existing_type=sa.String(16), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("issuer_authorizations") as batch:
        batch.alter_column("kind", type_=sa.String(16), existing_type=sa.String(24), existing_nullable=False)
    with op.batch_alter_table("clearing_items") as batch:
        batch.drop_column("payer_bank")
