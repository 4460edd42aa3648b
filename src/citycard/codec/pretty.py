"""Human-readable renderings of BER-TLV data and DOLs, for traces and calculators.

Each data object is one line ``TAG name: hex``, indented by nesting depth, followed by a readable form
where the format allows one (EMV Book 3 §4.3 formats: ASCII for ``an``/``ans``, digits for ``n``/``cn``,
amounts as decimal with two minor digits, dates ``YYMMDD`` as ``20YY-MM-DD``) and a decoding of the
common structured objects (Book 3 Annex C bit fields: AIP ``82``, TVR ``95``, TSI ``9B``, CVM list ``8E``
and results ``9F34``, CID ``9F27``; qPBOC TTQ ``9F66`` and CTQ ``9F6C``; AFL ``94``, log entries
``9F4D``/``DF4D``, DOLs, and for UnionPay the PBOC issuer application data ``9F10``). Tag names come from
:mod:`citycard.codec.tags`, as the scheme of ``rid`` means them.

:func:`format_command` / :func:`format_response` render APDUs for traces (command names from ISO/IEC 7816-4,
EMV Book 3 §6.5 and the PBOC purse commands; status words from :func:`~citycard.codec.apdu.sw_meaning`).

PANs (``5A``, track 2 ``57``, track 1 ``56``) are masked unless ``mask=False``: only the first 6 and last
4 digits are shown, and their hex is not printed. PIN data (VERIFY, PIN CHANGE/UNBLOCK) is never shown,
``mask=False`` or not (revealing is for PANs, never for PINs): :func:`command_hex` is a command's hex with
that data replaced by asterisks.
Data that is not BER-TLV is shown as hex with the :class:`~citycard.codec.tlv.TlvError` message.
"""

from __future__ import annotations

from collections.abc import Callable

from citycard.codec.apdu import ApduError, CommandApdu, Ins, ResponseApdu, sw_meaning
from citycard.codec.cn import cn_digits
from citycard.codec.dol import DolError, parse_dol, split_dol_data
from citycard.codec.emvbits import (
    AIP_BITS,
    CID_NAMES,
    CVR_BITS,
    TSI_BITS,
    TVR_BITS,
    cvr_first_ac,
    cvr_scripts,
    cvr_second_ac,
)
from citycard.codec.pan import mask_pan
from citycard.codec.tags import RID_UNIONPAY, lookup, tag_name
from citycard.codec.tlv import Tlv, TlvError, decode

from .money import format_amount

__all__ = [
    "command_hex",
    "command_name",
    "format_command",
    "format_dol",
    "format_response",
    "format_tlv",
    "render_value",
    "transaction_type_name",
]

_AMOUNT_TAGS = frozenset(
    {"9F02", "9F03", "9F54", "9F5C", "9F5D", "9F6B", "9F6D", "9F77", "9F78", "9F79", "9F7B", "DF62", "DF63"}
    | {"DF72", "DF76", "DF77", "DF78", "DF79"}
)
_DATE_TAGS = frozenset({"9A", "5F24", "5F25"})
_TIME_TAGS = frozenset({"9F21"})
_DOL_TAGS = frozenset({"8C", "8D", "97", "9F38", "9F49", "9F4F", "DF4F"})
_PAN_TAGS = frozenset({"5A", "57", "56"})
_CID_REASONS = {1: "service not allowed", 2: "PIN try limit exceeded", 3: "issuer authentication failed"}

# Bit names, (byte index, mask) -> meaning: AIP, TVR, TSI and CVR in citycard.codec.emvbits (the kernel's
# own); TTQ and CTQ here, after JR/T 0025.12 and Visa contactless (as the qPBOC kernel reads them).
_Bits = dict[tuple[int, int], str]
_TTQ_BITS: _Bits = {
    (0, 0x80): "mag-stripe mode supported",
    (0, 0x20): "qPBOC/qVSDC supported",
    (0, 0x10): "contact chip supported",
    (0, 0x08): "offline-only reader",
    (0, 0x04): "online PIN supported",
    (0, 0x02): "signature supported",
    (0, 0x01): "ODA for online authorisations supported",
    (1, 0x80): "online cryptogram required",
    (1, 0x40): "CVM required",
    (1, 0x20): "contact chip offline PIN supported",
    (2, 0x80): "issuer update processing supported",
    (2, 0x40): "consumer device CVM supported",
}
_CTQ_BITS: _Bits = {
    (0, 0x80): "online PIN required",
    (0, 0x40): "signature required",
    (0, 0x20): "go online if ODA fails and reader is online capable",
    (0, 0x10): "switch interface if ODA fails and reader supports contact chip",
    (0, 0x08): "go online if application expired",
    (0, 0x04): "switch interface for cash transactions",
    (0, 0x02): "switch interface for cashback transactions",
    (1, 0x80): "consumer device CVM performed",
    (1, 0x40): "card supports issuer update processing at the POS",
}
# CVM codes (Book 3 C3, b6-b1 of the first byte of a CVM rule); 20 is PBOC's cardholder ID presentation.
_CVM_CODES = {
    0x00: "fail CVM processing",
    0x01: "plaintext PIN verified by ICC",
    0x02: "enciphered PIN verified online",
    0x03: "plaintext PIN verified by ICC and signature",
    0x04: "enciphered PIN verified by ICC",
    0x05: "enciphered PIN verified by ICC and signature",
    0x1E: "signature",
    0x1F: "no CVM required",
    0x20: "cardholder ID presentation (PBOC)",
}
_CVM_CONDITIONS = {
    0x00: "always",
    0x01: "if unattended cash",
    0x02: "if not unattended cash, manual cash or cashback",
    0x03: "if terminal supports the CVM",
    0x04: "if manual cash",
    0x05: "if purchase with cashback",
    0x06: "if in application currency and under X",
    0x07: "if in application currency and over X",
    0x08: "if in application currency and under Y",
    0x09: "if in application currency and over Y",
}
_CVM_RESULTS = {0x00: "unknown", 0x01: "failed", 0x02: "successful"}


def _digits(value: bytes) -> str:
    return value.hex().upper()


def _bcd(value: bytes) -> str | None:
    text = value.hex()
    return text if text.isdigit() else None


def _amount(value: bytes) -> str | None:
    text = _bcd(value)
    if text is None:
        return None
    return format_amount(int(text) if text else 0)


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


TRANSACTION_TYPES = {
    0x00: "purchase", 0x01: "cash", 0x09: "purchase with cashback", 0x20: "refund",
    0x30: "balance inquiry", 0x31: "balance inquiry", 0x40: "transfer",
    0x60: "EC load", 0x62: "EC load from another account", 0x63: "EC cash load",
}  # fmt: skip
"""Transaction type ``9C`` (EMV Book 3 Annex A: the first two digits of the ISO 8583:1987 processing code;
``60``/``62``/``63`` are the PBOC electronic-cash loads of JR/T 0025.13: designated account, another account,
cash)."""


def transaction_type_name(code: int) -> str:
    """``9C`` in words: ``0x00`` → ``"purchase"``; an unknown code as ``"type 7F"``."""
    return TRANSACTION_TYPES.get(code, f"type {code:02X}")


def _transaction_type(value: bytes) -> str | None:
    return transaction_type_name(value[0]) if len(value) == 1 else None


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
    if len(value) != 1:
        return None
    parts = [CID_NAMES[value[0] & 0xC0]]
    if value[0] & 0x08:
        parts.append("advice required")
    if value[0] & 0x07 in _CID_REASONS:
        parts.append(_CID_REASONS[value[0] & 0x07])
    return ", ".join(parts)


def _bits(table: _Bits, size: int) -> Callable[[bytes], str | None]:
    def render(value: bytes) -> str | None:
        if len(value) != size:
            return None
        names = [name for (i, mask), name in table.items() if value[i] & mask]
        return "; ".join(names) if names else "(none set)"

    return render


def _cvm_rule(rule: bytes) -> str:
    method = _CVM_CODES.get(rule[0] & 0x3F, f"CVM {rule[0] & 0x3F:02X}")
    condition = _CVM_CONDITIONS.get(rule[1], f"condition {rule[1]:02X}")
    more = ", else next" if rule[0] & 0x40 else ""
    return f"{method} {condition}{more}"


def _cvm_list(value: bytes) -> str | None:
    if len(value) < 8 or len(value) % 2:
        return None
    x, y = int.from_bytes(value[:4], "big"), int.from_bytes(value[4:8], "big")
    rules = [_cvm_rule(value[i : i + 2]) for i in range(8, len(value), 2)]
    return f"X={x} Y={y}: " + "; ".join(rules)


def _cvm_results(value: bytes) -> str | None:
    if len(value) != 3:
        return None
    result = _CVM_RESULTS.get(value[2], f"result {value[2]:02X}")
    return f"{_cvm_rule(value[:2])}: {result}"


def _cvr(cvr: bytes) -> str:
    """The card verification results: the cryptograms' types, the bits set, the scripts counted."""
    second = cvr_second_ac(cvr)
    parts = [
        f"first AC {CID_NAMES[cvr_first_ac(cvr)]}",
        f"second AC {'not requested' if second is None else CID_NAMES[second]}",
    ]
    parts += [name for (i, mask), name in CVR_BITS.items() if cvr[i] & mask]
    scripts, _ = cvr_scripts(cvr)
    if scripts:
        parts.append(f"{scripts} issuer script command{'s' if scripts > 1 else ''} processed")
    return "; ".join(parts)


def _pboc_iad(value: bytes) -> str | None:
    """JR/T 0025.5 issuer application data: ``07 DKI CVN 03 CVR(3) alg`` [``0A 01 EC balance(5) MAC(4)``]."""
    if len(value) < 8 or value[0] != 0x07 or value[3] != 0x03:
        return None
    cvr = value[4:7]
    out = f"DKI {value[1]:02X}, CVN {value[2]:02X}, CVR {cvr.hex().upper()} ({_cvr(cvr)})"
    out += f", algorithm {value[7]:02X}"
    rest = value[8:]
    if len(rest) == 11 and rest[0] == 0x0A and rest[1] == 0x01:
        balance = _amount(rest[2:7])
        if balance is not None:
            out += f", EC balance {balance}, MAC {rest[7:].hex().upper()}"
    return out


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
    "82": _bits(AIP_BITS, 2),
    "95": _bits(TVR_BITS, 5),
    "9B": _bits(TSI_BITS, 2),
    "9F66": _bits(_TTQ_BITS, 4),
    "9F6C": _bits(_CTQ_BITS, 2),
    "8E": _cvm_list,
    "9F34": _cvm_results,
    "84": _ascii,  # DF names of directories are ASCII ("2PAY.SYS.DDF01"); AIDs stay hex
    "9D": _ascii,
    "9C": _transaction_type,
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
    if tag == "9F10" and rid is not None and rid[:10].upper() == RID_UNIONPAY:
        special = _pboc_iad
    if special is not None:
        rendered = special(value)
        if rendered is not None:
            return rendered
    if info is None or info.fmt == "b":
        return None
    if info.fmt in ("an", "ans"):
        return _ascii(value)
    if info.fmt == "cn":
        return cn_digits(value)
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
        out.append(_value_line(obj.tag, obj.value, depth, rid, indent, mask))
    return out


def _value_line(tag: str, value: bytes, depth: int, rid: str | None, indent: str, mask: bool) -> str:
    prefix = indent * depth + f"{tag} {tag_name(tag, rid)}"
    if not value:
        return f"{prefix}: (empty)"
    rendered = render_value(tag, value, rid=rid, mask=mask)
    if mask and tag in _PAN_TAGS:
        return f"{prefix}: {rendered} (masked)"
    if rendered is None or rendered == value.hex().upper():
        return f"{prefix}: {value.hex().upper()}"
    return f"{prefix}: {value.hex().upper()} = {rendered}"


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


# --- APDUs (ISO/IEC 7816-4 §5, EMV Book 3 §6.5, JR/T 0025.5 / part 1 purse commands) ---------------------

_INS_NAMES = {ins.value: ins.label for ins in Ins}
_INITIALIZE_FOR = {
    0x00: "LOAD",
    0x01: "PURCHASE",
    0x02: "CASH WITHDRAW",
    0x03: "CAPP PURCHASE",
    0x05: "UNLOAD",
}
_SECRET_DATA = {0x20, 0x24}  # VERIFY (PIN block), PIN CHANGE/UNBLOCK (enciphered PIN): never shown


def command_hex(raw: bytes) -> str:
    """A command APDU in hex for a trace; the data of VERIFY and PIN CHANGE/UNBLOCK (a PIN block, plaintext
    or enciphered) as asterisks after the header and Lc: ``0020008008 ****************``."""
    text = bytes(raw).hex().upper()
    if len(raw) > 5 and raw[1] in _SECRET_DATA:
        return f"{text[:10]} {'*' * (len(text) - 10)}"
    return text


def command_name(cla: int, ins: int, p1: int, p2: int) -> str:
    """The command's name from its header, e.g. ``READ RECORD`` or ``INITIALIZE FOR PURCHASE``."""
    if ins == 0x50 and cla & 0xF0 == 0x80:
        return "INITIALIZE FOR " + _INITIALIZE_FOR.get(p1, f"P1 {p1:02X}")
    if ins == 0x24:
        return "PIN CHANGE" if p2 == 0x01 else "PIN UNBLOCK"
    if ins == 0xDC and cla == 0x80:
        return "UPDATE CAPP DATA CACHE"
    return _INS_NAMES.get(ins, f"INS {ins:02X}")


def _data_tag(p1: int, p2: int) -> str:
    return f"{p1:02X}{p2:02X}" if p1 else f"{p2:02X}"


def _command_detail(cmd: CommandApdu, rid: str | None) -> str:
    ins, p1, p2 = cmd.ins, cmd.p1, cmd.p2
    if ins == 0xA4 and p1 == 0x04:
        name = _ascii(cmd.data) or cmd.data.hex().upper()
        return f"{name}{' (next occurrence)' if p2 == 0x02 else ''}"
    if ins == 0xB2:
        return f"SFI {p2 >> 3} record {p1}" if p2 & 0x07 == 0x04 else f"record {p1}, P2 {p2:02X}"
    if ins in (0xCA, 0xDA):
        tag = _data_tag(p1, p2)
        return f"{tag} {tag_name(tag, rid)}"
    if ins == 0xAE:
        kind = CID_NAMES[p1 & 0xC0]
        return f"{kind} requested{', CDA' if p1 & 0x10 else ''}"
    if ins == 0x20:
        return {0x80: "plaintext PIN", 0x88: "enciphered PIN"}.get(p2, f"P2 {p2:02X}")
    return ""


def format_command(
    raw: bytes, *, rid: str | None = None, dol: bytes | None = None, indent: str = "  ", mask: bool = True
) -> str:
    """A command APDU: name, header and lengths, then its data (a TLV tree, or the values of ``dol``
    when given, e.g. CDOL1 for GENERATE AC). PIN data (VERIFY, PIN CHANGE/UNBLOCK) is always hidden;
    ``mask=False`` shows PANs, never PINs."""
    try:
        cmd = CommandApdu.parse(raw)
    except ApduError as exc:
        return f"{command_hex(raw)}\n(not a command APDU: {exc})"  # a malformed VERIFY is still a PIN
    name = command_name(cmd.cla, cmd.ins, cmd.p1, cmd.p2)
    detail = _command_detail(cmd, rid)
    head = f"{name}{' ' + detail if detail else ''}  [{bytes(raw[:4]).hex().upper()}"
    head += f" Lc {len(cmd.data)}" if cmd.data else ""
    head += f" Le {cmd.le}" if cmd.le is not None else ""
    head += "]"
    if not cmd.data or (cmd.ins == 0xA4 and cmd.p1 == 0x04):  # a selected name is in the head already
        return head
    if cmd.ins in _SECRET_DATA:
        return f"{head}\n{indent}({len(cmd.data)} bytes of PIN data hidden)"
    if dol is not None:
        try:
            values = split_dol_data(dol, cmd.data)
        except DolError:
            pass
        else:
            lines = [_value_line(tag, value, 1, rid, indent, mask) for tag, value in values.items()]
            return "\n".join([head, *lines])
    if cmd.ins == 0xA8:  # GPO: the 83 template
        try:
            return "\n".join([head, *_lines(decode(cmd.data), 1, rid, indent, mask)])
        except TlvError:
            pass
    return f"{head}\n{indent}{cmd.data.hex().upper()}"


def format_response(raw: bytes, *, rid: str | None = None, indent: str = "  ", mask: bool = True) -> str:
    """A response APDU: its data as a TLV tree (or hex when it is not TLV), then the status word."""
    try:
        resp = ResponseApdu.parse(raw)
    except ApduError as exc:
        return f"{bytes(raw).hex().upper()}\n(not a response APDU: {exc})"
    status = f"SW {resp.sw:04X} {sw_meaning(resp.sw)}"
    if not resp.data:
        return status
    try:
        objects = decode(resp.data)
    except TlvError:
        objects = []
    body = _lines(objects, 0, rid, indent, mask) if objects else [resp.data.hex().upper()]
    return "\n".join([*body, status])
