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
- :func:`server_heap`: the cyclic garbage collector set for a serving process once its hosts are up.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import uvloop

__all__ = ["YOUNG_COLLECTION_EVERY", "new_event_loop", "run", "server_heap"]

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new uvloop loop, then close the loop (as ``asyncio.run`` does)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


YOUNG_COLLECTION_EVERY: Final = 10_000
"""Net allocations of container objects between two collections of the youngest generation while serving
(Python's default: 700)."""

_heap_lock = threading.Lock()
_heap_depth = 0
_heap_threshold: tuple[int, int, int] = (700, 10, 10)


@contextmanager
def server_heap() -> Iterator[None]:
    """While serving: every object that exists now (modules, the composition root's hosts, keys, caches,
    the ORM's metadata) moved out of the cyclic garbage collector's sight (``gc.freeze``), and the youngest
    generation collected after :data:`YOUNG_COLLECTION_EVERY` net allocations instead of 700; both undone
    on leaving (nested uses: by the outermost).

    Why: each unit of work leaves its ORM session in reference cycles (session, transaction, connection,
    event dispatchers: some 40 objects, and what they still hold), which only the collector frees. At
    Python's defaults the hosts under load collected every few milliseconds, promoting into the older
    generations and now and then walking the whole long-lived heap (~100 ms a time): 0.12-0.21 ms of CPU
    per authorization across the ``e2e`` benchmark's Python processes at 60 terminals, 5-6 % of all its
    CPU, timed with ``gc.callbacks``; with this, 0.01 ms (``docs/performance.md``). The garbage still goes,
    in fewer young collections."""
    global _heap_depth, _heap_threshold
    with _heap_lock:
        if _heap_depth == 0:
            _heap_threshold = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(YOUNG_COLLECTION_EVERY, *_heap_threshold[1:])
        _heap_depth += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_depth -= 1
            if _heap_depth == 0:
                gc.set_threshold(*_heap_threshold)
                gc.unfreeze()
