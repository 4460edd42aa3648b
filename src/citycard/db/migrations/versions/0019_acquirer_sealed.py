"""PANs at rest in the acquirer (issue 8): the store-and-forward queue and the offline uploads keep their
ISO messages sealed in the HSM (``sealed``), the uploads a keyed fingerprint of the PAN too
(``pan_fingerprint``, indexed); ``message`` (the clear message) becomes nullable and is NULL in every new
row.

Rows written before this revision still hold a clear ``message``: a migration cannot seal them (the key is
in the HSM, which Alembic does not open), so the acquirer seals them when it starts
(``citycard.db.acquirer_repositories.seal_clear_rows``: ``sealed`` written, ``message`` set to NULL, in
batches) and, until then, whatever reads a row takes ``sealed`` when it is there and ``message`` otherwise.
Downgrading is refused while a sealed row exists (its message cannot be put back in clear here).

Revision ID: 0019_acquirer_sealed
Revises: 0018_card_applications_on_chip
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_acquirer_sealed"
down_revision = "0018_card_applications_on_chip"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("acquirer_saf") as saf:
        saf.alter_column("message", existing_type=sa.LargeBinary(), nullable=True)
        saf.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("acquirer_uploads") as uploads:
        uploads.alter_column("message", existing_type=sa.LargeBinary(), nullable=True)
        uploads.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))
        uploads.add_column(sa.Column("pan_fingerprint", sa.String(64), nullable=True))
    op.create_index("ix_acquirer_uploads_pan_fingerprint", "acquirer_uploads", ["pan_fingerprint"])


def downgrade() -> None:
    connection = op.get_bind()
    for table in ("acquirer_saf", "acquirer_uploads"):
        sealed = connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE message IS NULL")).scalar()
        if sealed:
            raise RuntimeError(
                f"{table} holds {sealed} sealed row(s): their messages cannot be put back in clear by a "
                "migration (the key is in the HSM); empty the table first"
            )
    op.drop_index("ix_acquirer_uploads_pan_fingerprint", table_name="acquirer_uploads")
    with op.batch_alter_table("acquirer_uploads") as uploads:
        uploads.drop_column("pan_fingerprint")
        uploads.drop_column("sealed")
        uploads.alter_column("message", existing_type=sa.LargeBinary(), nullable=False)
    with op.batch_alter_table("acquirer_saf") as saf:
        saf.drop_column("sealed")
        saf.alter_column("message", existing_type=sa.LargeBinary(), nullable=False)
