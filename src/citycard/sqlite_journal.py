"""The terminal journal on SQLite (the storage adapter for the port :class:`citycard.pos.journal.Journal`).

An adapter (DESIGN.md §3), beside :mod:`citycard.db` rather than inside it: it needs only the standard
library's ``sqlite3``, and the ``pos`` commands must not load SQLAlchemy (``citycard.db`` imports it).

Durability: WAL mode with ``synchronous=FULL``, one SQL transaction per state change, so a kill at any
instant leaves either the state before or the state after. A validator's journal (``sync_outcomes=False``)
makes one durable write per tap: the ``pending`` row before the card is asked to pay is fsynced as always,
the outcome after it is committed to the WAL without an fsync (``synchronous=NORMAL`` for that commit) and
becomes durable with the next durable commit — the next tap's ``pending`` row, an export — or at
:meth:`SqliteJournal.close`. A killed process loses nothing (the WAL's pages are the kernel's); a power cut
before that next fsync loses only the outcome, and the durable ``pending`` row turns ``torn`` on open and is
resolved by the card's log exactly as for a crash between the card's debit and the outcome
(docs/terminal.md, docs/performance.md "transit"). On open, transactions left ``pending`` by a
crash become ``torn``: the card may or may not have been charged, and its log will tell on the next tap.
STAN (1…999999, wrapping) and batch numbers come from a counter row updated in the same SQL transaction as
the insert, so no number is used twice. Exports are idempotent: rows are assigned to an export first, the
file is then written atomically (:func:`citycard.durable.atomic_write`: temporary file, fsync, rename,
fsync of the folder), and a crash in between rewrites the same file with the same content on the next
export.

The validator's guards read the journal on every tap through an index on ``(state, created)``
(:meth:`SqliteJournal.recent`): their cost is that of the rows in the window they ask for, not of the
journal's size (docs/performance.md "transit"). Nothing of the journal is cached in memory.

``fault(point)`` is called at every durable step (tests kill the process there).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from citycard.durable import atomic_write
from citycard.pos.journal import JournalEntry, State

__all__ = [
    "Advice",
    "JournalError",
    "JournalUnavailable",
    "JournalWriteError",
    "OnlineRecord",
    "SqliteJournal",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS txn (
    txn_id TEXT PRIMARY KEY, stan INTEGER NOT NULL, batch INTEGER NOT NULL, state TEXT NOT NULL,
    kind TEXT NOT NULL, interface TEXT NOT NULL, amount_fen INTEGER NOT NULL, created TEXT NOT NULL,
    pan_masked TEXT NOT NULL DEFAULT '', pan_token TEXT NOT NULL DEFAULT '', aid TEXT NOT NULL DEFAULT '',
    pan_sealed TEXT NOT NULL DEFAULT '', psn TEXT NOT NULL DEFAULT '', expiry TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '', reason TEXT NOT NULL DEFAULT '', cryptogram TEXT NOT NULL DEFAULT '',
    atc INTEGER, tvr TEXT NOT NULL DEFAULT '', tsi TEXT NOT NULL DEFAULT '', field55 TEXT NOT NULL DEFAULT '',
    ec_balance_fen INTEGER, un TEXT NOT NULL DEFAULT '', export_id INTEGER,
    service_ref TEXT NOT NULL DEFAULT '', original_txn_id TEXT NOT NULL DEFAULT '',
    line INTEGER, vehicle TEXT NOT NULL DEFAULT '', funding TEXT NOT NULL DEFAULT '',
    UNIQUE (batch, stan)
);
CREATE INDEX IF NOT EXISTS txn_state_created ON txn (state, created);
DROP INDEX IF EXISTS txn_state;
CREATE TABLE IF NOT EXISTS exports (export_id INTEGER PRIMARY KEY, written INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS online (
    txn_id TEXT PRIMARY KEY, rrn TEXT NOT NULL DEFAULT '', auth_code TEXT NOT NULL DEFAULT '',
    response_code TEXT NOT NULL, date_mmdd TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS online_rrn ON online (rrn);
CREATE TABLE IF NOT EXISTS saf (
    saf_id INTEGER PRIMARY KEY, txn_id TEXT NOT NULL, kind TEXT NOT NULL, stan INTEGER NOT NULL,
    reason TEXT NOT NULL, message TEXT NOT NULL, pan_sealed TEXT NOT NULL, created TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, response_code TEXT NOT NULL DEFAULT '',
    UNIQUE (txn_id, kind)
);
CREATE TABLE IF NOT EXISTS uploads (txn_id TEXT PRIMARY KEY, response_code TEXT NOT NULL);
"""

MAX_RECENT = 1000
"""The most rows :meth:`SqliteJournal.recent` returns at once."""
_SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite 3 database file
_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"approved", "declined", "refund", "torn", "void"}),
    "torn": frozenset({"recovered", "void"}),
}
_FIELDS = [f.name for f in fields(JournalEntry)]
_UPDATABLE = frozenset(_FIELDS) - {"txn_id", "stan", "batch", "state", "kind", "created", "export_id"}
_CARD_FIELDS = frozenset(
    {
        "pan_masked",
        "pan_token",
        "pan_sealed",
        "psn",
        "service_ref",
        "original_txn_id",
        "line",
        "vehicle",
        "funding",
    }
)
"""What :meth:`SqliteJournal.begin` may already know of the card (read before its debiting command), the
public service's reference the transaction pays (``service_ref``) and the purchase a void cancels
(``original_txn_id``), a validator's bus line and vehicle, and what paid an EC load (``funding``)."""
_FOLLOW_UP_INDEX = (
    "CREATE INDEX IF NOT EXISTS txn_follow_ups ON txn (original_txn_id) WHERE original_txn_id <> ''"
)
"""A purchase's voids and refunds (:meth:`SqliteJournal.follow_ups_of`) found by index, not by a scan of the
journal; partial: the purchases themselves (no original) are not in it."""

_ADDED_COLUMNS = (
    ("service_ref", "TEXT NOT NULL DEFAULT ''"),
    ("original_txn_id", "TEXT NOT NULL DEFAULT ''"),
    ("line", "INTEGER"),
    ("vehicle", "TEXT NOT NULL DEFAULT ''"),
    ("funding", "TEXT NOT NULL DEFAULT ''"),
)
"""Columns of ``txn`` added after journals were first written: added to an older journal when opened."""
_ADDED_SAF_COLUMNS = (("hold", "TEXT NOT NULL DEFAULT ''"),)
"""Columns of ``saf`` added since, the same way: ``hold`` (:class:`Advice`)."""
_ADDED: Final = (("txn", _ADDED_COLUMNS), ("saf", _ADDED_SAF_COLUMNS))
HELD: Final = "held"
"""An :attr:`Advice.hold`: kept, not sent, until the terminal knows whether it is needed."""
DROPPED: Final = "dropped"
"""An :attr:`Advice.hold`: never sent, not needed (the card's log showed the transaction stands)."""
IN_FLIGHT: Final = "in flight"
"""An :attr:`Advice.hold`: the reversal of a 0200 persisted before the 0200 leaves, for a terminal stopped
before the transaction's outcome is recorded (:meth:`SqliteJournal.settle_in_flight`). Replaced by the
decided reversal when one is queued (:meth:`SqliteJournal.queue_advice`), deleted when none is needed. Like
every reversal it carries its original's STAN."""
_STOPPED_ONLINE: Final = "terminal stopped during its online transaction: reversed"


@dataclass(frozen=True, slots=True)
class Advice:
    """One store-and-forward message of the terminal (a reversal), kept until the host answers it.

    ``message`` is the encoded ISO 8583 message (hex) without its PAN, which is kept sealed
    (:mod:`citycard.pos.sealing`) in ``pan_sealed``: the journal never holds a PAN in clear. ``hold``: ``""``
    to be sent; :data:`HELD`, kept unsent until the card's log says whether it is needed (an EC load torn
    after the card's TC, before its PUT DATA answered); :data:`DROPPED`, not needed after all;
    :data:`IN_FLIGHT`, a 0200's reversal persisted before the 0200 left, until its outcome is recorded."""

    saf_id: int
    txn_id: str
    kind: str
    stan: int
    reason: str
    message: str = field(repr=False)
    pan_sealed: str = field(repr=False)
    created: dt.datetime
    attempts: int
    response_code: str
    hold: str = ""


@dataclass(frozen=True, slots=True)
class OnlineRecord:
    """What the host answered to a transaction this terminal sent online (fields 37, 38, 39; the local
    date MMDD of the request, for field 61 of a void or a reversal)."""

    txn_id: str
    rrn: str
    auth_code: str
    response_code: str
    date_mmdd: str


class JournalError(RuntimeError):
    """A state change the journal refuses (unknown transaction, forbidden transition)."""


class JournalWriteError(OSError):
    """The file system refused a write to the journal (a full disk, an I/O error): nothing of that state
    change was written. An ``OSError`` naming the journal, so a command ends with one ``error:`` line."""


class JournalUnavailable(ValueError):
    """A journal path that cannot be opened as a journal: a missing folder, a directory, not SQLite."""


def _no_fault(_: str) -> None:
    pass


class SqliteJournal:
    def __init__(
        self,
        path: str | Path,
        terminal_id: str,
        *,
        fault: Callable[[str], None] = _no_fault,
        sync_outcomes: bool = True,
    ) -> None:
        """``sync_outcomes=False`` (validators): a transaction's outcome is committed without its own fsync
        and made durable by the next durable commit or :meth:`close` (module docstring)."""
        self.path = str(path)
        self.terminal_id = terminal_id
        self._fault = fault
        self.sync_outcomes = sync_outcomes
        self.durable_commits = 0
        """SQL transactions committed with an fsync of the WAL (``synchronous=FULL``) since opened."""
        self._db = self._open(self.path)
        self.recovered_on_open = self._recover()

    @staticmethod
    def check_path(path: str | Path) -> None:
        """:class:`JournalUnavailable` unless ``path`` can be a journal: in a folder that exists, and a new
        or empty file or an SQLite database (checked without writing anything)."""
        where = Path(path)
        if not where.parent.is_dir():
            raise JournalUnavailable(f"cannot open journal {where}: folder {where.parent} does not exist")
        if where.is_dir():
            raise JournalUnavailable(f"cannot open journal {where}: it is a folder")
        head = b""
        if where.exists():
            try:
                with where.open("rb") as fh:
                    head = fh.read(len(_SQLITE_HEADER))
            except OSError as exc:
                raise JournalUnavailable(f"cannot open journal {where}: {exc.strerror}") from None
        if head and head != _SQLITE_HEADER:
            raise JournalUnavailable(f"cannot open journal {where}: not an SQLite database")

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=10)
        except sqlite3.Error as exc:
            raise JournalUnavailable(f"cannot open journal {path}: {exc}") from None
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            for table, columns in _ADDED:
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, definition in columns:
                    if name not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
            db.execute(_FOLLOW_UP_INDEX)  # after the columns: a journal older than them gets it too
        except sqlite3.DatabaseError as exc:  # not an SQLite file, or a directory
            db.close()
            raise JournalUnavailable(f"cannot open journal {path}: {exc}") from None
        return db

    def close(self) -> None:
        """Close, making every commit durable first (outcomes committed without an fsync included)."""
        if not self.sync_outcomes:
            with suppress(sqlite3.Error):  # a full checkpoint fsyncs the WAL, then the database
                self._db.execute("PRAGMA wal_checkpoint(FULL)")
        self._db.close()

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One SQL transaction: committed when the block ends, rolled back when it raises. ``durable=False``:
        committed to the WAL without an fsync (made durable by the next durable commit)."""
        db = self._db
        try:
            if not durable:
                db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            changes = db.total_changes
            try:
                yield db
                db.execute("COMMIT")
                if durable and db.total_changes != changes:
                    self.durable_commits += 1
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):  # a full disk may refuse the rollback too: SQLite undoes it
                        db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:  # a full disk, an I/O error: the file system refused
            raise JournalWriteError(errno.EIO, f"journal not written ({exc})", self.path) from None
        finally:
            if not durable:
                with suppress(sqlite3.Error):
                    db.execute("PRAGMA synchronous=FULL")

    def _recover(self) -> int:
        """On open: what a stopped terminal left running is ``torn``, and its in-flight reversals decided
        (:meth:`settle_in_flight`) before any tap can take a torn online transaction for one the card's
        log settles."""
        with self._tx() as db:
            torn = db.execute(
                "UPDATE txn SET state='torn', reason='terminal stopped mid-transaction' WHERE state='pending'"
            ).rowcount
        self.settle_in_flight()
        return torn

    def _next(self, db: sqlite3.Connection, name: str, first: int, wrap: int | None = None) -> int:
        row = db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        value = first if row is None else row[0] + 1
        if wrap is not None and value > wrap:
            value = first
        if row is None:
            db.execute("INSERT INTO counters (name, value) VALUES (?, ?)", (name, value))
        else:  # in place: the row keeps its rowid, so the name's index page is not rewritten (one WAL frame)
            db.execute("UPDATE counters SET value=? WHERE name=?", (value, name))
        return value

    def current_batch(self) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name='batch'").fetchone()
        return 1 if row is None else int(row[0])

    def batch_totals(self, batch: int) -> tuple[int, int, int, int]:
        """(debit fen, debit count, credit fen, credit count) of ``batch`` as the batch settlement (0500)
        counts them (docs/iso8583.md): approved purchases, online and offline, less approved voids; approved
        refunds."""
        row = self._db.execute(
            "SELECT"
            " COALESCE(SUM(CASE kind WHEN 'purchase' THEN amount_fen WHEN 'void' THEN -amount_fen END), 0),"
            " COALESCE(SUM(CASE kind WHEN 'purchase' THEN 1 WHEN 'void' THEN -1 END), 0),"
            " COALESCE(SUM(CASE kind WHEN 'refund' THEN amount_fen END), 0),"
            " COALESCE(SUM(CASE kind WHEN 'refund' THEN 1 END), 0)"
            " FROM txn WHERE batch=? AND state='approved' AND amount_fen > 0",
            (batch,),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def batch_online(self, batch: int) -> list[JournalEntry]:
        """The online transactions of ``batch`` that its totals count (:meth:`batch_totals`: approved online
        purchases and voids, approved refunds), in STAN order: what a batch upload (批上送) sends after a
        settlement out of balance. Offline purchases are not among them (each was uploaded with its TC)."""
        rows = self._db.execute(
            "SELECT * FROM txn WHERE batch=? AND state='approved' AND amount_fen > 0 AND "
            "(kind='refund' OR (kind IN ('purchase', 'void') AND outcome='approved online')) ORDER BY stan",
            (batch,),
        )
        return [self._entry(r) for r in rows]

    def follow_ups_of(self, txn_id: str) -> list[JournalEntry]:
        """The voids and refunds journaled for the purchase ``txn_id`` (any state), oldest first."""
        rows = self._db.execute(
            "SELECT * FROM txn WHERE kind IN ('void', 'refund') AND original_txn_id=? AND original_txn_id<>''"
            " ORDER BY created, batch, stan",
            (txn_id,),
        )
        return [self._entry(row) for row in rows]

    def close_batch(self) -> int:
        """Start a new batch (after settlement); returns the new batch number."""
        with self._tx() as db:
            value = self.current_batch() + 1
            db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('batch', ?)", (value,))
        return value

    def advance_batch(self, to: int) -> int:
        """The batch the acquirer's sign-on names, when it is ahead of this journal's (the acquirer settled
        a batch this journal still counts as open: a journal restored or replaced); never back. Returns the
        current batch."""
        assert 1 <= to <= 999_999, to
        with self._tx() as db:
            value = self.current_batch()
            if to > value:
                db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('batch', ?)", (to,))
                value = to
        return value

    def begin(
        self, kind: str, interface: str, amount_fen: int, created: dt.datetime, un: str, **card: str | int
    ) -> JournalEntry:
        unknown = set(card) - _CARD_FIELDS
        assert not unknown, unknown
        columns = "".join(f", {k}" for k in card)
        marks = ", ?" * len(card)
        with self._tx() as db:
            stan = self._next(db, "stan", 1, 999_999)
            batch = self.current_batch()
            txn_id = f"{self.terminal_id}-{batch:06d}-{stan:06d}"
            db.execute(
                "INSERT INTO txn (txn_id, stan, batch, state, kind, interface, amount_fen, created, "
                f"un{columns}) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?{marks})",
                (txn_id, stan, batch, kind, interface, amount_fen, created.isoformat(), un, *card.values()),
            )
            self._fault("begin:before-commit")
        self._fault("begin:after-commit")
        return self.get(txn_id)

    def finish(self, txn_id: str, state: State, **values: Any) -> JournalEntry:
        unknown = set(values) - _UPDATABLE
        assert not unknown, unknown
        with self._tx(durable=self.sync_outcomes) as db:
            row = db.execute("SELECT state FROM txn WHERE txn_id=?", (txn_id,)).fetchone()
            if row is None:
                raise JournalError(f"no transaction {txn_id}")
            replayed = row[0] == state  # replayed after a crash: already done, record nothing twice
            if not replayed:
                if state not in _TRANSITIONS.get(row[0], frozenset()):
                    raise JournalError(f"{txn_id}: {row[0]} cannot become {state}")
                sets = ", ".join(f"{k}=?" for k in values)
                db.execute(
                    f"UPDATE txn SET state=?{', ' + sets if sets else ''} WHERE txn_id=?",
                    (state, *values.values(), txn_id),
                )
                self._fault("finish:before-commit")
        if replayed:
            return self.get(txn_id)
        self._fault("finish:after-commit")
        return self.get(txn_id)

    def _entry(self, row: sqlite3.Row) -> JournalEntry:
        doc = {k: row[k] for k in _FIELDS}
        doc["created"] = dt.datetime.fromisoformat(doc["created"])
        return JournalEntry(**doc)

    def get(self, txn_id: str) -> JournalEntry:
        row = self._db.execute("SELECT * FROM txn WHERE txn_id=?", (txn_id,)).fetchone()
        if row is None:
            raise JournalError(f"no transaction {txn_id}")
        return self._entry(row)

    def recent(
        self,
        states: Collection[State],
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        kind: str | None = None,
        interface: str | None = None,
        pan_token: str | None = None,
        limit: int = 50,
    ) -> list[JournalEntry]:
        """Entries in one of ``states`` created between ``since`` and ``until`` (inclusive; None: unbounded),
        of ``kind``, ``interface`` and ``pan_token`` when given, newest first, at most ``limit``.

        Read through the index on (state, created), so the cost is that of the rows in the window, not of
        the journal's size: the validator's double-tap, deny-list and torn-fare guards ask this on every
        tap. ``created`` is kept as ISO 8601 text from the terminal's one clock, whose order is the order
        of time (fixed-width date and time, optional fraction after them); callers that need the exact
        window filter the returned datetimes again."""
        assert states and 0 < limit <= MAX_RECENT, (states, limit)
        where = [f"state IN ({', '.join('?' * len(states))})"]
        args: list[object] = list(states)
        for clause, value in (
            ("created >= ?", since.isoformat() if since is not None else None),
            ("created <= ?", until.isoformat() if until is not None else None),
            ("kind = ?", kind),
            ("interface = ?", interface),
            ("pan_token = ?", pan_token),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        rows = self._db.execute(
            f"SELECT * FROM txn WHERE {' AND '.join(where)} ORDER BY created DESC, batch DESC, stan DESC "
            "LIMIT ?",
            (*args, limit),
        )
        return [self._entry(r) for r in rows]

    def entries(self, state: State | None = None, limit: int = 100) -> list[JournalEntry]:
        if state is None:
            rows = self._db.execute("SELECT * FROM txn ORDER BY batch DESC, stan DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                "SELECT * FROM txn WHERE state=? ORDER BY batch DESC, stan DESC LIMIT ?", (state, limit)
            )
        return [self._entry(r) for r in rows]

    # -- online transactions and the store-and-forward queue ---------------------------------------------

    def next_stan(self) -> int:
        """A STAN (field 11) for a message that is not a journaled transaction (sign-on, reversal): the
        same counter as :meth:`begin`, so no two messages of this terminal share one."""
        with self._tx() as db:
            return self._next(db, "stan", 1, 999_999)

    def counter(self, name: str) -> int | None:
        row = self._db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def set_counter(self, name: str, value: int) -> None:
        assert name not in ("stan", "batch", "export")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES (?, ?)", (name, value))

    def record_online(self, record: OnlineRecord) -> None:
        """Keep the host's answer to ``record.txn_id`` (idempotent: a replay changes nothing)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO online (txn_id, rrn, auth_code, response_code, date_mmdd) "
                "VALUES (?, ?, ?, ?, ?)",
                (record.txn_id, record.rrn, record.auth_code, record.response_code, record.date_mmdd),
            )

    def online_record(self, *, txn_id: str | None = None, rrn: str | None = None) -> OnlineRecord | None:
        key, value = ("txn_id", txn_id) if txn_id is not None else ("rrn", rrn)
        row = self._db.execute(
            f"SELECT * FROM online WHERE {key}=? ORDER BY rowid DESC LIMIT 1", (value,)
        ).fetchone()
        return None if row is None else OnlineRecord(**{k: row[k] for k in row.keys()})  # noqa: SIM118

    def find(self, batch: int, stan: int) -> JournalEntry | None:
        row = self._db.execute("SELECT * FROM txn WHERE batch=? AND stan=?", (batch, stan)).fetchone()
        return None if row is None else self._entry(row)

    def queue_advice(
        self,
        txn_id: str,
        kind: str,
        stan: int,
        reason: str,
        message: str,
        pan_sealed: str,
        created: dt.datetime,
        *,
        hold: str = "",
        atc: int | None = None,
    ) -> Advice:
        """Persist a store-and-forward message for ``txn_id`` (one per kind: queued twice, the first is
        kept, unless it is :data:`IN_FLIGHT`: then this one replaces it) before anyone is told the outcome;
        it is sent until the host answers it (``hold`` :data:`HELD`: not before :meth:`release_advice`).
        ``atc``: the card's ATC of the transaction, still ``pending`` (its first GENERATE AC's, as it goes
        online), kept in the same commit: a terminal stopped before the outcome leaves it torn with its ATC,
        which the card's load log can then prove absent (``pos.terminal._not_loaded``)."""
        assert hold in ("", HELD, IN_FLIGHT), hold
        with self._tx() as db:
            if atc is not None:
                db.execute("UPDATE txn SET atc=? WHERE txn_id=? AND state='pending'", (atc, txn_id))
            db.execute(
                "INSERT INTO saf (txn_id, kind, stan, reason, message, pan_sealed, created, hold) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (txn_id, kind) DO UPDATE SET "
                "stan=excluded.stan, reason=excluded.reason, message=excluded.message, "
                "pan_sealed=excluded.pan_sealed, created=excluded.created, hold=excluded.hold "
                "WHERE saf.hold=?",
                (txn_id, kind, stan, reason, message, pan_sealed, created.isoformat(), hold, IN_FLIGHT),
            )
            self._fault("saf:before-commit")
        row = self._db.execute("SELECT * FROM saf WHERE txn_id=? AND kind=?", (txn_id, kind)).fetchone()
        return self._advice(row)

    def _advice(self, row: sqlite3.Row) -> Advice:
        doc = {k: row[k] for k in row.keys()}  # noqa: SIM118
        doc["created"] = dt.datetime.fromisoformat(doc["created"])
        return Advice(**doc)

    def advices(self, *, pending: bool = True, limit: int = 1000) -> list[Advice]:
        """The queue, oldest first (``pending``: to be sent, not yet answered; neither held nor dropped)."""
        where = "WHERE response_code='' AND hold=''" if pending else ""
        rows = self._db.execute(f"SELECT * FROM saf {where} ORDER BY saf_id LIMIT ?", (limit,))
        return [self._advice(r) for r in rows]

    def advice_for(self, txn_id: str, kind: str) -> Advice | None:
        """The message of ``kind`` queued for ``txn_id`` (one at most), whatever its state: pending, held,
        dropped or answered."""
        row = self._db.execute("SELECT * FROM saf WHERE txn_id=? AND kind=?", (txn_id, kind)).fetchone()
        return None if row is None else self._advice(row)

    def queue_counts(self) -> tuple[int, int]:
        """How many messages are pending (as :meth:`advices` lists them) and how many are held, in one read
        (a flush, before every online transaction, reports both)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(response_code='' AND hold=''), 0), COALESCE(SUM(hold=?), 0) FROM saf",
            (HELD,),
        ).fetchone()
        return int(row[0]), int(row[1])

    def held(self, kind: str, limit: int) -> list[str]:
        """The transactions whose message of ``kind`` is :data:`HELD`, newest first, at most ``limit``."""
        assert 0 < limit <= MAX_RECENT, limit
        rows = self._db.execute(
            "SELECT txn_id FROM saf WHERE hold=? AND kind=? ORDER BY saf_id DESC LIMIT ?", (HELD, kind, limit)
        )
        return [str(r[0]) for r in rows]

    def release_advice(self, txn_id: str, kind: str) -> bool:
        """A held message to be sent after all (the queue's order: its place when it was held); whether
        one was held."""
        return self._unhold(txn_id, kind, "")

    def drop_advice(self, txn_id: str, kind: str) -> bool:
        """A held message never to be sent (kept, :data:`DROPPED`); whether one was held."""
        return self._unhold(txn_id, kind, DROPPED)

    def settle_in_flight(self) -> tuple[str, ...]:
        """Decide the :data:`IN_FLIGHT` reversals whose transaction is no longer running (called before the
        queue is sent): one whose outcome was recorded is deleted — a decided reversal would have replaced
        it — and one whose terminal stopped first (the journal turned it ``torn`` when reopened) is needed:
        an EC load's is held, for the card's load log to decide at its next tap (docs/terminal.md); any
        other's is released and its transaction made ``void``, as a terminal does on restart for an online
        transaction it did not complete (whether the card did is unknown, the cashier saw no approval).
        Returns the transactions so voided."""
        with self._tx() as db:
            torn = db.execute(
                "SELECT saf.txn_id, txn.kind FROM saf JOIN txn ON txn.txn_id = saf.txn_id "
                "WHERE saf.hold=? AND txn.state='torn'",
                (IN_FLIGHT,),
            ).fetchall()
            voided = tuple(row[0] for row in torn if row[1] != "ec_load")
            db.executemany(
                "UPDATE saf SET hold=? WHERE txn_id=? AND kind='reversal'",
                [(HELD if kind == "ec_load" else "", txn_id) for txn_id, kind in torn],
            )
            db.executemany(
                "UPDATE txn SET state='void', reason=? WHERE txn_id=? AND state='torn'",
                [(_STOPPED_ONLINE, txn_id) for txn_id in voided],
            )
            db.execute(  # each in-flight row's transaction looked up by its key, not the whole journal
                "DELETE FROM saf WHERE hold=? AND EXISTS (SELECT 1 FROM txn WHERE txn.txn_id = saf.txn_id "
                "AND txn.state NOT IN ('pending', 'torn'))",
                (IN_FLIGHT,),
            )
        return voided

    def forget_in_flight(self, txn_id: str) -> None:
        """The 0200 of ``txn_id`` posted nothing (never left, or declined): its in-flight reversal goes."""
        with self._tx() as db:
            db.execute("DELETE FROM saf WHERE txn_id=? AND kind='reversal' AND hold=?", (txn_id, IN_FLIGHT))

    def _unhold(self, txn_id: str, kind: str, hold: str) -> bool:
        with self._tx() as db:
            done = db.execute(
                "UPDATE saf SET hold=? WHERE txn_id=? AND kind=? AND hold=?", (hold, txn_id, kind, HELD)
            )
        return done.rowcount == 1

    def advice_sending(self, saf_id: int) -> Advice:
        """Count one more attempt (a message that left, answered or not): the next one is a repeat (0420)."""
        with self._tx() as db:
            db.execute("UPDATE saf SET attempts=attempts+1 WHERE saf_id=?", (saf_id,))
        return self._advice(self._db.execute("SELECT * FROM saf WHERE saf_id=?", (saf_id,)).fetchone())

    def advice_answered(self, saf_id: int, response_code: str) -> None:
        assert response_code
        with self._tx() as db:
            db.execute(
                "UPDATE saf SET response_code=? WHERE saf_id=? AND response_code=''", (response_code, saf_id)
            )

    def offline_purchases(self) -> list[JournalEntry]:
        """Offline EC purchases approved by the card with a TC (in ``field55``) that the host has not yet
        acknowledged (0330): what ``pos upload`` sends, one 0320 each."""
        rows = self._db.execute(
            "SELECT * FROM txn WHERE state='approved' AND outcome='approved offline' AND kind='purchase' "
            "AND field55 != '' AND txn_id NOT IN (SELECT txn_id FROM uploads) ORDER BY batch, stan"
        )
        return [self._entry(r) for r in rows]

    def uploaded(self, txn_id: str, response_code: str) -> None:
        """The host acknowledged the upload of ``txn_id`` (0330): it is not sent again."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO uploads (txn_id, response_code) VALUES (?, ?)", (txn_id, response_code)
            )

    # -- upload queue -------------------------------------------------------------------------------------

    def upload_queue(self) -> list[JournalEntry]:
        """Captured offline transactions not yet exported: offline approvals, recovered torn ones, and
        refunds (the card paid offline, the terminal declined)."""
        rows = self._db.execute(
            "SELECT * FROM txn WHERE export_id IS NULL AND (state IN ('recovered', 'refund') OR "
            "(state='approved' AND outcome='approved offline')) ORDER BY batch, stan"
        )
        return [self._entry(r) for r in rows]

    def export(self, directory: str | Path) -> list[Path]:
        """Write the upload queue to ``directory`` as JSON-lines files, one per export; idempotent."""
        out_dir = Path(directory)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self._tx() as db:
            queued = [e.txn_id for e in self.upload_queue()]
            if queued:
                export_id = self._next(db, "export", 1)
                name = f"{self.terminal_id}-upload-{export_id:06d}.jsonl"
                db.execute("INSERT INTO exports (export_id, name) VALUES (?, ?)", (export_id, name))
                db.executemany("UPDATE txn SET export_id=? WHERE txn_id=?", [(export_id, t) for t in queued])
            self._fault("export:before-commit")
        self._fault("export:assigned")
        written: list[Path] = []
        for export_id, name in self._db.execute(
            "SELECT export_id, name FROM exports WHERE written=0 ORDER BY export_id"
        ).fetchall():
            path = out_dir / name
            self._write_export(path, export_id)
            self._fault("export:file-written")
            self._db.execute("UPDATE exports SET written=1 WHERE export_id=?", (export_id,))
            written.append(path)
        return written

    def _write_export(self, path: Path, export_id: int) -> None:
        rows = self._db.execute("SELECT * FROM txn WHERE export_id=? ORDER BY batch, stan", (export_id,))
        lines = []
        for row in rows:
            entry = self._entry(row)
            doc = asdict(replace(entry, pan_token=""))
            doc["created"] = entry.created.isoformat()
            doc["terminal_id"] = self.terminal_id
            lines.append(json.dumps(doc, sort_keys=True))
        atomic_write(path, ("\n".join(lines) + "\n").encode("utf-8"))
