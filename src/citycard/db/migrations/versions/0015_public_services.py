"""Public services on the card (issue 11): the service's reference (field 48, ``HR-202612030017``) on the
acquirer's records and uploads and on the issuer's authorizations (NULL for everything before); the
simulated government back end's records, the inquiries served, and the industry applications per card
(``citycard.db.public_tables``, docs/public-services.md).

Revision ID: 0015_public_services
Revises: 0014_clearing
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_public_services"
down_revision = "0014_clearing"
branch_labels = None
depends_on = None

_REFERENCED = ("acquirer_transactions", "acquirer_uploads", "issuer_authorizations")


def upgrade() -> None:
    for table in _REFERENCED:  # in place (ALTER TABLE … ADD COLUMN), nullable: no rewrite
        op.add_column(table, sa.Column("service_ref", sa.String(32), nullable=True))
    op.create_table(
        "public_social_security",
        sa.Column("citizen_key", sa.String(64), primary_key=True),
        sa.Column("insured_since", sa.String(6), nullable=False),
        sa.Column("contribution_months", sa.Integer(), nullable=False),
        sa.Column("last_paid", sa.String(6), nullable=False),
        sa.Column("base_fen", sa.BigInteger(), nullable=False),
        sa.Column("seeded_ns", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "public_medical_insurance",
        sa.Column("citizen_key", sa.String(64), primary_key=True),
        sa.Column("scheme", sa.String(16), nullable=False),
        sa.Column("account_balance_fen", sa.BigInteger(), nullable=False),
        sa.Column("spent_this_year_fen", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "scheme IN ('employee', 'resident')", name=op.f("ck_public_medical_insurance_scheme")
        ),
    )
    op.create_table(
        "public_library_loans",
        sa.Column("citizen_key", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("title", sa.String(128), nullable=False),
        sa.Column("borrowed", sa.String(8), nullable=False),
        sa.Column("due", sa.String(8), nullable=False),
    )
    op.create_table(
        "public_inquiries",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("terminal_id", sa.String(8), nullable=False),
        sa.Column("citizen_key", sa.String(64), nullable=False),
        sa.Column("served_ns", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "public_card_applications",
        sa.Column("pan", sa.String(19), primary_key=True),
        sa.Column("app_code", sa.String(16), primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("changed_ns", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ('enabled', 'disabled')", name=op.f("ck_public_card_applications_status")
        ),
    )
    op.create_index("ix_public_card_applications_app", "public_card_applications", ["app_code", "status"])


def downgrade() -> None:
    op.drop_index("ix_public_card_applications_app", table_name="public_card_applications")
    for table in (
        "public_card_applications",
        "public_inquiries",
        "public_library_loans",
        "public_medical_insurance",
        "public_social_security",
    ):
        op.drop_table(table)
    for table in reversed(_REFERENCED):
        op.drop_column(table, "service_ref")
