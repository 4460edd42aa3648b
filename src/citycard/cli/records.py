"""``citycard records``: the data key that seals the acquirer's stored messages and PANs (docs/network.md
"Rotation of the data key").

- ``citycard records rotate``: make the next version of the data key in the platform HSM; new values are
  sealed under it (running hosts take it up within 5 s);
- ``citycard records reseal [--batch 500]``: re-seal the values still under an older version, ``--batch``
  rows per transaction (safe while the hosts run, and to run again), and print what it did, in total and
  per sealed column (``citycard.db.record_keys.SEALED_COLUMNS``);
- ``citycard records show``: the data key versions and how many values each seals, in total and per
  sealed column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from .bank import fail, open_issuer

if TYPE_CHECKING:
    from citycard.db.record_keys import ColumnReport, ResealReport

__all__ = ["app"]

app = typer.Typer(
    help="The data key sealing the acquirer's stored messages and PANs: show, rotate, reseal.",
    no_args_is_help=True,
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
    """Re-seal every value still under an older data key version."""
    from citycard.db.record_keys import reseal_rows
    from citycard.hsm.protection import RecordProtection

    with open_issuer() as issuer:
        protection = RecordProtection.open(issuer.hsm)
        report = reseal_rows(issuer.database, protection, batch=batch)
    typer.echo(f"version {protection.version}: {_outcome(report)}")
    for column in report.columns:
        typer.echo(f"  {column.name}: {_outcome(column)}")
    if report.unreadable:
        raise fail(f"{report.unreadable} sealed value(s) do not open under any data key version", 1)


def _outcome(counts: ResealReport | ColumnReport) -> str:
    return (
        f"{counts.resealed} re-sealed, {counts.current} already current, "
        f"{counts.changed_meanwhile} changed meanwhile, {counts.unreadable} that do not open"
    )


@app.command("show")
def show() -> None:
    """The data key versions and how many stored values each seals, per sealed column."""
    from sqlalchemy import func, select

    from citycard.db.record_keys import SEALED_COLUMNS
    from citycard.hsm.protection import RecordProtection

    with open_issuer() as issuer:
        protection = RecordProtection.open(issuer.hsm)
        counts: dict[int, dict[str, int]] = {}
        with issuer.database.engine.connect() as connection:
            for column in SEALED_COLUMNS:
                head = func.substr(column.sealed, 1, 3)  # what names the version (key_version)
                for sealed, rows in connection.execute(
                    select(head, func.count()).where(column.sealed.is_not(None)).group_by(head)
                ):
                    by_column = counts.setdefault(RecordProtection.key_version(bytes(sealed)), {})
                    by_column[column.name] = by_column.get(column.name, 0) + rows
    typer.echo(f"sealing under version {protection.version}")
    for version in sorted(counts):
        typer.echo(f"version {version}: {sum(counts[version].values())} value(s)")
        for name, rows in counts[version].items():
            typer.echo(f"  {name}: {rows} row(s)")
