"""SQL tables of the public services (``citycard.public``) on the shared metadata; migration
``0015_public_services`` (which also adds ``service_ref`` to the acquirer's records and uploads and to the
issuer's authorizations). Field by field: ``docs/public-services.md``.

The simulated government back end keeps its records by ``citizen_key``: the service center's keyed hash of
the holder's resident ID number (``issuer_cardholders.citizen_key``, the same at every bank since migration
``0017_public_holders``), never the number itself.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Integer, String, Table, Text

from .tables import metadata

__all__ = [
    "public_card_applications",
    "public_inquiries",
    "public_library_loans",
    "public_medical_insurance",
    "public_social_security",
]

public_social_security = Table(
    "public_social_security",
    metadata,
    Column("citizen_key", String(64), primary_key=True),
    Column("insured_since", String(6), nullable=False),  # YYYYMM
    Column("contribution_months", Integer, nullable=False),
    Column("last_paid", String(6), nullable=False),  # YYYYMM
    Column("base_fen", BigInteger, nullable=False),  # monthly contribution base
    Column("seeded_ns", BigInteger, nullable=False),
)

public_medical_insurance = Table(
    "public_medical_insurance",
    metadata,
    Column("citizen_key", String(64), primary_key=True),
    Column("scheme", String(16), nullable=False),
    Column("account_balance_fen", BigInteger, nullable=False),
    Column("spent_this_year_fen", BigInteger, nullable=False),
    CheckConstraint("scheme IN ('employee', 'resident')", name="scheme"),
)

public_library_loans = Table(
    "public_library_loans",
    metadata,
    Column("citizen_key", String(64), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("title", String(128), nullable=False),
    Column("borrowed", String(8), nullable=False),  # YYYYMMDD
    Column("due", String(8), nullable=False),  # YYYYMMDD
)

public_inquiries = Table(
    "public_inquiries",
    metadata,
    Column("request_id", String(64), primary_key=True),  # the issuer's balance inquiry that verified the PIN
    Column("terminal_id", String(8), nullable=False),
    Column("citizen_key", String(64), nullable=False),
    Column("served_ns", BigInteger, nullable=False),
)

public_card_applications = Table(
    "public_card_applications",
    metadata,
    Column("pan", String(19), primary_key=True),
    Column("app_code", String(16), primary_key=True),
    Column("status", String(8), nullable=False),
    Column("data", Text, nullable=False),  # JSON object of the application's fields
    Column("changed_ns", BigInteger, nullable=False),
    # the issuer's: the record on the chip (SFI 22) pending, sent by script (in the answer to ATC
    # sent_atc, among sent_count script commands) or written (0017)
    Column("chip_state", String(8), nullable=False, server_default="pending"),
    Column("sent_atc", Integer, nullable=True),
    Column("sent_count", Integer, nullable=False, server_default="0"),
    CheckConstraint("status IN ('enabled', 'disabled')", name="status"),
    CheckConstraint("chip_state IN ('pending', 'sent', 'written')", name="chip_state"),
    Index("ix_public_card_applications_app", "app_code", "status"),
)
