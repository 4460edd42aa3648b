"""The issuer's use cases: handlers ``(command, uow, deps)`` dispatched by the command's type.

- :mod:`.banks`: a bank, its BIN ranges and products;
- :mod:`.cards`: issuance and the card's life (activation, PIN, deposits, block/unblock, loss, replacement,
  renewal, closure, EC refund, annual fees, expiry);
- :mod:`.concessions`: a registered holder's transit concession on the card (by script);
- :mod:`.authorize`: online authorization (field 55 parsed at the edge, the pure ``decision.decide``);
- :mod:`.reversal`: reversals;
- :mod:`.denylist`: the signed deny list;
- :mod:`.deps`: what the handlers are given (:class:`~.deps.Deps`) and share.

The check against the terminal registry (fields 41, 42) is ``citycard.issuer.registry``; the registry is
the service center's (``citycard.center``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import commands as c
from ..ports import IssuerUnitOfWork
from . import authorize, banks, cards, concessions, denylist
from .deps import Deps

__all__ = ["HANDLERS", "Deps", "handle"]

Handler = Callable[[Any, IssuerUnitOfWork, Deps], Any]

HANDLERS: dict[type, Handler] = {
    c.AddBank: banks.add_bank,
    c.AddBinRange: banks.add_bin_range,
    c.AddProduct: banks.add_product,
    c.IssueCards: cards.issue_cards,
    c.ActivateCard: cards.activate,
    c.SetPin: cards.set_pin,
    c.Deposit: cards.deposit,
    c.BlockCard: cards.block,
    c.LoadEcFromAccount: cards.load_ec_from_account,
    c.CheckPin: cards.check_pin,
    c.UnblockCard: cards.unblock,
    c.UnblockPin: cards.unblock_pin,
    c.RecordOfflineClearing: cards.record_offline_clearing,
    c.ReportLost: cards.report_lost,
    c.ReplaceCard: cards.replace_card,
    c.RenewCard: cards.renew,
    c.RefundEcBalance: cards.refund_ec_balance,
    c.CloseCard: cards.close,
    c.ChargeAnnualFees: cards.charge_annual_fees,
    c.ExpireCards: cards.expire_cards,
    c.SetConcession: concessions.set_concession,
    c.RevokeConcession: concessions.revoke_concession,
    c.ExportDenyList: denylist.export_deny_list,
    c.AuthorizationRequest: authorize.authorize,
}
"""Command type → its handler."""


def handle(command: object, uow: IssuerUnitOfWork, deps: Deps) -> Any:
    """Run the handler of ``command``'s type with a fresh unit of work ``uow``."""
    handler = HANDLERS.get(type(command))
    if handler is None:
        raise TypeError(f"no handler for {type(command).__name__}")
    return handler(command, uow, deps)
