"""SQL tables of the Citizen Card Service Center's registry (SQLAlchemy 2 Core) on the shared metadata.

``center_merchants`` (field 42) and ``center_terminals`` (field 41) are the one registry of the platform:
migration ``0008_registry`` made them from the issuer's minimal registry of ``0005_terminal_registry``
(``issuer_merchants``, ``issuer_terminals``), keeping its rows. The center writes them
(``citycard.db.center_repositories``); the issuer's authorization check reads them through its own port
(``citycard.db.issuer_repositories.SqlTerminals``). A merchant's acquiring bank references the issuers'
``issuer_banks``. No key is stored here: a terminal's master key lives in the HSMs, its check value here.

``center_services`` (migration ``0033_service_reports``) holds the network services' last reports
(``citycard.center.services``): one row per service name, machine and address, rewritten by the service
every few seconds while it runs.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from citycard.center.services import MAX_ADDRESS, MAX_NAME

from .tables import metadata

__all__ = ["center_merchants", "center_services", "center_terminals"]

center_merchants = Table(
    "center_merchants",
    metadata,
    Column("merchant_id", String(15), primary_key=True),
    Column("name", String(40), nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("industry", String(16), nullable=True),  # NULL: registered before 0008
    Column("district", String(64), nullable=False),
    Column("bank_code", String(8), ForeignKey("issuer_banks.code"), nullable=True),  # acquiring bank
    Column("status", String(8), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    CheckConstraint("status IN ('active', 'closed')", name="status"),
    Index("ix_center_merchants_bank", "bank_code", "merchant_id"),
)

center_terminals = Table(
    "center_terminals",
    metadata,
    Column("terminal_id", String(8), primary_key=True),
    Column("merchant_id", String(15), ForeignKey("center_merchants.merchant_id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(8), nullable=False),
    Column("tmk_kcv", String(16), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("line", Integer, nullable=True),  # a validator's bus line (NULL: a POS, or not registered)
    Column("vehicle", String(16), nullable=False, server_default=""),
    CheckConstraint("status IN ('active', 'closed')", name="status"),
    CheckConstraint("kind IN ('pos', 'validator')", name="kind"),
    Index("ix_center_terminals_merchant", "merchant_id", "terminal_id"),
)

center_services = Table(
    "center_services",
    metadata,
    Column("name", String(MAX_NAME), primary_key=True),
    Column("hostname", String(MAX_ADDRESS), primary_key=True),
    Column("address", String(MAX_ADDRESS), primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("started_ns", BigInteger, nullable=False),
    Column("reported_ns", BigInteger, nullable=False),
    Column("every_s", Float, nullable=False),
    Column("status", Text, nullable=False),
    Column("stopped_ns", BigInteger, nullable=True),  # NULL: running, or gone without a word
)
