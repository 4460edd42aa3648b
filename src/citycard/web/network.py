"""The network in the console: the services' status lines and the acquirer's store-and-forward queue.

- When the network services run in the web's own process (``citycard up``), their status lines as
  ``citycard serve ...`` prints them: connections, requests, refusals, and each link's state (a bank's front
  end ``up``, ``down (...)`` or ``silent (...)``), read on the event loop they run on.
- The reports of the services run as processes of their own (``citycard serve acquirer|switch|issuer``,
  ``citycard.center.services``): where each listens, since when, its last status line, and whether it is
  running, stopped or **not reporting** (killed, hung, cut off), as ``citycard serve status`` shows them.
- The queue, what ``citycard acquirer queue`` and ``retry`` show and do (``citycard.acquirer.views``): an
  operator watching an outage sees which reversals and advices wait for the switch (the card masked), how
  often each was tried, the last answer and the next try, and once the outage is over brings them all
  forward, audited. Read through the acquirer's repositories on the web's database and HSM (the stored
  messages are sealed at rest)."""

from __future__ import annotations

import os
import socket
from typing import Any

from citycard.acquirer.views import next_try, queued_json, retry_now, saf_queue, saf_waiting
from citycard.bootstrap import WebContext
from citycard.center.services import link_trouble
from citycard.center.views import forget_reports, service_json, service_reports
from citycard.db.acquirer_repositories import acquirer_unit_of_work
from citycard.hsm.protection import RecordProtection
from citycard.issuer.views import iso_time

from .store import Principal, Store

__all__ = ["attention", "forget", "queue", "reported", "retry", "services", "waiting"]


def services(ctx: WebContext) -> list[str] | None:
    """Each network service's status line now; None when they run in other processes. Called on the event
    loop the services run on (an ``async`` route), never from a worker thread."""
    return None if ctx.network is None else ctx.network()


def reported(ctx: WebContext) -> list[dict[str, Any]]:
    """The services' last reports (:func:`citycard.center.views.service_json`), the running and the silent
    first; under ``citycard up``, not those of its own process, whose status lines :func:`services` reads
    live. A database read: from a worker thread."""
    reports, now = service_reports(ctx.center.unit_of_work(read_only=True))
    if ctx.network is not None:
        here = (socket.gethostname(), os.getpid())
        reports = [r for r in reports if (r.hostname, r.pid) != here]
    return [service_json(r, now) for r in reports]


def forget(
    ctx: WebContext, store: Store, principal: Principal, name: str, hostname: str, address: str
) -> str:
    """Forget the report of one place if it is not running (stopped, or not reporting); audited either
    way. ``forgotten``, ``running`` (kept) or ``no such report``."""
    forgotten, running = forget_reports(ctx.center.unit_of_work(), name, hostname, address)
    why = "forgotten" if forgotten else ("running" if running else "no such report")
    outcome = "ok" if forgotten else "refused"
    store.audit(principal, "service_forget", f"{name} at {address} on {hostname}", outcome, why, ctx.clock())
    return why


def attention(lines: list[str] | None, reports: list[dict[str, Any]]) -> int:
    """How many services need an operator (the dashboard's figure): those of this process whose status line
    has a link down or a peer silent (``lines``, from :func:`services`), and the reported ones that need
    attention (:func:`reported`: not reporting, or a link down or a peer silent)."""
    live = sum(1 for line in lines or [] if link_trouble(line))
    return live + sum(1 for r in reports if r["attention"])


def queue(ctx: WebContext, limit: int) -> dict[str, Any]:
    """The counts (``pending``, ``delivered``) and the first ``limit`` waiting entries, the next due first,
    each with ``next_try`` for a person (``due``, ``in 42 s``)."""
    uow = acquirer_unit_of_work(ctx.database, RecordProtection.open(ctx.hsm), read_only=True)
    view = saf_queue(uow, limit)
    now = ctx.clock()
    entries = [
        queued_json(e, iso_time) | {"next_try": next_try(e.next_attempt_ns, now)} for e in view.entries
    ]
    return {"pending": view.pending, "delivered": view.delivered, "entries": entries}


def waiting(ctx: WebContext) -> int:
    """How many reversals and advices wait in the acquirer's queue (a count: no entry read or unsealed)."""
    return saf_waiting(acquirer_unit_of_work(ctx.database, RecordProtection.open(ctx.hsm), read_only=True))


def retry(ctx: WebContext, store: Store, principal: Principal) -> int:
    """Every waiting entry due now (a running acquirer sends them in its next round); audited. Returns how
    many were brought forward."""
    moved = retry_now(acquirer_unit_of_work(ctx.database, RecordProtection.open(ctx.hsm)), ctx.clock)
    store.audit(principal, "saf_retry", "acquirer queue", "ok", f"{moved} due now", ctx.clock())
    return moved
