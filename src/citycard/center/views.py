"""Queries of the registry: listings for the CLI (and later the web), and :func:`terminal_binding`, which
the acquirer's and issuer's hosts ask for every message: is field 41 a terminal of the merchant in field
42, is it active, and which bank acquires for that merchant.

Each function takes an unentered unit of work (read-only is enough) and opens it. JSON forms
(:func:`merchant_json`, :func:`terminal_json`) have times as ISO 8601 UTC and no key material (a TMK's
check value only).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .model import Merchant, Terminal
from .ports import CenterUnitOfWork, MerchantQuery, TerminalBinding
from .services import Health, ServiceReport, health, needs_attention

__all__ = [
    "MAX_LISTING",
    "binding_refusal",
    "forget_reports",
    "list_merchants",
    "list_terminals",
    "merchant_json",
    "registered_time",
    "save_report",
    "service_json",
    "service_reports",
    "terminal_binding",
    "terminal_json",
]

MAX_LISTING = 10_000
"""The most rows one listing returns (page with ``offset`` for more)."""


def terminal_binding(uow: CenterUnitOfWork, terminal_id: str) -> TerminalBinding | None:
    """``(terminal, merchant)`` of field 41, or None when no such terminal is registered. The caller checks
    ``binding.merchant.merchant_id`` against field 42 and ``binding.terminal.active`` (or uses
    :func:`binding_refusal`); the merchant's ``bank_code`` is its acquiring bank."""
    with uow:
        return uow.terminals.binding(terminal_id)


def binding_refusal(binding: TerminalBinding | None, merchant_id: str) -> tuple[str, str] | None:
    """ISO 8583 response code and reason when fields 41/42 may not transact: ``58`` (transaction not
    permitted to terminal) for an unknown or closed terminal, a closed merchant or one without an acquiring
    bank (registered before the center), ``03`` (invalid merchant) for a terminal of another merchant; None
    when they may (then ``binding.merchant.bank_code`` is the acquiring bank)."""
    if binding is None:
        return "58", "terminal (field 41) is not registered"
    terminal, merchant = binding
    if not terminal.active:
        return "58", f"terminal {terminal.terminal_id} is {terminal.status.value}"
    if merchant.merchant_id != merchant_id:
        return "03", f"terminal {terminal.terminal_id} is not a terminal of merchant {merchant_id!r}"
    if not merchant.active:
        return "58", f"merchant {merchant.merchant_id} is {merchant.status.value}"
    if merchant.bank_code is None:
        return "58", f"merchant {merchant.merchant_id} has no acquiring bank"
    return None


def list_merchants(
    uow: CenterUnitOfWork, query: MerchantQuery, *, limit: int = MAX_LISTING, offset: int = 0
) -> list[Merchant]:
    assert 0 < limit <= MAX_LISTING and offset >= 0
    with uow:
        return uow.merchants.find(query, limit=limit, offset=offset)


def list_terminals(
    uow: CenterUnitOfWork, merchant_id: str | None = None, *, limit: int = MAX_LISTING, offset: int = 0
) -> list[Terminal]:
    assert 0 < limit <= MAX_LISTING and offset >= 0
    with uow:
        return uow.terminals.find(merchant_id, limit=limit, offset=offset)


def registered_time(ns: int) -> str | None:
    """ISO 8601 UTC to the second; None for 0 (registered before the center kept times)."""
    if ns == 0:
        return None
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merchant_json(merchant: Merchant) -> dict[str, Any]:
    return {
        "merchant_id": merchant.merchant_id,
        "name": merchant.name,
        "mcc": merchant.mcc,
        "industry": merchant.industry.value if merchant.industry else None,
        "district": merchant.district,
        "bank": merchant.bank_code,
        "status": merchant.status.value,
        "created": registered_time(merchant.created_ns),
    }


def terminal_json(terminal: Terminal) -> dict[str, Any]:
    return {
        "terminal_id": terminal.terminal_id,
        "merchant_id": terminal.merchant_id,
        "kind": terminal.kind.value,
        "status": terminal.status.value,
        "tmk_kcv": terminal.tmk_kcv or None,
        "created": registered_time(terminal.created_ns),
        "line": terminal.line,
        "vehicle": terminal.vehicle or None,
    }


def service_reports(uow: CenterUnitOfWork) -> tuple[list[ServiceReport], int]:
    """The network services' last reports (``citycard.center.services``): the running and the silent first,
    then the stopped, each group by name, machine and address; and the database's clock, which their ages
    are read against (``center.services``, "one clock")."""
    with uow:
        reports = uow.services.all()
        now_ns = uow.services.now_ns()
    return sorted(reports, key=lambda r: r.stopped_ns is not None), now_ns


def save_report(
    uow: CenterUnitOfWork,
    report: ServiceReport,
    written_ns: int,
    alive: Callable[[int], bool] | None = None,
) -> list[ServiceReport]:
    """Write one report in a transaction of its own (the ``save`` of ``citycard.hosts.reports``), its times
    moved onto the database's clock by the difference between it and ``written_ns``, the writer's clock as
    it writes. A running service's report supersedes the reports of its name on its machine that say they
    stopped (the same service started again, on another port maybe): stopped ones do not pile up run after
    run. With ``alive`` (whether a process of the writer's machine runs), it also supersedes those of its
    name on its machine whose process is gone without a word (killed, crashed, the machine restarted: they
    would read not reporting, in red, beside the service running again); returns those."""
    with uow:
        report = report.shifted(uow.services.now_ns() - written_ns)
        gone: list[ServiceReport] = []
        if report.stopped_ns is None:
            uow.services.supersede(report.name, report.hostname)
            if alive is not None:
                gone = [
                    r
                    for r in uow.services.of(report.name, report.hostname)
                    if r.stopped_ns is None and r.pid != report.pid and not alive(r.pid)
                ]
                uow.services.delete([r.key for r in gone])
        uow.services.save(report)
        uow.commit()
    return gone


def forget_reports(
    uow: CenterUnitOfWork, name: str, hostname: str | None, address: str | None
) -> tuple[list[ServiceReport], list[ServiceReport]]:
    """Delete the reports of ``name`` (on ``hostname``, at ``address``, when given) that are not running
    (stopped, or not reporting: a service killed or moved for good, by the database's clock); (forgotten,
    kept because running)."""
    with uow:
        now_ns = uow.services.now_ns()
        matching = [
            r
            for r in uow.services.all()
            if r.name == name
            and (hostname is None or r.hostname == hostname)
            and (address is None or r.address == address)
        ]
        forgotten = [r for r in matching if health(r, now_ns) is not Health.RUNNING]
        uow.services.delete([r.key for r in forgotten])
        uow.commit()
    return forgotten, [r for r in matching if r not in forgotten]


def _age(ns: int) -> str:
    seconds = max(ns, 0) // 10**9
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def service_json(report: ServiceReport, now_ns: int) -> dict[str, Any]:
    """A report for a person or a program: ``health`` (running, not reporting, stopped), ``attention``
    (not reporting, or a link down or a peer silent), ``last_report`` as an age (``3 s``, ``12 min``), times
    ISO 8601 UTC."""
    state = health(report, now_ns)
    return {
        "name": report.name,
        "hostname": report.hostname,
        "address": report.address,
        "pid": report.pid,
        "health": state.value,
        "attention": needs_attention(report, now_ns),
        "started": registered_time(report.started_ns),
        "reported": registered_time(report.reported_ns),
        "last_report": _age(now_ns - report.reported_ns),
        "every_s": report.every_s,
        "stopped": None if report.stopped_ns is None else registered_time(report.stopped_ns),
        "status": report.status,
    }
