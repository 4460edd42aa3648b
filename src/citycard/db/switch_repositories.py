"""The switch's routes to the banks' issuer front ends (``switch_routes``, migration ``0035_switch_routes``).

A bank's front end listens at an address of its bank's network; the switch must know it to forward that
bank's cards. ``citycard serve switch --issuer CODE=HOST:PORT`` gives it at the switch's start; a route kept
here (``citycard serve route CODE HOST:PORT``) is read with the routing table every few seconds while the
switch runs (``hosts.routing_reload``), so a bank added to the network, or a front end moved, is routed
without the switch being started again (``hosts.switch.SwitchFrontEnd``).
"""

from __future__ import annotations

from typing import ClassVar, Final

from sqlalchemy import BigInteger, Column, Integer, String, Table, delete, insert, select, update
from sqlalchemy.orm import Session

from .tables import metadata
from .uow import RepositoryFactory, SqlUnitOfWork

__all__ = ["MAX_HOST", "SqlSwitchRoutes", "SwitchUnitOfWork", "switch_routes"]

MAX_HOST: Final = 255
"""The longest host name a route keeps (DNS)."""

switch_routes = Table(
    "switch_routes",
    metadata,
    Column("bank_code", String(8), primary_key=True),
    Column("host", String(MAX_HOST), nullable=False),
    Column("port", Integer, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)
"""Where each bank's issuer front end listens, as the switch reaches it (one row per bank)."""

_R = switch_routes.c


class SqlSwitchRoutes:
    """The routes on one session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> dict[str, tuple[str, int]]:
        """Every bank's route: code → (host, port)."""
        rows = self.session.execute(select(_R.bank_code, _R.host, _R.port).order_by(_R.bank_code))
        return {str(code): (str(host), int(port)) for code, host, port in rows}

    def set(self, bank_code: str, host: str, port: int, now_ns: int) -> bool:
        """Route ``bank_code`` to ``host:port``; True when it had a route before (now replaced)."""
        assert 0 < len(host) <= MAX_HOST and 0 < port < 65536, (host, port)
        values = {"host": host, "port": port, "updated_ns": now_ns}
        done = self.session.execute(update(switch_routes).where(_R.bank_code == bank_code).values(**values))
        if done.rowcount:  # type: ignore[attr-defined]
            return True
        self.session.execute(insert(switch_routes).values(bank_code=bank_code, **values))
        return False

    def remove(self, bank_code: str) -> bool:
        """Forget ``bank_code``'s route; whether it had one."""
        done = self.session.execute(delete(switch_routes).where(_R.bank_code == bank_code))
        return bool(done.rowcount)  # type: ignore[attr-defined]


class SwitchUnitOfWork(SqlUnitOfWork):
    """The switch's routes in one transaction."""

    repository_factories: ClassVar[dict[str, RepositoryFactory]] = {
        **SqlUnitOfWork.repository_factories,
        "routes": lambda uow: SqlSwitchRoutes(uow.session),
    }
    routes: SqlSwitchRoutes
