"""The hosts' event loop (``citycard.net.loop``): uvloop's, with asyncio's behaviour."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest
import uvloop

from citycard.net.loop import YOUNG_COLLECTION_EVERY, new_event_loop, run, server_heap


def test_run_gives_the_coroutines_result_on_a_uvloop_loop_and_closes_it() -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def main() -> int:
        seen.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return 42

    assert run(main()) == 42
    assert isinstance(seen[0], uvloop.Loop)
    assert seen[0].is_closed()


def test_run_raises_the_coroutines_error() -> None:
    async def main() -> None:
        raise LookupError("from the loop")

    with pytest.raises(LookupError, match="from the loop"):
        run(main())


def test_a_loop_in_a_thread_runs_work_handed_over_from_another_thread() -> None:
    loop = new_event_loop()
    assert isinstance(loop, uvloop.Loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def in_loop() -> str:
            return threading.current_thread().name

        name = asyncio.run_coroutine_threadsafe(in_loop(), loop).result(10)
        assert name == thread.name
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_server_heap_freezes_what_exists_raises_the_young_threshold_and_undoes_both() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    made_before = [_Node() for _ in range(10)]
    with server_heap():
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *before[1:])
        assert gc.get_freeze_count() > len(made_before)
        with server_heap():  # nested (several hosts in one process): the outermost undoes it
            pass
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_EVERY and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_server_heap_is_undone_when_serving_ends_with_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(LookupError), server_heap():
        raise LookupError("the server failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_cyclic_garbage_made_while_serving_is_still_collected_without_being_asked() -> None:
    with server_heap():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # a cycle: no reference count frees it
        held = [[] for _ in range(2 * YOUNG_COLLECTION_EVERY)]  # net allocations: a young collection
        assert gone() is None
        del held
