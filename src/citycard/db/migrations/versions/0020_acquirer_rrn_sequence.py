"""The acquirer's RRNs from a PostgreSQL sequence (``acquirer_rrn``) instead of the counter row of
``acquirer_sequences``, which every purchase locked until its commit (a hot row: RRNs were taken one
transaction at a time). The sequence starts where the counter stood, so no RRN is given twice; SQLite keeps
the counter row (one writer at a time there anyway). Downgrade writes the sequence's position back into the
counter row.

Revision ID: 0020_acquirer_rrn_sequence
Revises: 0019_acquirer_sealed
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_acquirer_rrn_sequence"
down_revision = "0019_acquirer_sealed"
branch_labels = None
depends_on = None

SEQUENCE = "acquirer_rrn"
COUNTER = "rrn"  # the row of acquirer_sequences the counter used
MAX_RRN = 999_999_999_999  # twelve digits (citycard.acquirer.model.MAX_RRN)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"CREATE SEQUENCE {SEQUENCE} AS BIGINT MINVALUE 1 MAXVALUE {MAX_RRN} NO CYCLE")
    next_value = (
        op.get_bind()
        .execute(sa.text("SELECT next_value FROM acquirer_sequences WHERE name = :name"), {"name": COUNTER})
        .scalar()
    )
    if next_value is not None:  # the counter's next RRN is the sequence's next value
        op.get_bind().execute(
            sa.text(f"SELECT setval('{SEQUENCE}', :value, false)"), {"value": int(next_value)}
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    bind = op.get_bind()
    called, last = bind.execute(sa.text(f"SELECT is_called, last_value FROM {SEQUENCE}")).one()
    if called:
        bind.execute(
            sa.text(
                "INSERT INTO acquirer_sequences (name, next_value) VALUES (:name, :value) "
                "ON CONFLICT (name) DO UPDATE SET next_value = EXCLUDED.next_value"
            ),
            {"name": COUNTER, "value": int(last) + 1},
        )
    op.execute(f"DROP SEQUENCE {SEQUENCE}")
