"""Group commit for the hosts: requests that wait while the database is busy go to it together.

A host's handler awaits :meth:`Groups.submit`; the item waits in the front end until a worker thread is
free, and a free worker takes everything that waits (up to ``max_group``, spread over the free workers)
and runs ``run`` on the group in one call — one database transaction or one statement for all of them.
So under load a transaction carries many requests (one thread hand-off, one ``BEGIN``/``COMMIT``, one
commit's WAL flush for all), and one request alone is a group of one: nobody waits for a group to fill.

``run`` answers every item, in order, with its result or the exception that item met; it decides what a
failure of the whole group means (the issuer and the acquirer roll back and run each item alone, so one
item's failure never costs another its answer). An exception raised by ``run`` itself (a bug) is every
item's answer. Nobody is answered before ``run`` returns, i.e. before the group's commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Final, Generic, TypeVar

__all__ = ["MAX_GROUP_SIZE", "Groups", "grouped_line"]

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_GROUP_SIZE: Final = 256
"""The largest group any host may ask for (each host's own bound is smaller)."""


class Groups(Generic[Item, Result]):
    """Items handed to ``run`` in groups on ``executor`` (module docstring), at most ``workers`` groups at
    once. ``order``: a key to sort each group by (stable, so items of one key keep their order of arrival),
    e.g. the card, so that concurrent groups lock rows in one order."""

    def __init__(
        self,
        executor: Executor,
        run: Callable[[Sequence[Item]], Sequence[Result | Exception]],
        *,
        workers: int,
        max_group: int,
        order: Callable[[Item], str] | None = None,
    ) -> None:
        assert workers > 0 and 0 < max_group <= MAX_GROUP_SIZE, (workers, max_group)
        self._executor = executor
        self._run = run
        self._workers = workers
        self._max_group = max_group
        self._order = order
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running = 0
        self.groups = 0
        """Groups run since start."""
        self.items = 0
        """Items submitted since start."""

    def counts(self) -> tuple[int, int]:
        """(groups run, items submitted) since start: their ratio is the mean group, what one transaction
        carried on average — the figure that sets a host's cost per request under load."""
        return self.groups, self.items

    async def submit(self, item: Item) -> Result:
        """``item``'s result once its group has run (its exception raised here)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self.items += 1
        self._start()
        return await future

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and self._running < self._workers:
            share = -(-len(self._waiting) // (self._workers - self._running))  # spread over free workers
            size = min(self._max_group, share)
            group, self._waiting = self._waiting[:size], self._waiting[size:]
            if self._order is not None:
                order = self._order
                group.sort(key=lambda waiting: order(waiting[0]))
            self._running += 1
            self.groups += 1
            work = loop.run_in_executor(self._executor, self._run, [item for item, _ in group])
            work.add_done_callback(partial(self._done, group))

    def _done(
        self,
        group: Sequence[tuple[Item, asyncio.Future[Result]]],
        work: asyncio.Future[Sequence[Result | Exception]],
    ) -> None:
        self._running -= 1
        failed = work.exception() if not work.cancelled() else asyncio.CancelledError()
        results: Sequence[Result | BaseException] = work.result() if failed is None else [failed] * len(group)
        assert len(results) == len(group), (len(results), len(group))
        for (_, future), result in zip(group, results, strict=True):
            if future.done():  # its handler was cancelled (stopped past the drain time)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._start()


def grouped_line(grouped: Mapping[str, tuple[int, int]]) -> str:
    """``{"begins": (groups, items), …}`` as one line: ``begins 1204 in 352 transactions (3.4 each), …``."""
    return ", ".join(
        f"{kind} {items} in {groups} transactions ({items / groups:.1f} each)" if groups else f"{kind} none"
        for kind, (groups, items) in grouped.items()
    )
