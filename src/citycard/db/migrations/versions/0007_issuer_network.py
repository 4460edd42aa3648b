"""The issuer on the network: each bank's institution id (ISO 8583 field 32, 8 digits, unique), and on each
stored authorization the request it follows up (``original_request_id``: a reversal, void or refund) and
the amount refunded so far against it (``refunded_fen``: partial refunds up to the original's amount).

Existing banks get ``01000001``, ``01000002``, … in the order of their codes (what ``bank add`` gives a
bank named without ``--institution``); existing authorizations no original and nothing refunded.

Revision ID: 0007_issuer_network
Revises: 0006_issuer_lookups
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_issuer_network"
down_revision = "0006_issuer_lookups"
branch_labels = None
depends_on = None

_FIRST_INSTITUTION_ID = 1_000_001


def upgrade() -> None:
    # added in place (ALTER TABLE … ADD COLUMN, no table copy: the cards' foreign keys point at the banks)
    with op.batch_alter_table("issuer_banks") as batch:
        batch.add_column(sa.Column("institution_id", sa.String(length=8), nullable=False, server_default=""))
    banks = sa.table("issuer_banks", sa.column("code", sa.String), sa.column("institution_id", sa.String))
    connection = op.get_bind()
    codes = [row.code for row in connection.execute(sa.select(banks.c.code).order_by(banks.c.code))]
    for number, code in enumerate(codes, start=_FIRST_INSTITUTION_ID):
        connection.execute(
            sa.update(banks).where(banks.c.code == code).values(institution_id=f"{number:08d}")
        )
    op.create_index("ix_issuer_banks_institution_id", "issuer_banks", ["institution_id"], unique=True)
    with op.batch_alter_table("issuer_authorizations") as batch:
        batch.add_column(sa.Column("original_request_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("refunded_fen", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("issuer_authorizations") as batch:
        batch.drop_column("refunded_fen")
        batch.drop_column("original_request_id")
    op.drop_index("ix_issuer_banks_institution_id", table_name="issuer_banks")
    op.drop_column("issuer_banks", "institution_id")  # in place (SQLite 3.35+ DROP COLUMN), as it was added
