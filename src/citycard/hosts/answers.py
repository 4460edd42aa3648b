"""Responses built from a request: the request's identifying fields echoed, 39 and the answer's own fields.

ISO 8583:1987 practice (and 中国银联 POS终端消息域说明): a response echoes the request's processing code (3),
amount (4), STAN (11), terminal (41) and merchant (42), and on the host-to-host legs the acquiring
institution (32) and RRN (37), so every hop matches it by STAN and terminal or by RRN. We echo as well the
card number (2), card sequence number (23), condition code (25), currency (49), field 60 and the original
data (61), where the response kind allows them, so that ``transaction_type`` finds the transaction of the
answer as of its request.
"""

from __future__ import annotations

from typing import Final

from citycard.codec.iso8583 import KINDS, Message, ResponseCode, response_mti

__all__ = ["ECHOED", "answer"]

ECHOED: Final = frozenset({2, 3, 4, 11, 23, 25, 32, 37, 41, 42, 49, 60, 61})
"""The request's fields a response carries back (module docstring), those its kind allows."""


def answer(request: Message, code: ResponseCode, extra: dict[int, str | bytes] | None = None) -> Message:
    """The typed response to ``request`` with 39 = ``code``, the echoed fields, and ``extra`` (field number
    to its wire value: 38 auth code, 54 balance, 55 chip data ...). An ``extra`` the kind refuses is a bug."""
    mti = response_mti(request.mti)
    return _KIND_OF[mti].echoing(mti, request, ECHOED, {39: str(code), **(extra or {})})


_KIND_OF: Final = {mti: kind for kind in KINDS for mti in kind.MTIS}
