"""A bus tap with the fare engine beside the same tap at a fixed fare, both measured in this run:
select (PPSE, application), the transit file read (two READ RECORD), the fare rules, the new trip record
staged (UPDATE CAPP DATA CACHE), the GPO with fDDA, and — for the validator rows — the SQLite journal:
two durable commits (every terminal's journal: the baseline) or one (a validator's journal,
``sync_outcomes=False``: the pending row fsynced, the outcome durable with the next commit). Reported:
medians, the engine's extra cost over the fixed fare, and each median as a share of the 300 ms gate
budget (the issue's goal: a tap within 1 % of it). Run: ``python -m benchmarks transit``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sqlite3
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from citycard.chip.card import Card
from citycard.chip.image import CardImage
from citycard.chip.personalise import ProductProfile, personalise
from citycard.demokeys import DemoKeys
from citycard.hsm.api import KeyUsage
from citycard.hsm.soft import SoftHsm
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
from citycard.kernel.runner import run
from citycard.pos.terminal import PosTerminal, validator_config
from citycard.sqlite_journal import SqliteJournal
from citycard.transit import Concession, FareHook, Tap, TripRecord, TripSealer, decide, parse_network

GATE_BUDGET_MS = 300.0
NOW = dt.datetime(2026, 11, 25, 8, 0, 0)
ROUNDS = 200
APP_ROUNDS = 50
FARES = Path(__file__).parents[1] / "docs" / "examples" / "fares.toml"


def _kernel_taps(image: bytes, config: TerminalConfig, network, sealer: TripSealer, engine: bool) -> float:
    """Median of a kernel + card tap (no journal): with the fare engine (line 1, flat) or a fixed 2.00."""
    rnd = random.Random(1)
    times: list[float] = []
    for _ in range(ROUNDS):
        card = Card(CardImage.from_json(image), rnd.randbytes)
        card.power_on("contactless")
        hook = FareHook(network, Tap(NOW, 1, 0, False, "BUS00001"), sealer) if engine else None
        txn = Transaction(
            TransactionKind.PURCHASE, NOW, 0 if engine else 200, interface="contactless", extension=hook
        )
        kernel = Kernel(config, txn, rnd.randbytes)
        start = time.perf_counter()
        outcome = run(kernel, card.transmit)
        times.append(time.perf_counter() - start)
        assert outcome.approved, outcome.reason
        assert hook is None or (hook.fare is not None and hook.fare.amount_fen == 200)
    return statistics.median(times)


MODES = ("fixed, two fsyncs", "engine, two fsyncs", "engine, one fsync")


def _validator_taps(image: bytes, config: TerminalConfig, network, sealer: TripSealer) -> dict[str, float]:
    """Medians of a whole tap through ``PosTerminal.validate`` and its SQLite journal (WAL): a fixed fare
    and the fare engine with the journal of every terminal (two fsyncs per tap), and the fare engine with a
    validator's journal (one fsync per tap), taps alternating between the three (each with its own journal)
    so that all see the same disk load; a new rider every two minutes (the double-tap guard idle)."""
    rnd = random.Random(2)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        now = [NOW]
        terminals = {
            mode: PosTerminal(
                config,
                SqliteJournal(Path(tmp) / f"{i}.db", "BUS00001", sync_outcomes=mode != MODES[2]),
                clock=lambda: now[0],
                rng=rnd.randbytes,
            )
            for i, mode in enumerate(MODES)
        }
        for _ in range(APP_ROUNDS):
            now[0] += dt.timedelta(minutes=2)
            for mode, pos in terminals.items():
                engine = mode != MODES[0]
                card = Card(CardImage.from_json(image), rnd.randbytes)
                card.power_on("contactless")
                hook = FareHook(network, Tap(now[0], 1, 0, False, "BUS00001"), sealer) if engine else None
                start = time.perf_counter()
                result = pos.validate(card.transmit, 200, extension=hook)
                times[mode].append(time.perf_counter() - start)
                assert result.approved and result.entry is not None and result.entry.amount_fen == 200
        for pos in terminals.values():
            pos.journal.close()  # type: ignore[attr-defined]
    return {mode: statistics.median(values) for mode, values in times.items()}


def _fsyncs() -> float:
    """Baseline for the disk: one 4 KiB append to a file and its fsync, what any durable write costs."""
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        fd = os.open(Path(tmp) / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for _ in range(APP_ROUNDS):
                start = time.perf_counter()
                os.write(fd, bytes(4096))
                os.fsync(fd)
                times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
    return statistics.median(times)


def _two_commits() -> float:
    """Baseline for the validator rows: two durable SQLite commits (WAL, synchronous=FULL) of one small row
    each, what the journal does per fare (the pending row before the GPO, the approval after)."""
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "commits.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, state TEXT)")
        for i in range(APP_ROUNDS):
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, 'pending')", (i,))
            db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE t SET state='approved' WHERE id=?", (i,))
            db.execute("COMMIT")
            times.append(time.perf_counter() - start)
        db.close()
    return statistics.median(times)


def _rules_alone(network) -> float:
    """Median of the fare rules on their own: decode both records, decide, encode the new record."""
    concession, trip = Concession().encode(), TripRecord().encode()
    times: list[float] = []
    for i in range(ROUNDS * 10):
        now = NOW + dt.timedelta(minutes=i)
        start = time.perf_counter()
        fare = decide(network, Tap(now, 1), Concession.decode(concession), TripRecord.decode(trip))
        fare.record.encode()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    keys = DemoKeys.generate(random.Random(7).randbytes)
    rid, index, ca = keys.ca_public_key()
    config = TerminalConfig(capks=(CaPublicKey(bytes.fromhex(rid), index, ca.modulus, ca.exponent),))
    validator = replace(validator_config(config), terminal_id=b"BUS00001")
    network = parse_network(FARES.read_text())
    image = personalise(ProductProfile(opening_balance_fen=100_000, transit=True), 1, keys).to_json()
    hsm = SoftHsm(bytes(range(32)))
    sealer = TripSealer(hsm, hsm.generate_key("transit/tk", KeyUsage.EMV_OTHER))
    rules = _rules_alone(network)
    fixed_kernel = _kernel_taps(image, validator, network, sealer, engine=False)
    engine_kernel = _kernel_taps(image, validator, network, sealer, engine=True)
    apps = _validator_taps(image, config, network, sealer)
    fixed_app, engine_app, one_sync = (apps[mode] for mode in MODES)
    commits = _two_commits()
    fsync = _fsyncs()
    print(f"kernel rows: {ROUNDS} taps each, fresh card; validator rows: {APP_ROUNDS} taps each, alternating")
    head = f"{'tap':<52} {'median ms':>9} {'x fixed':>7} {'/300ms gate':>11}"
    print(head)
    print("-" * len(head))
    rows = [
        ("fare rules alone (decode, decide, encode)", rules, None),
        ("kernel + card, fixed fare 2.00 (8 APDUs)", fixed_kernel, fixed_kernel),
        ("kernel + card, fare engine + MAC (12 APDUs)", engine_kernel, fixed_kernel),
        ("validator + journal, fixed fare 2.00", fixed_app, fixed_app),
        ("validator + journal, fare engine", engine_app, fixed_app),
        ("validator + one-fsync journal, fare engine", one_sync, fixed_app),
        ("baseline: two durable SQLite commits (WAL, FULL)", commits, fixed_app),
        ("baseline: one 4 KiB write + fsync", fsync, fixed_app),
    ]
    for label, median, base in rows:
        ratio = f"{median / base:>7.2f}" if base else f"{'':>7}"
        print(f"{label:<52} {median * 1e3:>9.3f} {ratio} {median * 1e3 / GATE_BUDGET_MS:>11.3%}")


if __name__ == "__main__":
    main()
