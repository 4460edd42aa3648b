"""Cardholder verification method list evaluation (EMV 4.3 Book 3 §10.5, Annex C3; JR/T 0025.5 §… adds
CVM code ``20`` "cardholder ID verification" — 持卡人证件出示).

The pure part: parse the CVM list ``8E`` and decide, rule by rule, whether its condition applies. The
kernel performs the chosen method (it may need the card and the PIN pad) and calls back here for the next.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CVM_CARDHOLDER_ID",
    "CVM_ENCIPHERED_OFFLINE",
    "CVM_ENCIPHERED_OFFLINE_SIGNATURE",
    "CVM_FAIL",
    "CVM_NO_CVM",
    "CVM_ONLINE_PIN",
    "CVM_PLAINTEXT_OFFLINE",
    "CVM_PLAINTEXT_OFFLINE_SIGNATURE",
    "CVM_SIGNATURE",
    "CvmContext",
    "CvmList",
    "CvmRule",
    "condition_applies",
    "parse_cvm_list",
    "terminal_supports",
]

CVM_FAIL = 0x00
CVM_PLAINTEXT_OFFLINE = 0x01
CVM_ONLINE_PIN = 0x02
CVM_PLAINTEXT_OFFLINE_SIGNATURE = 0x03
CVM_ENCIPHERED_OFFLINE = 0x04
CVM_ENCIPHERED_OFFLINE_SIGNATURE = 0x05
CVM_SIGNATURE = 0x1E
CVM_NO_CVM = 0x1F
CVM_CARDHOLDER_ID = 0x20  # PBOC

KNOWN = frozenset({0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x1E, 0x1F, 0x20})


class CvmListError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CvmRule:
    code: int  # 6 low bits of byte 1
    apply_next_if_fails: bool  # bit 7 of byte 1
    condition: int

    @property
    def raw(self) -> bytes:
        return bytes((self.code | (0x40 if self.apply_next_if_fails else 0), self.condition))


@dataclass(frozen=True, slots=True)
class CvmList:
    amount_x: int
    amount_y: int
    rules: tuple[CvmRule, ...]


@dataclass(frozen=True, slots=True)
class CvmContext:
    amount_fen: int
    other_amount_fen: int
    same_currency: bool  # 9F42 present and equal to 5F2A
    terminal_capabilities: bytes  # 9F33
    transaction_type: int  # 9C
    cardholder_id_supported: bool = True


def parse_cvm_list(value: bytes) -> CvmList:
    """``8E``: amount X (4), amount Y (4), then 2-byte rules. Raises :class:`CvmListError`."""
    if len(value) < 8 or len(value) % 2:
        raise CvmListError(f"CVM list of {len(value)} bytes is malformed")
    rules = tuple(
        CvmRule(value[i] & 0x3F, bool(value[i] & 0x40), value[i + 1]) for i in range(8, len(value), 2)
    )
    return CvmList(int.from_bytes(value[:4], "big"), int.from_bytes(value[4:8], "big"), rules)


def terminal_supports(code: int, caps: bytes, *, cardholder_id: bool = True) -> bool:
    """Terminal capabilities ``9F33`` byte 2 (Book 4 Annex A2)."""
    cvm = caps[1] if len(caps) > 1 else 0
    return {
        CVM_FAIL: True,
        CVM_PLAINTEXT_OFFLINE: bool(cvm & 0x80),
        CVM_ONLINE_PIN: bool(cvm & 0x40),
        CVM_PLAINTEXT_OFFLINE_SIGNATURE: bool(cvm & 0x80) and bool(cvm & 0x20),
        CVM_ENCIPHERED_OFFLINE: bool(cvm & 0x10),
        CVM_ENCIPHERED_OFFLINE_SIGNATURE: bool(cvm & 0x10) and bool(cvm & 0x20),
        CVM_SIGNATURE: bool(cvm & 0x20),
        CVM_NO_CVM: bool(cvm & 0x08),
        CVM_CARDHOLDER_ID: cardholder_id,
    }.get(code, False)


def condition_applies(rule: CvmRule, cvms: CvmList, ctx: CvmContext) -> bool:
    """Book 3 Annex C3 condition codes. Amount conditions need the application currency (9F42)."""
    c = rule.condition
    cash = ctx.transaction_type in (0x01, 0x17)
    cashback = ctx.other_amount_fen > 0 or ctx.transaction_type == 0x09
    if c == 0x00:
        return True
    if c == 0x01:  # unattended cash
        return False
    if c == 0x02:  # not unattended cash, not manual cash, not purchase with cashback
        return not cash and not cashback
    if c == 0x03:
        return terminal_supports(
            rule.code, ctx.terminal_capabilities, cardholder_id=ctx.cardholder_id_supported
        )
    if c == 0x04:  # manual cash
        return cash
    if c == 0x05:
        return cashback
    if c in (0x06, 0x07, 0x08, 0x09):
        if not ctx.same_currency:
            return False
        limit = cvms.amount_x if c in (0x06, 0x07) else cvms.amount_y
        return ctx.amount_fen < limit if c in (0x06, 0x08) else ctx.amount_fen > limit
    return False  # RFU conditions are not satisfied
