"""Jinja2 templates (``web/templates``) with the helpers every page uses: money in yuan, masked PANs, times,
and bar charts drawn on the server as SVG (no JavaScript needed to see a figure)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from citycard.center.services import link_trouble
from citycard.codec.money import format_amount
from citycard.codec.pan import mask_pan

__all__ = ["bar_chart", "page", "templates", "yuan"]

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def yuan(fen: int | None) -> str:
    """``12345`` → ``"123.45"`` (``-`` for None)."""
    return "-" if fen is None else format_amount(fen, grouping=True)


def when(ns: int | None) -> str:
    if not ns:
        return "-"
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def bar_chart(items: list[tuple[str, int]], *, money: bool = False, name: str = "") -> Markup:
    """A horizontal bar chart as inline SVG: one labelled bar per item, its value at its end."""
    if not items:
        return Markup('<p class="muted">nothing yet</p>')
    top = max((v for _, v in items), default=0) or 1
    row, width, label_w = 22, 320, 110
    height = row * len(items) + 4
    parts = [
        f'<svg class="chart" viewBox="0 0 {label_w + width + 90} {height}" role="img" '
        f'aria-label="{escape(name)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value) in enumerate(items):
        y = i * row + 2
        w = max(1, round(width * value / top)) if value else 0
        shown = yuan(value) if money else f"{value:,}"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label[:18])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 8}" rx="2"></rect>'
            f'<text x="{label_w + w + 6}" y="{y + 15}">{escape(shown)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


templates.env.globals.update(
    yuan=yuan, mask_pan=mask_pan, when=when, bar_chart=bar_chart, link_trouble=link_trouble
)


def page(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render ``name`` with the signed-in principal (if any) and its CSRF token."""
    principal = getattr(request.state, "principal", None)
    values.setdefault("principal", principal)
    values.setdefault("csrf_token", principal.csrf_token if principal else "")
    return templates.TemplateResponse(request, name, values, status_code=status_code)
