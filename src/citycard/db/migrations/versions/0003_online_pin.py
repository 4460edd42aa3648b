"""Online PIN over the whole PIN: the card's IBM 3624 PIN offset, its count of wrong online PINs in a row,
and the bank's new PIN waiting for its PIN CHANGE script (a format-0 block under the bank's PIN storage key
in the HSM).

Existing data: a card whose PIN was set before keeps its Visa PVV, but a PVV covers only the first four PIN
digits and is no longer checked: such a card's online PIN is declined (55, "re-set it") until the holder
sets the PIN again with ``citycard card set-pin`` — which also sends it to the chip. The count starts at 0.

Revision ID: 0003_online_pin
Revises: 0002_issuer
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_online_pin"
down_revision = "0002_issuer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issuer_cards") as batch:
        batch.add_column(sa.Column("pin_offset", sa.String(length=12), nullable=True))
        batch.add_column(
            sa.Column("online_pin_failures", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("pending_pin_change", sa.LargeBinary(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issuer_cards") as batch:
        batch.drop_column("pending_pin_change")
        batch.drop_column("online_pin_failures")
        batch.drop_column("pin_offset")
