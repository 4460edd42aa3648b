"""The check an authorization makes against the terminal registry (ISO 8583 fields 41 and 42), which the
Citizen Card Service Center keeps (``citycard.center``) and the issuer reads through its port
(``ports.Terminals``): once any terminal is registered, field 41 must be an active terminal of the merchant
in field 42.
"""

from __future__ import annotations

from .commands import AuthorizationRequest
from .model import RegisteredTerminal, TerminalStatus
from .ports import IssuerUnitOfWork

__all__ = ["registry_refusal", "terminal_refusal"]


def terminal_refusal(uow: IssuerUnitOfWork, req: AuthorizationRequest) -> tuple[str, str, str] | None:
    """(code, reason, flag) when the registry is in use and field 41 is not an active terminal of the
    merchant in field 42: ``58`` unknown or inactive terminal, ``03`` a terminal of another merchant."""
    if not uow.terminals.in_use():
        return None  # no terminal registered: nothing to check against (docs/issuer.md)
    return registry_refusal(True, uow.terminals.get(req.terminal_id), req)


def registry_refusal(
    in_use: bool, terminal: RegisteredTerminal | None, req: AuthorizationRequest
) -> tuple[str, str, str] | None:
    """:func:`terminal_refusal` over what was read already: whether the registry is in use and field 41's
    entry (pure)."""
    if not in_use:
        return None
    if terminal is None:
        return "58", f"terminal {req.terminal_id!r} (field 41) is not registered", "terminal_unknown"
    if terminal.status is not TerminalStatus.ACTIVE:
        return (
            "58",
            f"terminal {req.terminal_id!r} (field 41) is {terminal.status.value}",
            "terminal_inactive",
        )
    if terminal.merchant_id != req.merchant_id:
        return (
            "03",
            f"terminal {req.terminal_id!r} is not a terminal of merchant {req.merchant_id!r}",
            ("terminal_merchant_mismatch"),
        )
    return None
