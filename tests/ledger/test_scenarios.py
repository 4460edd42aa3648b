"""The shared ledger scenarios (``scenarios.py``) on the in-memory ledger."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from citycard.ledger import InMemoryLedger, LedgerRepository, check_invariants

from tests.ledger.scenarios import SCENARIOS, TIMED_SCENARIOS, ManualClock


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario_in_memory(scenario: Callable[[LedgerRepository], None]) -> None:
    ticks = itertools.count(1_700_000_000_000_000_000, 1_000)
    ledger = InMemoryLedger(lambda: next(ticks))
    scenario(ledger)
    check_invariants(ledger.state)
    assert ledger.audit() == []


@pytest.mark.parametrize("scenario", TIMED_SCENARIOS, ids=lambda s: s.__name__)
def test_timed_scenario_in_memory(scenario: Callable[[LedgerRepository, ManualClock], None]) -> None:
    clock = ManualClock()
    ledger = InMemoryLedger(clock)
    scenario(ledger, clock)
    check_invariants(ledger.state)
    assert ledger.audit() == []
