"""The network services' reports to the center: what an operator sees of services run as processes apart.

``citycard serve acquirer|switch|issuer`` (and ``citycard up`` for each of its services) write a report to
the platform's database when they start, every ``--report-every`` seconds while they run (10 by default) and
when they stop: which service, where it listens, on which machine and process, since when, and its status
line (what it prints with ``--status-every``: connections, requests, refusals, each link ``up``,
``down (...)`` or ``silent (...)``).
The center's console (``/console/network``) and ``citycard serve status`` read them. A service is known by
its name, machine and address together (:attr:`ServiceReport.key`): the same service started again on the
same place takes its row over, and a running service's report supersedes the stopped reports of its name on
its machine (``citycard.center.views.save_report``); ``citycard serve forget`` removes those of a service
killed or moved for good.

What a report says depends on its age (:func:`health`): a service that stopped said so; one whose last
report is older than :data:`LATE_AFTER` of its intervals is **not reporting** — killed, hung, its machine
gone, or cut from the database —, which is what an operator must see first; otherwise it is **running**,
and its status line tells whether its links are up. :func:`needs_attention` is that rule for a screen.

**One clock.** The services run on machines of their own, whose clocks may be apart; a report's age read
against the reader's clock would then be wrong by their difference (a report from a machine a minute behind
reads a minute old, and one from a machine ahead hides a service that died). So a report's times are moved
onto the database's clock when it is written (:meth:`ServiceReport.shifted`, by the difference between the
writer's clock and the database's, read in the same transaction), and read against the database's clock.

Pure: the storage is ``citycard.db.center_repositories.SqlServiceReports``, the writing
``citycard.hosts.reports``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace

__all__ = [
    "LATE_AFTER",
    "MAX_ADDRESS",
    "MAX_NAME",
    "MAX_STATUS",
    "Health",
    "ServiceReport",
    "health",
    "link_trouble",
    "needs_attention",
]

LATE_AFTER = 3
"""A running service's last report older than this many of its intervals: it is not reporting."""
MAX_STATUS = 2000
"""The longest status line kept (a switch with many banks names each link); longer is cut, marked ``…``."""
MAX_NAME = 64
"""The longest service name (``issuer`` and a bank code fit many times)."""
MAX_ADDRESS = 300
"""The longest hostname or ``HOST:PORT`` kept."""
_NAME = re.compile(r"[a-z]+( [0-9A-Z]{1,8})?")  # acquirer, switch, issuer ICBC
_PROBLEMS = (" down (", " silent (")


class Health(enum.StrEnum):
    RUNNING = "running"
    NOT_REPORTING = "not reporting"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ServiceReport:
    """One service's last report. Times in ns since the epoch (UTC)."""

    name: str
    """``acquirer``, ``switch``, ``issuer ICBC``."""
    hostname: str
    """The machine it runs on."""
    address: str
    """Where it listens, ``HOST:PORT``."""
    pid: int
    started_ns: int
    reported_ns: int
    every_s: float
    """Its interval between reports."""
    status: str
    """Its status line when it reported."""
    stopped_ns: int | None = None
    """When it stopped (None: running, or killed without a word)."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or len(self.name) > MAX_NAME:
            raise ValueError(f"service name {self.name!r}: acquirer, switch or issuer CODE")
        if not self.hostname or len(self.hostname) > MAX_ADDRESS or len(self.address) > MAX_ADDRESS:
            raise ValueError(f"service {self.name}: hostname or address empty or too long")
        if self.pid <= 0 or self.every_s <= 0:
            raise ValueError(f"service {self.name}: pid {self.pid}, every {self.every_s} s")
        if not 0 < self.started_ns <= self.reported_ns:
            raise ValueError(f"service {self.name}: reported before it started")
        if self.stopped_ns is not None and self.stopped_ns < self.started_ns:
            raise ValueError(f"service {self.name}: stopped before it started")
        if len(self.status) > MAX_STATUS:
            object.__setattr__(self, "status", self.status[: MAX_STATUS - 1] + "…")

    @property
    def key(self) -> tuple[str, str, str]:
        """(name, hostname, address): one row per place a service runs."""
        return self.name, self.hostname, self.address

    def shifted(self, by_ns: int) -> ServiceReport:
        """The same report with its times moved by ``by_ns`` (onto another clock: module docstring)."""
        return replace(
            self,
            started_ns=self.started_ns + by_ns,
            reported_ns=self.reported_ns + by_ns,
            stopped_ns=None if self.stopped_ns is None else self.stopped_ns + by_ns,
        )


def health(report: ServiceReport, now_ns: int) -> Health:
    """Stopped if it said so; not reporting if its last report is older than :data:`LATE_AFTER` intervals
    (at least 1 s, so a report written a moment ago never reads late); else running."""
    if report.stopped_ns is not None:
        return Health.STOPPED
    late_ns = max(LATE_AFTER * report.every_s, 1.0) * 1e9
    return Health.NOT_REPORTING if now_ns - report.reported_ns > late_ns else Health.RUNNING


def link_trouble(status: str) -> bool:
    """Whether a service's status line names a link ``down (...)`` or a peer ``silent (...)``."""
    return any(problem in status for problem in _PROBLEMS)


def needs_attention(report: ServiceReport, now_ns: int) -> bool:
    """Not reporting, or running with a link down or a peer silent (its status line says which)."""
    state = health(report, now_ns)
    if state is Health.NOT_REPORTING:
        return True
    return state is Health.RUNNING and link_trouble(report.status)
