"""Settlement of a cleared day of N items beside two baselines of the same run, and the memory it takes.

``python -m benchmarks settlement`` (``CITYCARD_BENCH_SETTLEMENT_N``: items, default 100 000;
``CITYCARD_BENCH_SETTLEMENT_DB``: ``postgresql`` (default; a throw-away schema ``settlement_bench_*`` at
``tests.conftest``'s URL) or ``sqlite``). It adds two banks (the issuer's own handler), writes N cleared
items of one day into clearing's ``clearing_items`` as clearing leaves them (two issuing banks' cards,
2 000 merchants of the ten industries and the two example capped MCC groups, acquired by the two banks;
purchases, fares, one refund in 50), puts each issuer's spending on its network settlement account, and
marks the day cleared. Then it measures, in one process:

- settlement: ``settle_day`` (the day folded once — fees, totals —, the postings and payouts, the day's
  record, the commit), then ``write_files`` as ``settle_day`` calls it (two bank clearing files, 2 000
  merchant statements, positions, industries, reconciliation, MANIFEST streamed from one query into a
  staged folder and published), timed apart;
- the rerun: nothing posted, the files written again (byte for byte the same: the MANIFESTs compared);
- baseline 1, the bare CSV rate: ``csv.writer`` writing as many rows of the same width (3 N: N statement
  rows and about 2 N bank rows) to a file, fsync-ed — what writing the files costs at the least;
- baseline 2, reading the items: PostgreSQL's ``COPY (SELECT … ORDER BY bank, merchant, id) TO STDOUT``
  of the day's items in the files' order (SQLite: the same SELECT fetched) — what reading them costs at the
  least. Both baselines run before and after settlement; the better of the two is kept.

It prints items per second of each, their ratios, and the peak resident memory of the process (which must
not grow with N: nothing of a file is held but its write buffer).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from citycard.db import Database, drop_schema, migrate
from citycard.db.clearing_tables import clearing_items, clearing_runs
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.durable import StagedFolder
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AddBank
from citycard.issuer.handlers import IssuerService
from citycard.ledger.model import Account, Transfer
from citycard.settlement import settle_day, write_files

from tests.conftest import POSTGRES_URL

__all__ = ["main"]

DAY = "20261125"
T0 = int(dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC).timestamp()) * 10**9
BANKS = ("ICBC", "BOC")
MERCHANTS = 2_000
MERCHANT_KINDS = (  # MCC, industry
    ("5411", "supermarket"), ("5812", "catering"), ("4131", "transport"), ("8062", "hospital"),
    ("5912", "pharmacy"), ("5541", "gas"), ("4900", "public_utility"), ("5942", "bookstore"),
    ("7832", "entertainment"), ("4722", "tourism"), ("5511", None), ("5045", None),
)  # fmt: skip
CHUNK = 5_000


def _database(kind: str, tmp: Path) -> tuple[Database, str | None]:
    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
        migrate(url)
        return Database.open(url), None
    schema = f"settlement_bench_{uuid.uuid4().hex[:8]}"
    migrate(POSTGRES_URL, schema=schema)
    return Database.open(POSTGRES_URL, schema=schema), schema


def _item(i: int) -> dict[str, Any]:
    merchant = i * 7919 % MERCHANTS
    mcc, industry = MERCHANT_KINDS[merchant % len(MERCHANT_KINDS)]
    issuer = BANKS[i % 2]
    refund = i % 50 == 49
    amount = 100 + i * 37 % 50_000 if mcc not in ("5511", "5045") else 1_000_000 + i % 7_000_000
    kind = "refund" if refund else "fare" if industry == "transport" else "purchase"
    return {
        "id": i + 1,
        "clearing_date": DAY,
        "source": "offline" if i % 3 else "online",
        "source_ref": f"B{merchant:07d}/1/{i}",
        "kind": kind,
        "sign": -1 if refund else 1,
        "amount_fen": amount,
        "issuer_bank": issuer,
        "acquirer_bank": BANKS[merchant % 2],
        "merchant_id": f"1041100{merchant:08d}",
        "terminal_id": f"B{merchant:07d}",
        "mcc": mcc,
        "industry": industry,
        "pan_masked": f"62122{i % 2}******{i % 10_000:04d}",
        "txn_ns": T0 + i * 1_000_000,
        "rrn": None if i % 3 else f"{i:012d}",
    }


def _setup(db: Database, n: int) -> None:
    service = IssuerService(
        lambda: db.unit_of_work(IssuerUnitOfWork), SoftHsm(bytes(range(32))), time.time_ns
    )
    for code in BANKS:
        service.add_bank(AddBank(code, f"{code} city branch"))
    spent = dict.fromkeys(BANKS, 0)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        row = _item(i)
        spent[row["issuer_bank"]] += row["sign"] * row["amount_fen"]
        rows.append(row)
        if len(rows) == CHUNK:
            with db.engine.begin() as c:
                c.execute(insert(clearing_items), rows)
            rows = []
    with db.engine.begin() as c:
        if rows:
            c.execute(insert(clearing_items), rows)
        c.execute(insert(clearing_runs).values(clearing_date=DAY, status="cleared"))
    with db.unit_of_work(IssuerUnitOfWork) as uow:  # the cards' spending, on each issuer's books
        uow.ledger.create_accounts([Account(9_000_001, code=10)])
        network = {b: uow.banks.get(b).settlement_account_id for b in BANKS}  # type: ignore[union-attr]
        uow.ledger.create_transfers(
            [Transfer(9_000_000 + k, 9_000_001, network[b], spent[b], code=21) for k, b in enumerate(BANKS)]
        )
        uow.commit()


def _csv_rate(n: int, folder: Path) -> float:
    """Rows per second of ``csv.writer`` writing 3 N rows of a statement's width to a file, fsync-ed."""
    row = ["D", 1234567, "offline", "B0000001/1/1234567", "purchase", 1, "2026-11-25T02:00:00.000Z"]
    row += ["B0000001", "621220******1234", "", "ICBC", "BOC", "104110000000001", "5411", "supermarket"]
    row += [12345, 47, 32, 4, 11, 12298]
    start = time.perf_counter()
    with open(folder / "baseline.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for i in range(3 * n):
            row[1] = i
            writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())
    spent = time.perf_counter() - start
    (folder / "baseline.csv").unlink()
    return n / spent


def _read_rate(db: Database, n: int) -> float:
    """Items per second of reading the day's items in the files' order, at the database's best."""
    query = (
        "SELECT * FROM clearing_items WHERE clearing_date = '20261125' "
        "ORDER BY acquirer_bank, merchant_id, id"
    )
    start = time.perf_counter()
    if db.engine.dialect.name == "postgresql":
        raw = db.engine.raw_connection()
        try:
            size = 0
            cur = raw.cursor()
            with cur.copy(f"COPY ({query}) TO STDOUT") as copy:
                for block in copy:
                    size += len(block)
            assert size > 0
        finally:
            raw.close()
    else:
        with db.engine.connect() as c:
            count = sum(1 for _ in c.execute(text(query)))
        assert count == n
    return n / (time.perf_counter() - start)


def _manifest(folder: Path) -> str:
    return hashlib.sha256((folder / "MANIFEST").read_bytes()).hexdigest()


def main() -> None:
    n = int(os.environ.get("CITYCARD_BENCH_SETTLEMENT_N", "100000"))
    kind = os.environ.get("CITYCARD_BENCH_SETTLEMENT_DB", "postgresql")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db, schema = _database(kind, folder)
        try:
            t0 = time.perf_counter()
            _setup(db, n)
            setup_s = time.perf_counter() - t0
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            csv_before, read_before = _csv_rate(n, folder), _read_rate(db, n)

            def uow() -> SettlementUnitOfWork:
                return db.unit_of_work(SettlementUnitOfWork)

            start = time.perf_counter()
            first = settle_day(uow, DAY, clock=time.time_ns)  # fold, post, record, commit
            posted_s = time.perf_counter() - start
            with StagedFolder(folder / "a") as stage:  # then the files, as settle_day writes them
                write_files(uow, first.record, stage)
            settle_s = time.perf_counter() - start
            assert first.posted and first.record.item_count == n
            start = time.perf_counter()
            with StagedFolder(folder / "b") as stage:
                again = settle_day(uow, DAY, clock=time.time_ns, sink=stage)
            rerun_s = time.perf_counter() - start
            assert not again.posted and _manifest(folder / "a") == _manifest(folder / "b")
            size = sum(p.stat().st_size for p in (folder / "a").iterdir())
            csv_after, read_after = _csv_rate(n, folder), _read_rate(db, n)
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        finally:
            db.close()
            if schema is not None:
                drop_schema(POSTGRES_URL, schema)
    csv_rate, read_rate = max(csv_before, csv_after), max(read_before, read_after)
    rate = n / settle_s
    load = os.getloadavg()
    print(f"database: {kind}; {n} items, {MERCHANTS} merchants, 2 banks; set-up {setup_s:.1f} s")
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; files {size / 1e6:,.1f} MB")
    print(f"{'measure':<52} {'value':>14}")
    print(f"{'baseline: bare CSV rows/s (3 rows an item) as items/s':<52} {csv_rate:>14,.0f}")
    print(f"{'baseline: items read in the files order, items/s':<52} {read_rate:>14,.0f}")
    print(f"{'settle_day items/s (fold, post, record, files)':<52} {rate:>14,.0f}")
    print(f"{'ratio to the bare CSV rate':<52} {rate / csv_rate:>14.2f}")
    print(f"{'settle_day (s)':<52} {settle_s:>14.1f}")
    print(f"{'  of which fold, post, record, commit (s)':<52} {posted_s:>14.1f}")
    print(f"{'  of which the files (s)':<52} {settle_s - posted_s:>14.1f}")
    print(f"{'rerun: nothing posted, files again, same bytes (s)':<52} {rerun_s:>14.1f}")
    print(f"{'10 M items extrapolated (s)':<52} {settle_s * 10_000_000 / n:>14,.0f}")
    print(
        f"{'peak RSS before / after settling (MB)':<52} {rss_before / 1024:>6,.0f} / {rss_after / 1024:,.0f}"
    )
