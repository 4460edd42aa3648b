"""Child process for the crash tests: one validator tap (or an export) with the process killed
(``os._exit``) at a named durable step. Usage: killrun.py KEYS IMAGE DB FAULT_POINT FARE_FEN [EXPORT_DIR];
with CITYCARD_TEST_SYNC_OUTCOMES=0 in the environment the journal is a validator's (one fsync per tap)."""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
from pathlib import Path

from citycard.chip.card import Card
from citycard.chip.image import CardImage
from citycard.demokeys import DemoKeys
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.pos.terminal import PosTerminal
from citycard.sqlite_journal import SqliteJournal

NOW = dt.datetime(2026, 11, 25, 9, 30, 0)
SYNC_ENV = "CITYCARD_TEST_SYNC_OUTCOMES"


def terminal(keys_path: str, db: str, point: str) -> PosTerminal:
    keys = DemoKeys.from_json(Path(keys_path).read_bytes())
    rid, index, key = keys.ca_public_key()
    config = TerminalConfig(capks=(CaPublicKey(bytes.fromhex(rid), index, key.modulus, key.exponent),))

    def fault(at: str) -> None:
        if at == point:
            os._exit(137)

    rnd = random.Random(5)
    return PosTerminal(
        config,
        SqliteJournal(db, "CITY0001", fault=fault, sync_outcomes=os.environ.get(SYNC_ENV, "1") != "0"),
        clock=lambda: NOW,
        rng=rnd.randbytes,
    )


def persistent_card(image_path: str) -> Card:
    path = Path(image_path)
    card = Card(CardImage.from_json(path.read_bytes()), random.Random(9).randbytes)
    card.power_on("contactless")
    inner = card.transmit

    def transmit(apdu: bytes) -> bytes:
        response = inner(apdu)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(card.image.to_json())
        os.replace(tmp, path)
        return response

    card.transmit = transmit  # type: ignore[method-assign]
    return card


def main(argv: list[str]) -> None:
    keys, image, db, point, fare = argv[:5]
    pos = terminal(keys, db, point)
    if len(argv) > 5:
        pos.journal.export(argv[5])  # type: ignore[attr-defined]
        return
    result = pos.validate(persistent_card(image).transmit, int(fare))
    print(result.outcome.kind.value)


if __name__ == "__main__":
    main(sys.argv[1:])
