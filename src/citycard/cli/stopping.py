"""A serving process's stop, bounded: ``citycard serve acquirer|switch|issuer`` and ``citycard up``.

A stop lets the requests in flight finish, writes the last report to the center and closes the database.
Each of those waits on something outside the process; when that something hangs (a PostgreSQL server that
stopped answering but keeps its connections open, a disk that does not return), the stop waited for ever:
the event loop's worker threads are joined when the process ends, and a thread blocked in a database call
never comes back. An operator's SIGTERM then did nothing visible, and a supervisor killed the process
after its own timeout without saying why.

:class:`StopDeadline` ends the process once a stop has taken more than ``within_s`` seconds
(``--stop-timeout``), and at once on a second Ctrl-C or SIGTERM. It says on stderr what was still waiting
(each thread, where in citycard it was and what it waited in), then exits with status 1 without waiting for
those threads. That is as safe as the process being killed, which the platform is built to survive: a
database transaction left open is rolled back by the server, the acquirer's queue of reversals and advices
is on disk and goes out at the next start, nothing is half written (every write is one transaction).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import traceback
from typing import Final, TextIO

__all__ = ["STOP_TIMEOUT_S", "StopDeadline", "waiting_threads"]

STOP_TIMEOUT_S: Final = 60.0
"""The default bound of a stop: above the slowest clean stop (the acquirer's drain of 15 s, its queue's
10 s, the last report), below a supervisor's usual 90 s (systemd's ``TimeoutStopSec``)."""

_OURS: Final = f"{os.sep}citycard{os.sep}"
_TIMER: Final = "citycard-stop-deadline"


class StopDeadline:
    """The bound on one process's stop (module docstring). ``within_s`` 0: none (a stop may take as long
    as it takes; a second signal still exits at once)."""

    def __init__(self, stopping: asyncio.Event, within_s: float, *, err: TextIO | None = None) -> None:
        assert within_s >= 0
        self._stopping = stopping
        self._within_s = within_s
        self._err = err
        self._timer: threading.Timer | None = None

    def on_signal(self) -> None:
        """SIGINT or SIGTERM: the first begins the stop, a second ends the process now."""
        if self._stopping.is_set():
            self._exit("a second signal came while stopping")
        self._stopping.set()
        self.arm()

    def outlive_loop(self) -> None:
        """Once the event loop's handlers are removed (the service stopped, the loop closing): SIGINT and
        SIGTERM still end the process at once while it waits on its threads, if a stop began; else they
        keep their defaults."""
        if self._stopping.is_set():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda _sig, _frame: self._exit("a second signal came while stopping"))

    async def watch(self) -> None:
        """Arm the bound when the stop begins for another reason than a signal (``citycard up --for``)."""
        await self._stopping.wait()
        self.arm()

    def arm(self) -> None:
        """Start counting (once): past ``within_s`` the process ends. The timer thread is a daemon, so a
        stop that ends in time ends the process as before."""
        if self._timer is not None or self._within_s == 0:
            return
        self._timer = threading.Timer(
            self._within_s, self._exit, (f"the stop took more than {self._within_s:g} s",)
        )
        self._timer.daemon = True
        self._timer.name = _TIMER
        self._timer.start()

    def _exit(self, why: str) -> None:
        err = self._err or sys.stderr
        lines = [f"exiting now (status 1): {why}."]
        waiting = waiting_threads()
        if waiting:
            lines.append("still waiting:")
            lines.extend(f"  {line}" for line in waiting)
        lines.append(
            "nothing is lost: a database transaction left open is rolled back by the server, and what the"
            " acquirer had queued stays on disk for its next start."
        )
        try:
            err.write("\n".join(lines) + "\n")
            err.flush()
            sys.stdout.flush()
        finally:
            os._exit(1)


def waiting_threads() -> list[str]:
    """One line per thread of this process but the caller's (and the bound's timer): its name, the
    innermost place in citycard's own code on its stack, and where it waits (its innermost frame), e.g.
    ``uvloop_0: in citycard/db/center_repositories.py:235 (supersede), waiting in
    psycopg/connection.py:495 (wait)``. Never a value: only files, lines and function names."""
    frames = sys._current_frames()
    me = threading.get_ident()
    lines = []
    for thread in threading.enumerate():
        if thread.ident is None or thread.ident == me or thread.ident not in frames:
            continue
        if thread.name == _TIMER:  # the bound itself, waiting for its time
            continue
        stack = traceback.extract_stack(frames[thread.ident])
        if not stack:
            continue
        inner = stack[-1]
        ours = next((frame for frame in reversed(stack) if _OURS in frame.filename), None)
        where = f"{thread.name}: "
        if ours is not None:
            where += f"in {_short(ours.filename)}:{ours.lineno} ({ours.name}), "
        lines.append(where + f"waiting in {_short(inner.filename)}:{inner.lineno} ({inner.name})")
    return lines


def _short(filename: str) -> str:
    """The path from the package's folder on (``citycard/db/...``, ``psycopg/...``, ``threading.py``)."""
    parts = filename.split(os.sep)
    for anchor in ("site-packages", "dist-packages", "src"):
        if anchor in parts:
            return "/".join(parts[len(parts) - parts[::-1].index(anchor) :])
    return parts[-1]
