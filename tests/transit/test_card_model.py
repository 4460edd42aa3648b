"""The real card and kernel against the fare rules as a model (Hypothesis): for any day of taps, the card's
EC balance goes down by exactly what the rules charge, its trip record is the one the rules wrote, and a
refused tap changes nothing on the card (not even its ATC)."""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.chip.image import cell_key
from citycard.chip.pboc import AID_DEBIT
from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
from citycard.kernel.runner import run
from citycard.pos.terminal import validator_config
from citycard.transit import Concession, FareHook, Tap, TripRecord, decide

from tests.kernel.cardlab import new_card, terminal_config

TRANSIT = cell_key(AID_DEBIT, "transit")
ATC = cell_key(AID_DEBIT, "atc")
BALANCE = cell_key(AID_DEBIT, "ec_balance")
START = dt.datetime(2026, 11, 25, 6, 0)

taps = st.lists(
    st.tuples(st.integers(0, 200), st.sampled_from([1, 5, 12]), st.integers(1, 7), st.booleans()),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(taps)
def test_the_card_follows_the_rules(network, sealer, history):
    card = new_card("contactless", balance_fen=3_000, transit=True)
    config = validator_config(terminal_config(terminal_id=b"BUS00001"))
    rng = random.Random(5).randbytes
    record, now = TripRecord(), START
    for seconds_later, line_id, stop, out in history:
        now += dt.timedelta(seconds=seconds_later * 30)
        line = network.lines[line_id]
        tap = Tap(
            now,
            line_id,
            min(stop, len(line.stops)) if line.distance else 0,
            out and line.distance,
            "BUS00001",
        )
        expected = decide(network, tap, Concession(), record)
        before = dict(card.image.nvm)
        hook = FareHook(network, tap, sealer)
        txn = Transaction(TransactionKind.PURCHASE, now, 0, interface="contactless", extension=hook)
        outcome = run(Kernel(config, txn, rng), card.transmit)
        if expected.refused:
            assert not outcome.approved and card.image.nvm == before
            continue
        assert outcome.approved, outcome.reason
        assert card.image.nvm[BALANCE] == before[BALANCE] - expected.amount_fen
        assert card.image.nvm[ATC] == before[ATC] + 1
        assert TripRecord.decode(bytes.fromhex(card.image.nvm[TRANSIT][1])[:32]) == expected.record
        record = expected.record
