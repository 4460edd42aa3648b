"""The clone check's shortcut over a card's history (``rules._CardTcs``) skips only TCs that cannot fail."""

from __future__ import annotations

import random
from datetime import date, timedelta

from citycard.clearing.rules import SeenTc, _CardTcs


def _goes_back(other: SeenTc, atc: int, day: date) -> bool:
    return (other.atc > atc and other.txn_date < day) or (other.atc < atc and other.txn_date > day)


def test_may_go_back_keeps_every_tc_that_fails_the_check() -> None:
    rng = random.Random(9)
    start = date(2026, 11, 1)
    skipped = 0
    for _ in range(2_000):
        history = _CardTcs()
        for _ in range(rng.randrange(0, 8)):
            atc, day = rng.randrange(0, 40), start + timedelta(days=rng.randrange(0, 10))
            history.add(SeenTc(atc, b"\x00" * 8, "T1", 100, day, f"T1/1/{atc}"))
        atc, day = rng.randrange(0, 40), start + timedelta(days=rng.randrange(0, 10))
        compared = history.may_go_back(atc, day)
        failing = [s for s in history.tcs if _goes_back(s, atc, day)]
        if failing:
            assert compared == history.tcs  # all of them, in order: the first failing one is reported
        else:
            assert compared in ([], history.tcs)
            skipped += compared == [] and bool(history.tcs)
    assert skipped > 100  # the shortcut is taken


def test_a_card_in_atc_order_is_compared_with_nothing() -> None:
    history = _CardTcs()
    day = date(2026, 11, 25)
    for atc in range(1, 50):
        assert history.may_go_back(atc, day) == []
        history.add(SeenTc(atc, b"\x01" * 8, "T1", 100, day, f"T1/1/{atc}"))
    assert len(history.may_go_back(10, day - timedelta(days=1))) == 49  # lower ATC, earlier day: no shortcut
