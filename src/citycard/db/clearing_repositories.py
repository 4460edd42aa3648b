"""The clearing engine on SQL (PostgreSQL and SQLite): the end of a business day, in batches.

``ClearingEngine.run(day)``:

1. **stage** the day's offline records in ``clearing_presentments``: the 0320 uploads the acquirer received
   in the day's window (each acquiring bank's cut-over, :mod:`citycard.clearing.calendar`), merged by
   'TID/batch/stan' with the rows of journal exports imported for the day (:meth:`ClearingEngine.
   import_journal`); keyset batches of ``batch_size``, one multi-row upsert each;
2. **decide** the undecided presentments, a batch per transaction: the cards, the registry and the TCs
   presented before are read with one query each; every TC is verified in the issuing bank's HSM
   (``Hsm.verify_arqc``: UDK → session key → MAC over the CDOL1 data, the same call the issuer makes for an
   ARQC — no key leaves the HSM); :func:`citycard.clearing.classify` decides; then in the same transaction
   the issuer-side postings (card EC float → the issuing bank's network settlement account, one ledger batch),
   the items, the exceptions, the TCs remembered, the deny-list entries of clones and the presentments'
   outcomes are written. A crash loses at most the batch in progress, which the next run does again: a
   posting's id is derived from the record's ref, so it is never made twice;
3. the exceptions an operator **accepted** (or charged back) since become items of this day;
4. the day's **online** items in one ``INSERT … SELECT`` per acquiring bank (``NOT EXISTS`` makes it
   idempotent): approved purchases not reversed, refunds, voids and reversals of purchases cleared on an
   earlier day, EC cash loads at a merchant's counter, EC loads from another account (both legs, once;
   a leg without its partner whose reversal is pending: a ``reversal_pending`` exception; such an exception
   of any day whose leg has since been reversed at its issuer is closed, ``reversed``, and audited);
5. the issuer learns that the cards' offline transactions up to the day's end have cleared
   (``RecordOfflineClearing``), so a lost card's EC refund can go ahead;
6. ``clearing_runs`` says ``cleared`` with the day's totals, which are read back from the items (a rerun
   reports the same).
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import time
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any, Final, NamedTuple

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import Integer, SmallInteger, String

from citycard.clearing import (
    BEIJING,
    CardFacts,
    ClearingPolicy,
    ExceptionAction,
    ExceptionReason,
    ExceptionStatus,
    ItemKind,
    JournalCopy,
    OfflineRecord,
    Outcome,
    SeenTc,
    TcData,
    TcDataError,
    TcKey,
    Verdict,
    allowed_actions,
    business_window,
    classify,
    parse_tc,
)
from citycard.codec.iso8583 import BusRide
from citycard.codec.pan import mask_pan
from citycard.hsm.api import MAX_CARDS_ACS, Hsm, KeyHandle
from citycard.hsm.protection import RecordProtection
from citycard.issuer.commands import RecordOfflineClearing
from citycard.issuer.model import BankAccount, CardStatus, DenyListEntry, bank_key_labels, transfer_id
from citycard.ledger.model import MAX_BATCH, CreateTransferResult, Transfer

from .acquirer_repositories import CARD_SHARDS, card_shard, fill_upload_columns, pan_record, sealed_pan
from .acquirer_tables import acquirer_transactions, acquirer_uploads
from .center_tables import center_merchants, center_terminals
from .clearing_tables import (
    NO_CARD_SHARD,
    clearing_exceptions,
    clearing_items,
    clearing_outcomes,
    clearing_presentments,
    clearing_runs,
    clearing_seen_tcs,
    clearing_tcs,
)
from .driver import DriverStatement, copy_rows, int_array, text_array
from .issuer_repositories import IssuerUnitOfWork
from .issuer_tables import issuer_authorizations, issuer_banks, issuer_cards, issuer_products
from .uow import Database
from .web_tables import web_audit

log = logging.getLogger(__name__)

__all__ = [
    "CARD_SHARDS",
    "STAGE_BATCHES",
    "ClearingEngine",
    "ClearingInputError",
    "ClearingWorkerError",
    "DaySummary",
    "ExceptionNotFound",
    "ExceptionStateError",
    "card_shard",
    "day_text",
]

APPROVED = ("00", "10", "11")
TRANSPORT = "transport"
DEFAULT_BATCH = 2_000
STAGE_BATCHES = 50
"""Uploads staged per statement, in :attr:`ClearingEngine.batch_size` units: each statement's uploads are
written sorted by card (shard, PAN fingerprint), so that the more a statement holds the fewer heap pages a
batch of cards reads back when it is decided (at 1 M uploads over 400 000 cards, 50 × 2 000 against 10 ×
2 000: 14 400 → 17 000 records/s with two processes)."""
STAGE_SORT_MEMORY_MB = 64
"""PostgreSQL's ``work_mem`` for a staging statement: the sort of a statement's uploads (≈ 600 bytes each,
100 000 split between two processes) in memory; PostgreSQL's default of 4 MB writes it to temporary files."""
MAX_WORKERS = 16
_REFUND_WAITS = (CardStatus.LOST.value, CardStatus.CLOSED.value)
"""The card statuses whose EC refund waits for clearing: their cleared mark is set through the issuer
(``RecordOfflineClearing``), not by :meth:`ClearingEngine._mark_cleared`."""
MAX_JOURNAL_FILE_BYTES = 256 * 1024 * 1024
Fault = Callable[[str], None]
Progress = Callable[[int, int], None]


class ClearingInputError(ValueError):
    """Input clearing refuses (a journal export it cannot read, a date that is not one): nothing changed."""


class ExceptionNotFound(ClearingInputError):
    pass


class ClearingWorkerError(RuntimeError):
    """A clearing process failed: the day stays ``running`` with the batches committed; run it again."""


class ExceptionStateError(RuntimeError):
    """The exception's state does not allow the action (resolved already, a duplicate, nothing paid)."""


def day_text(day: date) -> str:
    return day.strftime("%Y%m%d")


def _no_fault(point: str) -> None:
    """The default fault hook: nothing (tests make it kill the process at a point)."""


@dataclass
class DaySummary:
    """A day's clearing as the tables say it (the same on a rerun)."""

    day: str
    status: str
    online_count: int = 0
    online_fen: int = 0
    offline_count: int = 0
    offline_fen: int = 0
    returns_count: int = 0  # items with sign -1 (refunds, voids, chargebacks, cash loads)
    returns_fen: int = 0
    exceptions: dict[str, int] = field(default_factory=dict)  # opened this day, by reason
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "date": self.day,
            "status": self.status,
            "online": {"count": self.online_count, "amount_fen": self.online_fen},
            "offline": {"count": self.offline_count, "amount_fen": self.offline_fen},
            "returns": {"count": self.returns_count, "amount_fen": self.returns_fen},
            "by_kind": {k: {"count": c, "amount_fen": a} for k, (c, a) in sorted(self.by_kind.items())},
            "exceptions": dict(sorted(self.exceptions.items())),
        }


@dataclass(frozen=True)
class _Card:
    pan: str
    psn: str
    bank_code: str
    ec_float_account_id: int
    lost_at_ns: int | None
    card_type: str  # of the card's product: debit | credit (settlement's fee caps)

    @cached_property
    def pan_masked(self) -> str:
        """Masked once for all the card's records of a batch (items, exceptions, TCs remembered)."""
        return mask_pan(self.pan)


def _card_query() -> Any:
    """The card rows clearing reads, with their product's card type."""
    ic, pr = issuer_cards, issuer_products
    return select(
        ic.c.pan, ic.c.psn, ic.c.bank_code, ic.c.ec_float_account_id, ic.c.lost_at_ns, pr.c.card_type
    ).select_from(ic.join(pr, and_(pr.c.bank_code == ic.c.bank_code, pr.c.code == ic.c.product_code)))


@dataclass(frozen=True)
class _Place:
    merchant_id: str
    mcc: str
    industry: str | None
    bank_code: str

    @cached_property
    def kind(self) -> str:
        """The kind of its offline items: a fare at a transport merchant, else a purchase."""
        return (ItemKind.FARE if self.industry == TRANSPORT else ItemKind.PURCHASE).value


@dataclass(slots=True)
class _Row:
    """A presentment being decided."""

    ref: str
    terminal_id: str
    pan: str | None  # unsealed for the batch (never written back)
    pan_masked: str
    psn: str
    presented_fen: int
    journal: JournalCopy | None
    fare_refund: bool
    txn_ns: int | None
    service_ref: str | None
    tc: TcData | None = None
    bus_line: int | None = None  # a validator's fare: its line and vehicle (field 63 of the 0320)
    vehicle: str | None = None
    tc_error: str = ""
    batch: int = 0
    stan: int = 0
    fingerprint: str | None = None
    card_shard: int = NO_CARD_SHARD  # the presentment's (the key of its outcome)


class _ItemRow(NamedTuple):
    """A row of ``clearing_items`` made by deciding (an offline record paid), its fields the table's columns
    in the order COPY writes them (``payer_bank`` stays NULL)."""

    clearing_date: str
    source: str
    source_ref: str
    kind: str
    sign: int
    amount_fen: int
    issuer_bank: str
    acquirer_bank: str
    merchant_id: str
    terminal_id: str
    mcc: str
    industry: str | None
    pan_masked: str
    atc: int
    txn_ns: int
    rrn: str | None
    service_ref: str | None
    bus_line: int | None
    vehicle: str | None
    transfer_id: int | None
    exception_id: int | None
    card_type: str


class _ExceptionRow(NamedTuple):
    """A row of ``clearing_exceptions`` (its ``id`` from the table's sequence), as :class:`_ItemRow`."""

    ref: str
    opened_date: str
    reason: str
    status: str
    detail: str
    pan_masked: str
    atc: int | None
    amount_fen: int
    terminal_id: str
    merchant_id: str
    issuer_bank: str
    acquirer_bank: str
    cleared: int
    opened_ns: int
    resolved_ns: int | None
    pending_item: str | None


class _SeenRow(NamedTuple):
    """A row of ``clearing_seen_tcs``: a TC presented for the first time, as :class:`_ItemRow`."""

    card_shard: int
    pan_fingerprint: str
    pan_masked: str
    psn: str
    atc: int
    cryptogram: str
    terminal_id: str
    amount_fen: int
    txn_date: str
    ref: str


_CardChecks = tuple[_Card, list[str], list[tuple[int, tuple[bytes, ...], bytes]]]
"""A card of a batch, the refs of its records whose TC is checked, and those checks (ATC, the TC's inputs to
try, cryptogram) as :meth:`Hsm.verify_cards_acs` takes them."""


class ClearingEngine:
    """Clearing of one platform database with its HSM (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        hsm: Hsm,
        policy: ClearingPolicy,
        *,
        clock: Callable[[], int] = time.time_ns,
        batch_size: int = DEFAULT_BATCH,
        record_offline_clearing: Callable[[RecordOfflineClearing], object] | None = None,
        fault: Fault = _no_fault,
        workers: int = 1,
    ) -> None:
        assert 0 < batch_size <= MAX_BATCH
        assert 0 < workers <= MAX_WORKERS
        self.workers = workers
        self.database = database
        self.hsm = hsm
        self.policy = policy
        self.clock = clock
        self.batch_size = batch_size
        self.record_offline_clearing = record_offline_clearing
        self.fault = fault
        self.timings: dict[str, float] = {}
        """The last :meth:`run`'s phases, seconds of wall clock each: ``stage`` (the clear PANs of old rows
        sealed, the uploads staged), ``decide``, ``online`` (the accepted exceptions' items and the online
        authorizations), ``finish`` (the cleared records noted, the day's totals)."""
        self._keys: dict[str, KeyHandle] = {}
        self._settlement: dict[str, int] = {}
        self._protection: RecordProtection | None = None

    @property
    def protection(self) -> RecordProtection:
        """The acquirer's record protection (its data key and PAN fingerprint key in :attr:`hsm`): the PANs
        of the uploads and of the presentments are sealed under it (``docs/network.md``, "PANs at rest")."""
        if self._protection is None:
            self._protection = RecordProtection.open(self.hsm)
        return self._protection

    def _unseal_pans(self, raw: Sequence[Any]) -> list[str | None]:
        """The PAN of each presentment of ``raw``, in order, their sealed PANs opened in one HSM call
        (:meth:`RecordProtection.unseal_many`); None for a row whose sealed PAN does not open (altered, or
        moved from another record: the record is decided without a card, never paid) or that has none."""
        sealed = [
            (i, bytes(r.pan_sealed), pan_record(r.terminal_id, r.batch, r.stan))
            for i, r in enumerate(raw)
            if r.pan_sealed is not None
        ]
        opened = self.protection.unseal_many([(value, record) for _, value, record in sealed])
        pans: list[str | None] = [None] * len(raw)
        for (i, _, _), pan in zip(sealed, opened, strict=True):
            if pan is None:
                log.warning("presentment %s: its sealed PAN does not open", raw[i].ref)
            else:
                pans[i] = pan.decode("ascii")
        return pans

    def protect_clear_pans(self, batch: int = 1_000) -> int:
        """Seal the clear PANs kept before migration ``0022_clearing_staged_columns``: each presentment's
        PAN sealed (:func:`pan_record`), fingerprinted and sharded, ``pan`` set to NULL; each row of
        ``clearing_tcs`` moved to ``clearing_seen_tcs`` (by fingerprint, PAN masked) and deleted. A batch
        per transaction; returns how many rows. Run before each run (nothing to do once done). A decided
        presentment's outcome moves to its new shard with it (its key holds the shard, :func:`_outcome_of`):
        else the record would look undecided and be decided again."""
        p, o, old, new = clearing_presentments, clearing_outcomes, clearing_tcs, clearing_seen_tcs
        protection = self.protection
        done = 0
        while True:
            with self.database.engine.begin() as c:
                rows = c.execute(
                    select(
                        p.c.ref,
                        p.c.clearing_date,
                        p.c.card_shard,
                        p.c.terminal_id,
                        p.c.batch,
                        p.c.stan,
                        p.c.pan,
                    )
                    .where(p.c.pan.is_not(None))
                    .limit(batch)
                ).all()
                if rows:  # one statement per batch (executemany)
                    sealed = [_sealed_pan_of(protection, r.ref, r.pan, r) for r in rows]
                    c.execute(
                        update(p).where(p.c.ref == bindparam("r")).values(pan=None, **_SET_SEALED_PAN), sealed
                    )
                    moved_shard = [
                        {"d": r.clearing_date, "was": r.card_shard, "r": r.ref, "to": v["v_card_shard"]}
                        for r, v in zip(rows, sealed, strict=True)
                        if r.card_shard != v["v_card_shard"]
                    ]
                    if moved_shard:  # the decided among them (an undecided one has no outcome to move)
                        c.execute(
                            update(o)
                            .where(_outcome_of(bindparam("d"), bindparam("was"), bindparam("r")))
                            .values(card_shard=bindparam("to")),
                            moved_shard,
                        )
                tcs = c.execute(select(old).limit(batch)).all()
                moved = []
                for t in tcs:
                    values = dict(t._mapping)
                    pan = values.pop("pan")
                    fingerprint = protection.pan_fingerprint(pan)
                    moved.append(
                        values
                        | {"pan_fingerprint": fingerprint, "pan_masked": mask_pan(pan)}
                        | {"card_shard": card_shard(fingerprint)}
                    )
                if moved:
                    c.execute(insert(new), moved)
                    c.execute(
                        old.delete().where(
                            old.c.pan == bindparam("k_pan"),
                            old.c.psn == bindparam("k_psn"),
                            old.c.atc == bindparam("k_atc"),
                        ),
                        [{"k_pan": t.pan, "k_psn": t.psn, "k_atc": t.atc} for t in tcs],
                    )
            done += len(rows) + len(tcs)
            if not rows and not tcs:
                return done

    # --- the day ----------------------------------------------------------------------------------------
    def windows(self, day: date) -> dict[str, tuple[int, int]]:
        """Each acquiring bank's window of ``day`` ('' : merchants without a bank, the default cut-over)."""
        with self.database.engine.connect() as connection:
            query = select(issuer_banks.c.code, issuer_banks.c.settlement_account_id)
            self._settlement = {r.code: r.settlement_account_id for r in connection.execute(query)}
        banks = list(self._settlement)
        return {bank: business_window(day, self.policy.cutovers.of(bank)) for bank in sorted({*banks, ""})}

    def run(self, day: date, progress: Progress | None = None) -> DaySummary:
        d = day_text(day)
        windows = self.windows(day)
        self.timings = {}
        mark = time.perf_counter()

        def phase(name: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            self.timings[name] = now - mark
            mark = now

        self._start(d)
        self.protect_clear_pans()
        self.stage(d, windows)
        phase("stage")
        self.fault("staged")
        self.decide(d, day, progress)
        phase("decide")
        self.fault("decided")
        self.resolved_items(d)
        self.online(d, windows)
        phase("online")
        self.fault("online")
        self.record_cleared(d, max(end for _, end in windows.values()))
        self._finish(d)
        summary = self.summary(day)
        phase("finish")
        return summary

    def _start(self, d: str) -> None:
        with self.database.engine.begin() as c:
            if c.execute(select(clearing_runs.c.status).where(clearing_runs.c.clearing_date == d)).first():
                return
            c.execute(
                insert(clearing_runs).values(
                    clearing_date=d,
                    status="running",
                    online_count=0,
                    online_fen=0,
                    offline_count=0,
                    offline_fen=0,
                    exception_count=0,
                    started_ns=self.clock(),
                )
            )

    def _finish(self, d: str) -> None:
        s = self._totals(d)
        r = clearing_runs
        with self.database.engine.begin() as c:
            status = c.execute(select(r.c.status).where(r.c.clearing_date == d)).scalar_one()
            values: dict[str, Any] = {
                "online_count": s.online_count,
                "online_fen": s.online_fen,
                "offline_count": s.offline_count,
                "offline_fen": s.offline_fen,
                "exception_count": sum(s.exceptions.values()),
            }
            if status == "running":
                values |= {"status": "cleared", "finished_ns": self.clock()}
            c.execute(update(r).where(r.c.clearing_date == d).values(**values))

    # --- 1. staging -------------------------------------------------------------------------------------
    def stage(self, d: str, windows: dict[str, tuple[int, int]]) -> int:
        """Stage the uploads received in the day's windows that are not staged yet (or staged from a journal
        only and still undecided); returns how many. Set-based: the acquirer stored what clearing needs as
        columns when it received each upload (``citycard.db.acquirer_repositories.upload_columns``), so a
        batch is one ``INSERT … SELECT … ON CONFLICT DO UPDATE`` (keyset batches of :data:`STAGE_BATCHES`
        times :attr:`batch_size` in receipt order, ``ix_acquirer_uploads_received``: each batch reads its own
        uploads only, whatever the day's size, and writes them in card order); the uploads stored before
        migration 0022 get their columns first (:func:`fill_upload_columns`, the only place their sealed
        0320 is opened and decoded), in this process. With :attr:`workers` processes (PostgreSQL) each
        stages the uploads of its own card shards (the shards it decides, ``card_shard % workers == k``;
        process 0 also those whose card is not known, ``card_shard`` NULL): the batches are the same, each
        process writes its part of each."""
        u, m = acquirer_uploads, center_merchants
        bank = func.coalesce(m.c.bank_code, "")
        in_window = or_(
            *(
                and_(bank == code, u.c.received_ns > start, u.c.received_ns <= end)
                for code, (start, end) in windows.items()
            )
        )
        first, last_end = min(w[0] for w in windows.values()), max(w[1] for w in windows.values())
        near = and_(u.c.received_ns > first, u.c.received_ns <= last_end)
        fill_upload_columns(self.database, self.protection, where=near)
        if not self._parallel():
            return self._stage_uploads(d, in_window, near, true())
        staged = multiprocessing.get_context("fork").Value("q", 0)

        def work(k: int) -> None:
            mine = u.c.card_shard % self.workers == k
            n = self._stage_uploads(
                d, in_window, near, or_(mine, u.c.card_shard.is_(None)) if k == 0 else mine
            )
            with staged.get_lock():
                staged.value += n

        self._in_workers("stage", work, lambda: None)
        return int(staged.value)

    def _stage_uploads(self, d: str, in_window: Any, near: Any, mine: Any) -> int:
        """:meth:`stage`'s batches of the uploads for which ``mine`` holds; how many were staged."""
        u, m = acquirer_uploads, center_merchants
        columns = [
            "ref", "clearing_date", "terminal_id", "batch", "stan", "received_ns", "pan_masked", "psn",
            "amount_fen", "field55", "service_ref", "card_shard", "pan_fingerprint", "pan_sealed", "tc_atc",
            "tc_amount_fen", "tc_date", "tc_cryptogram", "tc_ac_data", "tc_gpo_ac_data", "bus_line",
            "vehicle",
        ]  # fmt: skip
        changed = columns[7:]
        ref = u.c.terminal_id.op("||")(literal("/", String)).op("||")(cast(u.c.batch, String))
        ref = ref.op("||")(literal("/", String)).op("||")(cast(u.c.stan, String))
        key = (u.c.received_ns, u.c.terminal_id, u.c.batch, u.c.stan)  # ix_acquirer_uploads_received
        staged = 0
        after: tuple[int, str, int, int] | None = None
        size = self.batch_size * STAGE_BATCHES
        while True:
            # the batch: the next ``size`` uploads of the day's range, by the index alone (no join)
            ahead = near if after is None else and_(near, tuple_(*key) > tuple_(*after))
            with self.database.engine.begin() as c:
                if c.dialect.name == "postgresql":  # the batch sorted by card in memory, not in files
                    c.exec_driver_sql(f"SET LOCAL work_mem = '{STAGE_SORT_MEMORY_MB}MB'")
                last = _in_key_order(c, select(*key).where(ahead).order_by(*key).offset(size - 1).limit(1))
                upto = ahead if last is None else and_(ahead, tuple_(*key) <= tuple_(*last))
                source = (
                    select(
                        ref,
                        literal(d, String),
                        u.c.terminal_id,
                        u.c.batch,
                        u.c.stan,
                        u.c.received_ns,
                        func.coalesce(u.c.pan_masked, ""),
                        func.coalesce(u.c.psn, ""),
                        func.coalesce(u.c.amount_fen, 0),
                        _undecoded_field55(u.c.field55, u.c.tc_cryptogram),
                        u.c.service_ref,
                        u.c.card_shard,
                        u.c.pan_fingerprint,
                        u.c.pan_sealed,
                        u.c.tc_atc,
                        u.c.tc_amount_fen,
                        u.c.tc_date,
                        u.c.tc_cryptogram,
                        u.c.tc_ac_data,
                        u.c.tc_gpo_ac_data,
                        u.c.bus_line,
                        u.c.vehicle,
                    )
                    .select_from(u.outerjoin(m, m.c.merchant_id == u.c.merchant_id))
                    .where(upto, mine, in_window)
                    .order_by(u.c.card_shard, u.c.pan_fingerprint)
                )
                staged += _upsert_staged(c, columns, source, changed)
            if last is None:
                return staged
            after = (int(last.received_ns), last.terminal_id, int(last.batch), int(last.stan))

    def import_journal(self, directory: Path, day: date) -> int:
        """Stage the rows of the journal exports (``*.jsonl``, ``citycard pos journal --export``) in
        ``directory`` for ``day``; :class:`ClearingInputError` (file and line) and nothing staged when one
        cannot be read. A row staged before is merged again, not added twice."""
        if not directory.is_dir():
            raise ClearingInputError(f"{directory}: not a folder of journal exports")
        rows: list[dict[str, Any]] = []
        now = self.clock()
        for path in sorted(directory.glob("*.jsonl")):
            if path.stat().st_size > MAX_JOURNAL_FILE_BYTES:
                raise ClearingInputError(f"{path}: larger than {MAX_JOURNAL_FILE_BYTES} bytes")
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    rows.append(_journal_values(line, f"{path}:{number}", day_text(day), now))
        merged: dict[str, dict[str, Any]] = {r["ref"]: r for r in rows}
        with self.database.engine.begin() as c:
            for chunk in _chunks(list(merged.values()), self.batch_size):
                _upsert_presentments(
                    c,
                    chunk,
                    (
                        "journal_amount_fen",
                        "journal_field55",
                        "journal_state",
                        "journal_created_ns",
                        "service_ref",
                    ),
                )
        return len(merged)

    # --- 2. deciding offline records --------------------------------------------------------------------
    def pending(self, d: str) -> int:
        """How many of day ``d``'s presentments are undecided: those staged less those with an outcome (two
        counts on the keys' prefix, no join)."""
        p, o = clearing_presentments, clearing_outcomes
        with self.database.engine.connect() as c:
            staged = c.execute(select(func.count()).where(p.c.clearing_date == d)).scalar_one()
            decided = c.execute(select(func.count()).where(o.c.clearing_date == d)).scalar_one()
            return int(staged) - int(decided)

    def decide(self, d: str, day: date, progress: Progress | None = None) -> int:
        """Decide the day's undecided records: the cards of journal rows found first, then shard by shard
        each card's records of the day in one batch (in :attr:`workers` processes on PostgreSQL, each
        taking its own shards), then the records whose card is unknown; returns how many were decided."""
        self.resolve_cards(d)
        total = self.pending(d)
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, total)

        if self._parallel():
            done = self._decide_in_workers(d, day, total, progress)
        else:
            self.decide_shards(d, day, range(CARD_SHARDS), tick)
        self._decide_cardless(d, day, tick)
        return done

    def resolve_cards(self, d: str) -> None:
        """Give each undecided record without a card shard its card: a journal row names its card by masked
        PAN and PSN only, its card is found by the TC (:meth:`_resolve_pans`) and its PAN is then sealed for
        the record (:func:`pan_record`), fingerprinted and sharded. Records whose card is not found keep none
        (decided last, unknown)."""
        p = clearing_presentments
        after = ""
        while True:
            with self.database.engine.begin() as c:
                raw = c.execute(
                    select(p)
                    .where(
                        p.c.clearing_date == d,
                        p.c.card_shard.is_(None),
                        _undecided(),
                        p.c.ref > after,
                    )
                    .order_by(p.c.ref)
                    .limit(self.batch_size)
                ).all()
                if not raw:
                    return
                rows = [_row(r, None) for r in raw]
                unknown = [  # no sealed PAN, and a TC to find the card by
                    row
                    for row, r in zip(rows, raw, strict=True)
                    if r.pan_sealed is None and row.tc is not None
                ]
                self._resolve_pans(c, unknown)
                found = [
                    _sealed_pan_of(self.protection, row.ref, row.pan, row)
                    for row in unknown
                    if row.pan is not None
                ]
                if found:
                    c.execute(update(p).where(p.c.ref == bindparam("r")).values(**_SET_SEALED_PAN), found)
            after = raw[-1].ref

    def decide_shards(self, d: str, day: date, shards: Iterable[int], tick: Callable[[int], None]) -> None:
        """Decide the undecided records of the cards in ``shards``, a transaction per batch of whole cards
        (:meth:`_card_batch`): a card's records of the day are decided together, so the outcome does not
        depend on which other cards share its batch, nor on the process that decides it."""
        mine = sorted(set(shards))
        after = (-1, "")
        while True:
            with self.database.unit_of_work(IssuerUnitOfWork, clock=self.clock) as uow:
                c = uow.session.connection()
                rows = self._card_batch(c, d, mine, after)
                if not rows:
                    return
                self._decide_batch(uow, c, rows, d, day)
                self.fault("batch-written")
                uow.commit()
            after = (rows[-1].card_shard, rows[-1].pan_fingerprint)
            tick(len(rows))

    def _card_batch(self, c: Connection, d: str, shards: list[int], after: tuple[int, str]) -> list[Any]:
        """The next undecided records of the cards in ``shards`` after card ``after`` (shard, its PAN's
        fingerprint), in (shard, fingerprint, ref) order — the index ``ix_clearing_presentments_card`` — at
        least :attr:`batch_size` of them when there are, and every record of each card taken (the last card
        completed). Read shard by shard, each query an equality on the shard, so that its plan is a walk of
        the index in its order that stops at the batch's end: PostgreSQL plans a query over several shards
        (an ``IN`` list, or none) as a read of every record left in them, sorted — for each batch — when its
        statistics do not yet know the day's rows (a day just staged)."""
        following, rest = _card_batch_statements()
        rows: list[Any] = []
        for shard in (s for s in shards if s >= after[0]):
            wanted = self.batch_size - len(rows)
            params = {"d": d, "shard": shard, "after_shard": after[0], "after_fp": after[1], "wanted": wanted}
            rows += following.rows(c, params)
            if len(rows) == self.batch_size:
                last = rows[-1]
                params = {"d": d, "shard": last.card_shard, "fp": last.pan_fingerprint, "ref": last.ref}
                return rows + rest.rows(c, params)
        return rows

    def _decide_cardless(self, d: str, day: date, tick: Callable[[int], None]) -> None:
        """The undecided records whose card is not known (no card has their PAN and PSN)."""
        p = clearing_presentments
        while True:
            with self.database.unit_of_work(IssuerUnitOfWork, clock=self.clock) as uow:
                c = uow.session.connection()
                rows = c.execute(
                    select(p)
                    .where(p.c.clearing_date == d, p.c.card_shard.is_(None), _undecided())
                    .order_by(p.c.ref)
                    .limit(self.batch_size)
                ).all()
                if not rows:
                    return
                self._decide_batch(uow, c, rows, d, day)
                self.fault("batch-written")
                uow.commit()
            tick(len(rows))

    def _parallel(self) -> bool:
        return self.workers > 1 and self.database.engine.dialect.name == "postgresql"

    def _decide_in_workers(self, d: str, day: date, total: int, progress: Progress | None) -> int:
        """:meth:`decide_shards` in :attr:`workers` child processes, worker ``k`` taking the shards ``s``
        with ``s % workers == k``; each adds the records of the batches it commits to a counter shared with
        this process, which shows the progress meanwhile (the tables are not counted over and over)."""
        decided = multiprocessing.get_context("fork").Value("q", 0)

        def tick(n: int) -> None:
            with decided.get_lock():
                decided.value += n

        def work(k: int) -> None:
            self.decide_shards(d, day, [s for s in range(CARD_SHARDS) if s % self.workers == k], tick)

        def poll() -> None:
            if progress is not None:
                progress(decided.value, total)

        self._in_workers("decide", work, poll)
        return total - self.pending(d)

    def _in_workers(self, what: str, work: Callable[[int], object], poll: Callable[[], None]) -> None:
        """``work(k)`` for k in 0 … :attr:`workers` − 1, each in a forked child process (they share this
        process's HSM session), ``poll()`` meanwhile. A worker that fails leaves its batch in progress
        undone and the day running: :class:`ClearingWorkerError`, and the next run takes up what is left."""
        context = multiprocessing.get_context("fork")
        self.database.engine.dispose()  # no pooled connection crosses the fork
        workers = [
            context.Process(target=self._worker, args=(work, k), name=f"clearing-{what}-{k}")
            for k in range(self.workers)
        ]
        for w in workers:
            w.start()
        try:
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=0.5 / len(workers))
                poll()
        finally:
            for w in workers:
                w.join()
        failed = [f"{w.name} exited with {w.exitcode}" for w in workers if w.exitcode != 0]
        if failed:
            raise ClearingWorkerError(
                "; ".join(failed) + ": the day is still running, its committed batches kept; run it again"
            )

    def _worker(self, work: Callable[[int], object], k: int) -> None:
        self.database.engine.dispose(close=False)  # the parent's connections are not this process's
        # what the child inherited is never garbage of its own: out of the collector's sight, its
        # collections walk only what the child makes, and touch no inherited page (no copy on write)
        gc.freeze()
        work(k)

    def _decide_batch(
        self, uow: IssuerUnitOfWork, c: Connection, raw: Sequence[Any], d: str, day: date
    ) -> None:
        with _collector_paused():
            self._decide_rows(uow, c, _plain(raw), d, day)

    def _decide_rows(self, uow: IssuerUnitOfWork, c: Connection, raw: list[Any], d: str, day: date) -> None:
        rows = [_row(r, pan) for r, pan in zip(raw, self._unseal_pans(raw), strict=True)]
        # the fingerprint stored with the sealed PAN (made from the same PAN when it was sealed); the HSM
        # computes it only for a row that has none
        fingerprints = {r.pan: r.fingerprint or self.protection.pan_fingerprint(r.pan) for r in rows if r.pan}
        cards = self._cards(c, set(fingerprints))
        places = self._places(c, {r.terminal_id for r in rows})
        wanted: dict[tuple[str, str], set[int]] = {}
        for r in rows:
            if r.pan and r.tc is not None:
                wanted.setdefault((r.pan, r.psn), set()).add(r.tc.atc)
        seen = self._seen(c, fingerprints, wanted)
        known_before = set(seen)
        verified = self._verify_rows(rows, cards)
        records = [self._record(r, cards, places, verified) for r in rows]
        facts = {pan: CardFacts(card.lost_at_ns) for pan, card in cards.items()}
        verdicts = classify(records, seen, facts, self.policy, day)
        by_ref = {r.ref: r for r in rows}
        decided = [(v, by_ref[v.ref]) for v in verdicts]  # card and ATC order (the verdicts')
        legs: list[tuple[str, _Card, int]] = []
        for v, row in decided:
            if v.clears:
                assert row.pan is not None and row.tc is not None
                legs.append((v.ref, cards[row.pan], row.tc.amount_fen))
        posted, short = self._post(uow, legs)
        now = self.clock()
        items: list[_ItemRow] = []
        exceptions: list[_ExceptionRow] = []
        outcomes: list[tuple[str, int, str, str, int | None]] = []  # _OUTCOME_COLUMNS
        for v, row in decided:
            found = cards.get(row.pan or "")
            place = places.get(row.terminal_id)
            if v.ref in short:
                v = Verdict(
                    v.ref,
                    Outcome.EXCEPTION,
                    ExceptionReason.FLOAT_SHORT,
                    detail="the card's EC float in the books cannot pay it",
                )
            paid = v.ref in posted  # only the records that clear were posted (a float short: none)
            if paid:
                assert found is not None and place is not None
                items.append(self._item(d, row, found, place, posted[v.ref], None))
            if v.reason is not None:
                exceptions.append(self._exception(d, row, found, place, v, paid, now))
            if v.deny and found is not None:
                uow.deny_list.add(DenyListEntry(found.bank_code, found.pan, found.psn, "clone", now))
            account = found.ec_float_account_id if found is not None else None
            outcomes.append((d, row.card_shard, v.ref, "clear" if paid else "exception", account))
        new_tcs = [  # the PAN of each: a card's (classify keeps only the TCs of records with a card)
            _SeenRow(
                card_shard(fingerprints[pan]),
                fingerprints[pan],
                cards[pan].pan_masked,
                psn,
                atc,
                s.cryptogram.hex().upper(),
                s.terminal_id,
                s.amount_fen,
                _date_text(s.txn_date),
                s.ref,
            )
            for (pan, psn, atc), s in seen.items()
            if (pan, psn, atc) not in known_before
        ]
        _insert_rows(c, clearing_items, items)
        _insert_rows(c, clearing_exceptions, exceptions)
        _insert_rows(c, clearing_seen_tcs, new_tcs)
        _set_outcomes(c, outcomes)

    def _key(self, bank: str) -> KeyHandle:
        handle = self._keys.get(bank)
        if handle is None:
            handle = self._keys[bank] = self.hsm.get(bank_key_labels(bank)["imk_ac"])
        return handle

    def _verify(self, card: _Card, tc: TcData) -> bool:
        """The TC verified in the issuing bank's HSM (the call the issuer makes for an ARQC)."""
        key = self._key(card.bank_code)
        return any(
            self.hsm.verify_arqc(key, card.pan, card.psn, tc.atc, data, tc.cryptogram)
            for data in tc.ac_inputs()
        )

    def _verify_rows(self, rows: list[_Row], cards: dict[str, _Card]) -> set[str]:
        """The refs of the rows whose TC verifies under their card's key: one HSM call per bank of the batch
        (:meth:`Hsm.verify_cards_acs`: the UDKs of all its cards derived in one pass, each card's session
        keys in one), split when its cryptograms would be more than one call takes."""
        by_card: dict[str, tuple[list[str], list[tuple[int, tuple[bytes, ...], bytes]]]] = {}
        for row in rows:  # each card's refs and checks, in one pass
            tc = row.tc
            card = cards.get(row.pan or "")
            if card is not None and tc is not None and card.psn == row.psn:
                group = by_card.get(card.pan)
                if group is None:
                    group = by_card[card.pan] = ([], [])
                group[0].append(row.ref)
                group[1].append((tc.atc, tc.ac_inputs(), tc.cryptogram))
        by_bank: dict[str, list[_CardChecks]] = {}
        for pan, (refs, checks) in by_card.items():
            card = cards[pan]
            by_bank.setdefault(card.bank_code, []).append((card, refs, checks))
        verified: set[str] = set()
        for bank, groups in by_bank.items():
            for call in _hsm_calls(groups):
                results = self.hsm.verify_cards_acs(
                    self._key(bank), [(card.pan, card.psn, checks) for card, _, checks in call]
                )
                for (_, refs, _), oks in zip(call, results, strict=True):
                    verified.update(ref for ref, ok in zip(refs, oks, strict=True) if ok)
        return verified

    def _record(
        self, row: _Row, cards: dict[str, _Card], places: dict[str, _Place], verified: set[str]
    ) -> OfflineRecord:
        card = cards.get(row.pan or "")
        if card is not None and card.psn != row.psn:
            card = None
        tc = row.tc
        tc_ok = card is not None and tc is not None and row.ref in verified
        txn_ns = row.txn_ns
        if txn_ns is None:
            txn_ns = _date_ns(tc.txn_date) if tc is not None else 0
        return OfflineRecord(
            ref=row.ref,
            pan=card.pan if card is not None else None,
            psn=row.psn,
            tc=tc,
            tc_ok=tc_ok,
            presented_amount_fen=row.presented_fen,
            terminal_id=row.terminal_id,
            registered=row.terminal_id in places,
            txn_ns=txn_ns,
            journal=row.journal,
            fare_refund=row.fare_refund,
            tc_error=row.tc_error,
        )

    def _resolve_pans(self, c: Connection, rows: list[_Row]) -> None:
        """A journal row names its card by masked PAN and PSN: the card is the one among those that match
        whose key verifies the TC (the journal does not keep the PAN in clear; its sealed copy opens only
        under the terminal's data key)."""
        ic = issuer_cards
        for row in rows:
            masked = row.pan_masked
            if len(masked) < 11 or not (masked[:6] + masked[-4:]).isdigit():
                continue
            query = (
                _card_query()
                .where(
                    ic.c.pan.like(masked[:6] + "%"),
                    func.length(ic.c.pan) == len(masked),
                    func.substr(ic.c.pan, func.length(ic.c.pan) - literal_column("3")) == masked[-4:],
                    ic.c.psn == row.psn,
                )
                .limit(100)
            )
            candidates = [_Card(*r) for r in c.execute(query)]
            assert row.tc is not None
            matching = [card for card in candidates if self._verify(card, row.tc)]
            if matching:
                row.pan = matching[0].pan
            elif len(candidates) == 1:
                row.pan = candidates[0].pan  # the TC will fail under this card's key

    def _cards(self, c: Connection, pans: set[str]) -> dict[str, _Card]:
        out: dict[str, _Card] = {}
        for chunk in _key_chunks(c, sorted(pans)):
            out.update((r.pan, _Card(*r)) for r in _CARDS.rows(c, {"keys": chunk}))
        return out

    def _places(self, c: Connection, terminals: set[str]) -> dict[str, _Place]:
        out: dict[str, _Place] = {}
        for chunk in _key_chunks(c, sorted(terminals)):
            for r in _PLACES.rows(c, {"keys": chunk}):
                out[r.terminal_id] = _Place(r.merchant_id, r.mcc, r.industry, r.bank_code or "")
        return out

    def _seen(
        self, c: Connection, fingerprints: dict[str, str], wanted: dict[tuple[str, str], set[int]]
    ) -> dict[TcKey, SeenTc]:
        """The TCs presented before that can decide the checks of the batch's TCs (``wanted``: the ATCs of
        each (PAN, PSN)), keyed by (PAN, PSN, ATC) — a bounded number, whatever the card's history.

        A card's TCs kept here never go back (each passed the check against all earlier ones when it was
        kept): in ATC order their dates do not decrease. So a new TC of ATC ``a`` goes back against one of
        them if and only if it does against the one just below ``a`` or the one just above; and a TC of the
        same ATC is the one with ATC ``a``. For each run of the batch's ATCs of a card (neighbours at most
        :data:`_ATC_RUN_GAP` apart) from ``lo`` to ``hi``, two index reads on the primary key fetch every
        such TC: the ``hi − lo + 2`` highest ATCs up to ``hi`` (all those from ``lo`` to ``hi`` and at
        least the one below ``lo``), and the first above ``hi``. That is at most ``_ATC_RUN_GAP + 3`` rows
        per TC of the batch, however many months of TCs the card has."""
        runs = [
            (fingerprints[pan], psn, lo, hi)
            for (pan, psn), atcs in sorted(wanted.items())
            for lo, hi in _atc_runs(sorted(atcs))
        ]
        pans = {f: pan for pan, f in fingerprints.items()}
        out: dict[TcKey, SeenTc] = {}
        for r in _seen_rows(c, runs):
            day = _yyyymmdd(r.txn_date)
            out[(pans[r.pan_fingerprint], r.psn, r.atc)] = SeenTc(
                r.atc, bytes.fromhex(r.cryptogram), r.terminal_id, r.amount_fen, day, r.ref
            )
        return out

    def _leg(self, ref: str, card: _Card, amount_fen: int) -> Transfer:
        settlement = self._settlement_account(card.bank_code)
        return Transfer(
            transfer_id(f"clearing/{ref}", 1),
            card.ec_float_account_id,
            settlement,
            amount_fen,
            code=BankAccount.NETWORK_SETTLEMENT,
        )

    def _settlement_account(self, bank: str) -> int:
        """The bank's network settlement account (read by :meth:`windows` at the start of a run)."""
        return self._settlement[bank]

    def _post(
        self, uow: IssuerUnitOfWork, legs: list[tuple[str, _Card, int]]
    ) -> tuple[dict[str, int], set[str]]:
        """Post the cleared records (ref, card, amount; each card's in ATC order): (ref → transfer id of
        those posted, refs whose EC float could not pay).

        One transfer per card of the batch, its EC float → the issuing bank's network settlement account,
        of the sum of its records (id from the first record's ref: ``clearing/card/<ref>``). When the float
        pays the sum it paid every record in turn (all debits); when it does not, that card's records are
        posted one by one as before (``clearing/<ref>``), so the ones it can pay are paid in ATC order and
        the others are ``float_short`` — the same outcome as posting each record alone."""
        by_float: dict[int, list[tuple[str, _Card, int]]] = {}
        for leg in legs:
            by_float.setdefault(leg[1].ec_float_account_id, []).append(leg)
        whole = [
            (
                card_legs,
                Transfer(
                    transfer_id(f"clearing/card/{card_legs[0][0]}", 1),
                    float_id,
                    self._settlement_account(card_legs[0][1].bank_code),
                    sum(amount for _, _, amount in card_legs),
                    code=BankAccount.NETWORK_SETTLEMENT,
                ),
            )
            for float_id, card_legs in by_float.items()
        ]
        posted: dict[str, int] = {}
        short: set[str] = set()
        one_by_one: list[tuple[str, Transfer]] = []
        for chunk in _chunks(whole, MAX_BATCH):
            results = uow.ledger.create_transfers([t for _, t in chunk])
            for (card_legs, t), result in zip(chunk, results, strict=True):
                if result in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
                    posted.update((ref, t.id) for ref, _, _ in card_legs)
                elif result is CreateTransferResult.EXCEEDS_CREDITS:
                    one_by_one += [(ref, self._leg(ref, card, amount)) for ref, card, amount in card_legs]
                else:
                    raise AssertionError(f"clearing posting {card_legs[0][0]}: {result.value}")
        for chunk in _chunks(one_by_one, MAX_BATCH):
            results = uow.ledger.create_transfers([t for _, t in chunk])
            for (ref, t), result in zip(chunk, results, strict=True):
                if result in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
                    posted[ref] = t.id
                elif result is CreateTransferResult.EXCEEDS_CREDITS:
                    short.add(ref)
                else:
                    raise AssertionError(f"clearing posting {ref}: {result.value}")
        return posted, short

    @staticmethod
    def _item(
        d: str, row: _Row, card: _Card, place: _Place, transfer: int | None, exception_id: int | None
    ) -> _ItemRow:
        tc = row.tc
        assert tc is not None
        txn_ns = row.txn_ns if row.txn_ns is not None else _date_ns(tc.txn_date)
        return _ItemRow(
            d, "offline", row.ref, place.kind, 1, tc.amount_fen,
            card.bank_code, place.bank_code, place.merchant_id, row.terminal_id, place.mcc, place.industry,
            card.pan_masked, tc.atc, txn_ns, None, row.service_ref, row.bus_line, row.vehicle,
            transfer, exception_id, card.card_type,
        )  # fmt: skip

    @staticmethod
    def _exception(
        d: str,
        row: _Row,
        card: _Card | None,
        place: _Place | None,
        v: Verdict,
        paid: bool,
        now: int,
    ) -> _ExceptionRow:
        assert v.reason is not None
        tc = row.tc
        amount = tc.amount_fen if tc is not None else row.presented_fen
        return _ExceptionRow(
            v.ref, d, v.reason.value, v.status.value, v.detail[:256],
            card.pan_masked if card is not None else row.pan_masked,
            tc.atc if tc is not None else None,
            max(amount, 0),
            row.terminal_id,
            place.merchant_id if place is not None else "",
            card.bank_code if card is not None else "",
            place.bank_code if place is not None else "",
            1 if paid else 0, now, None, None,
        )  # fmt: skip

    # --- 3. exceptions worked by an operator ------------------------------------------------------------
    def exceptions(
        self, *, status: str | None = None, day: date | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        e = clearing_exceptions
        query = select(e).order_by(e.c.id).limit(limit)
        if status is not None:
            query = query.where(e.c.status == status)
        if day is not None:
            query = query.where(e.c.opened_date == day_text(day))
        with self.database.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(query)]

    def resolve(self, exception_id: int, action: ExceptionAction) -> dict[str, Any]:
        """Work an exception: ``accept`` an open one (an item of the next run), ``reject`` an open one,
        ``chargeback`` one whose record was paid (a negative item of the next run)."""
        e = clearing_exceptions
        with self.database.engine.begin() as c:
            row = c.execute(select(e).where(e.c.id == exception_id).with_for_update()).first()
            if row is None:
                raise ExceptionNotFound(f"no clearing exception {exception_id}")
            allowed = allowed_actions(row.reason, row.status, bool(row.cleared), row.pending_item)
            if action is ExceptionAction.CHARGEBACK:
                if action not in allowed:
                    raise ExceptionStateError(
                        f"exception {exception_id} ({row.reason}, {row.status}): nothing paid to charge back"
                    )
                values = {"status": "chargeback", "pending_item": "chargeback"}
            else:
                if row.status != ExceptionStatus.OPEN:
                    raise ExceptionStateError(
                        f"exception {exception_id} is {row.status}, not open: it cannot be {action.value}ed"
                    )
                if action not in allowed:  # accept, of a record no one may pay
                    if row.reason == ExceptionReason.REVERSAL_PENDING:
                        raise ExceptionStateError(
                            f"exception {exception_id} ({row.reason}) can only be rejected: a load's leg "
                            "without its partner pays no one; reject it once its reversal is applied"
                        )
                    raise ExceptionStateError(
                        f"exception {exception_id} ({row.reason}) can only be rejected: its TC does not "
                        "show the card paid this"
                    )
                if action is ExceptionAction.ACCEPT:
                    values = {"status": "accepted", "pending_item": "accepted"}
                else:
                    values = {"status": "rejected"}
            c.execute(update(e).where(e.c.id == exception_id).values(resolved_ns=self.clock(), **values))
            return dict(c.execute(select(e).where(e.c.id == exception_id)).one()._mapping)

    def resolved_items(self, d: str) -> int:
        """Accepted and charged-back exceptions become items of day ``d``, each with its posting, in one
        transaction per exception batch."""
        e, p = clearing_exceptions, clearing_presentments
        made = 0
        while True:
            with self.database.unit_of_work(IssuerUnitOfWork, clock=self.clock) as uow:
                c = uow.session.connection()
                rows = c.execute(
                    select(
                        e,
                        p.c.clearing_date.label("presented_date"),
                        p.c.card_shard,
                        p.c.batch,
                        p.c.stan,
                        p.c.pan_sealed,
                        p.c.psn,
                        p.c.field55,
                        p.c.journal_field55,
                        p.c.journal_created_ns,
                        p.c.tc_atc,
                        p.c.tc_amount_fen,
                        p.c.tc_date,
                        p.c.tc_cryptogram,
                        p.c.tc_ac_data,
                        p.c.tc_gpo_ac_data,
                    )
                    .join(p, p.c.ref == e.c.ref)
                    .where(e.c.pending_item.is_not(None))
                    .order_by(e.c.id)
                    .limit(self.batch_size)
                ).all()
                if not rows:
                    return made
                pans = dict(zip((r.ref for r in rows), self._unseal_pans(rows), strict=True))
                cards = self._cards(c, {pan for pan in pans.values() if pan})
                places = self._places(c, {r.terminal_id for r in rows})
                for r in rows:
                    self._resolved_item(uow, c, r, pans[r.ref], d, cards, places)
                uow.commit()
            made += len(rows)

    def _resolved_item(
        self,
        uow: IssuerUnitOfWork,
        c: Connection,
        r: Any,
        pan: str | None,
        d: str,
        cards: dict[str, _Card],
        places: dict[str, _Place],
    ) -> None:
        e = clearing_exceptions
        card, place = cards.get(pan or ""), places.get(r.terminal_id)
        tc = _tc_of(r, _has_upload(r))
        if card is None or place is None:
            raise ExceptionStateError(f"exception {r.id}: its card or terminal is no longer known")
        row = _Row(
            r.ref, r.terminal_id, card.pan, r.pan_masked, card.psn, tc.amount_fen, None, False,
            r.journal_created_ns, None, tc,
        )  # fmt: skip
        if r.pending_item == "accepted":
            leg = self._leg(r.ref, card, tc.amount_fen)
            item = self._item(d, row, card, place, leg.id, r.id)._asdict()
        else:
            settlement = self._settlement_account(card.bank_code)
            leg = Transfer(
                transfer_id(f"clearing/CB/{r.ref}", 1),
                settlement,
                card.ec_float_account_id,
                tc.amount_fen,
                code=BankAccount.NETWORK_SETTLEMENT,
            )
            item = (
                self._item(d, row, card, place, leg.id, r.id)
                ._replace(source_ref=f"CB/{r.ref}", sign=-1)
                ._asdict()
            )
        (result,) = uow.ledger.create_transfers([leg])
        if result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
            raise ExceptionStateError(f"exception {r.id}: the posting was refused ({result.value})")
        c.execute(insert(clearing_items), [item])
        c.execute(update(e).where(e.c.id == r.id).values(pending_item=None, cleared=1))
        if r.pending_item == "accepted":
            decided = _outcome_of(r.presented_date, r.card_shard, r.ref)
            c.execute(update(clearing_outcomes).where(decided).values(outcome="clear"))

    # --- 4. online --------------------------------------------------------------------------------------
    def online(self, d: str, windows: dict[str, tuple[int, int]]) -> int:
        """The day's online items, one ``INSERT … SELECT`` per acquiring bank; returns how many were added."""
        added = 0
        now = self.clock()
        counted = {"preserve_rowcount": True}  # an INSERT … SELECT's rowcount (else -1 on PostgreSQL)
        with self.database.engine.begin() as c:
            for bank, (start, end) in windows.items():
                added += c.execute(_online_insert(d, bank, start, end), execution_options=counted).rowcount
                added += c.execute(
                    _account_load_insert(d, bank, start, end), execution_options=counted
                ).rowcount
                c.execute(_unpartnered_legs(d, bank, start, end, now))
            c.execute(_close_reversed_legs(now))
            c.execute(_audit_reversed_legs(now))
        return added

    # --- 5. the issuer learns what has cleared ---------------------------------------------------------
    def record_cleared(self, d: str, end_ns: int) -> None:
        """Cards with offline records of the day, and lost or closed cards, have their offline transactions
        up to the day's end cleared: a set-based update per card shard of the day's outcomes (in the
        :attr:`workers` processes on PostgreSQL, each its shards), and ``RecordOfflineClearing`` through the
        issuer for the lost and closed cards (whose EC refund waits for it).

        A transaction per shard rather than one for the day: each holds the row locks of one shard's cards
        (at 1 M records over 400 000 cards some 6 000) for a fraction of a second, where one update held every
        card of the day until it committed (2.7–3.2 s at 1 M) against the issuer's own updates of the same
        rows. A mark only ever moves forward and says what is true once the day is decided, so a run stopped
        half-way leaves correct marks, and the next run sets the others."""
        processes = self.workers if self._parallel() else 1

        def mark(k: int) -> None:
            for shard in (NO_CARD_SHARD, *range(CARD_SHARDS)):  # a journal row's card may have no shard
                if shard % processes == k:
                    self._mark_cleared(d, shard, end_ns)

        if processes > 1:
            self._in_workers("cleared", mark, lambda: None)
        else:
            mark(0)
        ic = issuer_cards
        waiting = ic.c.status.in_(_REFUND_WAITS)
        with self.database.engine.connect() as c:
            lost = list(
                c.execute(select(ic.c.pan).where(waiting, ic.c.offline_cleared_until_ns < end_ns)).scalars()
            )
        for pan in lost:
            if self.record_offline_clearing is not None:
                self.record_offline_clearing(RecordOfflineClearing(pan, end_ns))
            else:
                with self.database.engine.begin() as c:
                    c.execute(
                        update(ic)
                        .where(ic.c.pan == pan, ic.c.offline_cleared_until_ns < end_ns)
                        .values(offline_cleared_until_ns=end_ns)
                    )

    def _mark_cleared(self, d: str, shard: int, end_ns: int) -> None:
        """:meth:`record_cleared`'s update of the cards of one shard's outcomes of the day (its part of the
        outcomes' key), lost and closed cards left to the issuer."""
        ic, o = issuer_cards, clearing_outcomes
        with self.database.engine.begin() as c:
            c.execute(
                update(ic)
                .where(
                    ic.c.offline_cleared_until_ns < end_ns,
                    ic.c.status.not_in(_REFUND_WAITS),
                    ic.c.ec_float_account_id.in_(
                        select(o.c.card_account).where(
                            o.c.clearing_date == d, o.c.card_shard == shard, o.c.card_account.is_not(None)
                        )
                    ),
                )
                .values(offline_cleared_until_ns=end_ns)
            )

    # --- the report -------------------------------------------------------------------------------------
    def _totals(self, d: str) -> DaySummary:
        i, e, r = clearing_items, clearing_exceptions, clearing_runs
        with self.database.engine.connect() as c:
            status = c.execute(select(r.c.status).where(r.c.clearing_date == d)).scalar()
            s = DaySummary(d, status or "not run")
            query = (
                select(i.c.source, i.c.kind, i.c.sign, func.count(), func.sum(i.c.amount_fen))
                .where(i.c.clearing_date == d)
                .group_by(i.c.source, i.c.kind, i.c.sign)
            )
            for source, kind, sign, count, amount in c.execute(query):
                amount = int(amount)
                count = int(count)
                if sign < 0:
                    s.returns_count += count
                    s.returns_fen += amount
                elif source == "online":
                    s.online_count += count
                    s.online_fen += amount
                else:
                    s.offline_count += count
                    s.offline_fen += amount
                n, a = s.by_kind.get(kind, (0, 0))
                s.by_kind[kind] = (n + count, a + amount * sign)
            query = select(e.c.reason, func.count()).where(e.c.opened_date == d).group_by(e.c.reason)
            s.exceptions = {str(reason): int(n) for reason, n in c.execute(query)}
        return s

    def summary(self, day: date) -> DaySummary:
        return self._totals(day_text(day))


# --- helpers ----------------------------------------------------------------------------------------------
_SEEN_CARD_PG = "t.card_shard = w.s AND t.pan_fingerprint = w.f AND t.psn = w.p"
_SEEN_PG = (
    "SELECT s.* FROM unnest(%(s)s::smallint[], %(f)s::text[], %(p)s::text[], %(lo)s::int[], %(hi)s::int[])"
    " AS w(s, f, p, lo, hi) CROSS JOIN LATERAL ("
    f"(SELECT * FROM clearing_seen_tcs t WHERE {_SEEN_CARD_PG} AND t.atc <= w.hi"
    " ORDER BY t.atc DESC LIMIT w.hi - w.lo + 2)"
    f" UNION ALL (SELECT * FROM clearing_seen_tcs t WHERE {_SEEN_CARD_PG}"
    " AND t.atc > w.hi ORDER BY t.atc LIMIT 1)) AS s"
)


def _seen_rows(c: Connection, runs: Sequence[tuple[str, str, int, int]]) -> list[Any]:
    """For each run (fingerprint, PSN, lo, hi): the ``hi − lo + 2`` TCs of highest ATC up to ``hi`` and the
    first above ``hi``, on the primary key (the card's shard, from its fingerprint, first: a batch's cards
    are of one shard, so its reads stay in that shard's part of the key, migration
    ``0031_seen_tcs_by_shard``) — one ``LATERAL`` join over ``unnest`` on PostgreSQL (a ``UNION ALL`` of
    hundreds of SELECTs costs more to plan than to run there), a ``UNION ALL`` elsewhere."""
    if not runs:
        return []
    if c.dialect.name == "postgresql":
        params = {
            "s": int_array(card_shard(run[0]) for run in runs),
            "f": text_array(run[0] for run in runs),
            "p": text_array(run[1] for run in runs),
            "lo": int_array(run[2] for run in runs),
            "hi": int_array(run[3] for run in runs),
        }
        return list(c.exec_driver_sql(_SEEN_PG, params).all())
    t = clearing_seen_tcs
    reads: list[Any] = []
    for f, psn, lo, hi in runs:
        card = (t.c.card_shard == card_shard(f), t.c.pan_fingerprint == f, t.c.psn == psn)
        below = select(t).where(*card, t.c.atc <= hi).order_by(t.c.atc.desc()).limit(hi - lo + 2)
        above = select(t).where(*card, t.c.atc > hi).order_by(t.c.atc).limit(1)
        reads += [select(below.subquery()), select(above.subquery())]
    rows: list[Any] = []
    for chunk in _chunks(reads, 400):  # SQLite: at most 500 SELECTs in a compound one
        query: Any = chunk[0]
        if len(chunk) > 1:
            query = union_all(*chunk)
        rows += c.execute(query).all()
    return rows


@cache
def _card_batch_statements() -> tuple[DriverStatement, DriverStatement]:
    """The two reads of :meth:`ClearingEngine._card_batch`, built and compiled once (a batch ran them through
    SQLAlchemy's statement building, caching and result rows each time): the next ``wanted`` undecided
    records of a shard after card (``after_shard``, ``after_fp``) in the index's order, and the rest of a
    card's records after ``ref``. Parameters: ``d`` and those."""
    p = clearing_presentments
    base = select(p).where(p.c.clearing_date == bindparam("d"), _undecided())
    card = (p.c.card_shard, p.c.pan_fingerprint)
    after = tuple_(bindparam("after_shard", type_=Integer), bindparam("after_fp", type_=String))
    following = (
        base.where(tuple_(*card) > after, p.c.card_shard == bindparam("shard"))
        .order_by(*card, p.c.ref)
        .limit(bindparam("wanted", type_=Integer))
    )
    rest = base.where(
        p.c.card_shard == bindparam("shard"),
        p.c.pan_fingerprint == bindparam("fp"),
        p.c.ref > bindparam("ref"),
    ).order_by(p.c.ref)
    return DriverStatement(following), DriverStatement(rest)


_KEYS_PER_READ = 1000
"""Keys per ``IN`` list of a read by keys on SQLite (PostgreSQL takes them all as one array parameter)."""

_CARDS = DriverStatement(
    _card_query().where(issuer_cards.c.pan.in_(bindparam("keys", expanding=True))),
    arrays={"keys": "VARCHAR[]"},
)
""":meth:`ClearingEngine._cards`: the cards of some PANs (``keys``), one prepared statement on PostgreSQL."""

_PLACES = DriverStatement(
    select(
        center_terminals.c.terminal_id,
        center_merchants.c.merchant_id,
        center_merchants.c.mcc,
        center_merchants.c.industry,
        center_merchants.c.bank_code,
    )
    .select_from(center_terminals.join(center_merchants))
    .where(center_terminals.c.terminal_id.in_(bindparam("keys", expanding=True))),
    arrays={"keys": "VARCHAR[]"},
)
""":meth:`ClearingEngine._places`: the terminals (``keys``) with their merchants, as :data:`_CARDS`."""


def _key_chunks(c: Connection, keys: list[str]) -> Iterator[str | Sequence[str]]:
    """``keys`` as the ``keys`` parameter of :data:`_CARDS` or :data:`_PLACES`: on PostgreSQL one array
    literal (an ``IN`` list of a thousand PANs cost SQLAlchemy and psycopg a bind and a cast each to render,
    and the server a statement to parse and plan each time); elsewhere lists of :data:`_KEYS_PER_READ`."""
    if not keys:
        return
    if c.dialect.driver == "psycopg":
        yield text_array(keys)
        return
    yield from _chunks(keys, _KEYS_PER_READ)


_ATC_RUN_GAP = 32  # a card's ATCs in a batch further apart than this are read as separate runs


def _atc_runs(atcs: Sequence[int]) -> Iterator[tuple[int, int]]:
    """The runs (first, last) of the sorted ``atcs``, neighbours in a run at most :data:`_ATC_RUN_GAP`
    apart."""
    lo = prev = atcs[0]
    for a in atcs[1:]:
        if a - prev > _ATC_RUN_GAP:
            yield lo, prev
            lo = a
        prev = a
    yield lo, prev


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a batch being decided (when it was running).

    A batch keeps the objects it makes for each record (rows, TCs, records, verdicts: some ten each) until
    it ends, when reference counting frees them. Collections triggered meanwhile find nothing to free in
    them, only walk them, and promote them, so that every few batches a full collection falls due and walks
    the whole heap (measured: a sixth of the process's CPU per record, docs/performance.md). Paused, the
    collector runs as before between batches, and collects then the few cycles made meanwhile. It is
    process-wide, like the collector itself: another thread's garbage is collected after the batch."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_SET_SEALED_PAN: Final[dict[str, Any]] = {
    name: bindparam(f"v_{name}") for name in ("pan_fingerprint", "pan_sealed", "card_shard")
}  # a bound parameter may not be named as the column it sets
"""The SET of a presentment's sealed PAN (:func:`sealed_pan`'s columns); its rows: :func:`_sealed_pan_of`."""


def _sealed_pan_of(protection: RecordProtection, ref: str, pan: str, key: Any) -> dict[str, Any]:
    """The parameters of :data:`_SET_SEALED_PAN` for the presentment ``ref`` (its record ``key``: terminal,
    batch, STAN) whose card's PAN is ``pan``."""
    values = sealed_pan(protection, pan, key.terminal_id, key.batch, key.stan)
    return {"r": ref, **{f"v_{name}": value for name, value in values.items()}}


def _hsm_calls(groups: list[_CardChecks]) -> Iterator[list[_CardChecks]]:
    """The cards of one bank (card, refs, checks) in runs of at most :data:`MAX_CARDS_ACS` cryptograms, a
    :meth:`Hsm.verify_cards_acs` call each (a card with more alone in its run: the HSM refuses it, as it
    refused it in a call of its own)."""
    call: list[_CardChecks] = []
    size = 0
    for group in groups:
        if call and size + len(group[2]) > MAX_CARDS_ACS:
            yield call
            call, size = [], 0
        call.append(group)
        size += len(group[2])
    if call:
        yield call


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@lru_cache(maxsize=4096)
def _date_ns(day: date) -> int:
    """Midnight (Beijing) starting ``day``, in ns since the epoch (a day's records share a few dates)."""
    return int(datetime.combine(day, datetime.min.time(), BEIJING).timestamp()) * 10**9


def _in_key_order(c: Connection, bound: Any) -> Any:
    """The first row of ``bound``, a query ``ORDER BY`` an index's columns ``OFFSET … LIMIT 1``, read by
    walking that index in its order (on PostgreSQL the plans that sort are disabled for it).

    A day's uploads are read for staging before PostgreSQL's statistics know them: it then guesses a range
    of the day to hold a few hundred rows and plans the bound as a bitmap scan of every upload from the
    bound's start to the day's end and a top-N sort — each bound reading the rest of the day, a day's
    bounds the whole day N / batch / 2 times (at 1 M records 0.3–1.5 s per bound, for the first ten or so,
    until the connection's prepared statement falls back on a generic plan; 0.01–0.03 s in order). Walking
    the index in order stops at the offset whatever the statistics."""
    if c.dialect.name != "postgresql":
        return c.execute(bound).first()
    c.exec_driver_sql("SET LOCAL enable_sort = off")  # until the transaction ends, or:
    first = c.execute(bound).first()
    c.exec_driver_sql("SET LOCAL enable_sort TO DEFAULT")  # the statements after it planned as before
    return first


def _upsert_staged(c: Connection, columns: list[str], source: Any, changed: list[str]) -> int:
    """``INSERT INTO clearing_presentments (columns) SELECT …`` of uploads; a presentment staged from a
    journal only and still undecided gets the upload's ``changed`` columns (and its masked PAN when it had
    none). Returns the rows inserted or updated.

    An upload staged before (or a presentment decided) is skipped by the conflict's ``WHERE``, not by a
    join of the source with ``clearing_presentments``: the insert probes the primary key for each row
    anyway, and such a join, planned while the day's presentments look empty (a first day, its table
    analyzed empty), became a nested loop of sequential scans over the rows that the other staging
    processes were inserting at the same time (271 s for a first batch of 10 000 with two processes)."""
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(clearing_presentments).from_select(columns, source)
    p = clearing_presentments
    changes: dict[str, Any] = {name: getattr(statement.excluded, name) for name in changed}
    changes["pan_masked"] = func.coalesce(func.nullif(p.c.pan_masked, ""), statement.excluded.pan_masked)
    for name in ("bus_line", "vehicle"):  # a fare's line: the upload's, else the journal row's (a gap filled)
        changes[name] = func.coalesce(getattr(statement.excluded, name), p.c[name])
    statement = statement.on_conflict_do_update(
        index_elements=["ref"], set_=changes, where=and_(_journal_only(), _undecided(upsert=True))
    )
    return int(c.execute(statement.execution_options(preserve_rowcount=True)).rowcount or 0)


_JOURNAL_STATES = frozenset({"approved", "recovered", "refund"})


def _journal_values(line: str, where: str, d: str, now_ns: int) -> dict[str, Any]:
    """A journal export row (``citycard.sqlite_journal``) as a presentment; :class:`ClearingInputError`."""
    try:
        doc = json.loads(line)
        terminal = str(doc["terminal_id"])
        batch, stan = int(doc["batch"]), int(doc["stan"])
        amount = int(doc["amount_fen"])
        field55 = bytes.fromhex(str(doc["field55"]))
        created = datetime.fromisoformat(str(doc["created"]))
        state = str(doc["state"])
        psn = str(doc.get("psn") or "")
        masked = str(doc.get("pan_masked") or "")
    except (ValueError, KeyError, TypeError) as exc:
        raise ClearingInputError(f"{where}: not a journal export row ({exc})") from None
    if len(terminal) != 8 or not terminal.isalnum() or amount < 0 or state not in _JOURNAL_STATES:
        raise ClearingInputError(f"{where}: terminal, amount or state out of range")
    if not 0 <= batch < 10**6 or not 0 <= stan < 10**6:
        raise ClearingInputError(f"{where}: batch and STAN are 6 digits")
    if created.tzinfo is None:  # the terminal's clock is Beijing wall-clock time
        created = created.replace(tzinfo=BEIJING)
    created_ns = int(created.astimezone(UTC).timestamp() * 10**6) * 1000
    service = doc.get("service_ref")
    bus_line = doc.get("line")
    ride = BusRide.of(bus_line, str(doc.get("vehicle") or "")) if type(bus_line) is int else None
    return {
        "ref": f"{terminal}/{batch}/{stan}",
        "clearing_date": d,
        "terminal_id": terminal,
        "batch": batch,
        "stan": stan,
        "received_ns": now_ns,
        "pan": None,
        "pan_masked": masked[:19],
        "psn": psn[-2:],
        "amount_fen": None,
        "field55": None,
        "journal_amount_fen": amount,
        "journal_field55": field55,
        "journal_state": state,
        "journal_created_ns": created_ns,
        "service_ref": str(service)[:32] if service else None,
        "bus_line": ride.line if ride is not None else None,  # a validator's fare: its line and vehicle
        "vehicle": ride.vehicle if ride is not None else None,
    }


def _upsert_presentments(c: Connection, rows: Sequence[dict[str, Any]], columns: Iterable[str]) -> None:
    """Insert presentments; one already staged and undecided gets ``columns`` from the new row."""
    if not rows:
        return
    keys = set().union(*(r.keys() for r in rows))
    full = [{k: r.get(k) for k in keys} for r in rows]
    dialect = postgresql if c.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(clearing_presentments)
    changes = {name: getattr(statement.excluded, name) for name in columns}
    if "pan_masked" not in changes:
        changes["pan_masked"] = func.coalesce(
            func.nullif(clearing_presentments.c.pan_masked, ""), statement.excluded.pan_masked
        )
    for name in ("bus_line", "vehicle"):  # a journal row's line fills a gap, never replaces the upload's
        if name in keys and name not in changes:
            changes[name] = func.coalesce(clearing_presentments.c[name], statement.excluded[name])
    statement = statement.on_conflict_do_update(
        index_elements=["ref"], set_=changes, where=and_(_journal_only(), _undecided(upsert=True))
    )
    c.execute(statement, full)


def _insert_rows(c: Connection, table: Any, rows: Sequence[_ItemRow | _ExceptionRow | _SeenRow]) -> None:
    """Insert ``rows`` (named tuples of one kind, their fields columns of ``table``): on PostgreSQL one
    ``COPY … FROM STDIN`` (one statement, whatever the count, each tuple formatted by psycopg in C as it
    is), elsewhere an ``executemany``."""
    if not rows:
        return
    if c.dialect.name != "postgresql":
        c.execute(insert(table), [r._asdict() for r in rows])
        return
    copy_rows(c, table.name, rows[0]._fields, rows)


def _undecided(*, upsert: bool = False) -> Any:
    """``clearing_presentments`` rows not decided yet: no row in ``clearing_outcomes`` (its key: the
    presentment's day and ref).

    Written as ``(SELECT count(*) … ) = 0`` rather than ``NOT EXISTS``: PostgreSQL turns a ``NOT EXISTS``
    into an anti-join whose plan follows the statistics, and a day's tables are filled faster than they are
    analyzed — planned while ``clearing_outcomes`` looked empty, a run's batch query joined every undecided
    row with every outcome of the day (seconds per batch). An aggregate subquery stays a probe of the
    primary key per row read, whatever the statistics. ``upsert``: for the ``WHERE`` of an ``ON CONFLICT DO
    UPDATE``, where SQLAlchemy does not correlate a subquery with the inserted table (its columns named in
    text)."""
    p = clearing_presentments
    day: Any
    shard: Any
    ref: Any
    if upsert:
        day, ref = literal_column(f"{p.name}.clearing_date"), literal_column(f"{p.name}.ref")
        shard = literal_column(f"{p.name}.card_shard")
    else:
        day, shard, ref = p.c.clearing_date, p.c.card_shard, p.c.ref
    decided = select(func.count()).where(_outcome_of(day, shard, ref)).scalar_subquery()
    return decided == 0


def _outcome_of(day: Any, card_shard: Any, ref: Any) -> Any:
    """The ``clearing_outcomes`` row of the presentment (``day``, ``card_shard``, ``ref``): its whole key,
    the presentment's shard (NULL: :data:`NO_CARD_SHARD`) included — the key's middle column, without which
    a look-up would read the day's every outcome."""
    o = clearing_outcomes
    shard = func.coalesce(card_shard, literal(NO_CARD_SHARD, SmallInteger))
    return and_(o.c.clearing_date == day, o.c.card_shard == shard, o.c.ref == ref)


_OUTCOME_COLUMNS = ("clearing_date", "card_shard", "ref", "outcome", "card_account")


def _set_outcomes(c: Connection, rows: Sequence[tuple[str, int, str, str, int | None]]) -> None:
    """The outcomes of presentments (day, card shard or :data:`NO_CARD_SHARD`, ref, outcome, the card's EC
    float account or None: plain tuples, made once per record) inserted in ``clearing_outcomes``: one
    ``COPY`` on PostgreSQL, an ``executemany`` elsewhere. The wide presentment rows are not touched. A
    batch's records are of a few shards (one, mostly): its rows go to those shards' part of the key, the
    part the batch's own :func:`_undecided` probes have just read, not each to a page of its own anywhere in
    the day's index."""
    if not rows:
        return
    if c.dialect.name == "postgresql":
        copy_rows(c, clearing_outcomes.name, _OUTCOME_COLUMNS, rows)
        return
    c.execute(insert(clearing_outcomes), [dict(zip(_OUTCOME_COLUMNS, r, strict=True)) for r in rows])


def _row(r: Any, pan: str | None) -> _Row:
    """The presentment ``r`` being decided, its PAN unsealed (:meth:`ClearingEngine._unseal_pans`) and its TC
    read (or why it cannot be)."""
    upload = _has_upload(r)
    journal = None
    if r.journal_field55 is not None and upload:
        try:
            cryptogram = parse_tc(r.journal_field55).cryptogram
        except TcDataError:
            cryptogram = b""
        journal = JournalCopy(int(r.journal_amount_fen), r.terminal_id, cryptogram)
    presented = int(r.amount_fen or 0) if upload else int(r.journal_amount_fen or 0)
    tc, tc_error = None, ""
    try:
        tc = _tc_of(r, upload)
    except TcDataError as exc:
        tc_error = exc.detail
    return _Row(
        ref=r.ref,
        terminal_id=r.terminal_id,
        pan=pan,
        pan_masked=r.pan_masked,
        psn=r.psn,
        presented_fen=presented,
        journal=journal,
        fare_refund=r.journal_state == "refund",
        txn_ns=r.journal_created_ns,
        service_ref=r.service_ref,
        batch=int(r.batch),
        stan=int(r.stan),
        fingerprint=r.pan_fingerprint,
        card_shard=NO_CARD_SHARD if r.card_shard is None else int(r.card_shard),
        bus_line=None if r.bus_line is None else int(r.bus_line),
        vehicle=r.vehicle,
        tc=tc,
        tc_error=tc_error,
    )


@lru_cache(maxsize=8)
def _plain_type(fields: tuple[str, ...]) -> Any:
    return namedtuple("_Presentment", fields)  # built from the query's columns


def _plain(rows: Sequence[Any]) -> list[Any]:
    """Result rows as plain named tuples of the same fields: decided once, a batch's rows are read field
    by field some thirty times each, and a tuple's field costs a tenth of a SQLAlchemy ``Row``'s."""
    if not rows:
        return []
    if isinstance(rows[0], tuple):  # named tuples already (:class:`DriverStatement`'s rows)
        return list(rows)
    make = _plain_type(tuple(rows[0]._fields))._make
    return [make(r) for r in rows]


_date_text = lru_cache(maxsize=4096)(day_text)
"""``YYYYMMDD`` of a TC's date (formatted once per date, as :func:`_yyyymmdd` reads it)."""


@lru_cache(maxsize=4096)
def _yyyymmdd(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def _tc_of(r: Any, upload: bool) -> TcData:
    """The TC of a presentment: the upload's as the acquirer decoded it (``tc_*``: only an upload's row has
    them), else parsed here from the field 55 kept — the upload's that did not decode (for the error's
    detail), or the journal's when there is no upload; :class:`TcDataError`."""
    if r.tc_cryptogram is not None:
        return TcData(
            bytes(r.tc_cryptogram),
            int(r.tc_atc),
            int(r.tc_amount_fen),
            _yyyymmdd(r.tc_date),
            bytes(r.tc_ac_data),
            None if r.tc_gpo_ac_data is None else bytes(r.tc_gpo_ac_data),
        )
    return parse_tc((r.field55 if upload else r.journal_field55) or b"")


def _has_upload(r: Any) -> bool:
    """Whether presentment ``r`` was staged from an upload (migration 0030): its TC decoded by the acquirer
    (``tc_cryptogram``), or the upload's field 55 kept because it held no usable TC. A row with neither is
    a journal row alone — or an upload without field 55, which is decided as one (as before 0030)."""
    return r.tc_cryptogram is not None or bool(r.field55)


def _undecoded_field55(field55: Any, cryptogram: Any) -> Any:
    """What a presentment keeps of an upload's field 55 (migration 0030): nothing when the acquirer decoded
    its TC (``tc_*`` hold all that clearing reads of it: 100 bytes a record less to write, read and cache),
    else the bytes as received, so that deciding can say why they are not a usable TC."""
    return case((cryptogram.is_(None), field55), else_=null())


def _journal_only() -> Any:
    """A staged presentment that no upload has reached yet (see :func:`_has_upload`): a journal row's, to
    which an upload staged later brings its columns."""
    p = clearing_presentments
    return and_(p.c.field55.is_(None), p.c.tc_cryptogram.is_(None))


def _online_insert(d: str, bank: str, start: int, end: int) -> Any:
    """``INSERT INTO clearing_items SELECT …`` of the day's online records at ``bank``'s merchants."""
    a, o, ic, m, t, i, pr = (
        issuer_authorizations,
        issuer_authorizations.alias("o"),
        issuer_cards,
        center_merchants,
        acquirer_transactions,
        clearing_items,
        issuer_products,
    )
    prior = i.alias("prior")  # the item of a void's or reversal's original, when it cleared already
    approved = a.c.response_code.in_(APPROVED)
    purchase = and_(a.c.kind == "purchase", a.c.reversed_by.is_(None))
    void = and_(a.c.kind.in_(("void", "reversal")), a.c.reversed_by.is_(None), prior.c.id.is_not(None))
    refund = and_(a.c.kind == "refund", a.c.reversed_by.is_(None))
    cash_load = and_(a.c.kind == "ec_cash_load", a.c.reversed_by.is_(None))
    # a void or late reversal gives its original's item back: the same kind (a purchase's is a void) and
    # the opposite sign — a cash load's (-1: the counter's bank owes the cash) comes back +1, an EC load
    # from another account's between its two issuers
    undone = case((prior.c.kind == ItemKind.PURCHASE.value, literal(ItemKind.VOID.value)), else_=prior.c.kind)
    kind = case(
        (purchase, literal(ItemKind.PURCHASE.value)),
        (refund, literal(ItemKind.REFUND.value)),
        (cash_load, literal(ItemKind.EC_CASH_LOAD.value)),
        else_=undone,
    )
    sign = case((purchase, literal(1)), (void, -prior.c.sign), else_=literal(-1))
    # a void or reversal carries its original's amount; others their own
    amount = case((void, o.c.amount_fen), else_=a.c.amount_fen)
    rrn_of = func.substr(a.c.request_id, func.length(a.c.request_id) - literal_column("11"))
    masked = func.coalesce(t.c.pan_masked, _masked(a.c.pan))
    source = (
        a.join(ic, ic.c.pan == a.c.pan)
        .join(pr, and_(pr.c.bank_code == ic.c.bank_code, pr.c.code == ic.c.product_code))
        .join(m, m.c.merchant_id == a.c.merchant_id)
        .outerjoin(o, o.c.request_id == a.c.original_request_id)
        .outerjoin(
            prior,
            and_(
                a.c.kind.in_(("void", "reversal")),
                prior.c.source == "online",
                prior.c.source_ref == a.c.original_request_id,
            ),
        )
        .outerjoin(t, t.c.rrn == rrn_of)
    )
    rows = (
        select(
            literal(d, String),
            literal("online", String),
            a.c.request_id,
            kind,
            sign,
            amount,
            ic.c.bank_code,
            func.coalesce(m.c.bank_code, ""),
            a.c.merchant_id,
            a.c.terminal_id,
            m.c.mcc,
            m.c.industry,
            masked,
            null(),
            a.c.created_ns,
            t.c.rrn,
            func.coalesce(a.c.service_ref, o.c.service_ref),  # a void or refund names its original's
            null(),
            null(),
            pr.c.card_type,
            prior.c.payer_bank,  # a late reversal of an EC load from another account: its payer
        )
        .select_from(source)
        .where(
            approved,
            or_(purchase, refund, void, cash_load),
            a.c.created_ns > start,
            a.c.created_ns <= end,
            func.coalesce(m.c.bank_code, "") == bank,
            amount > 0,
            ~exists().where(i.c.source == "online", i.c.source_ref == a.c.request_id),
        )
    )
    columns = [
        "clearing_date", "source", "source_ref", "kind", "sign", "amount_fen", "issuer_bank",
        "acquirer_bank", "merchant_id", "terminal_id", "mcc", "industry", "pan_masked", "atc", "txn_ns",
        "rrn", "service_ref", "transfer_id", "exception_id", "card_type", "payer_bank",
    ]  # fmt: skip
    return insert(i).from_select(columns, rows)


_CARD_LEG, _DEBIT_LEG = "ec_load_other", "ec_load_other_debit"
"""The two legs of an EC load from another account in ``issuer_authorizations`` (``issuer.commands``): the
EC card's (request id ``R`` = 32-37) and the other account's (``D`` + ``R``, the issuer front end's)."""


def _masked(pan: Any) -> Any:
    """A PAN masked in SQL as ``mask_pan`` does (first 6, last 4)."""
    length = func.length(pan)
    stars = func.substr(literal("*********", String), 1, length - 10)
    return func.substr(pan, 1, 6).op("||")(stars).op("||")(func.substr(pan, length - 3))


_PENDING_REF = "online/"  # a reversal_pending exception's ref: this and the leg's request id
_SYSTEM_ACTOR = "clearing"  # who closes an exception by itself, in the audit log
_REVERSED_ACTION = "exception_reversed"


def _live(leg: Any) -> Any:
    return and_(leg.c.response_code.in_(APPROVED), leg.c.reversed_by.is_(None))


def _account_load_insert(d: str, bank: str, start: int, end: int) -> Any:
    """``INSERT INTO clearing_items SELECT …`` of the day's EC loads from another account at ``bank``'s
    merchants' terminals: one item per load whose two legs are both approved and not reversed (matched by
    the request id, 32-37, and the terminal and amount), placed by the card leg's time; ``issuer_bank`` the
    EC card's bank (it receives), ``payer_bank`` the other account's (it pays), sign -1."""
    card, debit, ic, payer, m, t, i, pr = (
        issuer_authorizations,
        issuer_authorizations.alias("debit_leg"),
        issuer_cards,
        issuer_cards.alias("payer_card"),
        center_merchants,
        acquirer_transactions,
        clearing_items,
        issuer_products,
    )
    rrn_of = func.substr(card.c.request_id, func.length(card.c.request_id) - literal_column("11"))
    source = (
        card.join(
            debit,
            and_(
                debit.c.request_id == literal("D", String).op("||")(card.c.request_id),
                debit.c.kind == _DEBIT_LEG,
                debit.c.terminal_id == card.c.terminal_id,
                debit.c.amount_fen == card.c.amount_fen,
            ),
        )
        .join(ic, ic.c.pan == card.c.pan)
        .join(payer, payer.c.pan == debit.c.pan)
        .join(pr, and_(pr.c.bank_code == ic.c.bank_code, pr.c.code == ic.c.product_code))
        .join(m, m.c.merchant_id == card.c.merchant_id)
        .outerjoin(t, t.c.rrn == rrn_of)
    )
    rows = (
        select(
            literal(d, String),
            literal("online", String),
            card.c.request_id,
            literal(ItemKind.EC_ACCOUNT_LOAD.value, String),
            literal(-1),
            card.c.amount_fen,
            ic.c.bank_code,
            func.coalesce(m.c.bank_code, ""),
            card.c.merchant_id,
            card.c.terminal_id,
            m.c.mcc,
            m.c.industry,
            _masked(card.c.pan),  # the EC card's (the acquirer's record has field 2: the other account's)
            card.c.created_ns,
            t.c.rrn,
            pr.c.card_type,
            payer.c.bank_code,
        )
        .select_from(source)
        .where(
            card.c.kind == _CARD_LEG,
            _live(card),
            _live(debit),
            card.c.created_ns > start,
            card.c.created_ns <= end,
            func.coalesce(m.c.bank_code, "") == bank,
            card.c.amount_fen > 0,
            ~exists().where(i.c.source == "online", i.c.source_ref == card.c.request_id),
        )
    )
    columns = [
        "clearing_date", "source", "source_ref", "kind", "sign", "amount_fen", "issuer_bank",
        "acquirer_bank", "merchant_id", "terminal_id", "mcc", "industry", "pan_masked", "txn_ns", "rrn",
        "card_type", "payer_bank",
    ]  # fmt: skip
    return insert(i).from_select(columns, rows)


def _unpartnered_legs(d: str, bank: str, start: int, end: int, now_ns: int) -> Any:
    """``INSERT INTO clearing_exceptions SELECT …``: each leg of an EC load from another account made in
    ``bank``'s business day, approved and not reversed, whose partner leg is not (declined, or reversed
    already): its own reversal is pending (the acquirer reverses a load it could not complete, and the
    switch sends the reversal to both legs). Its bank's settlement account holds the amount meanwhile; an
    item would pay it to no one. ``reversal_pending``, open, only ``reject`` (once the reversal is applied
    the leg nets to zero). A leg reversed before the run is no exception: both legs net to nothing."""
    leg, partner, ic, m, e = (
        issuer_authorizations,
        issuer_authorizations.alias("partner"),
        issuer_cards,
        center_merchants,
        clearing_exceptions,
    )
    is_debit = leg.c.kind == _DEBIT_LEG
    partner_id = case(
        (is_debit, func.substr(leg.c.request_id, 2)),
        else_=literal("D", String).op("||")(leg.c.request_id),
    )
    ref = literal(_PENDING_REF, String).op("||")(leg.c.request_id)
    detail = case(
        (
            is_debit,
            literal(
                "the other account's leg was debited and the EC card's leg did not complete: the reversal "
                "of the debit is pending",
                String,
            ),
        ),
        else_=literal(
            "the EC card's leg was loaded and the other account's leg is not (declined or reversed): the "
            "reversal of the load is pending",
            String,
        ),
    )
    partnered = exists().where(
        partner.c.request_id == partner_id,
        partner.c.kind == case((is_debit, literal(_CARD_LEG, String)), else_=literal(_DEBIT_LEG, String)),
        _live(partner),
    )
    rows = (
        select(
            ref,
            literal(d, String),
            literal(ExceptionReason.REVERSAL_PENDING.value, String),
            literal(ExceptionStatus.OPEN.value, String),
            detail,
            _masked(leg.c.pan),
            leg.c.amount_fen,
            leg.c.terminal_id,
            leg.c.merchant_id,
            ic.c.bank_code,
            func.coalesce(m.c.bank_code, ""),
            literal(0),
            literal(now_ns),
        )
        .select_from(leg.join(ic, ic.c.pan == leg.c.pan).join(m, m.c.merchant_id == leg.c.merchant_id))
        .where(
            leg.c.kind.in_((_CARD_LEG, _DEBIT_LEG)),
            _live(leg),
            leg.c.created_ns > start,
            leg.c.created_ns <= end,
            func.coalesce(m.c.bank_code, "") == bank,
            ~partnered,
            ~exists().where(e.c.ref == ref),
        )
    )
    columns = [
        "ref", "opened_date", "reason", "status", "detail", "pan_masked", "amount_fen", "terminal_id",
        "merchant_id", "issuer_bank", "acquirer_bank", "cleared", "opened_ns",
    ]  # fmt: skip
    return insert(e).from_select(columns, rows)


def _reversed_leg(e: Any, leg: Any) -> Any:
    """The leg of ``reversal_pending`` exception ``e`` (ref ``online/<request id>``), reversed at its bank."""
    return and_(
        leg.c.request_id == func.substr(e.c.ref, len(_PENDING_REF) + 1),
        leg.c.kind.in_((_CARD_LEG, _DEBIT_LEG)),
        leg.c.reversed_by.is_not(None),
    )


def _close_reversed_legs(now_ns: int) -> Any:
    """``UPDATE clearing_exceptions``: each open ``reversal_pending`` exception (of any day) whose leg has
    been reversed at its issuer since is closed, ``reversed`` at ``now_ns``: the leg nets to zero on its
    bank's books, nothing is paid (``cleared`` stays 0, no item). One whose leg is still live stays open; a
    closed one is not touched again."""
    e, leg = clearing_exceptions, issuer_authorizations
    return (
        update(e)
        .where(
            e.c.reason == ExceptionReason.REVERSAL_PENDING.value,
            e.c.status == ExceptionStatus.OPEN.value,
            exists().where(_reversed_leg(e, leg)),
        )
        .values(status=ExceptionStatus.REVERSED.value, resolved_ns=now_ns)
    )


def _audit_reversed_legs(now_ns: int) -> Any:
    """``INSERT INTO web_audit SELECT …``: one entry per exception :func:`_close_reversed_legs` closed, as an
    operator's resolution is audited (action ``exception_reversed``, target ``exception <id>``) but by the
    system (actor ``clearing``, role ``system``), naming the reversal. Made once per exception."""
    e, leg, a = clearing_exceptions, issuer_authorizations, web_audit
    target = literal("exception ", String).op("||")(cast(e.c.id, String))
    detail = (
        literal("status=reversed: the reversal ", String)
        .op("||")(leg.c.reversed_by)
        .op("||")(literal(" of leg ", String))
        .op("||")(leg.c.request_id)
        .op("||")(literal(" was applied at its issuer; closed by clearing, nothing paid", String))
    )
    rows = (
        select(
            literal(now_ns),
            literal(_SYSTEM_ACTOR, String),
            literal("system", String),
            literal(_REVERSED_ACTION, String),
            target,
            literal("ok", String),
            detail,
        )
        .select_from(e.join(leg, _reversed_leg(e, leg)))
        .where(
            e.c.reason == ExceptionReason.REVERSAL_PENDING.value,
            e.c.status == ExceptionStatus.REVERSED.value,
            ~exists().where(a.c.action == _REVERSED_ACTION, a.c.target == target),
        )
    )
    return insert(a).from_select(["at_ns", "actor", "role", "action", "target", "outcome", "detail"], rows)
