"""The event loop every network process of the platform runs on: uvloop's (libuv), not the standard one.

The hosts spend most of their time per message in the event loop's own machinery (a read, a task, a
timer handle, a write per frame on every hop). uvloop does the same work in C: measured in the ``e2e``
benchmark with every other line the same, the chain's CPU per authorization fell by about 12 % (median
pair; lower in eight of nine alternating pairs, ``docs/performance.md``). Behaviour is asyncio's: the same
streams, timeouts, thread hand-offs (``run_in_executor``, ``call_soon_threadsafe``) and signal handlers.

- :func:`run`: ``asyncio.run`` on a uvloop loop (``citycard serve``, ``citycard up``, the CLI's one-shot
  exchanges, the benchmarks' hosts).
- :func:`new_event_loop`: a uvloop loop for a thread that runs one for its lifetime (the terminal's link,
  the demo's platform).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

__all__ = ["new_event_loop", "run"]

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new uvloop loop, then close the loop (as ``asyncio.run`` does)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
