"""``citycard denylist export | verify``: the issuer's signed deny list for terminals (file format in
``citycard.issuer.views`` and ``docs/issuer.md``), and the check a terminal makes before it uses one
(``citycard.kernel.denylist.load_deny_list``, the same function the terminals call)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from citycard.kernel.denylist import DenyListError, encode_document, load_deny_list, parse_trusted_kcv

from .bank import fail, open_issuer, write_json
from .output import JsonFlag, print_json

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
        doc = encode_document(
            signed.body, signed.signature, signed.key_label, signed.key_kcv, signed.modulus, signed.exponent
        )
        path = out or issuer.home / f"denylist-{bank}.json"
        write_json(path, doc)
        console.print(
            f"deny list of {bank}, version {signed.version}, signed by {signed.key_label} -> {path}"
        )


@app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="a deny-list file written by 'denylist export'")],
    kcv: Annotated[
        str | None,
        typer.Option("--kcv", help="BANK=KCV: the bank and its signing key's KCV (from 'bank keys')"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a deny-list file as a terminal would: the RSASSA-PKCS1-v1_5 SHA-256 signature over the body,
    and (with ``--kcv BANK=KCV``) that the list is that bank's and signed by the key you trust for it;
    print its issuer, version and size."""
    trusted: dict[str, set[str]] | None = None
    if kcv is not None:
        try:
            bank, key_kcv = parse_trusted_kcv(kcv)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--kcv") from None
        trusted = {bank: {key_kcv}}
    try:
        dl = load_deny_list(path.read_bytes(), trusted)
    except (OSError, DenyListError) as exc:
        raise fail(f"{path}: {exc}") from None
    if as_json:
        print_json(
            {
                "valid": True,
                "issuer": dl.issuer,
                "version": dl.version,
                "generated": f"{dl.generated:%Y-%m-%dT%H:%M:%SZ}",
                "entries": len(dl.entries),
                "key_label": dl.key_label,
                "key_kcv": dl.key_kcv,
                "key_trusted": kcv is not None,
            }
        )
        return
    trust = "trusted key" if kcv is not None else "key in the file (give --kcv to check it is the bank's)"
    console.print(
        f"signature valid: deny list of {dl.issuer}, version {dl.version}, generated "
        f"{dl.generated:%Y-%m-%dT%H:%M:%SZ}, {len(dl.entries)} entries; "
        f"{trust} {dl.key_label} KCV {dl.key_kcv}"
    )
