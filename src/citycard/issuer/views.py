"""Read-side shapes of the issuer: stored authorization answers, the deny-list file, card summaries.

**Deny-list file** (``citycard denylist export``; terminals and the kernel read it). One JSON document::

    {"format": "citycard-deny-list", "body": "<base64 of the signed body>",
     "signature": "<hex>", "algorithm": "RSASSA-PKCS1-v1_5-SHA256",
     "key": {"label": "...", "kcv": "...", "modulus": "<hex>", "exponent": "<hex>"}}

The signed body is canonical JSON (UTF-8, keys sorted, no spaces)::

    {"entries": [{"added": "2026-11-25T08:00:00Z", "pan": "6222…", "psn": "01", "reason": "lost"}, …],
     "format": "citycard-deny-list-body", "format_version": 1, "generated": "<ISO 8601 UTC>",
     "issuer": "ICBC", "updated": "<ISO 8601 UTC>", "version": 12}

``version`` grows by one with every change to the issuer's list, so a terminal keeps the newest it has
verified. The signature (RFC 8017 §8.2, SHA-256) is over the body bytes exactly as carried; the public key
reaches terminals out of band (the key check value identifies it). PANs are in clear in the body: the list
is for acceptance devices, which must match the card they read.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from .commands import AuthorizationResponse
from .model import Card, DenyListEntry, mask_pan

__all__ = [
    "card_summary",
    "decode_response",
    "deny_list_body",
    "deny_list_document",
    "encode_response",
    "iso_time",
]


def iso_time(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_response(r: AuthorizationResponse) -> bytes:
    value = {
        "request_id": r.request_id,
        "response_code": r.response_code,
        "reason": r.reason,
        "authorization_code": r.authorization_code,
        "arpc": r.arpc.hex(),
        "arc": r.arc.hex(),
        "scripts": [s.hex() for s in r.scripts],
        "balance_fen": r.balance_fen,
        "ec_balance_fen": r.ec_balance_fen,
        "flags": list(r.flags),
    }
    return json.dumps(value, sort_keys=True).encode()


def decode_response(data: bytes) -> AuthorizationResponse:
    v = json.loads(data)
    return AuthorizationResponse(
        request_id=v["request_id"],
        response_code=v["response_code"],
        reason=v["reason"],
        authorization_code=v["authorization_code"],
        arpc=bytes.fromhex(v["arpc"]),
        arc=bytes.fromhex(v["arc"]),
        scripts=tuple(bytes.fromhex(s) for s in v["scripts"]),
        balance_fen=v["balance_fen"],
        ec_balance_fen=v["ec_balance_fen"],
        flags=tuple(v["flags"]),
    )


def deny_list_body(
    bank_code: str, version: int, updated_ns: int, generated_ns: int, entries: Sequence[DenyListEntry]
) -> bytes:
    body = {
        "format": "citycard-deny-list-body",
        "format_version": 1,
        "issuer": bank_code,
        "version": version,
        "updated": iso_time(updated_ns),
        "generated": iso_time(generated_ns),
        "entries": [
            {"pan": e.pan, "psn": e.psn, "reason": e.reason, "added": iso_time(e.added_ns)}
            for e in sorted(entries, key=lambda e: (e.pan, e.psn))
        ],
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def deny_list_document(
    body: bytes, signature: bytes, key_label: str, key_kcv: str, modulus: int, exponent: int
) -> dict[str, Any]:
    return {
        "format": "citycard-deny-list",
        "body": base64.b64encode(body).decode("ascii"),
        "signature": signature.hex().upper(),
        "algorithm": "RSASSA-PKCS1-v1_5-SHA256",
        "key": {
            "label": key_label,
            "kcv": key_kcv,
            "modulus": f"{modulus:X}",
            "exponent": f"{exponent:X}",
        },
    }


def card_summary(card: Card, *, show_pan: bool = False) -> dict[str, Any]:
    return {
        "pan": card.pan if show_pan else mask_pan(card.pan),
        "psn": card.psn,
        "bank": card.bank_code,
        "product": card.product_code,
        "status": card.status.value,
        "registered": card.registered,
        "expiry": card.expiry,
        "replaced_by": (card.replaced_by if show_pan else mask_pan(card.replaced_by))
        if card.replaced_by
        else None,
    }
