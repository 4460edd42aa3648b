"""UnionPay's application identifiers (RID ``A000000333``), said once for the card, the kernel and the
terminal's readers: the PBOC debit (with electronic cash), credit, quasi-credit and pure electronic cash
applications (PIX ``010101``, ``010102``, ``010103``, ``010106``; DESIGN.md, JR/T 0025)."""

from __future__ import annotations

from typing import Final

__all__ = ["CREDIT", "DEBIT", "PURE_EC", "QUASI_CREDIT", "UNIONPAY", "UNIONPAY_RID"]

UNIONPAY_RID: Final = bytes.fromhex("A000000333")
DEBIT: Final = UNIONPAY_RID + bytes.fromhex("010101")
"""PBOC debit, the citizen card's application, with its electronic cash wallet."""
CREDIT: Final = UNIONPAY_RID + bytes.fromhex("010102")
QUASI_CREDIT: Final = UNIONPAY_RID + bytes.fromhex("010103")
PURE_EC: Final = UNIONPAY_RID + bytes.fromhex("010106")
"""Pure electronic cash (an EC wallet without an account behind it)."""
UNIONPAY: Final = (DEBIT, CREDIT, QUASI_CREDIT, PURE_EC)
"""The four, in the order a terminal lists them by default."""
