"""The network services' reports to the center (``citycard.center.services``): what a report's age says,
and their storage on SQLite and PostgreSQL (one row per service's place, taken over by a restart there; the
reports' times on the database's clock, whatever the writer's clock says)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from citycard.center.services import MAX_STATUS, Health, ServiceReport, health, needs_attention
from citycard.center.views import forget_reports, save_report, service_json, service_reports
from citycard.db import center_repositories
from citycard.db.center_repositories import CenterUnitOfWork

S = 10**9
START = 1_796_000_000 * S  # 2026-11-30T00:53:20Z


def _report(**changes: object) -> ServiceReport:
    base = ServiceReport(
        name="switch",
        hostname="net-1",
        address="0.0.0.0:9584",
        pid=4242,
        started_ns=START,
        reported_ns=START + 60 * S,
        every_s=10.0,
        status="switch: 2 connections; 1500 requests; ICBC up, CCB up",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_report_is_late_after_three_of_its_intervals_and_a_stopped_one_says_so() -> None:
    r = _report()
    last = r.reported_ns
    assert health(r, last) is Health.RUNNING
    assert health(r, last + 30 * S) is Health.RUNNING  # three intervals exactly: not late yet
    assert health(r, last + 30 * S + 1) is Health.NOT_REPORTING
    assert needs_attention(r, last + 30 * S + 1) and not needs_attention(r, last + 5 * S)
    quick = replace(r, every_s=0.1)  # a second at least, so a report just written never reads late
    assert health(quick, last + S) is Health.RUNNING and health(quick, last + S + 1) is Health.NOT_REPORTING
    stopped = replace(r, stopped_ns=last)
    hour_later = last + 3600 * S
    assert health(stopped, hour_later) is Health.STOPPED and not needs_attention(stopped, hour_later)


@pytest.mark.parametrize(
    ("status", "attention"),
    [
        ("switch: 1 connection; ICBC up, CCB down (connection refused)", True),
        ("switch: 1 connection; ICBC silent (nothing received for 4.7 s: an echo test unanswered)", True),
        ("acquirer: 12 connections; switch up", False),
    ],
)
def test_a_running_service_needs_attention_when_a_link_is_down_or_its_peer_silent(
    status: str, attention: bool
) -> None:
    r = _report(status=status)
    assert needs_attention(r, r.reported_ns) is attention
    assert not needs_attention(replace(r, stopped_ns=r.reported_ns), r.reported_ns)  # stopped: history


def test_a_malformed_report_is_refused_and_a_long_status_line_cut_and_marked() -> None:
    for changes in (
        {"name": "Switch"},
        {"name": "issuer icbc"},
        {"name": "issuer ICBC1234X"},
        {"hostname": ""},
        {"pid": 0},
        {"every_s": 0.0},
        {"reported_ns": START - 1},
        {"stopped_ns": START - 1},
    ):
        with pytest.raises(ValueError):
            _report(**changes)
    assert _report(name="issuer ICBC").name == "issuer ICBC"
    long = _report(status="x" * (MAX_STATUS + 10)).status
    assert len(long) == MAX_STATUS and long.endswith("…")


def _saved(uow: Callable[[], CenterUnitOfWork], *reports: ServiceReport, written_ns: int) -> None:
    """Each report written by a writer whose clock reads ``written_ns``."""
    for r in reports:
        save_report(uow(), r, written_ns)


def _read(uow: Callable[[], CenterUnitOfWork]) -> list[tuple[str, str, str, int, str, bool]]:
    """The reports read back, in their order, by what a clock does not change: place, pid, status, stopped."""
    reports, _ = service_reports(uow())
    return [(r.name, r.hostname, r.address, r.pid, r.status, r.stopped_ns is not None) for r in reports]


def _place(r: ServiceReport) -> tuple[str, str, str, int, str, bool]:
    return (r.name, r.hostname, r.address, r.pid, r.status, r.stopped_ns is not None)


def test_reports_are_kept_one_per_place_and_read_running_first(uow: Callable[[], CenterUnitOfWork]) -> None:
    switch = _report()
    acquirer = _report(name="acquirer", address="0.0.0.0:9583", status="acquirer: 0 connections; switch up")
    icbc = _report(name="issuer ICBC", address="10.0.0.5:9585", stopped_ns=START + 61 * S, status="idle")
    _saved(uow, switch, acquirer, icbc, written_ns=START + 61 * S)
    assert _read(uow) == [_place(r) for r in (acquirer, switch, icbc)]  # the stopped one last
    again = replace(switch, pid=5151, started_ns=START + 100 * S, reported_ns=START + 100 * S, status="new")
    _saved(uow, again, written_ns=START + 100 * S)  # the switch started again on the same place: its row
    elsewhere = replace(switch, hostname="net-2")  # another machine: a place of its own
    _saved(uow, elsewhere, written_ns=START + 100 * S)
    assert _read(uow) == [_place(r) for r in (acquirer, again, elsewhere, icbc)]
    shown = service_json(again, START + 100 * S + 45 * S)
    assert (shown["health"], shown["attention"], shown["last_report"], shown["started"]) == (
        "not reporting",
        True,
        "45 s",
        "2026-11-30T00:55:00Z",
    )
    assert service_json(icbc, START + 2 * 3600 * S)["stopped"] == "2026-11-30T00:54:21Z"


@pytest.mark.parametrize("writer_behind_s", [600, 0, -600])
def test_a_reports_times_are_moved_onto_the_databases_clock_whatever_the_writers_clock_says(
    uow: Callable[[], CenterUnitOfWork], writer_behind_s: int
) -> None:
    """A writer ten minutes behind the database (or ahead): its report just written reads 0 s old, not
    ten minutes (not reporting) nor from the future (running while it is dead); its start, 50 s before
    its report by its own clock, stays 50 s before; a stopped report's stop the same."""
    before = time.time_ns()
    writer_now = before - writer_behind_s * S
    running = _report(started_ns=writer_now - 50 * S, reported_ns=writer_now)
    stopped = _report(
        name="acquirer", started_ns=writer_now - 50 * S, reported_ns=writer_now, stopped_ns=writer_now
    )
    _saved(uow, running, stopped, written_ns=writer_now)
    after = time.time_ns()
    (read_running, read_stopped), now = service_reports(uow())
    assert before <= read_running.reported_ns <= now and now - after < 5 * S  # the database's clock (this
    # machine's here: the test's PostgreSQL runs on it)
    assert read_running.reported_ns - read_running.started_ns == 50 * S
    assert read_stopped.stopped_ns is not None and read_stopped.stopped_ns - read_stopped.started_ns == 50 * S
    shown = service_json(read_running, now)
    assert (shown["health"], shown["last_report"], shown["attention"]) == ("running", "0 s", False)


def test_a_service_started_again_supersedes_its_stopped_reports_on_its_machine(
    uow: Callable[[], CenterUnitOfWork],
) -> None:
    first = _report(name="issuer ICBC", address="127.0.0.1:40001", stopped_ns=START + 70 * S)
    other_machine = replace(first, hostname="net-2")
    killed = _report(name="issuer ICBC", address="127.0.0.1:40002")  # gone without a word: not stopped
    # killed's report came while it ran, before first stopped
    _saved(uow, killed, first, other_machine, written_ns=START + 70 * S)
    stopping = replace(killed, address="127.0.0.1:40003", stopped_ns=START + 80 * S)
    _saved(uow, stopping, written_ns=START + 80 * S)  # a stopped report supersedes nothing
    assert len(_read(uow)) == 4
    again = _report(name="issuer ICBC", address="127.0.0.1:40004", reported_ns=START + 90 * S)
    _saved(uow, again, written_ns=START + 90 * S)  # started again on another free port
    assert _read(uow) == [_place(r) for r in (killed, again, other_machine)]


def test_forgetting_removes_the_reports_not_running_and_keeps_a_running_one(
    uow: Callable[[], CenterUnitOfWork],
) -> None:
    running = _report()
    quiet = _report(address="0.0.0.0:9594", reported_ns=START)  # its last report a minute before
    stopped = _report(name="acquirer", stopped_ns=START + 60 * S)
    _saved(uow, running, quiet, stopped, written_ns=running.reported_ns)  # read at once: running is fresh

    def places(
        outcome: tuple[list[ServiceReport], list[ServiceReport]],
    ) -> tuple[list[tuple[str, str, str, int, str, bool]], ...]:
        return tuple([_place(r) for r in reports] for reports in outcome)

    assert places(forget_reports(uow(), "switch", None, None)) == ([_place(quiet)], [_place(running)])
    assert forget_reports(uow(), "acquirer", "elsewhere", None) == ([], [])
    assert places(forget_reports(uow(), "acquirer", "net-1", "0.0.0.0:9584")) == ([_place(stopped)], [])
    assert _read(uow) == [_place(running)]


def test_a_service_running_again_supersedes_its_reports_on_its_machine_whose_process_is_gone(
    uow: Callable[[], CenterUnitOfWork],
) -> None:
    """Killed without a word (crashed, the machine restarted), a service's report reads not reporting, in
    red, for ever; once the service runs again, its report removes those of its name on its machine whose
    process no longer runs there. A live process's report stays (a second instance, or one hung: an
    operator must see it), and so does another machine's (this one cannot tell)."""
    killed = _report(address="127.0.0.1:40001", pid=1111)
    hung = _report(address="127.0.0.1:40002", pid=3333)
    elsewhere = _report(hostname="net-2", address="127.0.0.1:40001", pid=1111)
    _saved(uow, killed, hung, elsewhere, written_ns=START + 60 * S)
    asked: list[int] = []

    def alive(pid: int) -> bool:
        asked.append(pid)
        return pid != 1111

    stopping = _report(address="127.0.0.1:40003", pid=2222, stopped_ns=START + 70 * S)
    assert (
        save_report(uow(), stopping, START + 70 * S, alive) == [] and asked == []
    )  # a stop supersedes nothing
    again = _report(address="127.0.0.1:40004", pid=2222, reported_ns=START + 80 * S)
    gone = save_report(uow(), again, START + 80 * S, alive)
    assert [_place(r) for r in gone] == [_place(killed)] and sorted(asked) == [1111, 3333]
    assert _read(uow) == [_place(r) for r in (hung, again, elsewhere)]
    assert save_report(uow(), again, START + 90 * S, alive) == []  # its own report: never its own process


def test_past_the_bound_the_oldest_reports_are_left_out_never_one_reporting_now(
    uow: Callable[[], CenterUnitOfWork], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(center_repositories, "MAX_SERVICES", 2)
    old = _report(name="acquirer", reported_ns=START, stopped_ns=START)  # "acquirer" sorts first
    quiet = _report(address="0.0.0.0:9594", reported_ns=START + 30 * S)
    now = _report(name="switch", address="0.0.0.0:9595", reported_ns=START + 60 * S)
    for r in (old, quiet, now):
        _saved(uow, r, written_ns=START + 60 * S)
    assert _read(uow) == [_place(quiet), _place(now)]  # by place; the oldest report left out
