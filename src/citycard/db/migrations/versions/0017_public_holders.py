"""Public-service records per holder, not per bank (issue 11): ``issuer_cardholders.citizen_key``, the
service center's HMAC of the resident ID number, the same at every bank; the back end's records
(``public_social_security``, ``public_medical_insurance``, ``public_library_loans``) and the inquiries served
are keyed by it.

Existing rows: the ID number is nowhere in the platform, so a holder registered before this revision cannot
be given the center's hash here. Each such holder takes its bank's ``id_hash`` as its ``citizen_key``, which
is exactly what the back end keyed its records by until now: every existing record belongs to its holder
from here on, with no record rewritten. Such a holder's cards at two banks keep two keys (and two sets of
records) until the holders are joined, which needs the ID number (docs/public-services.md, "Holders").

Revision ID: 0017_public_holders
Revises: 0016_validator_line_vehicle
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_public_holders"
down_revision = "0016_validator_line_vehicle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("issuer_cardholders", sa.Column("citizen_key", sa.String(64), nullable=True))
    op.execute("UPDATE issuer_cardholders SET citizen_key = id_hash WHERE citizen_key IS NULL")
    with op.batch_alter_table("issuer_cardholders") as batch:
        batch.alter_column("citizen_key", existing_type=sa.String(64), nullable=False)
        batch.create_index("ix_issuer_cardholders_citizen_key", ["citizen_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("issuer_cardholders") as batch:
        batch.drop_index("ix_issuer_cardholders_citizen_key")
        batch.drop_column("citizen_key")
