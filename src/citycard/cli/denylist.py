"""``citycard denylist export | verify``: the issuer's signed deny list for terminals (file format in
``citycard.issuer.views`` and ``docs/issuer.md``), and the check a terminal makes before it uses one."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from rich.console import Console

from citycard.issuer.views import deny_list_document

from .bank import fail, open_issuer, write_json

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


@app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="a deny-list file written by 'denylist export'")],
    kcv: Annotated[
        str | None, typer.Option("--kcv", help="the signing key's KCV you trust (from 'bank keys')")
    ] = None,
) -> None:
    """Check a deny-list file as a terminal would: the RSASSA-PKCS1-v1_5 SHA-256 signature over the body,
    and (with ``--kcv``) that the signing key is the one you trust; print its issuer, version and size."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != "citycard-deny-list":
            raise ValueError("not a citycard deny list")
        body = base64.b64decode(doc["body"], validate=True)
        key = doc["key"]
        modulus, exponent = int(key["modulus"], 16), int(key["exponent"], 16)
        signature = bytes.fromhex(doc["signature"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise fail(f"{path}: {exc}") from None
    digest = hashlib.sha256(modulus.to_bytes((modulus.bit_length() + 7) // 8, "big")).digest()
    key_kcv = digest[:3].hex().upper()  # the HSM's KCV of an RSA key (citycard.hsm.soft)
    if kcv is not None and kcv.upper() != key_kcv:
        raise fail(f"{path}: signed by the key with KCV {key_kcv}, not the trusted {kcv.upper()}")
    public = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    try:
        public.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise fail(
            f"{path}: the signature does not verify: the list was altered or not signed by this key"
        ) from None
    content = json.loads(body)
    trust = "trusted key" if kcv is not None else "key in the file (give --kcv to check it is the bank's)"
    console.print(
        f"signature valid: deny list of {content['issuer']}, version {content['version']}, generated "
        f"{content['generated']}, {len(content['entries'])} entries; "
        f"{trust} {key.get('label', '')} KCV {key_kcv}"
    )
