"""The terminal and merchant of each stored authorization (ISO 8583 fields 41 and 42), so that a follow-up
message (a reversal) is accepted only from the original's terminal and merchant.

Existing rows get empty strings: a reversal of an authorization stored before this revision must then come
with empty fields 41 and 42, as the request that created it did not record them.

Revision ID: 0004_authorization_terminal
Revises: 0003_online_pin
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_authorization_terminal"
down_revision = "0003_online_pin"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issuer_authorizations") as batch:
        batch.add_column(sa.Column("terminal_id", sa.String(length=8), nullable=False, server_default=""))
        batch.add_column(sa.Column("merchant_id", sa.String(length=15), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("issuer_authorizations") as batch:
        batch.drop_column("merchant_id")
        batch.drop_column("terminal_id")
