"""Child process of the clearing crash test: ``killclear.py URL SCHEMA KEYS DAY POINT NTH BATCH`` runs
clearing of DAY and kills itself (``os._exit(137)``, as kill -9 would: no clean-up, no commit) the NTH time
it reaches the fault point POINT (``-`` for SCHEMA on SQLite)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from citycard.clearing import ClearingPolicy
from citycard.db import Database
from citycard.db.clearing_repositories import ClearingEngine
from citycard.hsm.soft import DirectoryKeyStore, SoftHsm


def main(url: str, schema: str, keys: str, day: str, point: str, nth: str, batch: str) -> None:
    database = Database.open(url, schema=None if schema == "-" else schema)
    hsm = SoftHsm(bytes(range(32)), DirectoryKeyStore(Path(keys)))
    seen = [0]

    def fault(at: str) -> None:
        if at == point:
            seen[0] += 1
            if seen[0] == int(nth):
                os._exit(137)

    engine = ClearingEngine(database, hsm, ClearingPolicy(), batch_size=int(batch), fault=fault)
    engine.run(dt.date.fromisoformat(day))
    database.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
