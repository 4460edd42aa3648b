"""The registry's handlers: functions ``(command, uow, deps)`` (Cosmic Python ch. 9), dispatched by the
command's type with :func:`handle`. Each opens the unit of work it is given, checks the registry's state,
writes, commits, and returns what it made or changed. Refusals are exceptions of :mod:`.model`:
:class:`NotFound` (the input named something that does not exist), :class:`AlreadyExists`,
:class:`StateError` (a closed merchant or terminal).

Registering a terminal injects its terminal master key (TMK) into the platform's HSM and into the
terminal's own key store under one label (:func:`citycard.hsm.injection.inject_terminal_master_key`) inside
the transaction that adds the row, so that a terminal is registered with a TMK or not at all; if the commit
fails after the keys were made, running the command again finds both keys and registers the terminal with
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from citycard.hsm.injection import inject_terminal_master_key

from .commands import AddMerchant, AddTerminal, CloseMerchant, CloseTerminal, Command
from .model import AlreadyExists, Merchant, NotFound, RegistryStatus, StateError, Terminal, tmk_label
from .ports import CenterDeps, CenterUnitOfWork

__all__ = ["HANDLERS", "add_merchant", "add_terminal", "close_merchant", "close_terminal", "handle"]


def add_merchant(cmd: AddMerchant, uow: CenterUnitOfWork, deps: CenterDeps) -> Merchant:
    with uow:
        if not uow.banks.exists(cmd.bank_code):
            raise NotFound(
                f"no bank {cmd.bank_code} (the acquiring bank must be one of 'citycard bank list')"
            )
        merchant = Merchant(
            merchant_id=cmd.merchant_id,
            name=cmd.name,
            mcc=cmd.mcc,
            industry=cmd.resolved_industry,
            district=cmd.district,
            bank_code=cmd.bank_code,
            status=RegistryStatus.ACTIVE,
            created_ns=deps.clock(),
        )
        if not uow.merchants.add(merchant):
            raise AlreadyExists(f"merchant {cmd.merchant_id} exists already")
        uow.commit()
    return merchant


def close_merchant(cmd: CloseMerchant, uow: CenterUnitOfWork, deps: CenterDeps) -> tuple[Merchant, int]:
    """Close the merchant and its active terminals; return it and how many terminals were closed."""
    with uow:
        merchant = uow.merchants.get(cmd.merchant_id, for_update=True)
        if merchant is None:
            raise NotFound(f"no merchant {cmd.merchant_id}")
        closed = merchant.closed()
        uow.merchants.set_status(closed.merchant_id, closed.status)
        count = uow.terminals.close_of_merchant(closed.merchant_id)
        uow.commit()
    return closed, count


def add_terminal(cmd: AddTerminal, uow: CenterUnitOfWork, deps: CenterDeps) -> Terminal:
    """Register the terminal of an active merchant with a fresh TMK (module docstring)."""
    assert deps.hsm is not None and deps.terminal_hsm is not None, "add_terminal needs both HSMs"
    with uow:
        merchant = uow.merchants.get(cmd.merchant_id, for_update=True)  # not closed meanwhile
        if merchant is None:
            raise NotFound(f"no merchant {cmd.merchant_id}")
        if not merchant.active:
            raise StateError(f"merchant {cmd.merchant_id} is {merchant.status.value}: it takes no terminal")
        if uow.terminals.get(cmd.terminal_id) is not None:
            raise AlreadyExists(f"terminal {cmd.terminal_id} exists already")
        tmk = inject_terminal_master_key(
            deps.hsm, deps.terminal_hsm(cmd.terminal_id), tmk_label(cmd.terminal_id)
        )
        terminal = Terminal(
            terminal_id=cmd.terminal_id,
            merchant_id=cmd.merchant_id,
            kind=cmd.kind,
            status=RegistryStatus.ACTIVE,
            tmk_kcv=tmk.kcv,
            created_ns=deps.clock(),
            line=cmd.line,
            vehicle=cmd.vehicle,
        )
        if not uow.terminals.add(terminal):
            raise AlreadyExists(f"terminal {cmd.terminal_id} exists already")
        uow.commit()
    return terminal


def close_terminal(cmd: CloseTerminal, uow: CenterUnitOfWork, deps: CenterDeps) -> Terminal:
    with uow:
        terminal = uow.terminals.get(cmd.terminal_id, for_update=True)
        if terminal is None:
            raise NotFound(f"no terminal {cmd.terminal_id}")
        closed = terminal.closed()
        uow.terminals.set_status(closed.terminal_id, closed.status)
        uow.commit()
    return closed


HANDLERS: dict[type[Any], Callable[[Any, CenterUnitOfWork, CenterDeps], Any]] = {
    AddMerchant: add_merchant,
    CloseMerchant: close_merchant,
    AddTerminal: add_terminal,
    CloseTerminal: close_terminal,
}


def handle(cmd: Command, uow: CenterUnitOfWork, deps: CenterDeps) -> Any:
    """Run the handler of ``cmd``'s type."""
    return HANDLERS[type(cmd)](cmd, uow, deps)
