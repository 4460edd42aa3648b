"""SQL tables of the issuer (SQLAlchemy 2 Core) on the shared :data:`citycard.db.tables.metadata`.

No secret is stored here in clear: keys live in the HSM; a card keeps its IBM 3624 PIN offset (and the Visa
PVV of a PIN set before offsets, no longer checked), never the PIN; a PIN set by the bank waits for its PIN
CHANGE script as a format-0 block under the bank's PIN storage key in the HSM, dropped once sent; a
cardholder's resident ID number is kept as an HMAC under the bank's HSM key plus its last 4 characters for
display. Migrations: ``0002_issuer``, ``0003_online_pin``, ``0004_authorization_terminal``,
``0005_terminal_registry``, ``0006_issuer_lookups`` (indexes for card listings and searches). The merchant
and terminal registry of 0005 became the center's in ``0008_registry`` (``citycard.db.center_tables``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    false,
    func,
    literal_column,
)

from .tables import metadata

__all__ = [
    "CARDS_FILLFACTOR",
    "ISSUER_ID_BASE",
    "PAN_LAST4",
    "issuer_authorizations",
    "issuer_banks",
    "issuer_bin_ranges",
    "issuer_card_transit",
    "issuer_cardholders",
    "issuer_cards",
    "issuer_deny_list",
    "issuer_deny_list_versions",
    "issuer_products",
    "issuer_sequences",
    "issuer_unpredictable_numbers",
]

ISSUER_ID_BASE = 1 << 40
"""First ledger account id the issuer allocates (other areas keep below it)."""

issuer_banks = Table(
    "issuer_banks",
    metadata,
    Column("code", String(8), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("cash_account_id", BigInteger, nullable=False),
    Column("settlement_account_id", BigInteger, nullable=False),
    Column("fee_account_id", BigInteger, nullable=False),
    # 8 digits, unique (the index); the empty default only lets SQLite add the column to existing rows
    Column("institution_id", String(8), nullable=False, server_default=""),
    Index("ix_issuer_banks_institution_id", "institution_id", unique=True),
)

issuer_bin_ranges = Table(
    "issuer_bin_ranges",
    metadata,
    Column("bin", String(8), primary_key=True),
    Column("bank_code", String(8), ForeignKey("issuer_banks.code"), nullable=False),
    Column("pan_length", Integer, nullable=False),
    Column("next_serial", BigInteger, nullable=False),
)

issuer_products = Table(
    "issuer_products",
    metadata,
    Column("bank_code", String(8), ForeignKey("issuer_banks.code"), primary_key=True),
    Column("code", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("bin", String(8), ForeignKey("issuer_bin_ranges.bin"), nullable=False),
    Column("registered", Boolean, nullable=False),
    Column("ec_balance_limit_fen", BigInteger, nullable=False),
    Column("ec_single_limit_fen", BigInteger, nullable=False),
    Column("ec_reset_threshold_fen", BigInteger, nullable=False),
    Column("issue_fee_fen", BigInteger, nullable=False),
    Column("annual_fee_fen", BigInteger, nullable=False),
    Column("validity_years", Integer, nullable=False),
    Column("card_type", String(8), nullable=False, server_default="debit"),  # CardType (0023)
)

issuer_cardholders = Table(
    "issuer_cardholders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("id_hash", String(64), nullable=False, unique=True),
    Column("id_last4", String(4), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("deposit_account_id", BigInteger, nullable=False),
    Column("citizen_key", String(64), nullable=False),  # the service center's HMAC of the ID number (0017)
    Index("ix_issuer_cardholders_phone", "phone"),
    Index("ix_issuer_cardholders_citizen_key", "citizen_key"),
)

CARDS_FILLFACTOR = 50
"""``issuer_cards``' fillfactor on PostgreSQL (migration ``0028_cards_fillfactor``): each page filled to half
at insert, the other half left for new versions of its rows. Clearing marks every card with offline records
of the day in one statement (``ClearingEngine.record_cleared``): with full pages each new version went to
another page and took an entry in each of the table's seven indexes (17 µs of server CPU a card); with room
on its page it is a heap-only tuple, indexes untouched, and the next update of the page prunes the versions
left by the last (no VACUUM needed). Half: a statement that updates every card of a page cannot reuse the
space of the versions it replaces itself, so each page needs room for as many rows again."""

issuer_cards = Table(
    "issuer_cards",
    metadata,
    Column("pan", String(19), primary_key=True),
    Column("psn", String(2), nullable=False),
    Column("bank_code", String(8), ForeignKey("issuer_banks.code"), nullable=False),
    Column("product_code", String(32), nullable=False),
    Column("holder_id", Integer, ForeignKey("issuer_cardholders.id"), nullable=True),
    Column("status", String(16), nullable=False),
    Column("expiry", String(4), nullable=False),
    Column("ec_float_account_id", BigInteger, nullable=False),
    Column("deposit_account_id", BigInteger, nullable=True),
    Column("issued_at_ns", BigInteger, nullable=False),
    Column("highest_atc", Integer, nullable=False),
    Column("pvv", String(4), nullable=True),
    Column("pvki", Integer, nullable=False),
    Column("pin_offset", String(12), nullable=True),
    Column("online_pin_failures", Integer, nullable=False),
    Column("pending_pin_change", LargeBinary(8), nullable=True),
    Column("pending_script", String(8), nullable=True),
    Column("pending_ec_credit_fen", BigInteger, nullable=False),
    Column("pending_pin_unblock", Boolean, nullable=False, server_default=false()),
    Column("records_pending", Boolean, nullable=False, server_default=false()),  # 0017
    Column("lost_at_ns", BigInteger, nullable=True),
    Column("offline_cleared_until_ns", BigInteger, nullable=False),
    Column("replaced_by", String(19), nullable=True),
    Column("closed_at_ns", BigInteger, nullable=True),
    ForeignKeyConstraint(
        ["bank_code", "product_code"], ["issuer_products.bank_code", "issuer_products.code"]
    ),
    Index("ix_issuer_cards_holder", "holder_id"),
    Index("ix_issuer_cards_bank", "bank_code", "pan"),
    Index("ix_issuer_cards_status", "status", "pan"),
    Index("ix_issuer_cards_ec_float", "ec_float_account_id"),
    Index("ix_issuer_cards_deposit", "deposit_account_id"),
    # 0028: pages half full, so that a day's update of its cards' rows (clearing's cleared mark, an online
    # authorization's ATC) finds room on the row's own page, a HOT update: no entry in the seven indexes
    postgresql_with={"fillfactor": CARDS_FILLFACTOR},
)

issuer_card_transit = Table(
    "issuer_card_transit",
    metadata,
    # the card's transit file (SFI 21): a row per card personalised with it (0024); its concession record
    # (record 1, citycard.codec.transitfile) and where that record stands on the chip
    Column("pan", String(19), ForeignKey("issuer_cards.pan"), primary_key=True),
    Column("category", String(8), nullable=False),  # none, elderly, student, disabled
    Column("valid_until", String(8), nullable=True),  # YYYYMMDD, inclusive; NULL with none
    Column("changed_ns", BigInteger, nullable=False),  # the record's version
    Column("chip_state", String(8), nullable=False),  # pending, sent, written
    Column("sent_atc", Integer, nullable=True),
    Column("sent_count", Integer, nullable=False, server_default="0"),
    CheckConstraint("category IN ('none', 'elderly', 'student', 'disabled')", name="category"),
    CheckConstraint("chip_state IN ('pending', 'sent', 'written')", name="chip_state"),
)

PAN_LAST4 = func.substr(issuer_cards.c.pan, func.length(issuer_cards.c.pan) - literal_column("3"))
"""The PAN's last 4 digits, as the expression index ``ix_issuer_cards_pan_last4`` has it (a literal 3, not a
bound parameter, so that SQLite and PostgreSQL match the query's expression to the index)."""
Index("ix_issuer_cards_pan_last4", PAN_LAST4)

issuer_authorizations = Table(
    "issuer_authorizations",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("pan", String(19), nullable=False),
    Column("kind", String(24), nullable=False),  # 0025: ec_load_other_debit has 19 characters
    Column("fingerprint", String(64), nullable=False),
    Column("response_code", String(2), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("transfer_ids", String(256), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("reversed_by", String(64), nullable=True),
    Column("terminal_id", String(8), nullable=False, server_default=""),
    Column("merchant_id", String(15), nullable=False, server_default=""),
    Column("original_request_id", String(64), nullable=True),
    Column("refunded_fen", BigInteger, nullable=False, server_default="0"),
    Column("service_ref", String(32), nullable=True),  # field 48 of a public-service payment (0012)
    Index("ix_issuer_authorizations_pan", "pan", "created_ns"),
)

issuer_unpredictable_numbers = Table(
    "issuer_unpredictable_numbers",
    metadata,
    Column("pan", String(19), primary_key=True),
    Column("un", String(8), primary_key=True),
    Column("atc", Integer, nullable=False),
)

issuer_deny_list = Table(
    "issuer_deny_list",
    metadata,
    Column("bank_code", String(8), ForeignKey("issuer_banks.code"), primary_key=True),
    Column("pan", String(19), primary_key=True),
    Column("psn", String(2), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("added_ns", BigInteger, nullable=False),
    Column("removed_ns", BigInteger, nullable=True),
)

issuer_deny_list_versions = Table(
    "issuer_deny_list_versions",
    metadata,
    Column("bank_code", String(8), ForeignKey("issuer_banks.code"), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

issuer_sequences = Table(
    "issuer_sequences",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)
