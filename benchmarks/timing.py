"""Timing for the benchmarks: operations and their baselines measured in alternating slices.

Measuring one operation for a second and then its baseline for a second lets a change of machine load
between the two (other test suites, CI neighbours) show up as a false ratio. :func:`rates` measures every
case of a table in turn, several rounds over, and keeps each case's best slice, so that all of them see
the same conditions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["process_cpu_s", "rates", "slice_rate"]

ROUNDS = 6
SLICE_S = 0.12


def slice_rate(
    fn: Callable[[], object], seconds: float = SLICE_S, setup: Callable[[], None] | None = None
) -> float:
    """Calls per second of ``fn`` during one slice of ``seconds``; ``setup``, when given, runs untimed
    before each call (then each call is timed on its own)."""
    clock = time.perf_counter
    n, spent = 0, 0.0
    if setup is None:
        start = clock()
        while (spent := clock() - start) < seconds:
            for _ in range(10):
                fn()
            n += 10
        return n / spent
    while spent < seconds:
        setup()
        start = clock()
        fn()
        spent += clock() - start
        n += 1
    return n / spent


def rates(
    cases: Sequence[Callable[[], object]],
    setups: Sequence[Callable[[], None] | None] | None = None,
    *,
    rounds: int = ROUNDS,
    seconds: float = SLICE_S,
) -> list[float]:
    """Calls per second of each case: ``rounds`` rounds of one slice per case in turn, best slice kept."""
    chosen = list(setups) if setups is not None else [None] * len(cases)
    assert len(chosen) == len(cases)
    best = [0.0] * len(cases)
    for _ in range(rounds):
        for i, (fn, setup) in enumerate(zip(cases, chosen, strict=True)):
            best[i] = max(best[i], slice_rate(fn, seconds, setup))
    return best


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; tick-sampled)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
