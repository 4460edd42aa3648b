"""The registry's ports: the repositories and unit of work its handlers are given (Cosmic Python ch. 2, 6),
and the dependencies beside them. ``citycard.db.center_repositories`` implements them on SQLAlchemy."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Protocol, Self

from citycard.hsm.api import Hsm

from .model import Industry, Merchant, RegistryStatus, Terminal
from .services import ServiceReport

__all__ = [
    "Banks",
    "CenterDeps",
    "CenterUnitOfWork",
    "Clock",
    "MerchantQuery",
    "Merchants",
    "ServiceReports",
    "TerminalBinding",
    "Terminals",
]

Clock = Callable[[], int]
"""Nanoseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class MerchantQuery:
    """Which merchants a listing wants (None: any)."""

    bank_code: str | None = None
    industry: Industry | None = None
    district: str | None = None


class TerminalBinding(NamedTuple):
    """A terminal and the merchant it belongs to (fields 41 and 42 of one message)."""

    terminal: Terminal
    merchant: Merchant


class Merchants(Protocol):
    def add(self, merchant: Merchant) -> bool:
        """Insert it; False, writing nothing, when the ID is taken (a simultaneous add committed first)."""
        ...

    def get(self, merchant_id: str, *, for_update: bool = False) -> Merchant | None: ...
    def set_status(self, merchant_id: str, status: RegistryStatus) -> None: ...
    def find(self, query: MerchantQuery, *, limit: int, offset: int = 0) -> list[Merchant]:
        """Matching merchants in ID order, ``limit`` of them after the first ``offset``."""
        ...


class Terminals(Protocol):
    def add(self, terminal: Terminal) -> bool:
        """Insert it; False, writing nothing, when the ID is taken."""
        ...

    def get(self, terminal_id: str, *, for_update: bool = False) -> Terminal | None: ...
    def set_status(self, terminal_id: str, status: RegistryStatus) -> None: ...
    def close_of_merchant(self, merchant_id: str) -> int:
        """Close every active terminal of the merchant; return how many."""
        ...

    def find(self, merchant_id: str | None, *, limit: int, offset: int = 0) -> list[Terminal]:
        """Terminals (of the merchant, or all) in ID order."""
        ...

    def binding(self, terminal_id: str) -> TerminalBinding | None:
        """The terminal with its merchant, in one query (the hosts ask it for every message)."""
        ...


class Banks(Protocol):
    def exists(self, code: str) -> bool:
        """Whether a bank with this code is in the issuers' banks table."""
        ...


class ServiceReports(Protocol):
    def save(self, report: ServiceReport) -> None:
        """Insert the report, or replace the one of the same place (:attr:`ServiceReport.key`)."""
        ...

    def supersede(self, name: str, hostname: str) -> int:
        """Delete the reports of ``name`` on ``hostname`` that say it stopped; how many."""
        ...

    def delete(self, keys: Collection[tuple[str, str, str]]) -> int:
        """Delete the reports of these places (name, hostname, address); how many."""
        ...

    def all(self) -> list[ServiceReport]:
        """Every report, by name, machine and address."""
        ...

    def of(self, name: str, hostname: str) -> list[ServiceReport]:
        """The reports of ``name`` on ``hostname``, by address."""
        ...

    def now_ns(self) -> int:
        """The database's clock (ns since the epoch): the one clock reports are stamped and read by."""
        ...


class CenterUnitOfWork(Protocol):
    """The registry's repositories in one transaction (and the network services' reports)."""

    @property
    def merchants(self) -> Merchants: ...
    @property
    def terminals(self) -> Terminals: ...
    @property
    def banks(self) -> Banks: ...
    @property
    def services(self) -> ServiceReports: ...

    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


@dataclass(frozen=True)
class CenterDeps:
    """What the handlers use beside the unit of work: the clock, the platform's HSM (the acquirer's keys)
    and a way to open (creating it) a terminal's own key store (``citycard.bootstrap.terminal_hsm``)."""

    clock: Clock
    hsm: Hsm | None = None
    terminal_hsm: Callable[[str], Hsm] | None = None
