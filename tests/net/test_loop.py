"""The hosts' event loop (``citycard.net.loop``): uvloop's, with asyncio's behaviour."""

from __future__ import annotations

import asyncio
import threading

import pytest
import uvloop

from citycard.net.loop import new_event_loop, run


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
