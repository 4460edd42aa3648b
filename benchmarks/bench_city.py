"""The demo city of ``citycard up --demo``: seeding time, and the simulated terminals' traffic rate.

``python -m benchmarks city``. In a temporary ``CITYCARD_HOME``, on SQLite (and on PostgreSQL in a schema of
its own when ``127.0.0.1:5432`` answers):

- the seeding of the whole city (:func:`citycard.city.seed.seed_city`), each step timed, beside a baseline
  in the same run on the same kind of database: the issuer issuing 10,100 unregistered cards in its own
  batches (500 a transaction, no chip image) — the set-based floor of card issuance;
- a second seeding (finds everything, adds nothing);
- on SQLite, the platform of ``citycard up`` with the simulated terminals for :data:`TRAFFIC_S` seconds
  (:func:`citycard.city.runner.serve`, no web): approved transactions per second through the chain.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from citycard import bootstrap
from citycard.config import Settings
from citycard.net.loop import run as run_loop

if TYPE_CHECKING:
    from citycard.city.seed import Progress

__all__ = ["main"]

TRAFFIC_S = 30.0
PG_URL = os.environ.get("CITYCARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _steps() -> tuple[Progress, list[tuple[str, float]]]:
    marks: list[tuple[str, float]] = []

    def step(label: str, total: int) -> Callable[[int], None]:
        marks.append((label, time.perf_counter()))
        return lambda n: None

    return step, marks


def _seed(kind: str, home: Path, url: str, schema: str | None) -> None:
    from citycard.city.seed import seed_city
    from citycard.db import Database, migrate
    from citycard.issuer.commands import AddBank, AddBinRange, AddProduct, IssueCards
    from citycard.issuer.handlers import IssuerService

    os.environ["CITYCARD_HOME"] = str(home)
    s = Settings()
    migrate(url, schema=schema)
    database = Database.open(url, schema=schema)
    try:
        hsm = bootstrap.build_hsm(s, create_key=True)
        issuer = bootstrap.Issuer(bootstrap.issuer_service(s, hsm, database), database, home)
        center = bootstrap.Center(s, database, hsm)
        bare = IssuerService(issuer.unit_of_work, hsm, time.time_ns)
        bare.add_bank(AddBank("BASE", "baseline bank"))
        bare.add_bin_range(AddBinRange("BASE", "629999"))
        bare.add_product(AddProduct("BASE", "anon-ec", "baseline", "629999", False))
        start = time.perf_counter()
        bare.issue_cards(IssueCards("BASE", "anon-ec", 10_100))
        baseline = time.perf_counter() - start
        step, marks = _steps()
        report = seed_city(issuer, center, step)
        end = time.perf_counter()
        again = seed_city(issuer, center)
        print(f"\n{kind}: baseline, 10,100 unregistered cards in the issuer's batches: {baseline:.1f} s")
        print(
            f"{kind}: the demo city seeded in {report.seconds:.1f} s "
            f"({report.seconds / baseline:.1f} x baseline)"
        )
        for (label, at), (_, then) in zip(marks, [*marks[1:], ("end", end)], strict=True):
            print(f"  {label:<34} {then - at:6.1f} s")
        print(f"{kind}: second seeding (nothing added: {again.added == 0}) {again.seconds:.1f} s")
        if kind == "sqlite":
            _traffic(s, issuer, center)
    finally:
        database.close()


def _traffic(s: Settings, issuer: bootstrap.Issuer, center: bootstrap.Center) -> None:
    from citycard.city.runner import serve

    free = ("127.0.0.1", 0)
    stopping = asyncio.Event()

    async def run() -> None:
        running = await serve(
            s,
            issuer,
            center,
            stopping,
            acquirer=free,
            switch=free,
            issuers={},
            web=None,
            for_s=TRAFFIC_S,
            pace_s=0.05,
        )
        assert running.traffic is not None
        print(
            f"sqlite: {TRAFFIC_S:g} s of traffic, 13 terminals, pace 0.05 s: {running.traffic.stats.line()}"
        )

    run_loop(run())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _seed("sqlite", Path(tmp) / "sqlite", f"sqlite:///{tmp}/sqlite.db", None)
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
        engine.dispose()
    except Exception:
        print("\npostgresql: not reachable, skipped")
        return
    from citycard.db import drop_schema

    schema = f"demo_bench_{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _seed("postgresql", Path(tmp), PG_URL, schema)
    finally:
        drop_schema(PG_URL, schema)


if __name__ == "__main__":
    main()
