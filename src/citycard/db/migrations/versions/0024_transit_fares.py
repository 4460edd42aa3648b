"""Transit (issue 11): the issuer's side of the card's transit file, and the bus line and vehicle of each
validator fare from its upload through clearing.

The issuer's side of the card's transit file (transit concessions): ``issuer_card_transit``,
one row per card personalised with the transit file (SFI 21), with its concession record (record 1:
category, valid until) and where that record stands on the chip (``chip_state`` pending, sent, written;
``sent_atc``, ``sent_count``), as ``public_card_applications`` has for the applications file
(docs/transit.md, "Concessions from the issuer").

Existing cards: none gets a row. Their chips were personalised without the transit file (the issuer's
products carry it from this revision on), so no concession can be written to them; their successors
(replacement, renewal) have the file.

The line and vehicle of a validator's fare (field 63 of its 0320, ``codec.iso8583.busride``):
``acquirer_uploads.bus_line``, ``vehicle``; ``clearing_presentments`` and ``clearing_items`` likewise (the
settlement's merchant statement sums a bus company's fares by line). Existing rows: NULL (not known).

Revision ID: 0024_transit_fares
Revises: 0023_card_type
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_transit_fares"
down_revision = "0023_card_type"
branch_labels = None
depends_on = None


_RIDES = ("acquirer_uploads", "clearing_presentments", "clearing_items")


def upgrade() -> None:
    op.create_table(
        "issuer_card_transit",
        sa.Column("pan", sa.String(19), sa.ForeignKey("issuer_cards.pan"), primary_key=True),
        sa.Column("category", sa.String(8), nullable=False),
        sa.Column("valid_until", sa.String(8), nullable=True),
        sa.Column("changed_ns", sa.BigInteger(), nullable=False),
        sa.Column("chip_state", sa.String(8), nullable=False),
        sa.Column("sent_atc", sa.Integer(), nullable=True),
        sa.Column("sent_count", sa.Integer(), nullable=False, server_default="0"),
        sa.CheckConstraint(
            "category IN ('none', 'elderly', 'student', 'disabled')",
            name=op.f("ck_issuer_card_transit_category"),
        ),
        sa.CheckConstraint(
            "chip_state IN ('pending', 'sent', 'written')", name=op.f("ck_issuer_card_transit_chip_state")
        ),
    )
    for table in _RIDES:
        op.add_column(table, sa.Column("bus_line", sa.Integer(), nullable=True))
        op.add_column(table, sa.Column("vehicle", sa.String(16), nullable=True))


def downgrade() -> None:
    for table in _RIDES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("vehicle")
            batch.drop_column("bus_line")
    op.drop_table("issuer_card_transit")
