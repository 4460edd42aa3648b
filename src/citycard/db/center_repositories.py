"""SQL implementations of the registry's ports (``citycard.center.ports``) and its unit of work.

``CenterUnitOfWork`` extends :class:`citycard.db.uow.SqlUnitOfWork` with the merchants, terminals and the
one question the registry asks of the issuers' banks (does this code exist). Inserts use ``INSERT … ON
CONFLICT DO NOTHING … RETURNING`` so that a simultaneous registration of the same ID is a ``False``, not a
unique violation; rows locked ``for_update`` use ``SELECT … FOR UPDATE`` on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, ClassVar, Final

from sqlalchemy import Table, and_, bindparam, delete, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from citycard.center import ports
from citycard.center.model import Industry, Merchant, RegistryStatus, Terminal, TerminalKind
from citycard.center.ports import MerchantQuery, TerminalBinding
from citycard.center.services import ServiceReport

from .center_tables import center_merchants, center_services, center_terminals
from .driver import DriverStatement
from .issuer_tables import issuer_banks
from .uow import RepositoryFactory, SqlUnitOfWork

__all__ = ["CenterUnitOfWork", "SqlCenterBanks", "SqlMerchants", "SqlServiceReports", "SqlTerminalRegistry"]

_M = center_merchants.c
_T = center_terminals.c
_S = center_services.c
MAX_SERVICES = 1000
"""The most service reports one read returns (a row per place a service runs: a city has a few)."""


def _insert_new(session: Session, table: Table, values: dict[str, Any], key: str) -> bool:
    """Insert the row unless its key is taken; whether it was inserted."""
    if session.get_bind().dialect.name == "postgresql":  # imported here: costly for every SQLite command
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement: Any = postgresql_insert(table)
    else:
        statement = sqlite_insert(table)
    result = session.execute(
        statement.values(**values).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    )
    return result.first() is not None


def _merchant(row: Any, prefix: str = "") -> Merchant:
    industry = getattr(row, f"{prefix}industry")
    return Merchant(
        merchant_id=getattr(row, f"{prefix}merchant_id"),
        name=getattr(row, f"{prefix}name"),
        mcc=getattr(row, f"{prefix}mcc"),
        industry=Industry(industry) if industry is not None else None,
        district=getattr(row, f"{prefix}district"),
        bank_code=getattr(row, f"{prefix}bank_code"),
        status=RegistryStatus(getattr(row, f"{prefix}status")),
        created_ns=int(getattr(row, f"{prefix}created_ns")),
    )


def _terminal(row: Any) -> Terminal:
    return Terminal(
        terminal_id=row.terminal_id,
        merchant_id=row.merchant_id,
        kind=TerminalKind(row.kind),
        status=RegistryStatus(row.status),
        tmk_kcv=row.tmk_kcv,
        created_ns=int(row.created_ns),
        line=None if row.line is None else int(row.line),
        vehicle=row.vehicle,
    )


class _Repo:
    def __init__(self, session: Session) -> None:
        self.session = session


class SqlMerchants(_Repo):
    def add(self, merchant: Merchant) -> bool:
        values = {
            "merchant_id": merchant.merchant_id,
            "name": merchant.name,
            "mcc": merchant.mcc,
            "industry": merchant.industry.value if merchant.industry else None,
            "district": merchant.district,
            "bank_code": merchant.bank_code,
            "status": merchant.status.value,
            "created_ns": merchant.created_ns,
        }
        return _insert_new(self.session, center_merchants, values, "merchant_id")

    def get(self, merchant_id: str, *, for_update: bool = False) -> Merchant | None:
        query = select(center_merchants).where(_M.merchant_id == merchant_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).first()
        return _merchant(row) if row else None

    def set_status(self, merchant_id: str, status: RegistryStatus) -> None:
        self.session.execute(
            update(center_merchants).where(_M.merchant_id == merchant_id).values(status=status.value)
        )

    def find(self, query: MerchantQuery, *, limit: int, offset: int = 0) -> list[Merchant]:
        statement = select(center_merchants)
        if query.bank_code is not None:
            statement = statement.where(_M.bank_code == query.bank_code)
        if query.industry is not None:
            statement = statement.where(_M.industry == query.industry.value)
        if query.district is not None:
            statement = statement.where(_M.district == query.district)
        statement = statement.order_by(_M.merchant_id).limit(limit).offset(offset)
        return [_merchant(r) for r in self.session.execute(statement)]


class SqlTerminalRegistry(_Repo):
    def add(self, terminal: Terminal) -> bool:
        values = {
            "terminal_id": terminal.terminal_id,
            "merchant_id": terminal.merchant_id,
            "kind": terminal.kind.value,
            "status": terminal.status.value,
            "tmk_kcv": terminal.tmk_kcv,
            "created_ns": terminal.created_ns,
            "line": terminal.line,
            "vehicle": terminal.vehicle,
        }
        return _insert_new(self.session, center_terminals, values, "terminal_id")

    def get(self, terminal_id: str, *, for_update: bool = False) -> Terminal | None:
        query = select(center_terminals).where(_T.terminal_id == terminal_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).first()
        return _terminal(row) if row else None

    def set_status(self, terminal_id: str, status: RegistryStatus) -> None:
        self.session.execute(
            update(center_terminals).where(_T.terminal_id == terminal_id).values(status=status.value)
        )

    def close_of_merchant(self, merchant_id: str) -> int:
        result = self.session.execute(
            update(center_terminals)
            .where(_T.merchant_id == merchant_id, _T.status == RegistryStatus.ACTIVE.value)
            .values(status=RegistryStatus.CLOSED.value)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def find(self, merchant_id: str | None, *, limit: int, offset: int = 0) -> list[Terminal]:
        statement = select(center_terminals)
        if merchant_id is not None:
            statement = statement.where(_T.merchant_id == merchant_id)
        statement = statement.order_by(_T.terminal_id).limit(limit).offset(offset)
        return [_terminal(r) for r in self.session.execute(statement)]

    def binding(self, terminal_id: str) -> TerminalBinding | None:
        """Built once, run on the driver (``citycard.db.driver``): the acquirer reads it for every
        purchase, in the purchase's own transaction (or once for a group: :meth:`read_ahead`)."""
        ahead = self.session.info.get(_AHEAD)
        if ahead is not None and ahead[0] is self.session.get_transaction() and terminal_id in ahead[1]:
            known: TerminalBinding | None = ahead[1][terminal_id]
            return known
        row = _BINDING.first(self.session.connection(), {"terminal_id": terminal_id})
        return TerminalBinding(_terminal(row), _merchant(row, "m_")) if row else None

    def read_ahead(self, terminal_ids: Collection[str]) -> None:
        """Read the bindings of ``terminal_ids`` in one statement, for :meth:`binding` to answer from in this
        transaction (the acquirer's group of purchases, ``acquirer.begin_many``); a terminal not registered
        is remembered as None. The registry is not written by those who read it ahead."""
        rows = _BINDINGS.rows(self.session.connection(), {"terminal_ids": sorted(terminal_ids)})
        found: dict[str, TerminalBinding | None] = dict.fromkeys(terminal_ids)
        for row in rows:
            found[row.terminal_id] = TerminalBinding(_terminal(row), _merchant(row, "m_"))
        self.session.info[_AHEAD] = (self.session.get_transaction(), found)


_BINDING_OF = select(center_terminals, *(c.label(f"m_{c.name}") for c in center_merchants.c)).join(
    center_merchants, _M.merchant_id == _T.merchant_id
)
"""A terminal's row with its merchant's (``m_`` columns): :class:`TerminalBinding`."""
_BINDING = DriverStatement(_BINDING_OF.where(_T.terminal_id == bindparam("terminal_id")))
_BINDINGS = DriverStatement(
    _BINDING_OF.where(_T.terminal_id.in_(bindparam("terminal_ids", expanding=True))),
    arrays={"terminal_ids": "VARCHAR[]"},
)
_AHEAD = "citycard.center.bindings_ahead"
"""``Session.info`` key of the bindings read ahead: (their transaction, terminal → binding)."""


class SqlCenterBanks(_Repo):
    def exists(self, code: str) -> bool:
        query = select(issuer_banks.c.code).where(issuer_banks.c.code == code)
        return self.session.execute(query).first() is not None


_SERVER_MICROS: Final = text("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)")
"""PostgreSQL's clock in microseconds since the epoch (its resolution)."""


class SqlServiceReports(_Repo):
    """The network services' last reports (``citycard.center.services``), one row per service's place."""

    def save(self, report: ServiceReport) -> None:
        """Insert the report, or replace the one of the same place (a service started again there)."""
        values = {
            "name": report.name,
            "hostname": report.hostname,
            "address": report.address,
            "pid": report.pid,
            "started_ns": report.started_ns,
            "reported_ns": report.reported_ns,
            "every_s": report.every_s,
            "status": report.status,
            "stopped_ns": report.stopped_ns,
        }
        if self.session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            statement: Any = postgresql_insert(center_services)
        else:
            statement = sqlite_insert(center_services)
        statement = statement.values(**values)
        keys = ("name", "hostname", "address")
        self.session.execute(
            statement.on_conflict_do_update(
                index_elements=list(keys),
                set_={k: statement.excluded[k] for k in values if k not in keys},
            )
        )

    def supersede(self, name: str, hostname: str) -> int:
        """Delete the reports of ``name`` on ``hostname`` that say it stopped; how many."""
        done = self.session.execute(
            delete(center_services).where(
                _S.name == name, _S.hostname == hostname, _S.stopped_ns.is_not(None)
            )
        )
        return int(done.rowcount)  # type: ignore[attr-defined]

    def delete(self, keys: Collection[tuple[str, str, str]]) -> int:
        """Delete the reports of these places (name, hostname, address); how many."""
        gone = 0
        for name, hostname, address in keys:
            done = self.session.execute(
                delete(center_services).where(
                    and_(_S.name == name, _S.hostname == hostname, _S.address == address)
                )
            )
            gone += int(done.rowcount)  # type: ignore[attr-defined]
        return gone

    def of(self, name: str, hostname: str) -> list[ServiceReport]:
        """The reports of ``name`` on ``hostname``, by address (one per place: at most a handful)."""
        rows = self.session.execute(
            select(center_services)
            .where(_S.name == name, _S.hostname == hostname)
            .order_by(_S.address)
            .limit(MAX_SERVICES)
        )
        return [_report_of(r) for r in rows]

    def now_ns(self) -> int:
        """PostgreSQL's ``clock_timestamp()`` (the server's clock, whichever machine asks); SQLite's file is
        on this machine, whose clock is the database's."""
        if self.session.get_bind().dialect.name != "postgresql":
            return time.time_ns()
        micros = self.session.execute(_SERVER_MICROS).scalar_one()
        return int(micros) * 1000

    def all(self) -> list[ServiceReport]:
        """Every report, by name, machine and address: at most :data:`MAX_SERVICES`, the latest reported
        (past the bound, the oldest are left out, never a service reporting now)."""
        rows = self.session.execute(
            select(center_services).order_by(_S.reported_ns.desc(), _S.name).limit(MAX_SERVICES)
        )
        return sorted((_report_of(r) for r in rows), key=lambda r: r.key)


def _report_of(r: Any) -> ServiceReport:
    return ServiceReport(
        name=r.name,
        hostname=r.hostname,
        address=r.address,
        pid=int(r.pid),
        started_ns=int(r.started_ns),
        reported_ns=int(r.reported_ns),
        every_s=float(r.every_s),
        status=r.status,
        stopped_ns=None if r.stopped_ns is None else int(r.stopped_ns),
    )


class CenterUnitOfWork(SqlUnitOfWork):
    """The registry's repositories in one transaction (the ledger's too, unused)."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        **SqlUnitOfWork.repository_factories,
        "merchants": lambda uow: SqlMerchants(uow.session),
        "terminals": lambda uow: SqlTerminalRegistry(uow.session),
        "banks": lambda uow: SqlCenterBanks(uow.session),
        "services": lambda uow: SqlServiceReports(uow.session),
    }
    merchants: SqlMerchants
    terminals: SqlTerminalRegistry
    banks: SqlCenterBanks
    services: SqlServiceReports


if TYPE_CHECKING:  # mypy checks that the SQL unit of work implements the registry's port

    def _is_center_unit_of_work(uow: CenterUnitOfWork) -> ports.CenterUnitOfWork:
        return uow
