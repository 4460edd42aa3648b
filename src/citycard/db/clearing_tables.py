"""SQL tables of clearing (SQLAlchemy 2 Core) on the shared metadata; migration ``0014_clearing``.

``clearing_items`` and ``clearing_runs`` are what settlement reads (their columns as /work CONTRACT.md
describes, plus ``transfer_id`` and ``exception_id``); ``clearing_exceptions`` is the operators' queue.
``clearing_presentments`` stages each offline record once (an upload, a journal export's row, or both, by
'TID/batch/stan') with its card's PAN **sealed alone** (``pan_sealed``, under the acquirer's data key in the
HSM, associated data ``citycard.db.acquirer_repositories.pan_record``: copied as the acquirer stored it),
masked and keyed-fingerprinted (``pan_fingerprint``): clearing unseals the PAN to ask the issuing bank's HSM
to verify the TC, and finds a card's records by the fingerprint. The TC's values decoded by the acquirer come
along (``tc_*``). ``clearing_seen_tcs`` remembers each TC presented, per (card shard, PAN fingerprint, PSN,
ATC), to tell duplicates from clones (the shard first since migration ``0031_seen_tcs_by_shard``: a batch's
cards, of one shard, read and add TCs in one part of the key). ``clearing_outcomes`` holds each decided
presentment's outcome and card account (migration ``0026_clearing_outcomes``; before it, the presentment's
own ``outcome`` and ``card_account`` columns): a narrow row inserted with the batch that decides it, where an
update of the wide staged row rewrote the whole row and each of its indexes; a presentment without one is
undecided. Its key is
(``clearing_date``, ``card_shard``, ``ref``) since migration ``0029_outcomes_by_shard``: the presentment's
shard, :data:`NO_CARD_SHARD` for one without a card, so that a batch's outcomes go to, and its look-ups
probe, the part of the index of the shard being decided.

Migration ``0022_clearing_staged_columns`` made them so. Before it ``clearing_presentments.pan`` and
``clearing_tcs`` held clear PANs: a migration cannot seal (the key is in the HSM), so clearing does it
before each run (``ClearingEngine.protect_clear_pans``: each presentment's PAN sealed, fingerprinted and
``pan`` set to NULL; each row of ``clearing_tcs`` moved to ``clearing_seen_tcs`` and deleted). New rows never
hold a clear PAN; ``clearing_tcs`` stays empty.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

from .tables import metadata

__all__ = [
    "NO_CARD_SHARD",
    "clearing_exceptions",
    "clearing_items",
    "clearing_outcomes",
    "clearing_presentments",
    "clearing_runs",
    "clearing_seen_tcs",
    "clearing_tcs",
]

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite: an alias of the rowid, so it autoincrements

clearing_items = Table(
    "clearing_items",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("clearing_date", String(8), nullable=False),
    Column("source", String(8), nullable=False),
    Column("source_ref", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("sign", SmallInteger, nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("issuer_bank", String(8), nullable=False),
    Column("acquirer_bank", String(8), nullable=False),
    Column("merchant_id", String(15), nullable=False),
    Column("terminal_id", String(8), nullable=False),
    Column("mcc", String(4), nullable=False),
    Column("industry", String(16), nullable=True),
    Column("pan_masked", String(19), nullable=False),
    Column("atc", Integer, nullable=True),
    Column("txn_ns", BigInteger, nullable=False),
    Column("rrn", String(12), nullable=True),
    Column("service_ref", String(32), nullable=True),
    Column("bus_line", Integer, nullable=True),  # a fare's bus line and vehicle (field 63 of its 0320; 0024)
    Column("vehicle", String(16), nullable=True),
    Column("transfer_id", BigInteger, nullable=True),  # the issuer-side ledger transfer (offline)
    Column("exception_id", BigInteger, nullable=True),  # the exception it came from (accepted, charged back)
    Column("card_type", String(8), nullable=True),  # the card product's (0023): debit, credit; NULL: unknown
    # an EC load from another account (0025): the bank of the account that paid (the card's bank receives)
    Column("payer_bank", String(8), nullable=True),
    UniqueConstraint("source", "source_ref", name="uq_clearing_items_source_ref"),
    CheckConstraint("amount_fen > 0", name="amount_positive"),
    CheckConstraint("sign IN (1, -1)", name="sign"),
    CheckConstraint("source IN ('online', 'offline')", name="source"),
    Index("ix_clearing_items_date", "clearing_date", "id"),
)

clearing_runs = Table(
    "clearing_runs",
    metadata,
    Column("clearing_date", String(8), primary_key=True),
    Column("status", String(8), nullable=False),  # running | cleared | settled
    Column("online_count", Integer, nullable=False, server_default="0"),
    Column("online_fen", BigInteger, nullable=False, server_default="0"),
    Column("offline_count", Integer, nullable=False, server_default="0"),
    Column("offline_fen", BigInteger, nullable=False, server_default="0"),
    Column("exception_count", Integer, nullable=False, server_default="0"),
    Column("started_ns", BigInteger, nullable=False, server_default="0"),
    Column("finished_ns", BigInteger, nullable=True),
)

clearing_presentments = Table(
    "clearing_presentments",
    metadata,
    Column("ref", String(64), primary_key=True),  # TID/batch/stan
    Column("clearing_date", String(8), nullable=False),
    Column("terminal_id", String(8), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("stan", Integer, nullable=False),
    Column("pan", String(19), nullable=True),  # clear: rows from before 0022 only, until protected
    Column("pan_masked", String(19), nullable=False),
    Column("psn", String(2), nullable=False),
    Column("amount_fen", BigInteger, nullable=True),  # field 4 of the upload
    # the upload's field 55, kept only when its TC did not decode (0030: tc_cryptogram NULL; else tc_* are it)
    Column("field55", LargeBinary, nullable=True),
    Column("journal_amount_fen", BigInteger, nullable=True),
    Column("journal_field55", LargeBinary, nullable=True),
    Column("journal_state", String(16), nullable=True),
    Column("journal_created_ns", BigInteger, nullable=True),
    Column("service_ref", String(32), nullable=True),
    Column("bus_line", Integer, nullable=True),  # field 63 of a validator's fare upload (0024)
    Column("vehicle", String(16), nullable=True),
    Column("received_ns", BigInteger, nullable=False),
    Column("card_shard", SmallInteger, nullable=True),  # of the card (0021, 0022); NULL: card not known yet
    # 0022: the card's PAN sealed, fingerprinted (NULL: a journal row whose card is not found yet) …
    Column("pan_fingerprint", String(64), nullable=True),
    Column("pan_sealed", LargeBinary, nullable=True),
    # … and the upload's TC as the acquirer decoded it (NULL tc_cryptogram: parse field 55 here)
    Column("tc_atc", Integer, nullable=True),
    Column("tc_amount_fen", BigInteger, nullable=True),
    Column("tc_date", String(8), nullable=True),
    Column("tc_cryptogram", LargeBinary, nullable=True),
    Column("tc_ac_data", LargeBinary, nullable=True),
    Column("tc_gpo_ac_data", LargeBinary, nullable=True),
    # the day's records card by card (a run's batches, keyset on (card_shard, pan_fingerprint)); 0026: on
    # every record (the undecided are those without a row in clearing_outcomes), the only index beside the key
    Index("ix_clearing_presentments_card", "clearing_date", "card_shard", "pan_fingerprint", "ref"),
)

NO_CARD_SHARD = -1
"""``clearing_outcomes.card_shard`` of a presentment without a card shard (its card not known): a key column
cannot be NULL."""

clearing_outcomes = Table(  # 0026: a presentment's decision, a narrow row of its own written once per record
    "clearing_outcomes",
    metadata,
    Column("clearing_date", String(8), primary_key=True),  # the presentment's
    # 0029: the presentment's card shard (NO_CARD_SHARD: none), so that the key is in the batches' order
    Column("card_shard", SmallInteger, primary_key=True, server_default=str(NO_CARD_SHARD)),
    Column("ref", String(64), primary_key=True),  # the presentment's (TID/batch/stan)
    Column("outcome", String(16), nullable=False),  # clear | exception (clear once an exception is accepted)
    Column("card_account", BigInteger, nullable=True),  # the card's EC float account; NULL: no card
)

clearing_seen_tcs = Table(
    "clearing_seen_tcs",
    metadata,
    Column("card_shard", SmallInteger, primary_key=True),  # the card's (acquirer_repositories.card_shard)
    Column("pan_fingerprint", String(64), primary_key=True),
    Column("psn", String(2), primary_key=True),
    Column("atc", Integer, primary_key=True),
    Column("pan_masked", String(19), nullable=False),
    Column("cryptogram", String(16), nullable=False),
    Column("terminal_id", String(8), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("txn_date", String(8), nullable=False),
    Column("ref", String(64), nullable=False),
)

clearing_tcs = Table(  # rows from before 0022 only (clear PAN), moved to clearing_seen_tcs before a run
    "clearing_tcs",
    metadata,
    Column("pan", String(19), primary_key=True),
    Column("psn", String(2), primary_key=True),
    Column("atc", Integer, primary_key=True),
    Column("cryptogram", String(16), nullable=False),
    Column("terminal_id", String(8), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("txn_date", String(8), nullable=False),
    Column("ref", String(64), nullable=False),
)

clearing_exceptions = Table(
    "clearing_exceptions",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ref", String(64), nullable=False, unique=True),
    Column("opened_date", String(8), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("status", String(12), nullable=False),
    Column("detail", String(256), nullable=False),
    Column("pan_masked", String(19), nullable=False),
    Column("atc", Integer, nullable=True),
    Column("amount_fen", BigInteger, nullable=False),
    Column("terminal_id", String(8), nullable=False),
    Column("merchant_id", String(15), nullable=False),
    Column("issuer_bank", String(8), nullable=False),
    Column("acquirer_bank", String(8), nullable=False),
    Column("cleared", SmallInteger, nullable=False),  # 1: its record was paid (an item exists)
    Column("opened_ns", BigInteger, nullable=False),
    Column("resolved_ns", BigInteger, nullable=True),
    Column("pending_item", String(12), nullable=True),  # accepted | chargeback: for the next run
    Index("ix_clearing_exceptions_status", "status", "id"),
    Index("ix_clearing_exceptions_pending", "pending_item", "id"),
)
