"""A network service's reports to the center, written while it runs (``citycard.center.services``).

:class:`ServiceReporter` writes the service's report when it starts, every ``every_s`` seconds while it runs
and when it stops (``citycard serve acquirer|switch|issuer --report-every``). Each write is one short
transaction on a worker thread, so the service's event loop never waits for the database; the next report
is not due before the last one is written, so a slow database gets one write at a time. A write that fails
(the database gone, a lock) is logged once, not raised: payments never stop for a report, and the missing
reports are what the center sees (the service reads "not reporting"). The first report that goes through
again is logged too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from citycard.center.services import ServiceReport

__all__ = ["ServiceReporter"]

log = logging.getLogger(__name__)


class ServiceReporter:
    """The reports of the service ``name`` (``acquirer``, ``switch``, ``issuer ICBC``) every ``every_s``,
    saved by ``save`` (a function that writes one report in a transaction of its own, on any thread, and
    gives the reports it superseded because their process is gone: ``center.views.save_report``; logged)."""

    def __init__(
        self,
        save: Callable[[ServiceReport], Sequence[ServiceReport] | None],
        name: str,
        every_s: float,
        *,
        clock: Callable[[], int] = time.time_ns,
        hostname: str | None = None,
        pid: int | None = None,
    ) -> None:
        now = clock()
        self._save = save
        self._clock = clock
        self._report = ServiceReport(
            name=name,
            hostname=hostname or socket.gethostname(),
            address="",
            pid=pid or os.getpid(),
            started_ns=now,
            reported_ns=now,
            every_s=every_s,
            status="starting",
        )  # a bad name or interval is refused here, before the service starts
        self._failing = False
        self.written = 0
        """Reports written since start."""

    async def run(self, address: str, status: Callable[[], str]) -> None:
        """Report now, then every interval, until cancelled: the service listens on ``address``
        (``HOST:PORT``, known once it started); ``status`` read on this loop."""
        self._report = replace(self._report, address=address)
        while True:
            await self._write(status(), None)
            await asyncio.sleep(self._report.every_s)

    async def stopped(self, status: str) -> None:
        """The last report: the service stopped, with its last status line."""
        await self._write(status, self._clock())

    async def _write(self, status: str, stopped_ns: int | None) -> None:
        now = self._clock()
        report = replace(self._report, reported_ns=max(now, self._report.started_ns), status=status)
        if stopped_ns is not None:
            report = replace(report, stopped_ns=max(stopped_ns, report.started_ns))
        try:
            gone = await asyncio.to_thread(self._save, report)
        except Exception as exc:  # the database unreachable or refusing: never the service's end
            if not self._failing:
                log.warning(
                    "%s: its report to the center failed (%s); retried each interval", report.name, exc
                )
            self._failing = True
            return
        for r in gone or ():
            log.warning(
                "%s: forgot its report at %s (pid %d): that process no longer runs on %s",
                r.name,
                r.address,
                r.pid,
                r.hostname,
            )
        if self._failing:
            log.warning("%s: reporting to the center again", report.name)
        self._failing = False
        self.written += 1
