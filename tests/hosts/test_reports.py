"""A service's reports to the center (``citycard.hosts.reports.ServiceReporter``): one at once, then one
each interval with the status line of the moment, the last once it stopped; a failing write logged once,
never raised, and its recovery logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from citycard.center.services import ServiceReport
from citycard.hosts.reports import ServiceReporter

from tests.net.support import run


def test_reports_at_start_each_interval_and_at_the_stop() -> None:
    saved: list[ServiceReport] = []
    lines = ["idle", "2 connections; 5 requests", "2 connections; 9 requests"]
    reads = [0]

    def status() -> str:  # the line of the moment; the last one again if this test's loop is slow to stop it
        reads[0] += 1
        return lines[min(reads[0], len(lines)) - 1]

    reporter = ServiceReporter(saved.append, "issuer ICBC", 0.05, hostname="bank-1", pid=77)

    async def main() -> None:
        task = asyncio.create_task(reporter.run("127.0.0.1:9585", status))
        while reporter.written < 3:  # counted once its write returned (the list grows on the thread first)
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reporter.stopped("stopped: 9 requests")

    run(main())
    statuses = [r.status for r in saved]
    assert statuses[:3] == lines and statuses[-1] == "stopped: 9 requests"
    assert set(statuses[3:-1]) <= {lines[-1]}  # none, unless a report more went out before the cancel
    assert {(r.name, r.hostname, r.address, r.pid, r.every_s) for r in saved} == {
        ("issuer ICBC", "bank-1", "127.0.0.1:9585", 77, 0.05)
    }
    assert len({r.started_ns for r in saved}) == 1
    times = [r.reported_ns for r in saved]
    # two intervals between, less the event loop's timer granularity (its clock is not the wall clock)
    assert times == sorted(times) and times[2] - times[0] >= 0.1 * 10**9 - 5 * 10**6
    assert [r.stopped_ns is None for r in saved] == [True] * (len(saved) - 1) + [False]
    assert reporter.written >= len(saved) - 1 and reporter.written >= 4  # a write cancelled is not counted


def test_a_failing_write_is_logged_once_and_never_stops_the_service(caplog: pytest.LogCaptureFixture) -> None:
    saved: list[ServiceReport] = []
    failing = [True]

    def save(report: ServiceReport) -> None:
        if failing[0]:
            raise ConnectionError("the database is gone")
        saved.append(report)

    reporter = ServiceReporter(save, "acquirer", 0.02)

    async def main() -> None:
        task = asyncio.create_task(reporter.run("127.0.0.1:9583", lambda: "up"))
        await asyncio.sleep(0.15)  # several intervals, every write failing
        assert not task.done() and saved == []
        failing[0] = False
        while reporter.written < 1:  # not `saved`: the list grows on the thread before the write returns
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="citycard.hosts.reports"):
        run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "acquirer: its report to the center failed (the database is gone); retried each interval",
        "acquirer: reporting to the center again",
    ]


def test_a_bad_name_or_interval_is_refused_before_the_service_starts() -> None:
    for name, every in (("issuer icbc", 10.0), ("acquirer", 0.0)):
        with pytest.raises(ValueError):
            ServiceReporter(lambda r: None, name, every)
