"""``citycard records``: the data key that seals the acquirer's stored messages (docs/network.md "Rotation
of the data key").

- ``citycard records rotate``: make the next version of the data key in the platform HSM; new rows are
  sealed under it (running hosts take it up within 5 s);
- ``citycard records reseal [--batch 500]``: re-seal the rows still under an older version, ``--batch``
  rows per transaction (safe while the hosts run, and to run again);
- ``citycard records show``: the data key versions and how many rows each seals.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .bank import fail, open_issuer

__all__ = ["app"]

app = typer.Typer(
    help="The data key sealing the acquirer's stored messages: show, rotate, reseal.", no_args_is_help=True
)


@app.command("rotate")
def rotate() -> None:
    """Make the next version of the data key; new rows are sealed under it."""
    from citycard.hsm.protection import RecordProtection

    with open_issuer() as issuer:
        version = RecordProtection.open(issuer.hsm).rotate()
    typer.echo(
        f"data key version {version} made: new rows are sealed under it; run 'citycard records reseal'"
    )


@app.command("reseal")
def reseal(
    batch: Annotated[int, typer.Option("--batch", min=1, max=10_000, help="rows per transaction")] = 500,
) -> None:
    """Re-seal every row still under an older data key version."""
    from citycard.db.record_keys import reseal_rows
    from citycard.hsm.protection import RecordProtection

    with open_issuer() as issuer:
        protection = RecordProtection.open(issuer.hsm)
        report = reseal_rows(issuer.database, protection, batch=batch)
    typer.echo(
        f"version {protection.version}: {report.resealed} re-sealed, {report.current} already current, "
        f"{report.changed_meanwhile} changed meanwhile, {report.unreadable} that do not open"
    )
    if report.unreadable:
        raise fail(f"{report.unreadable} sealed row(s) do not open under any data key version", 1)


@app.command("show")
def show() -> None:
    """The data key versions and how many stored rows each seals."""
    from collections import Counter

    from sqlalchemy import func, select

    from citycard.db.acquirer_tables import acquirer_saf, acquirer_uploads
    from citycard.hsm.protection import RecordProtection

    with open_issuer() as issuer:
        protection = RecordProtection.open(issuer.hsm)
        counts: Counter[int] = Counter()
        with issuer.database.engine.connect() as connection:
            for table in (acquirer_saf, acquirer_uploads):
                head = func.substr(table.c.sealed, 1, 3)  # what names the version (key_version)
                for sealed, rows in connection.execute(
                    select(head, func.count()).where(table.c.sealed.is_not(None)).group_by(head)
                ):
                    counts[RecordProtection.key_version(bytes(sealed))] += rows
    typer.echo(f"sealing under version {protection.version}")
    for version in sorted(counts):
        typer.echo(f"version {version}: {counts[version]} row(s)")
