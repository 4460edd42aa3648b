"""``citycard ledger balance | journal``: the banks' books (amounts in yuan, right-aligned; PANs masked).

``--bank`` keeps one bank's accounts (its system accounts, its cards' EC floats and its holders' deposit
accounts) and prints that bank's totals; the journal is newest first and says what each transfer was
(``citycard.issuer.views.transfer_kind``). ``--json`` prints the same as one JSON document.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.issuer.model import ACCOUNT_CODES, BankAccount, mask_pan
from citycard.issuer.ports import AccountOwner
from citycard.issuer.views import TRANSFER_KINDS, iso_time, owner_label, transfer_kind
from citycard.ledger.engine import Totals
from citycard.ledger.model import Account, Transfer

from .bank import fail, open_issuer
from .output import JsonFlag, amount_column, print_json, yuan

__all__ = ["app"]

app = typer.Typer(help="The double-entry ledger: balances and journal.", no_args_is_help=True)
console = Console()

PanOpt = Annotated[str | None, typer.Option("--pan", help="only this card's accounts")]
BankOpt = Annotated[str | None, typer.Option("--bank", help="only this bank's accounts, with its totals")]
RevealOpt = Annotated[bool, typer.Option("--reveal", help="show full PANs")]


def _card_accounts(uow: IssuerUnitOfWork, pan: str | None) -> list[int] | None:
    if pan is None:
        return None
    card = uow.cards.get(pan)
    if card is None:
        raise fail(f"no card {mask_pan(pan)}", 2)
    return [i for i in (card.ec_float_account_id, card.deposit_account_id) if i is not None]


def _check_bank(uow: IssuerUnitOfWork, bank: str | None) -> None:
    if bank is not None and uow.banks.get(bank) is None:
        raise fail(f"no bank {bank}", 2)


def _balance_fen(account: Account) -> int:
    """On the account's normal side: debit for counter cash, credit for what the bank owes."""
    return account.balance_fen if account.code == BankAccount.CASH else account.credit_balance_fen


def _totals_json(totals: Totals) -> dict[str, Any]:
    return {
        "debits_posted_fen": totals.debits_posted,
        "credits_posted_fen": totals.credits_posted,
        "debits_pending_fen": totals.debits_pending,
        "credits_pending_fen": totals.credits_pending,
        "balanced": totals.balanced,
    }


def _print_totals(totals: Totals, whose: str) -> None:
    state = "balanced" if totals.balanced else "[red]NOT BALANCED[/red]"
    console.print(
        f"{whose}: debits {yuan(totals.debits_posted)}, credits {yuan(totals.credits_posted)}: {state}"
    )


@app.command("balance")
def balance(
    pan: PanOpt = None,
    bank: BankOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="most accounts")] = 1000,
    reveal: RevealOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Balances of the accounts on their normal side (credit for what the bank owes, debit for cash), and
    the totals (of the bank with ``--bank``)."""
    with open_issuer() as issuer, issuer.unit_of_work(read_only=True) as uow:
        _check_bank(uow, bank)
        ids = _card_accounts(uow, pan)
        accounts = uow.books.balances(bank_code=bank, account_ids=ids, limit=limit)
        owners = uow.books.owners(a.id for a in accounts)
        totals = uow.books.totals(bank)
        whose = f"{bank} totals" if bank else "totals"
        if as_json:
            rows = [
                {
                    "account_id": a.id,
                    "owner": owner_label(owners.get(a.id), show_pan=reveal),
                    "kind": ACCOUNT_CODES.get(a.code, str(a.code)),
                    "debits_posted_fen": a.debits_posted,
                    "credits_posted_fen": a.credits_posted,
                    "balance_fen": _balance_fen(a),
                }
                for a in accounts
            ]
            print_json({"accounts": rows, "bank": bank, "totals": _totals_json(totals)})
            return
        table = Table("account", "owner", "kind")
        for header in ("debits", "credits", "balance"):
            amount_column(table, header)
        for a in accounts:
            table.add_row(
                str(a.id),
                owner_label(owners.get(a.id), show_pan=reveal),
                ACCOUNT_CODES.get(a.code, str(a.code)),
                yuan(a.debits_posted),
                yuan(a.credits_posted),
                yuan(_balance_fen(a)),
            )
        console.print(table)
        _print_totals(totals, whose)


def _card_side(debit: AccountOwner | None, credit: AccountOwner | None) -> AccountOwner | None:
    """The side of a transfer that names a card (its EC float or its holder's deposit account)."""
    for owner in (debit, credit):
        if owner is not None and owner.pan is not None:
            return owner
    return debit or credit


@app.command("journal")
def journal(
    pan: Annotated[
        str | None, typer.Option("--pan", help="only transfers touching this card's accounts")
    ] = None,
    bank: BankOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 50,
    reveal: RevealOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Transfers, newest first: what each was, the card, the bank, the two accounts and the amount
    (``--json`` adds the transfer ids and the accounts' ids and owners)."""
    with open_issuer() as issuer, issuer.unit_of_work(read_only=True) as uow:
        _check_bank(uow, bank)
        ids = _card_accounts(uow, pan)
        transfers = uow.books.journal(bank_code=bank, account_ids=ids, limit=limit)
        owners = uow.books.owners(i for t in transfers for i in (t.debit_account_id, t.credit_account_id))
        totals = uow.books.totals(bank) if bank else None
        rows = [_journal_row(t, owners, reveal) for t in transfers]
        if as_json:
            print_json({"bank": bank, "transfers": rows, "totals": _totals_json(totals) if totals else None})
            return
        table = Table()
        table.add_column("time (UTC)", no_wrap=True)
        table.add_column("what")
        table.add_column("card", no_wrap=True)
        for header in ("bank", "debit", "credit"):
            table.add_column(header)
        amount_column(table, "amount")
        for t, row in zip(transfers, rows, strict=True):
            table.add_row(
                row["time"].replace("T", " ").removesuffix("Z"),
                TRANSFER_KINDS[row["kind"]],
                row["card"] or "-",
                row["bank"] or "-",
                owner_label(owners.get(t.debit_account_id), short=True),
                owner_label(owners.get(t.credit_account_id), short=True),
                yuan(row["amount_fen"]),
            )
        console.print(table)
        if totals is not None:
            _print_totals(totals, f"{bank} totals")


def _journal_row(t: Transfer, owners: dict[int, AccountOwner], reveal: bool) -> dict[str, Any]:
    debit, credit = owners.get(t.debit_account_id), owners.get(t.credit_account_id)
    side = _card_side(debit, credit)
    card = side.pan if side is not None and side.pan is not None else None
    return {
        "id": t.id,
        "time": iso_time(t.timestamp_ns),
        "timestamp_ns": t.timestamp_ns,
        "kind": transfer_kind(t, debit, credit),
        "code": t.code,
        "card": (card if reveal else mask_pan(card)) if card else None,
        "bank": side.bank_code if side is not None else None,
        "debit": {"account_id": t.debit_account_id, "owner": owner_label(debit, show_pan=reveal)},
        "credit": {"account_id": t.credit_account_id, "owner": owner_label(credit, show_pan=reveal)},
        "amount_fen": t.amount_fen,
    }
