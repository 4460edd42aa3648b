"""``citycard ledger balance | journal``: the banks' books (amounts in yuan, PANs masked)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.model import ACCOUNT_CODES, BankAccount, mask_pan
from citycard.issuer.views import iso_time

from .bank import fail, open_issuer, yuan

__all__ = ["app"]

app = typer.Typer(help="The double-entry ledger: balances and journal.", no_args_is_help=True)
console = Console()


def _owners(uow: IssuerUnitOfWork) -> dict[int, str]:
    """Account id -> who owns it (bank system accounts, card EC floats, holders' deposit accounts)."""
    names: dict[int, str] = {}
    for bank in uow.banks.list():
        names[bank.cash_account_id] = f"{bank.code} counter cash"
        names[bank.settlement_account_id] = f"{bank.code} network settlement"
        names[bank.fee_account_id] = f"{bank.code} fee income"
    for card in uow.cards.list(limit=100_000):
        names[card.ec_float_account_id] = f"{card.bank_code} EC {mask_pan(card.pan)}"
        if card.deposit_account_id is not None:
            names.setdefault(card.deposit_account_id, f"{card.bank_code} deposit {mask_pan(card.pan)}")
    return names


@app.command("balance")
def balance(
    pan: Annotated[str | None, typer.Option("--pan", help="only this card's accounts")] = None,
    bank: Annotated[str | None, typer.Option("--bank", help="only this bank's accounts")] = None,
) -> None:
    """Balances of the accounts on their normal side (credit for what the bank owes, debit for cash)."""
    with open_issuer() as issuer, issuer.database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        if bank is not None and uow.banks.get(bank) is None:
            raise fail(f"no bank {bank}", 2)
        owners = _owners(uow)
        ids = None
        if pan is not None:
            card = uow.cards.get(pan)
            if card is None:
                raise fail(f"no card {mask_pan(pan)}", 2)
            ids = [i for i in (card.ec_float_account_id, card.deposit_account_id) if i is not None]
        table = Table("account", "owner", "kind", "debits", "credits", "balance")
        for account in uow.ledger.balances(ids):
            owner = owners.get(account.id, "-")
            if bank is not None and not owner.startswith(bank + " "):
                continue
            table.add_row(
                str(account.id),
                owner,
                ACCOUNT_CODES.get(account.code, str(account.code)),
                yuan(account.debits_posted),
                yuan(account.credits_posted),
                yuan(account.balance_fen if account.code == BankAccount.CASH else account.credit_balance_fen),
            )
        totals = uow.ledger.totals()
        console.print(table)
        state = "balanced" if totals.balanced else "[red]NOT BALANCED[/red]"
        console.print(
            f"totals: debits {yuan(totals.debits_posted)}, credits {yuan(totals.credits_posted)}: {state}"
        )


@app.command("journal")
def journal(
    pan: Annotated[
        str | None, typer.Option("--pan", help="only transfers touching this card's accounts")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 50,
) -> None:
    """Transfers in time order."""
    with open_issuer() as issuer, issuer.database.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        owners = _owners(uow)
        transfers = []
        if pan is not None:
            card = uow.cards.get(pan)
            if card is None:
                raise fail(f"no card {mask_pan(pan)}", 2)
            for account_id in (card.ec_float_account_id, card.deposit_account_id):
                if account_id is not None:
                    transfers += uow.ledger.journal(account_id=account_id, limit=limit)
            transfers = sorted({t.id: t for t in transfers}.values(), key=lambda t: (t.timestamp_ns, t.id))
        else:
            transfers = uow.ledger.journal(limit=limit)
        table = Table("time (UTC)", "transfer", "debit", "credit", "amount")
        for t in transfers[-limit:]:
            table.add_row(
                iso_time(t.timestamp_ns),
                str(t.id),
                owners.get(t.debit_account_id, str(t.debit_account_id)),
                owners.get(t.credit_account_id, str(t.credit_account_id)),
                yuan(t.amount_fen),
            )
        console.print(table)
