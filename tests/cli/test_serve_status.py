"""``citycard serve …``'s status lines (``cli.servers._serve``): the service's ``status()`` printed, with the
time, each interval in which it changed, and not while it stays the same."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import pytest

from citycard.cli.servers import _serve
from citycard.net.loop import run


def _interrupt() -> None:
    """Ctrl-C, as the terminal sends it (``_serve`` handles SIGINT on its loop)."""
    os.kill(os.getpid(), signal.SIGINT)


class _Service:
    """A service whose status line changes when a test says so, and which stops itself after ``lines``
    status reads (by signalling itself, as Ctrl-C would)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.reads = 0
        self.stopped = False

    @property
    def port(self) -> int:
        return 4242

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    def status(self) -> str:
        line = self.lines[min(self.reads, len(self.lines) - 1)]
        self.reads += 1
        if self.reads == len(self.lines) + 2:  # every line read, and twice more unchanged
            _interrupt()
        return line


def test_status_lines_are_printed_when_they_change_and_not_while_they_stay_the_same(
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = _Service(["idle", "idle", "2 requests", "2 requests", "switch down (refused)"])

    async def main() -> None:
        async with asyncio.timeout(30):
            await _serve(service, "listening on {port}", status_every_s=0.01)

    run(main())
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "listening on 4242" and out[-2:] == [
        "stopping: no new requests; those in flight finish",
        "stopped",
    ]
    reported = out[1:-2]
    assert [line.partition(" ")[2] for line in reported] == ["2 requests", "switch down (refused)"]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d .+", line) for line in reported)
    assert service.stopped


def test_no_status_lines_with_status_every_0(capsys: pytest.CaptureFixture[str]) -> None:
    service = _Service(["a", "b"])

    async def main() -> None:
        asyncio.get_running_loop().call_later(
            0.2, lambda: __import__("os").kill(__import__("os").getpid(), 2)
        )
        await _serve(service, "listening on {port}", status_every_s=0)

    run(main())
    assert capsys.readouterr().out.splitlines() == [
        "listening on 4242",
        "stopping: no new requests; those in flight finish",
        "stopped",
    ]
    assert service.reads == 0
