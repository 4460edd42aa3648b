"""``citycard denylist export``: the issuer's signed deny list for terminals (file format in
``citycard.issuer.views`` and ``docs/issuer.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from citycard.issuer.views import deny_list_document

from .bank import open_issuer, write_json

__all__ = ["app"]

app = typer.Typer(help="Deny lists (hot lists) of lost, blocked and closed cards.", no_args_is_help=True)
console = Console()


@app.command("export")
def export(
    bank: Annotated[str, typer.Option("--bank", help="issuing bank code")],
    out: Annotated[
        Path | None, typer.Option("--out", help="file (default: $CITYCARD_HOME/denylist-<BANK>.json)")
    ] = None,
) -> None:
    """Write the bank's current deny list, versioned, timestamped and signed by its HSM key."""
    with open_issuer() as issuer:
        signed = issuer.service.export_deny_list(bank)
        doc = deny_list_document(
            signed.body, signed.signature, signed.key_label, signed.key_kcv, signed.modulus, signed.exponent
        )
        path = out or issuer.home / f"denylist-{bank}.json"
        write_json(path, doc)
        console.print(
            f"deny list of {bank}, version {signed.version}, signed by {signed.key_label} -> {path}"
        )
