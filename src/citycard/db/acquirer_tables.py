"""SQL tables of the acquirer (SQLAlchemy 2 Core) on the shared :data:`citycard.db.tables.metadata`.

What is kept and why (``docs/network.md``, "PANs at rest"): the transaction records with the PAN masked;
the store-and-forward queue and the offline uploads with their encoded ISO messages **sealed** (``sealed``:
AES-256-GCM under the acquirer's data key in the HSM, ``citycard.hsm.protection``), because the switch
routes a forwarded reversal or advice by the PAN's BIN and clearing verifies an offline TC with the PAN and
field 55; the uploads also keep the PAN masked and its keyed fingerprint (``pan_fingerprint``, for finding a
card's uploads). ``message`` (the clear message) is only in rows written before migration
``0019_acquirer_sealed``; the acquirer seals those at start and clears the column. No PIN block and no MAC
is stored (field 52 is dropped from the messages kept). Migration ``0009_acquirer``;
``0015_public_services`` adds ``service_ref`` (field 48 of a payment at a public-service counter, as text
``HR-202612030017``: ``citycard.codec.iso8583.service``) to the records and the uploads, where clearing
copies it to ``clearing_items.service_ref``. ``0032_refund_follow_ups`` indexes the records that follow up
another (voids and refunds, by ``original_rrn``): the acquirer sums a purchase's refunds before it accepts
another.

``0022_clearing_staged_columns`` adds what clearing needs of an upload, decoded when the acquirer stores it
(``citycard.db.acquirer_repositories.upload_columns``), so that clearing stages a day with one
``INSERT … SELECT`` instead of unsealing and decoding every message: the PSN, field 55 (chip data, which
holds no PAN), the TC's values (ATC, amount, date, cryptogram, the CDOL1 data it covers), the PAN **sealed
alone** (``pan_sealed``, associated data :func:`~citycard.db.acquirer_repositories.pan_record`, the same for
the upload and clearing's presentment of it, so clearing copies it as it is) and the card's shard (from the
fingerprint, not the PAN). The sealed message stays, for audit and for the switch.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    text,
)

from .tables import metadata

__all__ = [
    "acquirer_saf",
    "acquirer_sequences",
    "acquirer_settled_batches",
    "acquirer_transactions",
    "acquirer_uploads",
]

acquirer_sequences = Table(
    "acquirer_sequences",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)

acquirer_transactions = Table(
    "acquirer_transactions",
    metadata,
    Column("terminal_id", String(8), primary_key=True),
    Column("batch", Integer, primary_key=True),
    Column("stan", Integer, primary_key=True),
    Column("merchant_id", String(15), nullable=False),
    Column("rrn", String(12), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("amount_fen", BigInteger, nullable=True),
    Column("pan_masked", String(19), nullable=True),
    Column("status", String(16), nullable=False),
    Column("response_code", String(2), nullable=True),
    Column("original_rrn", String(12), nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
    Column("service_ref", String(32), nullable=True),  # field 48: a public service's reference (0012)
    # a refund's voids and refunds of its original (0032); purchases (no original) are not in it
    Index(
        "ix_acquirer_transactions_original_rrn",
        "original_rrn",
        postgresql_where=text("original_rrn IS NOT NULL"),
        sqlite_where=text("original_rrn IS NOT NULL"),
    ),
)

acquirer_saf = Table(
    "acquirer_saf",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),
    Column("rrn", String(12), nullable=False),
    Column("message", LargeBinary, nullable=True),  # clear: rows from before 0016 only, until sealed
    Column("sealed", LargeBinary, nullable=True),  # the message sealed in the HSM (0019)
    Column("status", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ns", BigInteger, nullable=False),
    Column("response_code", String(2), nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    UniqueConstraint("kind", "rrn", name="uq_acquirer_saf_kind_rrn"),
    Index("ix_acquirer_saf_due", "status", "next_attempt_ns", "id"),
)

acquirer_uploads = Table(
    "acquirer_uploads",
    metadata,
    Column("terminal_id", String(8), primary_key=True),
    Column("batch", Integer, primary_key=True),
    Column("stan", Integer, primary_key=True),
    Column("merchant_id", String(15), nullable=False),
    Column("amount_fen", BigInteger, nullable=True),
    Column("pan_masked", String(19), nullable=True),
    Column("message", LargeBinary, nullable=True),  # clear: rows from before 0016 only, until sealed
    Column("received_ns", BigInteger, nullable=False),
    Column("service_ref", String(32), nullable=True),  # field 48 of the 0320, as text (0012)
    Column("sealed", LargeBinary, nullable=True),  # the 0320 sealed in the HSM (0019)
    Column("pan_fingerprint", String(64), nullable=True),  # HMAC-SHA-256 of the PAN in the HSM (0016)
    # what clearing stages, decoded when the upload is stored (0022; NULL field55: not filled yet)
    Column("psn", String(2), nullable=True),  # field 23's last two digits
    Column("field55", LargeBinary, nullable=True),  # the chip data as received (no PAN); b"": none
    Column("pan_sealed", LargeBinary, nullable=True),  # the PAN alone, sealed for the record (pan_record)
    Column("card_shard", SmallInteger, nullable=True),  # of the PAN's fingerprint (card_shard)
    Column("tc_atc", Integer, nullable=True),  # the TC of field 55 (NULL: not a usable TC)
    Column("tc_amount_fen", BigInteger, nullable=True),  # 9F02
    Column("tc_date", String(8), nullable=True),  # 9A, YYYYMMDD
    Column("tc_cryptogram", LargeBinary, nullable=True),  # 9F26
    Column("tc_ac_data", LargeBinary, nullable=True),  # the CDOL1 data the TC covers
    Column("tc_gpo_ac_data", LargeBinary, nullable=True),  # qPBOC: the same with the GPO's zero TVR
    Column("bus_line", Integer, nullable=True),  # field 63 of a validator's fare: line and vehicle (0024)
    Column("vehicle", String(16), nullable=True),
    Index("ix_acquirer_uploads_pan_fingerprint", "pan_fingerprint"),
    Index("ix_acquirer_uploads_received", "received_ns", "terminal_id", "batch", "stan"),  # a day's (0022)
)

acquirer_settled_batches = Table(
    "acquirer_settled_batches",
    metadata,
    Column("terminal_id", String(8), primary_key=True),
    Column("batch", Integer, nullable=False),  # the last batch of the terminal settled balanced (0500, 00)
    Column("settled_ns", BigInteger, nullable=False),
    Index("ix_acquirer_settled_batches_settled", "settled_ns"),  # the acquirers' reload since a time (0036)
)
"""Each terminal's last batch settled balanced (0034): a request into it or an earlier one is answered
``77`` (sign on again), and the sign-on answers the next batch (``hosts.acquirer``)."""
