"""Field 39 response codes of the UnionPay POS profile, defined once, with ``.approved``.

Source: the response code list that UnionPay POS terminals display (a published terminal software
table, beside field 39 of 中国银联 "POS终端消息域说明"); the English wording is ours. Codes are two
characters (``an2``). ``00`` and ``11`` approve; ``A2``/``A4``/``A5``/``A6`` approve a transfer whose credit
side the cardholder is asked to confirm. Everything else is a decline or an error.
"""

from __future__ import annotations

import enum
from types import MappingProxyType
from typing import Final

from .errors import ECHO_FIELDS, Iso8583Error

__all__ = ["ResponseCode", "format_error_response", "response_for_malformed", "response_mti"]


class ResponseCode(enum.StrEnum):
    """Field 39. ``str(code)`` is the two characters on the wire."""

    APPROVED = "00"
    REFER_TO_ISSUER = "01"
    INVALID_MERCHANT = "03"
    PICK_UP = "04"
    DO_NOT_HONOUR = "05"
    ERROR = "06"
    APPROVED_VIP = "11"
    INVALID_TRANSACTION = "12"
    INVALID_AMOUNT = "13"
    INVALID_CARD_NUMBER = "14"
    NO_SUCH_ISSUER = "15"
    CARD_NOT_INITIALISED = "21"
    SUSPECTED_MALFUNCTION = "22"
    NO_ORIGINAL_TRANSACTION = "25"
    FORMAT_ERROR = "30"
    FRAUD_PICK_UP = "34"
    PIN_TRIES_EXCEEDED_PICK_UP = "38"
    FUNCTION_NOT_SUPPORTED = "40"
    LOST_CARD = "41"
    STOLEN_CARD = "43"
    USE_CHIP = "45"
    INSUFFICIENT_FUNDS = "51"
    EXPIRED_CARD = "54"
    INCORRECT_PIN = "55"
    NOT_PERMITTED_TO_CARDHOLDER = "57"
    NOT_PERMITTED_TO_TERMINAL = "58"
    SUSPECTED_FRAUD = "59"
    EXCEEDS_AMOUNT_LIMIT = "61"
    RESTRICTED_CARD = "62"
    AMOUNT_MISMATCH = "64"
    EXCEEDS_FREQUENCY_LIMIT = "65"
    RESPONSE_RECEIVED_TOO_LATE = "68"
    PIN_TRIES_EXCEEDED = "75"
    BATCH_MISMATCH = "77"
    CUTOFF_IN_PROGRESS = "90"
    ISSUER_UNAVAILABLE = "91"
    ROUTING_ERROR = "92"
    DUPLICATE_TRANSMISSION = "94"
    RECONCILE_ERROR = "95"
    SYSTEM_MALFUNCTION = "96"
    TERMINAL_NOT_REGISTERED = "97"
    ISSUER_TIMEOUT = "98"
    PIN_FORMAT_ERROR = "99"
    MAC_ERROR = "A0"
    CURRENCY_MISMATCH = "A1"
    APPROVED_CONFIRM_WITH_PAYEE_BANK = "A2"
    PAYEE_ACCOUNT_INCORRECT = "A3"
    APPROVED_CONFIRM_WITH_CREDITED_BANK = "A4"
    APPROVED_CONFIRM_CREDIT_A5 = "A5"
    APPROVED_CONFIRM_CREDIT_A6 = "A6"
    SECURITY_PROCESSING_FAILED = "A7"

    @property
    def approved(self) -> bool:
        """True for the codes that approve the transaction."""
        return self in _APPROVED

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]

    @classmethod
    def parse(cls, code: str, *, position: int | None = None) -> ResponseCode:
        """The code for two characters from field 39; an unknown code is malformed input."""
        try:
            return cls(code)
        except ValueError:
            raise Iso8583Error("39", position, "response code is not in the profile's table") from None


_APPROVED: Final = frozenset(
    {
        ResponseCode.APPROVED,
        ResponseCode.APPROVED_VIP,
        ResponseCode.APPROVED_CONFIRM_WITH_PAYEE_BANK,
        ResponseCode.APPROVED_CONFIRM_WITH_CREDITED_BANK,
        ResponseCode.APPROVED_CONFIRM_CREDIT_A5,
        ResponseCode.APPROVED_CONFIRM_CREDIT_A6,
    }
)

_DESCRIPTIONS: Final = MappingProxyType(
    {
        ResponseCode.APPROVED: "approved",
        ResponseCode.REFER_TO_ISSUER: "refer to card issuer",
        ResponseCode.INVALID_MERCHANT: "invalid merchant",
        ResponseCode.PICK_UP: "pick up card",
        ResponseCode.DO_NOT_HONOUR: "do not honour (cardholder verification failed)",
        ResponseCode.ERROR: "error",
        ResponseCode.APPROVED_VIP: "approved (VIP)",
        ResponseCode.INVALID_TRANSACTION: "invalid transaction",
        ResponseCode.INVALID_AMOUNT: "invalid amount",
        ResponseCode.INVALID_CARD_NUMBER: "invalid card number",
        ResponseCode.NO_SUCH_ISSUER: "no such issuer",
        ResponseCode.CARD_NOT_INITIALISED: "card not initialised or dormant",
        ResponseCode.SUSPECTED_MALFUNCTION: "suspected malfunction or outside the allowed days",
        ResponseCode.NO_ORIGINAL_TRANSACTION: "unable to locate the original transaction",
        ResponseCode.FORMAT_ERROR: "format error",
        ResponseCode.FRAUD_PICK_UP: "suspected fraud, pick up card",
        ResponseCode.PIN_TRIES_EXCEEDED_PICK_UP: "PIN tries exceeded, pick up card",
        ResponseCode.FUNCTION_NOT_SUPPORTED: "function not supported by the issuer",
        ResponseCode.LOST_CARD: "lost card",
        ResponseCode.STOLEN_CARD: "stolen card",
        ResponseCode.USE_CHIP: "use the chip",
        ResponseCode.INSUFFICIENT_FUNDS: "insufficient funds",
        ResponseCode.EXPIRED_CARD: "expired card",
        ResponseCode.INCORRECT_PIN: "incorrect PIN",
        ResponseCode.NOT_PERMITTED_TO_CARDHOLDER: "transaction not permitted to cardholder",
        ResponseCode.NOT_PERMITTED_TO_TERMINAL: "transaction not permitted to terminal",
        ResponseCode.SUSPECTED_FRAUD: "suspected fraud (card verification error)",
        ResponseCode.EXCEEDS_AMOUNT_LIMIT: "exceeds withdrawal amount limit",
        ResponseCode.RESTRICTED_CARD: "restricted card",
        ResponseCode.AMOUNT_MISMATCH: "amount differs from the original transaction",
        ResponseCode.EXCEEDS_FREQUENCY_LIMIT: "exceeds withdrawal frequency limit",
        ResponseCode.RESPONSE_RECEIVED_TOO_LATE: "response received too late",
        ResponseCode.PIN_TRIES_EXCEEDED: "PIN tries exceeded",
        ResponseCode.BATCH_MISMATCH: "batch number mismatch, sign on again",
        ResponseCode.CUTOFF_IN_PROGRESS: "cut-off in progress",
        ResponseCode.ISSUER_UNAVAILABLE: "issuer or switch inoperative",
        ResponseCode.ROUTING_ERROR: "financial institution cannot be found for routing",
        ResponseCode.DUPLICATE_TRANSMISSION: "duplicate transmission",
        ResponseCode.RECONCILE_ERROR: "reconcile error: the batch totals are out of balance",
        ResponseCode.SYSTEM_MALFUNCTION: "system malfunction",
        ResponseCode.TERMINAL_NOT_REGISTERED: "terminal not registered",
        ResponseCode.ISSUER_TIMEOUT: "issuer timed out",
        ResponseCode.PIN_FORMAT_ERROR: "PIN format error, sign on again",
        ResponseCode.MAC_ERROR: "MAC verification failed, sign on again",
        ResponseCode.CURRENCY_MISMATCH: "transfer currencies differ",
        ResponseCode.APPROVED_CONFIRM_WITH_PAYEE_BANK: "approved, confirm with the payee's bank",
        ResponseCode.PAYEE_ACCOUNT_INCORRECT: "payee account incorrect",
        ResponseCode.APPROVED_CONFIRM_WITH_CREDITED_BANK: "approved, confirm with the credited bank",
        ResponseCode.APPROVED_CONFIRM_CREDIT_A5: "approved, confirm with the credited bank",
        ResponseCode.APPROVED_CONFIRM_CREDIT_A6: "approved, confirm with the credited bank",
        ResponseCode.SECURITY_PROCESSING_FAILED: "security processing failed",
    }
)
assert set(_DESCRIPTIONS) == set(ResponseCode)


def response_for_malformed(error: Iso8583Error) -> ResponseCode:
    """The answer to a malformed message: 30 (format error), whatever field failed; nothing is posted.

    A MAC that is well formed but wrong is not malformed input: the host finds it by verifying the MAC
    and answers :attr:`ResponseCode.MAC_ERROR` (A0) itself.
    """
    assert isinstance(error, Iso8583Error)
    return ResponseCode.FORMAT_ERROR


def response_mti(mti: str) -> str:
    """The MTI of the response to request ``mti`` (``0200`` -> ``0210``, ``0420`` -> ``0430``)."""
    if len(mti) != 4 or not mti.isdigit() or mti[2] not in "02" or mti[3] != "0":
        raise Iso8583Error("mti", None, f"{mti!r} is not a request or advice MTI")
    return mti[:2] + str(int(mti[2]) + 1) + "0"


def format_error_response(error: Iso8583Error) -> tuple[str, dict[int, str]] | None:
    """MTI and fields of the answer to a malformed request: 39 = 30, with its STAN, terminal and merchant.

    None when the request cannot be answered: its MTI did not decode or is not a request, or one of
    fields 11, 41 and 42 was not decoded cleanly (the terminal could not match the answer).
    """
    if error.mti is None or set(error.echo) != ECHO_FIELDS:
        return None
    try:
        mti = response_mti(error.mti)
    except Iso8583Error:
        return None
    return mti, {**error.echo, 39: str(response_for_malformed(error))}
