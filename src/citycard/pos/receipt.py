"""Text receipts for the cardholder and the merchant (JR/T 0025.6 terminal requirements: masked PAN,
AID and application label, cryptogram, TVR/TSI; EC balance after an electronic-cash transaction)."""

from __future__ import annotations

from citycard.codec.emvbits import CID_NAMES, cid_type
from citycard.codec.iso8583 import Iso8583Error, ResponseCode
from citycard.codec.money import format_amount
from citycard.codec.pan import mask_pan
from citycard.kernel.config import TerminalConfig
from citycard.kernel.events import Outcome, OutcomeKind

from .journal import JournalEntry

__all__ = ["render_receipt"]

WIDTH = 40
_ID_TYPES = {  # PBOC 9F62 cardholder ID type
    "00": "ID CARD", "01": "OFFICER ID", "02": "PASSPORT", "03": "ENTRY PERMIT", "04": "TEMP ID",
    "05": "OTHER",
}  # fmt: skip


def _line(left: str, right: str) -> str:
    return f"{left}{right:>{max(1, WIDTH - len(left))}}"


def render_receipt(
    config: TerminalConfig,
    outcome: Outcome,
    entry: JournalEntry | None,
    *,
    amount_fen: int,
    title: str = "SALE",
    merchant_name: str | None = None,
) -> str:
    """The receipt; ``merchant_name``: the registry's name of the terminal's merchant (else 9F4E)."""
    cvm = outcome.data.get("9F34", b"")
    lines = [
        (merchant_name or config.merchant_name.decode("ascii", "replace")).center(WIDTH),
        _line("MERCHANT", config.merchant_id.decode("ascii", "replace")),
        _line("TERMINAL", config.terminal_id.decode("ascii", "replace")),
    ]
    if entry is not None:
        lines += [
            _line("BATCH/STAN", f"{entry.batch:06d}/{entry.stan:06d}"),
            _line("DATE", entry.created.strftime("%Y-%m-%d %H:%M:%S")),
        ]
    lines += [
        "-" * WIDTH,
        _line("CARD", mask_pan(outcome.pan) if outcome.pan else "-"),
        _line("APP", outcome.label or "-"),
        _line("AID", outcome.aid.hex().upper() or "-"),
        _line(title + (" (EC)" if outcome.ec else ""), "CNY " + format_amount(amount_fen)),
        _line("RESULT", outcome.kind.value.upper()),
    ]
    if outcome.cryptogram:
        kind = CID_NAMES[cid_type(outcome.cid or 0)]
        lines.append(_line(kind, outcome.cryptogram.hex().upper()))
    if outcome.atc is not None:
        lines.append(_line("ATC", f"{outcome.atc:04X}"))
    lines += [_line("TVR", outcome.tvr.hex().upper()), _line("TSI", outcome.tsi.hex().upper())]
    if outcome.ec_balance_fen is not None:
        lines.append(_line("EC BALANCE", "CNY " + format_amount(outcome.ec_balance_fen)))
    if not outcome.approved and outcome.reason:
        lines.append(f"({outcome.reason}{_meaning(outcome)})"[: WIDTH * 2])
    if cvm[:1] and cvm[0] & 0x3F in (0x03, 0x05, 0x1E) and outcome.approved:
        lines += ["", "SIGNATURE: ____________________________"]
    if cvm[:1] and cvm[0] & 0x3F == 0x20 and outcome.approved:
        id_type = _ID_TYPES.get(outcome.data.get("9F62", b"")[:1].hex(), "ID")
        number = outcome.data.get("9F61", b"").decode("ascii", "replace")
        shown = "*" * max(0, len(number) - 4) + number[-4:] if number else "-"
        lines += ["", _line(f"CHECK {id_type}", shown), "CARDHOLDER ID CHECKED: ________________"]
    return "\n".join(lines) + "\n"


def _meaning(outcome: Outcome) -> str:
    """``: <what the code means>`` for a decline online whose response code (``8A``) is one of the
    profile's (``58`` → transaction not permitted to terminal), else nothing."""
    if outcome.kind is not OutcomeKind.DECLINED_ONLINE:
        return ""
    try:
        code = ResponseCode.parse(outcome.data.get("8A", b"").decode("ascii", "replace"))
    except Iso8583Error:  # the terminal's own (Z3 …) or a code outside the profile's table
        return ""
    return f": {code.description}"
