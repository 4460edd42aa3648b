"""Clearing throughput: offline records cleared per second beside the raw AC-verification rate of the same
process in the same run, and a city day of 10 million offline transactions extrapolated.

``python -m benchmarks clearing`` (``CITYCARD_BENCH_CLEARING_N``: records, default 20 000;
``CITYCARD_BENCH_CLEARING_DB``: ``postgresql`` (default; a throw-away schema ``clearing_bench_*`` at
``tests.conftest``'s URL) or ``sqlite``; ``CITYCARD_BENCH_CLEARING_WORKERS``: clearing processes, default 1;
``CITYCARD_BENCH_CLEARING_CARDS``: cards, half at each bank, default 1 000 — a city's day spreads its
records over far more cards, a few each, which costs clearing more per record: a key derived and a card
and its TC history read for every few records instead of every hundred or thousand).
It sets up two banks (the issuer's own handlers, cards issued
without personalisation), registers a merchant and 50 terminals, funds each card's EC float, and stores N
0320 uploads as the acquirer keeps them (on PostgreSQL then vacuumed and checkpointed, as autovacuum and the
checkpointer would have left a day received over hours: ``_settle``); their TCs are computed from each
card's UDK (derived in the HSM as personalisation does) with ``crypto.cryptograms.generate_ac`` over CDOL1
data — the computation the chip makes. Then, in a new process (as ``citycard clearing run`` is one: not the
set-up's, whose heap its forked workers would inherit; ``_timed_run``), it measures:

- baseline: ``Hsm.verify_arqc`` over the same TCs (UDK → session key → 3DES MAC, what clearing must do
  once per record), in the process that runs clearing, before and after the run (the better of the two);
- clearing: ``ClearingEngine.run(day)`` over all N (staging, verification, classification, postings from
  each card's EC float, items), batches of at least 2 000 (whole cards), in ``WORKERS`` processes (the
  baseline is one process's rate either way; the machine has two cores); its phases as the engine times
  them (``ClearingEngine.timings``: staging, deciding, the online items, the end).

The ratio is clearing records per second over verifications per second (goal ≥ 0.3); 10 M is N's time
scaled linearly (goal ≤ 600 s).

The set-up of a large run takes minutes (400 000 cards and 1 M uploads: each upload's TC computed, its 0320
encoded, sealed and decoded into the columns clearing stages, as the acquirer does): it reports its progress
on stderr, and computes the uploads in one process per core (``os.cpu_count()``) while this one stores them.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from citycard.acquirer.model import TransactionKey
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.handlers import handle
from citycard.center.model import TerminalKind
from citycard.center.ports import CenterDeps
from citycard.clearing import BEIJING, ClearingPolicy, parse_tc
from citycard.codec.iso8583.messages import BatchUpload, Field60, IccData
from citycard.codec.money import bcd_amount
from citycard.codec.tlv import encode_many
from citycard.crypto.cryptograms import ac_input, generate_ac
from citycard.crypto.derivation import derive_pboc_session_key
from citycard.crypto.mac import mac_alg3_once
from citycard.db import Database, drop_schema, migrate
from citycard.db.acquirer_repositories import upload_columns, upload_record
from citycard.db.acquirer_tables import acquirer_uploads
from citycard.db.center_repositories import CenterUnitOfWork
from citycard.db.clearing_repositories import ClearingEngine
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.api import KeyUsage
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import DirectoryKeyStore, MemoryKeyStore, SoftHsm
from citycard.issuer.commands import AddBank, AddBinRange, AddProduct, IssueCards
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import bank_key_labels
from citycard.ledger.model import MAX_BATCH, Transfer

from tests.conftest import POSTGRES_URL

__all__ = ["main"]

DAY = dt.date(2026, 11, 25)
TERMINALS = 50
IAD = bytes.fromhex("07010103900000010A01000000500012345678")  # CVR and the EC balance part of a PBOC IAD
MAX_ISSUE = 100_000
"""Cards one ``IssueCards`` command may ask for."""
UPLOAD_CHUNK = 5_000
"""Uploads computed by one task of a worker and stored by one statement."""

Cards = list[tuple[str, str, bytes, int]]  # (bank, PAN, UDK, EC float account)
Check = tuple[str, str, bytes, bytes, int]  # (bank, PAN, AC input, field 55, ATC)


class _Progress:
    """``label: done/total (percent), seconds`` on stderr, at most every two seconds (over itself on a
    terminal, a line each otherwise), and once at the end: a set-up of minutes is not silent."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.start = self.shown = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.shown >= 2.0 or self.done >= self.total:
            self.shown = now
            line = (
                f"set-up: {self.label} {self.done:,}/{self.total:,} ({100 * self.done / self.total:.0f} %)"
                f" {now - self.start:.0f} s"
            )
            end = "\n" if self.done >= self.total or not self.tty else ""
            print(("\r" if self.tty else "") + line, end=end, file=sys.stderr, flush=True)


def _database(kind: str, tmp: Path) -> tuple[Database, str, str | None]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
        migrate(url)
        return Database.open(url), url, None
    schema = f"clearing_bench_{uuid.uuid4().hex[:8]}"
    migrate(POSTGRES_URL, schema=schema)
    return Database.open(POSTGRES_URL, schema=schema), POSTGRES_URL, schema


def _setup(db: Database, hsm: SoftHsm, per_bank: int) -> tuple[IssuerService, Cards]:
    service = IssuerService(lambda: db.unit_of_work(IssuerUnitOfWork), hsm, time.time_ns)
    cards: Cards = []
    progress = _Progress("cards issued", 2 * per_bank)
    for code, bin_ in (("ICBC", "621226"), ("BOC", "621661")):
        service.add_bank(AddBank(code, f"{code} city branch"))
        service.add_bin_range(AddBinRange(code, bin_))
        service.add_product(AddProduct(code, "anon-ec", "Anonymous EC", bin_, registered=False))
        issued = [  # in commands of at most MAX_ISSUE (a command's limit)
            card
            for start in range(0, per_bank, MAX_ISSUE)
            for card in service.issue_cards(
                IssueCards(code, "anon-ec", min(MAX_ISSUE, per_bank - start)), progress=progress
            )
        ]
        imk = hsm.get(bank_key_labels(code)["imk_ac"])
        derive = hsm.derive_icc_key  # each card's UDK from the bank's IMK in the HSM, as personalisation
        cards += [
            (code, c.pan, derive(imk, KeyUsage.EMV_AC, c.pan, c.psn), c.ec_float_account_id) for c in issued
        ]
    deps = CenterDeps(time.time_ns, SoftHsm(bytes(range(32))), lambda _: SoftHsm(bytes(32), MemoryKeyStore()))
    handle(
        AddMerchant("BENCHSHOP000001", "Bench shop", "5411", "Downtown", "ICBC"),
        db.unit_of_work(CenterUnitOfWork),
        deps,
    )
    for t in range(TERMINALS):
        handle(
            AddTerminal(f"B{t:07d}", "BENCHSHOP000001", TerminalKind.POS),
            db.unit_of_work(CenterUnitOfWork),
            deps,
        )
    with db.unit_of_work(IssuerUnitOfWork) as uow:  # the EC floats funded from the banks' cash
        banks = {b: uow.banks.get(b) for b in ("ICBC", "BOC")}
        funding = [
            Transfer(10**12 + i, banks[bank].cash_account_id, ec, 100_000)  # type: ignore[union-attr]
            for i, (bank, _, _, ec) in enumerate(cards)
        ]
        progress = _Progress("EC floats funded", len(funding))
        for start in range(0, len(funding), MAX_BATCH):
            uow.ledger.create_transfers(funding[start : start + MAX_BATCH])
            progress(len(funding[start : start + MAX_BATCH]))
        uow.commit()
    return service, cards


def _tc(udk: bytes, atc: int, amount: int, un: bytes) -> tuple[bytes, bytes]:
    tags = {
        "9F02": bcd_amount(amount), "9F03": bytes(6), "9F1A": bytes.fromhex("0156"), "95": bytes(5),
        "5F2A": bytes.fromhex("0156"), "9A": bytes.fromhex("261125"), "9C": b"\x00", "9F37": un,
        "82": bytes.fromhex("7C00"), "9F36": atc.to_bytes(2, "big"), "9F10": IAD,
    }  # fmt: skip
    data = ac_input(tags)
    # generate_ac's 3DES MAC (ISO 9797-1 algorithm 3) without keeping the key's cipher context: each session
    # key MACs one record here (the same MAC; _uploads checks the first against generate_ac)
    tc = mac_alg3_once(derive_pboc_session_key(udk, atc), data)
    order = ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A", "9F03")
    tags |= {"9F26": tc, "9F27": b"\x40"}
    return encode_many((t, tags[t]) for t in order), data


_WORK: tuple[RecordProtection, Cards, int] | None = None
"""What the upload workers compute from (set before they fork)."""


def _uploads(db: Database, protection: RecordProtection, cards: Cards, n: int) -> list[Check]:
    """N uploads, stored as the acquirer stores them (``SqlOfflineUploads.add``'s columns: the 0320
    sealed, and what clearing stages decoded, the PAN sealed alone); returns what the baseline verifies.
    Computed in chunks by one process per core (forked: the cards' UDKs and the protection keys inherited),
    stored here as they come."""
    udk = cards[0][2]
    field55, data = _tc(udk, 10, 10, bytes(4))
    assert parse_tc(field55).cryptogram == generate_ac(derive_pboc_session_key(udk, 10), data)
    chunks = range(0, n, UPLOAD_CHUNK)
    progress = _Progress("uploads stored", n)
    checks: list[Check] = []
    processes = os.cpu_count() or 1
    global _WORK
    _WORK = (protection, cards, n)
    try:
        if processes > 1 and n > UPLOAD_CHUNK:
            with multiprocessing.get_context("fork").Pool(processes) as pool:
                for rows, chunk_checks in pool.imap(_upload_chunk, chunks):
                    checks += _store(db, rows, chunk_checks, progress)
                pool.close()
                pool.join()  # reaped now: their CPU is the set-up's, not the clearing run's (_cpu)
        else:
            for start in chunks:
                checks += _store(db, *_upload_chunk(start), progress)
    finally:
        _WORK = None
    return checks[:20_000]


def _store(
    db: Database, rows: list[dict[str, object]], checks: list[Check], progress: _Progress
) -> list[Check]:
    with db.engine.begin() as c:
        c.execute(insert(acquirer_uploads), rows)
    progress(len(rows))
    return checks


def _upload_chunk(start: int) -> tuple[list[dict[str, object]], list[Check]]:
    """Uploads ``start`` … ``start + UPLOAD_CHUNK - 1`` (of ``_WORK``'s N): their rows and baseline checks."""
    assert _WORK is not None
    protection, cards, n = _WORK
    received = int(dt.datetime(2026, 11, 25, 20, 0, tzinfo=BEIJING).timestamp()) * 10**9
    rows: list[dict[str, object]] = []
    checks: list[Check] = []
    for i in range(start, min(n, start + UPLOAD_CHUNK)):
        bank, pan, udk, _ = cards[i % len(cards)]
        atc = 10 + i // len(cards)
        amount = (
            10 + i % 90
        )  # a fare or a small purchase: each card's float (limit 1 000 yuan) pays 1 000 of them
        field55, data = _tc(udk, atc, amount, i.to_bytes(4, "big"))
        tid = f"B{i % TERMINALS:07d}"
        stan, batch = i // TERMINALS % 999_999 + 1, i // TERMINALS // 999_999 + 1
        message = BatchUpload(
            mti="0320", pan=pan, processing_code="000000", amount_fen=amount, stan=stan,
            card_sequence_number="001", terminal_id=tid, merchant_id="BENCHSHOP000001", currency="156",
            icc=IccData(field55), field60=Field60("36", batch),
        )  # fmt: skip
        encoded = message.to_bytes()
        key = TransactionKey(tid, batch, stan)
        rows.append(
            {
                "terminal_id": tid, "batch": batch, "stan": stan, "merchant_id": "BENCHSHOP000001",
                "amount_fen": amount, "pan_masked": pan[:6] + "*" * 9 + pan[-4:],
                "sealed": protection.seal(encoded, upload_record(tid, batch, stan)),
                "received_ns": received + i,
            }
            | upload_columns(protection, key, encoded)
        )  # fmt: skip
        if i < 20_000:
            checks.append((bank, pan, data, field55, atc))
    return rows, checks


_SETTLED = (
    "acquirer_uploads",
    "issuer_cards",
    "ledger_accounts",
    "ledger_account_shards",
    "ledger_transfers",
)
"""The tables the set-up wrote: the day's uploads, and the cards and EC floats a city issued and funded
before that day."""


def _settle(db: Database) -> None:
    """PostgreSQL, after the set-up: the tables it wrote vacuumed and analyzed, and a checkpoint — the state a
    clearing run meets in a city, where the cards were issued and funded days before and the day's uploads
    came in over hours, autovacuum has been through them (their inserts and updates pass its thresholds) and
    the checkpointer has written them; not tables written seconds before, whose first reader sets each row's
    hint bits, whose funded accounts each keep a dead row version, and whose checkpoint runs during the
    clearing run. This machine's server runs without autovacuum: the set-up does what it would have done
    (docs/performance.md has the runs with and without)."""
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        for table in _SETTLED:
            c.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        c.exec_driver_sql("CHECKPOINT")


def _verify_rate(hsm: SoftHsm, checks: list[Check]) -> float:
    keys = {b: hsm.get(bank_key_labels(b)["imk_ac"]) for b in ("ICBC", "BOC")}
    tcs = [(keys[bank], pan, atc, data, parse_tc(f55).cryptogram) for bank, pan, data, f55, atc in checks]
    start = time.perf_counter()
    for key, pan, atc, data, tc in tcs:
        assert hsm.verify_arqc(key, pan, "01", atc, data, tc)
    return len(tcs) / (time.perf_counter() - start)


def _cpu() -> float:
    """CPU seconds of this process (every thread) and of its children that ended (the workers): the
    client's side of the run, PostgreSQL's server processes not counted."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed_run(
    url: str, schema: str | None, keys: Path, workers: int, checks: list[Check], n: int
) -> dict[str, Any]:
    """The measured part, in a process of its own as ``citycard clearing run`` is (not the set-up's, whose
    heap of cards and uploads its forked workers would inherit): the baseline before and after, the run, the
    rerun."""
    db = Database.open(url, schema=schema)
    try:
        hsm = SoftHsm(bytes(range(32)), DirectoryKeyStore(keys))
        before = _verify_rate(hsm, checks)
        engine = ClearingEngine(db, hsm, ClearingPolicy(), batch_size=2_000, workers=workers)
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), _cpu()
        summary = engine.run(DAY)  # staging included, in the workers as `clearing run` stages
        run_s, cpu_s = time.perf_counter() - start, _cpu() - cpu
        phases = dict(engine.timings)
        load = max(load, os.getloadavg()[0])
        assert engine.pending("20261125") == 0
        after = _verify_rate(hsm, checks)
        assert summary.offline_count == n, summary
        rerun_start = time.perf_counter()
        assert engine.run(DAY) == summary
        rerun_s = time.perf_counter() - rerun_start
    finally:
        db.close()
    return {
        "verify": max(before, after), "load": load, "run_s": run_s, "cpu_s": cpu_s, "phases": phases,
        "rerun_s": rerun_s,
    }  # fmt: skip


def main() -> None:
    n = int(os.environ.get("CITYCARD_BENCH_CLEARING_N", "20000"))
    kind = os.environ.get("CITYCARD_BENCH_CLEARING_DB", "postgresql")
    workers = int(os.environ.get("CITYCARD_BENCH_CLEARING_WORKERS", "1"))
    per_bank = int(os.environ.get("CITYCARD_BENCH_CLEARING_CARDS", "1000")) // 2
    with tempfile.TemporaryDirectory() as tmp:
        db, url, schema = _database(kind, Path(tmp))
        keys = Path(tmp) / "keys"
        keys.mkdir()
        try:
            hsm = SoftHsm(bytes(range(32)), DirectoryKeyStore(keys))
            t0 = time.perf_counter()
            _, cards = _setup(db, hsm, per_bank)
            checks = _uploads(db, RecordProtection.open(hsm), cards, n)
            _settle(db)
            generated_s = time.perf_counter() - t0
            db.close()
            with concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn")) as measure:
                result = measure.submit(_timed_run, url, schema, keys, workers, checks, n).result()
        finally:
            db.close()
            if schema is not None:
                drop_schema(POSTGRES_URL, schema)
    verify, load, run_s, cpu_s = result["verify"], result["load"], result["run_s"], result["cpu_s"]
    phases, rerun_s = result["phases"], result["rerun_s"]
    rate = n / run_s
    print(
        f"database: {kind}; {n} offline records over {2 * per_bank} cards; set-up {generated_s:.1f} s;"
        f" {workers} clearing process(es); load average (1 min) up to {load:.1f}"
    )
    print(f"{'measure':<44} {'value':>14}")
    print(f"{'AC verifications per second (HSM, baseline)':<44} {verify:>14,.0f}")
    print(f"{'clearing records per second':<44} {rate:>14,.0f}")
    print(f"{'ratio (goal >= 0.3)':<44} {rate / verify:>14.2f}")
    print(f"{'clearing run (s)':<44} {run_s:>14.1f}")
    print(f"{'  its client CPU per record (us, all threads)':<44} {cpu_s * 1e6 / n:>14.1f}")
    for name, label in (
        ("stage", "staging the uploads"),
        ("decide", "deciding"),
        ("online", "online items"),
        ("finish", "the cleared noted, totals"),
    ):
        print(f"{'  of which ' + label + ' (s)':<44} {phases[name]:>14.1f}")
    print(f"{'rerun of the day, nothing to do (s)':<44} {rerun_s:>14.1f}")
    print(f"{'10 M records extrapolated (s, goal <= 600)':<44} {run_s * 10_000_000 / n:>14,.0f}")
