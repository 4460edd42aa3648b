"""Industry applications written on the chip (issue 11): the state of each application's record in the
card's applications file (SFI 22) beside the service center's state of it —
``public_card_applications.chip_state`` (pending, sent, written), ``sent_atc``, ``sent_count`` — and
``issuer_cards.records_pending``, so that an authorization reads the records only of a card with one not
yet confirmed (docs/public-services.md, "On the chip").

Existing rows: an application enabled or disabled before is on no chip yet: ``pending`` (written at the
card's next online contact), and its card marked.

Revision ID: 0018_card_applications_on_chip
Revises: 0017_public_holders
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_card_applications_on_chip"
down_revision = "0017_public_holders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("public_card_applications") as batch:
        batch.add_column(sa.Column("chip_state", sa.String(8), nullable=False, server_default="pending"))
        batch.add_column(sa.Column("sent_atc", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sent_count", sa.Integer(), nullable=False, server_default="0"))
        batch.create_check_constraint(
            op.f("ck_public_card_applications_chip_state"), "chip_state IN ('pending', 'sent', 'written')"
        )
    op.add_column(
        "issuer_cards",
        sa.Column("records_pending", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "UPDATE issuer_cards SET records_pending = TRUE"
        " WHERE pan IN (SELECT pan FROM public_card_applications)"
    )


def downgrade() -> None:
    op.drop_column("issuer_cards", "records_pending")
    with op.batch_alter_table("public_card_applications") as batch:
        batch.drop_constraint(op.f("ck_public_card_applications_chip_state"), type_="check")
        batch.drop_column("sent_count")
        batch.drop_column("sent_atc")
        batch.drop_column("chip_state")
