"""Human-readable renderings of BER-TLV data and DOLs, for traces and calculators.

Each data object is one line ``TAG name: hex``, indented by nesting depth, followed by a readable form
where the format allows one (EMV Book 3 §4.3 formats: ASCII for ``an``/``ans``, digits for ``n``/``cn``,
amounts as decimal with two minor digits, dates ``YYMMDD`` as ``20YY-MM-DD``) and a decoding of the
common structured objects (AFL ``94``, log entries ``9F4D``/``DF4D``, CID ``9F27``, DOLs). Tag names come
from :mod:`citycard.codec.tags`, as the scheme of ``rid`` means them.

PANs (``5A``, track 2 ``57``, track 1 ``56``) are masked unless ``mask=False``: only the first 6 and last
4 digits are shown, and their hex is not printed. Data that is not BER-TLV is shown as hex with the
:class:`~citycard.codec.tlv.TlvError` message.
"""

from __future__ import annotations

from collections.abc import Callable

from citycard.codec.dol import DolError, parse_dol
from citycard.codec.tags import lookup, tag_name
from citycard.codec.tlv import Tlv, TlvError, decode

__all__ = ["format_dol", "format_tlv", "mask_pan", "render_value"]

_AMOUNT_TAGS = frozenset(
    {"9F02", "9F03", "9F54", "9F5C", "9F5D", "9F6B", "9F6D", "9F77", "9F78", "9F79", "9F7B", "DF62", "DF63"}
    | {"DF72", "DF76", "DF77", "DF78", "DF79"}
)
_DATE_TAGS = frozenset({"9A", "5F24", "5F25"})
_TIME_TAGS = frozenset({"9F21"})
_DOL_TAGS = frozenset({"8C", "8D", "97", "9F38", "9F49", "9F4F", "DF4F"})
_PAN_TAGS = frozenset({"5A", "57", "56"})
_CID_TYPES = {0x00: "AAC", 0x40: "TC", 0x80: "ARQC", 0xC0: "RFU"}


def mask_pan(digits: str) -> str:
    """A PAN (or any digit string) with all but the first 6 and last 4 digits replaced by ``*``."""
    if len(digits) <= 10:
        return "*" * len(digits)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def _digits(value: bytes) -> str:
    return value.hex().upper()


def _bcd(value: bytes) -> str | None:
    text = value.hex()
    return text if text.isdigit() else None


def _amount(value: bytes) -> str | None:
    text = _bcd(value)
    if text is None:
        return None
    fen = int(text) if text else 0
    return f"{fen // 100}.{fen % 100:02d}"


def _date(value: bytes) -> str | None:
    text = _bcd(value)
    if text is None or len(text) != 6:
        return None
    return f"20{text[:2]}-{text[2:4]}-{text[4:]}"


def _time(value: bytes) -> str | None:
    text = _bcd(value)
    if text is None or len(text) != 6:
        return None
    return f"{text[:2]}:{text[2:4]}:{text[4:]}"


def _ascii(value: bytes) -> str | None:
    if all(0x20 <= b < 0x7F for b in value):
        return '"' + value.decode("ascii") + '"'
    return None


def _afl(value: bytes) -> str | None:
    if not value or len(value) % 4:
        return None
    parts = []
    for i in range(0, len(value), 4):
        sfi, first, last, oda = value[i] >> 3, value[i + 1], value[i + 2], value[i + 3]
        parts.append(f"SFI {sfi} records {first}-{last} ({oda} for ODA)")
    return "; ".join(parts)


def _log_entry(value: bytes) -> str | None:
    return f"SFI {value[0]}, {value[1]} records" if len(value) == 2 else None


def _cid(value: bytes) -> str | None:
    return _CID_TYPES[value[0] & 0xC0] if len(value) == 1 else None


def _dol(value: bytes) -> str | None:
    try:
        entries = parse_dol(value)
    except DolError:
        return None
    return " ".join(f"{tag}({length})" for tag, length in entries) or "(empty)"


_STRUCTURED: dict[str, Callable[[bytes], str | None]] = {
    "94": _afl,
    "9F4D": _log_entry,
    "DF4D": _log_entry,
    "9F27": _cid,
    "84": _ascii,  # DF names of directories are ASCII ("2PAY.SYS.DDF01"); AIDs stay hex
    "9D": _ascii,
    **dict.fromkeys(_DOL_TAGS, _dol),
    **dict.fromkeys(_AMOUNT_TAGS, _amount),
    **dict.fromkeys(_DATE_TAGS, _date),
    **dict.fromkeys(_TIME_TAGS, _time),
}


def _pan_digits(tag: str, value: bytes) -> str:
    if tag == "56":  # track 1: ASCII, PAN between the format code 'B' and the first '^'
        text = value.decode("ascii", "replace")
        return text[1:].split("^", 1)[0]
    return _digits(value).split("D", 1)[0].rstrip("F")


def render_value(tag: str, value: bytes, *, rid: str | None = None, mask: bool = True) -> str | None:
    """A readable form of a primitive value, or None when hex is all there is to say."""
    tag = tag.upper()
    if tag in _PAN_TAGS:
        if not mask:  # the whole track, separators shown as in ISO/IEC 7813
            return _ascii(value) if tag == "56" else _digits(value).rstrip("F").replace("D", "=")
        return mask_pan(_pan_digits(tag, value))
    info = lookup(tag, rid)
    special = _STRUCTURED.get(tag)
    if tag in _AMOUNT_TAGS and (info is None or info.fmt != "n"):
        special = None  # an amount only for the schemes where the tag is one (9F5D, 9F6D)
    if special is not None:
        rendered = special(value)
        if rendered is not None:
            return rendered
    if info is None or info.fmt == "b":
        return None
    if info.fmt in ("an", "ans"):
        return _ascii(value)
    if info.fmt == "cn":
        return _digits(value).rstrip("F")
    text = _bcd(value)
    return (text.lstrip("0") or "0") if text is not None else None


def _lines(
    objects: tuple[Tlv, ...] | list[Tlv], depth: int, rid: str | None, indent: str, mask: bool
) -> list[str]:
    out: list[str] = []
    for obj in objects:
        prefix = indent * depth + f"{obj.tag} {tag_name(obj.tag, rid)}"
        if obj.children is not None:
            out.append(f"{prefix} ({len(obj.value)} bytes)")
            out.extend(_lines(obj.children, depth + 1, rid, indent, mask))
            continue
        rendered = render_value(obj.tag, obj.value, rid=rid, mask=mask)
        if mask and obj.tag in _PAN_TAGS:
            out.append(f"{prefix}: {rendered} (masked)")
        elif rendered is None:
            out.append(f"{prefix}: {obj.value.hex().upper()}")
        else:
            out.append(f"{prefix}: {obj.value.hex().upper()} = {rendered}")
    return out


def format_tlv(data: bytes, *, rid: str | None = None, indent: str = "  ", mask: bool = True) -> str:
    """An indented tree of the data objects in ``data``, one per line; hex and the error if not TLV."""
    try:
        objects = decode(data)
    except TlvError as exc:
        return f"{bytes(data).hex().upper()}\n(not BER-TLV: {exc})"
    if not objects:
        return "(no data objects)"
    return "\n".join(_lines(objects, 0, rid, indent, mask))


def format_dol(dol: bytes, rid: str | None = None) -> str:
    """One line per DOL entry: ``TAG name (length)``; hex and the error if the DOL is malformed."""
    try:
        entries = parse_dol(dol)
    except DolError as exc:
        return f"{bytes(dol).hex().upper()}\n(not a DOL: {exc})"
    if not entries:
        return "(empty DOL)"
    total = sum(length for _, length in entries)
    lines = [f"{tag} {tag_name(tag, rid)} ({length})" for tag, length in entries]
    return "\n".join([*lines, f"total {total} bytes"])
