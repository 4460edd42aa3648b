"""``citycard acquirer``: the acquirer's store-and-forward queue, for its operator (docs/network.md, "Store
and forward").

- ``citycard acquirer queue [--limit 100] [--json]``: how many reversals and advices wait for the switch and
  how many were delivered; per waiting one, what it is (kind, MTI, RRN, terminal and STAN, amount, the card
  masked, a reversal's reason), how often it was tried, the last answer and when it is tried next;
- ``citycard acquirer retry``: every waiting one due now, once an outage is over, rather than when its
  backoff (up to a minute) says; a running acquirer sends them within half a second. Safe while it runs.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .bank import open_issuer
from .output import JsonFlag, amount_column, print_json, yuan

__all__ = ["app"]

app = typer.Typer(
    help="The acquirer's store-and-forward queue of reversals and advices: queue, retry.",
    no_args_is_help=True,
)


@app.command("queue")
def queue(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="most waiting entries listed")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Reversals and advices waiting for the switch, the next due first, and how many were delivered."""
    from citycard.acquirer.views import next_try, queued_json, saf_queue
    from citycard.db.acquirer_repositories import acquirer_unit_of_work
    from citycard.hsm.protection import RecordProtection
    from citycard.issuer.views import iso_time

    with open_issuer() as issuer:
        protection = RecordProtection.open(issuer.hsm)
        view = saf_queue(acquirer_unit_of_work(issuer.database, protection, read_only=True), limit)
    now = time.time_ns()
    console = Console()  # its width read now (COLUMNS, or the terminal's)
    if as_json:
        entries = [queued_json(e, iso_time) for e in view.entries]
        print_json({"pending": view.pending, "delivered": view.delivered, "entries": entries})
        return
    listed = f" (the first {len(view.entries)} listed)" if len(view.entries) < view.pending else ""
    console.print(f"{view.pending} waiting{listed}, {view.delivered} delivered", highlight=False)
    if not view.entries:
        return
    headers = ("kind", "RRN", "terminal", "STAN", "card", "reason", "tries", "last answer", "next try")
    table = Table(*headers, "queued")
    amount_column(table, "amount")
    for e in view.entries:
        table.add_row(
            f"{e.kind.value} {e.mti}",
            e.rrn,
            e.terminal_id or "-",
            "-" if e.stan is None else f"{e.stan:06d}",
            e.card or "-",
            e.reason or "-",
            str(e.attempts),
            e.last_code or "-",
            next_try(e.next_attempt_ns, now),
            iso_time(e.created_ns),
            yuan(e.amount_fen),
        )
    console.print(table)


@app.command("retry")
def retry() -> None:
    """Every waiting reversal and advice due now (a running acquirer sends them within half a second)."""
    from citycard.acquirer.views import retry_now
    from citycard.db.acquirer_repositories import acquirer_unit_of_work
    from citycard.hsm.protection import RecordProtection

    with open_issuer() as issuer:
        protection = RecordProtection.open(issuer.hsm)
        moved = retry_now(acquirer_unit_of_work(issuer.database, protection), time.time_ns)
    typer.echo(
        f"{moved} waiting reversal(s) and advice(s) due now: the acquirer sends them in its next round"
    )
