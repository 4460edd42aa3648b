"""The switch's and the issuer front ends' routing table kept current while they run (issue 8).

A bank or BIN range added (``citycard bank add``, ``citycard bank bin``) while the network runs reaches the
hosts without a restart: :class:`RoutingReload` reads the table again (``load``: two small queries, run in
a thread so the event loop never waits on the database) every ``interval_s`` seconds, and at once on
:meth:`RoutingReload.reload_now` (``citycard serve switch|issuer`` call it on SIGHUP), and hands it to the
host (``apply``) when it differs from the one in use. A table that cannot be read or built (the database
away, a :class:`~citycard.switch.RoutingError`) is logged and the old one kept. Requests in flight finish
with the table they started with; the next request uses the new one (one reference swapped, nothing
locked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from citycard.switch import RoutingTable

__all__ = ["DEFAULT_INTERVAL_S", "RoutingReload", "same_routes"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
"""How often the table is read again (a change is picked up within this long)."""


def same_routes(a: RoutingTable, b: RoutingTable) -> bool:
    """Whether two tables route alike: the same members (code, institution id, ZPK label) and BINs."""
    return a.members == b.members and dict(a.bins) == dict(b.bins)


class RoutingReload:
    """Reads the routing table every ``interval_s`` and applies it when it changed (module docstring)."""

    def __init__(
        self,
        load: Callable[[], RoutingTable],
        current: Callable[[], RoutingTable],
        apply: Callable[[RoutingTable], None],
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        name: str = "routing",
    ) -> None:
        assert interval_s > 0
        self._load = load
        self._current = current
        self._apply = apply
        self.interval_s = interval_s
        self.name = name
        self.reloads = 0
        """Tables applied since start (a change each)."""
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"{self.name}-reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def reload_now(self) -> bool:
        """Read the table now; True when it changed and was applied."""
        async with self._lock:  # one read at a time: a SIGHUP during a periodic read waits for it
            try:
                table = await asyncio.to_thread(self._load)
            except Exception:  # the database away, a table that does not build: keep the old one
                self.failures += 1
                log.exception("%s: cannot read the routing table; the one in use stays", self.name)
                return False
            if same_routes(table, self._current()):
                return False
            self._apply(table)
            self.reloads += 1
            log.warning(
                "%s: routing table reloaded: %d bank(s), %d BIN range(s)",
                self.name,
                len(table.members),
                len(table.bins),
            )
            return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.reload_now()
