"""Field 48 of the batch settlement (0500 / 0510): the terminal's batch totals, UnionPay style.

The layout (docs/iso8583.md, "Batch settlement"), 62 digits, after 中国银联 POS 终端批结算 practice:

=====  =====  ===========================================================
 pos   len    what
=====  =====  ===========================================================
 1     n12    domestic-card debit total (fen): purchases less voids, offline EC purchases included
 13    n3     domestic-card debit count
 16    n12    domestic-card credit total (fen): refunds
 28    n3     domestic-card credit count
 31    n1     domestic-card settlement code: ``0`` in the request; in the answer ``1`` balanced,
              ``2`` out of balance, ``3`` error
 32    n31    the same for foreign cards (all zeros here: the programme's cards are domestic)
=====  =====  ===========================================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import Iso8583Error

__all__ = ["FIELD48_DIGITS", "BatchTotals", "SettleCode"]

FIELD48_DIGITS = 62
MAX_COUNT = 999
MAX_AMOUNT_FEN = 10**12 - 1


class SettleCode(enum.StrEnum):
    """The settlement code digit of field 48 (对账应答代码)."""

    REQUEST = "0"
    BALANCED = "1"
    OUT_OF_BALANCE = "2"
    ERROR = "3"


@dataclass(frozen=True, slots=True)
class BatchTotals:
    """A batch's debit (purchases less voids) and credit (refunds) totals, in fen and counts."""

    debit_fen: int = 0
    debit_count: int = 0
    credit_fen: int = 0
    credit_count: int = 0

    def __post_init__(self) -> None:
        for name in ("debit_fen", "credit_fen"):
            if not 0 <= getattr(self, name) <= MAX_AMOUNT_FEN:
                raise Iso8583Error("48", None, f"{name} does not fit n12")
        for name in ("debit_count", "credit_count"):
            if not 0 <= getattr(self, name) <= MAX_COUNT:
                raise Iso8583Error("48", None, f"{name} does not fit n3")

    def field48(self, code: SettleCode = SettleCode.REQUEST) -> str:
        """The 62 digits (domestic totals with ``code``, foreign totals zero with the same code)."""
        domestic = (
            f"{self.debit_fen:012d}{self.debit_count:03d}{self.credit_fen:012d}{self.credit_count:03d}{code}"
        )
        return domestic + "0" * 30 + str(code)

    @classmethod
    def parse(cls, value: str | None) -> tuple[BatchTotals, SettleCode]:
        """The domestic totals and settlement code of field 48; :class:`Iso8583Error` when malformed."""
        if value is None or len(value) != FIELD48_DIGITS or not value.isdigit():
            raise Iso8583Error("48", None, f"batch totals are {FIELD48_DIGITS} digits")
        try:
            code = SettleCode(value[30])
        except ValueError:
            raise Iso8583Error("48", 30, "settlement code is not 0-3") from None
        totals = cls(int(value[0:12]), int(value[12:15]), int(value[15:27]), int(value[27:30]))
        if value[31:61].strip("0"):
            raise Iso8583Error("48", 31, "foreign-card totals must be zero (domestic cards only)")
        return totals, code
