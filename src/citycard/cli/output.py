"""How read commands print: a Rich table for people, or with ``--json`` one JSON document for programs.

Every read command takes ``--json`` (:data:`JsonFlag`) and prints through :func:`print_json`: UTF-8, keys
sorted (stable), amounts as integer fen in keys ending ``_fen``, times as ISO 8601 UTC, PANs masked unless
``--reveal``. Amounts for people are yuan with two decimals (:func:`yuan`), right-aligned in tables
(:func:`amount_column`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from citycard.codec.money import format_amount

__all__ = ["JsonFlag", "amount_column", "print_json", "yuan"]

JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", help="print one JSON document (amounts in integer fen, PANs masked unless --reveal)"
    ),
]


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, keys sorted, non-ASCII kept (holder names)."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))


def yuan(fen: int | None) -> str:
    """Fen as yuan with two decimals (``-12.50``); ``-`` for no amount."""
    return "-" if fen is None else format_amount(fen)


def amount_column(table: Table, header: str) -> None:
    """Add a right-aligned amount column (digits line up on the decimal point)."""
    table.add_column(header, justify="right", no_wrap=True)
