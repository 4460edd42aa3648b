"""``citycard card issue | list | find | status | activate | deposit | report-lost | replace | refund |
block | unblock | unblock-pin | close``: the issuing bank's side of a card's life (registered onto the
``card`` app by ``cli._register``).

Cards are issued with keys from the bank's HSM into card-image files under
``$CITYCARD_HOME/cards/<BANK>/<shard>/<PAN>.json`` (load them with ``citycard card show PAN`` or
``card apdu``); PANs are masked unless ``--reveal``. ``card issue --csv FILE`` issues registered cards in bulk
(:mod:`citycard.cli.bulk`). ``card list``, ``card find`` and ``card status`` read the bank's records
(``citycard.issuer.views``), ``--json`` for programs.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from citycard.bootstrap import DirectorySink, Issuer
from citycard.codec.money import parse_yuan
from citycard.config import settings
from citycard.issuer import commands as c
from citycard.issuer.model import Card, mask_pan
from citycard.issuer.views import MAX_PAGE, CardSearch, card_status, card_summary, find_cards

from .bank import fail, open_issuer
from .output import JsonFlag, print_json, yuan

__all__ = [
    "activate",
    "block",
    "close",
    "concession",
    "deposit",
    "find",
    "issue",
    "list_cards",
    "refund",
    "register",
    "renew",
    "replace",
    "report_lost",
    "set_pin",
    "show_cards",
    "status",
    "unblock",
    "unblock_pin",
]

console = Console()
Reveal = Annotated[bool, typer.Option("--reveal", help="show full PANs")]


def _card_table(cards: list[Card], reveal: bool, title: str, first: int = 1) -> Table:
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("PAN", no_wrap=True)
    for header in ("PSN", "bank", "product", "status", "expiry", "registered"):
        table.add_column(header)
    for number, card in enumerate(cards, start=first):
        pan = card.pan if reveal else mask_pan(card.pan)
        registered = "yes" if card.registered else "no"
        expiry = f"20{card.expiry[:2]}-{card.expiry[2:]}"
        table.add_row(
            str(number),
            pan,
            card.psn,
            card.bank_code,
            card.product_code,
            card.status.value,
            expiry,
            registered,
        )
    return table


def show_cards(cards: list[Card], reveal: bool, title: str) -> None:
    console.print(_card_table(cards[:50], reveal, title))
    if len(cards) > 50:
        console.print(f"… and {len(cards) - 50} more (citycard card list --offset 50)")


def _writable(issuer: Issuer) -> None:
    """Refuse before issuing when the card images cannot be written (exit 1, nothing issued)."""
    try:
        DirectorySink(issuer.home).check_writable()
    except OSError as exc:
        raise fail(f"cannot write card images in {exc.filename}: {exc.strerror}") from None


def issue(
    bank: Annotated[str, typer.Option("--bank", help="issuing bank code")],
    product: Annotated[str, typer.Option("--product", help="card product code")] = "debit-ec",
    holder: Annotated[str | None, typer.Option("--holder", help="holder's name (registered card)")] = None,
    id_number: Annotated[str | None, typer.Option("--id-number", help="18-character resident ID")] = None,
    phone: Annotated[str, typer.Option("--phone")] = "",
    count: Annotated[int, typer.Option("--count", min=1, max=100_000)] = 1,
    activate_now: Annotated[bool, typer.Option("--activate/--no-activate")] = True,
    pin: Annotated[
        str | None,
        typer.Option(
            "--pin", help="the holder's PIN, for the chip and online (one card; else set-pin later)"
        ),
    ] = None,
    bureau_kek: Annotated[
        str | None,
        typer.Option("--bureau-kek", help="HSM label of the bureau's KEK: card keys as TR-31 blocks"),
    ] = None,
    csv_file: Annotated[
        Path | None,
        typer.Option("--csv", help="issue registered cards in bulk: columns holder,id_number[,phone]"),
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="rejected rows go here (default: <CSV>.rejects.csv)")
    ] = None,
    concession: Annotated[
        str | None,
        typer.Option(
            "--concession", help="the registered holder's transit concession: elderly, student, disabled"
        ),
    ] = None,
    concession_until: Annotated[
        str | None, typer.Option("--concession-until", help="the concession's last valid day, YYYY-MM-DD")
    ] = None,
    reveal: Reveal = False,
) -> None:
    """Issue cards: ledger accounts, HSM keys, personalised card images (with the transit file, and the
    holder's concession) and bureau records."""
    from citycard.issuer.model import bank_key_labels

    if csv_file is not None:
        if holder is not None or id_number is not None or phone or count != 1 or pin is not None:
            raise fail(
                "--csv: the holders come from the file, "
                "not with --holder, --id-number, --phone, --count, --pin",
                2,
            )
        from .bulk import issue_from_csv

        with open_issuer(bureau_kek=bureau_kek) as issuer:
            _writable(issuer)
            issue_from_csv(issuer, console, bank, product, csv_file, rejects, activate_now, reveal)
        return
    with open_issuer(bureau_kek=bureau_kek) as issuer:
        block = None
        if pin is not None:  # played as at the counter's PIN pad: format 1, the card has no PAN yet
            hsm = issuer.service.hsm
            if bank_key_labels(bank)["zpk"] not in hsm.labels():
                raise fail(f"no bank {bank}", 2)
            block = hsm.encrypt_pin_iso1(hsm.get(bank_key_labels(bank)["zpk"]), pin)
        cmd = c.IssueCards(
            bank,
            product,
            count,
            holder,
            id_number,
            phone,
            pin_block=block,
            concession=concession.lower() if concession else None,
            concession_until=_date(concession_until, "--concession-until"),
        )
        _writable(issuer)
        columns = (TextColumn("issuing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=count < 5) as progress:
            task = progress.add_task("issue", total=count)
            cards = issuer.service.issue_cards(cmd, progress=lambda n: progress.advance(task, n))
        if activate_now:
            cards = [issuer.service.activate(c.ActivateCard(card.pan)) for card in cards]
        show_cards(cards, reveal, f"{len(cards)} card(s) issued by {bank}")
        console.print(
            f"images in {issuer.home / 'cards'}, personalisation records in {issuer.home / 'perso'}"
        )


def activate(pan: Annotated[str, typer.Argument()]) -> None:
    """Activate an issued card."""
    with open_issuer() as issuer:
        show_cards([issuer.service.activate(c.ActivateCard(pan))], False, "activated")


def deposit(
    pan: Annotated[str, typer.Argument()],
    amount: Annotated[str, typer.Argument(help="yuan, e.g. 500.00")],
    request_id: Annotated[str | None, typer.Option(help="idempotency key (default: a new one)")] = None,
) -> None:
    """Cash into a registered card's deposit account at the counter."""
    try:
        fen = parse_yuan(amount)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if fen <= 0:
        raise fail(f"the amount must be positive, not {amount!r}", 2)
    import uuid

    with open_issuer() as issuer:
        balance = issuer.service.deposit(c.Deposit(pan, fen, request_id or uuid.uuid4().hex))
        console.print(f"deposited {yuan(fen)}; available {yuan(balance)}")


def set_pin(
    pan: Annotated[str, typer.Argument()],
    pin: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set the card's PIN: entered here as at a PIN pad, encrypted by the HSM under the bank's zone PIN key;
    only its IBM 3624 offset is stored (online PIN, every digit checked), and the chip gets the PIN by PIN
    CHANGE script at the card's next online transaction."""
    from citycard.issuer.model import bank_key_labels

    with open_issuer() as issuer:
        with issuer.unit_of_work(read_only=True) as uow:
            card = uow.cards.get(pan)
        if card is None:
            raise fail(f"no card {mask_pan(pan)}", 2)
        hsm = issuer.service.hsm
        block = hsm.encrypt_pin(hsm.get(bank_key_labels(card.bank_code)["zpk"]), pin, pan)
        issuer.service.set_pin(c.SetPin(pan, block))
        console.print(
            f"PIN set for card {mask_pan(pan)} (offset stored, never the PIN); "
            "the chip gets it by PIN CHANGE script at its next online transaction"
        )


def report_lost(
    pan: Annotated[str, typer.Argument()],
    id_number: Annotated[
        str | None, typer.Option("--id-number", help="the holder's ID number, checked")
    ] = None,
) -> None:
    """Report a registered card lost: on the deny list at once; its EC balance is refunded after the cooling
    period (``card refund``). An unregistered card is like cash: its loss is the holder's loss."""
    with open_issuer() as issuer:
        card = issuer.service.report_lost(c.ReportLost(pan, id_number))
        console.print(f"card {mask_pan(card.pan)} reported lost and denied; refund after the cooling period")


def replace(pan: Annotated[str, typer.Argument()], reveal: Reveal = False) -> None:
    """Issue a replacement card for the same holder and account."""
    with open_issuer() as issuer:
        _writable(issuer)
        show_cards(
            [issuer.service.replace_card(c.ReplaceCard(pan))], reveal, f"replacement for {mask_pan(pan)}"
        )


def refund(
    pan: Annotated[str, typer.Argument()],
    to: Annotated[str, typer.Option("--to", help="account, replacement or cash")] = "account",
) -> None:
    """Refund a lost or closed card's EC balance (after the cooling period and clearing)."""
    with open_issuer() as issuer:
        amount = issuer.service.refund_ec_balance(c.RefundEcBalance(pan, c.RefundTarget.parse(to)))
        console.print(f"refunded {yuan(amount)} to the {to}")


def renew(pan: Annotated[str, typer.Argument()], reveal: Reveal = False) -> None:
    """Issue the successor of an expiring card (new PAN and validity; same holder and account)."""
    with open_issuer() as issuer:
        _writable(issuer)
        show_cards([issuer.service.renew(c.RenewCard(pan))], reveal, f"renewal of {mask_pan(pan)}")


def block(pan: Annotated[str, typer.Argument()]) -> None:
    """Block the card's application by issuer script at its next online contact."""
    with open_issuer() as issuer:
        issuer.service.block(c.BlockCard(pan))
        console.print(f"card {mask_pan(pan)}: APPLICATION BLOCK pending for its next online contact")


def unblock(pan: Annotated[str, typer.Argument()]) -> None:
    """Unblock the card's application by issuer script at its next online contact."""
    with open_issuer() as issuer:
        issuer.service.unblock(c.UnblockCard(pan))
        console.print(f"card {mask_pan(pan)}: APPLICATION UNBLOCK pending for its next online contact")


def unblock_pin(pan: Annotated[str, typer.Argument()]) -> None:
    """Reset the chip's PIN try counter (PIN UNBLOCK by issuer script at its next online contact; the PIN
    is kept) and the online PIN tries at once."""
    with open_issuer() as issuer:
        issuer.service.unblock_pin(c.UnblockPin(pan))
        console.print(f"card {mask_pan(pan)}: PIN UNBLOCK pending for its next online contact")


def concession(
    pan: Annotated[str, typer.Argument()],
    category: Annotated[
        str | None, typer.Option("--category", help="elderly, student or disabled (the holder's, checked)")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="the concession's last valid day, YYYY-MM-DD")
    ] = None,
    revoke: Annotated[bool, typer.Option("--revoke", help="withdraw the card's concession")] = False,
) -> None:
    """Grant, renew or revoke a registered holder's transit concession: the card's transit file (SFI 21
    record 1) rewritten by issuer script UPDATE RECORD at its next online contact."""
    if revoke == (category is not None or until is not None):
        raise typer.BadParameter("give --category and --until, or --revoke", param_hint="--category")
    if revoke:
        with open_issuer() as issuer:
            issuer.service.revoke_concession(c.RevokeConcession(pan))
        console.print(f"card {mask_pan(pan)}: concession revoked, by script at its next online contact")
        return
    if category is None or until is None:
        raise typer.BadParameter("give both --category and --until", param_hint="--until")
    last = _date(until, "--until")
    assert last is not None
    with open_issuer() as issuer:
        record = issuer.service.set_concession(c.SetConcession(pan, category.lower(), last))
    where = (
        "on the chip already" if record.state.value == "written" else "by script at its next online contact"
    )
    console.print(f"card {mask_pan(pan)}: concession {category.lower()} until {last.isoformat()}, {where}")


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("a date YYYY-MM-DD", param_hint=option) from None


def _concession_text(transit: dict[str, str | None] | None) -> str:
    if transit is None:
        return "no transit file on the chip"
    if transit["concession"] == "none":
        return f"none (on the chip: {transit['on_chip']})"
    return f"{transit['concession']} until {transit['valid_until']} (on the chip: {transit['on_chip']})"


def close(pan: Annotated[str, typer.Argument()]) -> None:
    """Close a card (denied at once; EC balance refunded with ``card refund`` after the cooling period)."""
    with open_issuer() as issuer:
        card = issuer.service.close(c.CloseCard(pan))
        console.print(f"card {mask_pan(card.pan)} closed; refund its EC balance after the cooling period")


Limit = Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help="cards per page")]
Offset = Annotated[int, typer.Option("--offset", min=0, help="skip this many cards (paging)")]
BankFilter = Annotated[str | None, typer.Option("--bank", help="issuing bank code")]
StatusFilter = Annotated[
    str | None, typer.Option("--status", help="issued, active, blocked, lost, replaced, closed or expired")
]


def _page(issuer: Issuer, search: CardSearch, limit: int, offset: int, reveal: bool, as_json: bool) -> None:
    with issuer.unit_of_work(read_only=True) as uow:
        page = find_cards(uow, issuer.service.hsm, search, limit=limit, offset=offset)
    if as_json:
        cards = [card_summary(card, show_pan=reveal) for card in page.cards]
        print_json({"cards": cards, "total": page.total, "limit": page.limit, "offset": page.offset})
        return
    last = offset + len(page.cards)
    title = f"cards {offset + 1}-{last} of {page.total}" if page.cards else f"no card of {page.total}"
    console.print(_card_table(page.cards, reveal, title, first=offset + 1))
    if last < page.total:
        console.print(f"more: --offset {last}", highlight=False)


def list_cards(
    bank: BankFilter = None,
    status_: StatusFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
    reveal: Reveal = False,
    as_json: JsonFlag = False,
) -> None:
    """The bank's cards in PAN order, a page at a time."""
    with open_issuer() as issuer:
        _page(issuer, CardSearch(bank_code=bank, status=status_), limit, offset, reveal, as_json)


def find(
    pan: Annotated[str | None, typer.Option("--pan", help="the whole PAN")] = None,
    pan_suffix: Annotated[
        str | None, typer.Option("--pan-suffix", help="the PAN's last 4 or more digits")
    ] = None,
    id_number: Annotated[
        str | None, typer.Option("--id-number", help="the holder's resident ID (matched by its HMAC)")
    ] = None,
    phone: Annotated[str | None, typer.Option("--phone", help="the holder's phone number")] = None,
    bank: BankFilter = None,
    status_: StatusFilter = None,
    limit: Limit = 50,
    offset: Offset = 0,
    reveal: Reveal = False,
    as_json: JsonFlag = False,
) -> None:
    """Cards by PAN, PAN suffix, holder's ID number or phone, bank and status (all given must match)."""
    search = CardSearch(bank, pan, pan_suffix, id_number, phone, status_)
    if all(v is None for v in (pan, pan_suffix, id_number, phone, bank, status_)):
        raise fail("say what to find: --pan, --pan-suffix, --id-number, --phone, --bank or --status", 2)
    with open_issuer() as issuer:
        _page(issuer, search, limit, offset, reveal, as_json)


def status(pan: Annotated[str, typer.Argument()], reveal: Reveal = False, as_json: JsonFlag = False) -> None:
    """The card as its bank's books see it: status, product, holder, EC balance, pending scripts."""
    with open_issuer() as issuer:
        with issuer.unit_of_work(read_only=True) as uow:
            view = card_status(uow, pan, show_pan=reveal)
        view["applications"] = _applications(issuer, pan)
        if as_json:
            print_json(view)
            return
        table = Table("item", "value", title=f"card {view['pan']}")
        holder = (
            f"{view['holder']} (ID ****{view['holder_id_last4']})" if view["holder"] else "(unregistered)"
        )
        rows = [
            ("status", view["status"]),
            ("bank", view["bank"]),
            ("product", f"{view['product']}: {view['product_name']}"),
            ("holder", holder),
            ("PSN", view["psn"]),
            ("issued", view["issued"]),
            ("expiry", view["expiry"]),
            ("EC balance (the bank's books)", yuan(view["ec_balance_fen"])),
            ("EC balance limit", yuan(view["ec_balance_limit_fen"])),
            ("deposit available", yuan(view["deposit_available_fen"])),
            ("pending script", view["pending_script"] or "none"),
            ("EC credit pending", yuan(view["pending_ec_credit_fen"])),
            ("online PIN", "set" if view["pin_set"] else "not set"),
            ("PIN CHANGE script pending", "yes" if view["pin_change_pending"] else "no"),
            ("PIN UNBLOCK script pending", "yes" if view["pending_pin_unblock"] else "no"),
            ("wrong online PINs in a row", str(view["online_pin_failures"])),
            ("highest ATC seen", "-" if view["highest_atc"] is None else str(view["highest_atc"])),
            ("reported lost", view["lost_at"] or "-"),
            ("closed", view["closed_at"] or "-"),
            ("replaced by", view["replaced_by"] or "-"),
            ("transit concession", _concession_text(view["transit"])),
            *((f"application {code}", state) for code, state in view["applications"].items()),
        ]
        for item, value in rows:
            table.add_row(item, value)
        console.print(table)


def register(card_app: typer.Typer) -> None:
    """Add the issuer's commands to ``citycard card``."""
    card_app.command("issue")(issue)
    card_app.command("list")(list_cards)
    card_app.command("find")(find)
    card_app.command("status")(status)
    card_app.command("activate")(activate)
    card_app.command("deposit")(deposit)
    card_app.command("set-pin")(set_pin)
    card_app.command("report-lost")(report_lost)
    card_app.command("replace")(replace)
    card_app.command("refund")(refund)
    card_app.command("renew")(renew)
    card_app.command("block")(block)
    card_app.command("unblock")(unblock)
    card_app.command("unblock-pin")(unblock_pin)
    card_app.command("close")(close)
    card_app.command("concession")(concession)


def _applications(issuer: Issuer, pan: str) -> dict[str, str]:
    """The industry applications' state on the card (``citycard public apps``)."""
    from citycard.bootstrap import PublicServices
    from citycard.cli.public import apps_of_card

    states = apps_of_card(PublicServices(settings(), issuer.database), pan)
    return {code: state["status"] for code, state in states.items()}
