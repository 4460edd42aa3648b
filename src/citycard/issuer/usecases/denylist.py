"""The bank's deny list as a signed document for terminals (``ExportDenyList``): the live entries, the
list's version, signed RSASSA-PKCS1-v1_5 SHA-256 by the bank's deny-list key in the HSM (the file's format
both ways is ``citycard.kernel.denylist``: ``encode_body``, the canonical JSON, and ``load_deny_list``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..commands import ExportDenyList
from ..ports import IssuerUnitOfWork
from ..views import deny_list_body
from .deps import Deps, existing_bank

__all__ = ["SignedDenyList", "export_deny_list"]


@dataclass(frozen=True, slots=True)
class SignedDenyList:
    bank_code: str
    version: int
    body: bytes  # canonical JSON (views.deny_list_body)
    signature: bytes  # RSASSA-PKCS1-v1_5 SHA-256 by the bank's deny-list key (S0) in the HSM
    key_label: str
    key_kcv: str
    modulus: int
    exponent: int


def export_deny_list(cmd: ExportDenyList, uow: IssuerUnitOfWork, deps: Deps) -> SignedDenyList:
    with uow:
        existing_bank(uow, cmd.bank_code)
        version, updated_ns = uow.deny_list.version(cmd.bank_code)
        entries = [e for e in uow.deny_list.entries(cmd.bank_code) if e.removed_ns is None]
    body = deny_list_body(cmd.bank_code, version, updated_ns, deps.clock(), entries)
    key = deps.key(cmd.bank_code, "deny_list")
    public = deps.hsm.public_key(key)
    return SignedDenyList(
        cmd.bank_code,
        version,
        body,
        deps.hsm.sign(key, body),
        key.label,
        key.kcv,
        public.n,
        public.e,
    )
