"""``hosts.groups``: what arrives while the workers are busy runs together; each item gets its own result
or exception, in order; one item alone is not kept waiting; a failing run answers every item of its group
with the error and the next group runs; the counts of groups and items, and their line for a host's log."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from citycard.hosts.groups import Groups, grouped_line


class _Recorder:
    """A run that records its groups and can be held (the first group blocks until released)."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self, items: Sequence[str]) -> list[str | Exception]:
        self.groups.append(list(items))
        self.started.set()
        self.release.wait(5)
        if "bug" in items:
            raise RuntimeError("a bug in the run")
        return [ValueError(item) if item.startswith("bad") else item.upper() for item in items]


def test_items_that_wait_run_together_in_order_each_with_its_own_result() -> None:
    async def scenario() -> None:
        run = _Recorder()
        with ThreadPoolExecutor(2) as pool:
            groups: Groups[str, str] = Groups(pool, run, workers=1, max_group=3, order=lambda item: item[-1])
            first = asyncio.ensure_future(groups.submit("a0"))
            await asyncio.get_running_loop().run_in_executor(None, run.started.wait, 5)
            rest = [asyncio.ensure_future(groups.submit(item)) for item in ("b2", "bad1", "c1", "d0")]
            await asyncio.sleep(0)
            run.release.set()
            assert await first == "A0"
            assert await rest[0] == "B2" and await rest[2] == "C1" and await rest[3] == "D0"
            with pytest.raises(ValueError, match="bad1"):
                await rest[1]
        # the first alone; then the four waiting, at most three at a time, each group sorted by its key
        # (stable: bad1 before c1, as they came)
        assert run.groups == [["a0"], ["bad1", "c1", "b2"], ["d0"]]
        assert groups.groups == 3 and groups.items == 5
        assert groups.counts() == (3, 5)

    asyncio.run(scenario())


def test_a_run_that_raises_answers_its_whole_group_and_the_next_group_runs() -> None:
    async def scenario() -> None:
        run = _Recorder()
        run.release.set()
        with ThreadPoolExecutor(1) as pool:
            groups: Groups[str, str] = Groups(pool, run, workers=1, max_group=8)
            outcomes = await asyncio.gather(groups.submit("x"), groups.submit("bug"), return_exceptions=True)
            assert outcomes[0] == "X" or isinstance(outcomes[0], RuntimeError)  # with the bug, or alone
            assert isinstance(outcomes[1], RuntimeError)
            assert await groups.submit("y") == "Y"

    asyncio.run(scenario())


def test_waiting_items_are_spread_over_the_free_workers() -> None:
    async def scenario() -> None:
        run = _Recorder()
        with ThreadPoolExecutor(4) as pool:
            groups: Groups[str, str] = Groups(pool, run, workers=2, max_group=64)
            first = asyncio.ensure_future(groups.submit("a"))
            await asyncio.get_running_loop().run_in_executor(None, run.started.wait, 5)
            rest = [asyncio.ensure_future(groups.submit(item)) for item in "bcdef"]
            await asyncio.sleep(0)
            run.release.set()
            assert [await f for f in (first, *rest)] == list("ABCDEF")
        # "b" took the second worker at once; c-f waited for a free worker and went together
        assert run.groups[0] == ["a"] and ["b"] in run.groups
        assert sorted(len(g) for g in run.groups) == [1, 1, 4]

    asyncio.run(scenario())


def test_the_groups_line_gives_each_kinds_requests_per_transaction() -> None:
    line = grouped_line({"begins": (352, 1204), "answers": (0, 0)})
    assert line == "begins 1204 in 352 transactions (3.4 each), answers none"
