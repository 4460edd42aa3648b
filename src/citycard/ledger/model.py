"""Values of the double-entry ledger: accounts, transfers, flags and result codes.

Modelled on TigerBeetle's data model (docs.tigerbeetle.com, "Accounts", "Transfers", "create_transfers"
result codes): every amount is an integer number of fen on one ledger (currency 156, CNY, ISO 4217);
transfers are immutable and carry a client-chosen id as their idempotency key; two-phase transfers reserve
an amount (pending) that is later posted (in full or in part) or voided; a linked chain of transfers commits
all or nothing.

Differences from TigerBeetle, on purpose:

- ids and balances are bounded by a signed 64-bit SQL ``BIGINT`` (``MAX_ID``, ``MAX_BALANCE_FEN``), not u128;
- an account may carry ``limit_fen``, an upper bound on its net balance on its normal side (for example
  the EC float of one card: never negative, never above the card's EC balance limit ``9F77``);
- an existing id with other content gives the single result ``exists_with_different_fields``;
- an expired pending transfer releases its reservation when ``expire_pending_transfers`` runs (the
  application calls it, for example once a minute), not by itself in the background.

Three kinds of failure: a bug is an ``assert``; a value that cannot be represented at all (a float amount,
a negative id) raises :class:`MalformedLedgerInput` when the value is built; everything else (zero amount,
unknown account, insufficient funds, duplicate id) is a result code, one per submitted event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import TypeVar

__all__ = [
    "LEDGER_CNY",
    "MAX_AMOUNT_FEN",
    "MAX_BALANCE_FEN",
    "MAX_BATCH",
    "MAX_ID",
    "MAX_TIMEOUT_S",
    "Account",
    "AccountFlags",
    "CreateAccountResult",
    "CreateTransferResult",
    "MalformedLedgerInput",
    "Transfer",
    "TransferFlags",
    "evolve",
]

LEDGER_CNY = 156
"""The ledger of every account and transfer in fen: ISO 4217 numeric code of the Chinese yuan."""

MAX_ID = 2**63 - 2
"""Largest account or transfer id (``2**63 - 1``, BIGINT max, is reserved like TigerBeetle's int max)."""

MAX_BALANCE_FEN = 2**63 - 1
"""No balance column may exceed a signed 64-bit integer."""

MAX_AMOUNT_FEN = 10**15
"""Largest amount of one transfer: ten trillion yuan (a bound, not a business limit)."""

MAX_TIMEOUT_S = 2**31 - 1
"""Longest timeout of a pending transfer (TigerBeetle's ``timeout`` is a u32 of seconds)."""

MAX_BATCH = 8190
"""Most events in one ``create_accounts`` / ``create_transfers`` call (TigerBeetle's batch size)."""


class MalformedLedgerInput(ValueError):
    """A ledger value that cannot exist (wrong type, negative unsigned field, batch too large)."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class AccountFlags(enum.IntFlag):
    """Account flags (TigerBeetle ``AccountFlags``; bit values as TigerBeetle's)."""

    NONE = 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    """Credit-normal account (a liability: a customer's money): debits may never exceed posted credits."""
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    """Debit-normal account (an asset): credits may never exceed posted debits."""


class TransferFlags(enum.IntFlag):
    """Transfer flags (TigerBeetle ``TransferFlags``; bit values as TigerBeetle's)."""

    NONE = 0
    LINKED = 1 << 0
    """This transfer and the next one in the batch succeed or fail together."""
    PENDING = 1 << 1
    """Reserve the amount (phase one of a two-phase transfer)."""
    POST_PENDING_TRANSFER = 1 << 2
    """Post the pending transfer ``pending_id`` for ``amount_fen`` (at most the pending amount)."""
    VOID_PENDING_TRANSFER = 1 << 3
    """Void the pending transfer ``pending_id`` (``amount_fen`` must equal the pending amount)."""


class CreateAccountResult(enum.Enum):
    """The outcome of creating one account (names from TigerBeetle's ``CreateAccountResult``)."""

    OK = "ok"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    BALANCES_MUST_BE_ZERO = "balances_must_be_zero"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    LIMIT_REQUIRES_BALANCE_DIRECTION = "limit_requires_balance_direction"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    EXISTS = "exists"


class CreateTransferResult(enum.Enum):
    """The outcome of creating one transfer (names from TigerBeetle's ``CreateTransferResult``)."""

    OK = "ok"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    ID_MUST_NOT_BE_INT_MAX = "id_must_not_be_int_max"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "debit_account_id_must_not_be_zero"
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = "credit_account_id_must_not_be_zero"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_MUST_NOT_BE_ZERO = "pending_id_must_not_be_zero"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    LEDGER_MUST_NOT_BE_ZERO = "ledger_must_not_be_zero"
    CODE_MUST_NOT_BE_ZERO = "code_must_not_be_zero"
    AMOUNT_MUST_NOT_BE_ZERO = "amount_must_not_be_zero"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    EXISTS = "exists"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = "accounts_must_have_the_same_ledger"
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = "transfer_must_have_the_same_ledger_as_accounts"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = "pending_transfer_has_different_debit_account_id"
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = "pending_transfer_has_different_credit_account_id"
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = "pending_transfer_has_different_ledger"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"
    EXCEEDS_LIMIT = "exceeds_limit"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"


def _check_unsigned(where: str, value: object, bound: int) -> None:
    if type(value) is not int:
        raise MalformedLedgerInput(where, f"must be an int, not {type(value).__name__}")
    if value < 0:
        raise MalformedLedgerInput(where, "must not be negative")
    if value > bound:
        raise MalformedLedgerInput(where, f"must be at most {bound}")


@dataclass(frozen=True, slots=True)
class Account:
    """One ledger account and its four balances (TigerBeetle's layout), all in fen.

    ``code`` is the account type chosen by the application (for example 1 = card EC float);
    ``user_data`` is an opaque 64-bit reference for the application (for example a card row id).
    ``limit_fen`` bounds the net balance on the account's normal side (credits - debits for a
    credit-normal account, debits - credits for a debit-normal one); pending amounts count against it.
    """

    id: int
    ledger: int = LEDGER_CNY
    code: int = 1
    flags: AccountFlags = AccountFlags.NONE
    limit_fen: int | None = None
    user_data: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp_ns: int = 0

    def __post_init__(self) -> None:
        _check_unsigned("account.id", self.id, MAX_BALANCE_FEN)
        _check_unsigned("account.ledger", self.ledger, 2**31 - 1)
        _check_unsigned("account.code", self.code, 2**31 - 1)
        if not isinstance(self.flags, AccountFlags):
            raise MalformedLedgerInput("account.flags", "must be AccountFlags")
        if self.limit_fen is not None:
            _check_unsigned("account.limit_fen", self.limit_fen, MAX_BALANCE_FEN)
        _check_unsigned("account.user_data", self.user_data, MAX_BALANCE_FEN)
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted"):
            _check_unsigned(f"account.{name}", getattr(self, name), MAX_BALANCE_FEN)
        _check_unsigned("account.timestamp_ns", self.timestamp_ns, MAX_BALANCE_FEN)

    @property
    def balance_fen(self) -> int:
        """Posted debits minus posted credits (negative for a credit-normal account in credit)."""
        return self.debits_posted - self.credits_posted

    @property
    def credit_balance_fen(self) -> int:
        """Posted credits minus posted debits: what a credit-normal account holds."""
        return self.credits_posted - self.debits_posted

    @property
    def available_fen(self) -> int:
        """What can still be debited from a credit-normal account (pending debits reserved)."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    def same_definition(self, other: Account) -> bool:
        """Same id, ledger, code, flags, limit and user data (balances and timestamp aside)."""
        return (self.id, self.ledger, self.code, self.flags, self.limit_fen, self.user_data) == (
            other.id,
            other.ledger,
            other.code,
            other.flags,
            other.limit_fen,
            other.user_data,
        )


_TRANSFER_FLAG_MASK = int(
    TransferFlags.LINKED
    | TransferFlags.PENDING
    | TransferFlags.POST_PENDING_TRANSFER
    | TransferFlags.VOID_PENDING_TRANSFER
)


@dataclass(frozen=True, slots=True)
class Transfer:
    """An immutable movement of ``amount_fen`` from ``debit_account_id`` to ``credit_account_id``.

    ``id`` is chosen by the client and is its idempotency key; ``pending_id`` names the pending transfer
    a post or void resolves (0 otherwise). A pending transfer with ``timeout_s`` expires that many seconds
    after it was stored: it can no longer be posted or voided (``pending_transfer_expired``) and
    ``expire_pending_transfers`` releases what it reserved. ``timestamp_ns`` is set by the ledger when it
    stores the transfer (leave it 0 when submitting).
    """

    id: int
    debit_account_id: int
    credit_account_id: int
    amount_fen: int
    pending_id: int = 0
    ledger: int = LEDGER_CNY
    code: int = 1
    flags: TransferFlags = TransferFlags.NONE
    user_data: int = 0
    timeout_s: int = 0
    timestamp_ns: int = 0

    def __post_init__(self) -> None:
        _check_unsigned("transfer.id", self.id, MAX_BALANCE_FEN)
        _check_unsigned("transfer.debit_account_id", self.debit_account_id, MAX_BALANCE_FEN)
        _check_unsigned("transfer.credit_account_id", self.credit_account_id, MAX_BALANCE_FEN)
        _check_unsigned("transfer.amount_fen", self.amount_fen, MAX_AMOUNT_FEN)
        _check_unsigned("transfer.pending_id", self.pending_id, MAX_BALANCE_FEN)
        _check_unsigned("transfer.ledger", self.ledger, 2**31 - 1)
        _check_unsigned("transfer.code", self.code, 2**31 - 1)
        if not isinstance(self.flags, TransferFlags) or int(self.flags) & ~_TRANSFER_FLAG_MASK:
            raise MalformedLedgerInput("transfer.flags", "must be TransferFlags")
        _check_unsigned("transfer.user_data", self.user_data, MAX_BALANCE_FEN)
        _check_unsigned("transfer.timeout_s", self.timeout_s, MAX_TIMEOUT_S)
        _check_unsigned("transfer.timestamp_ns", self.timestamp_ns, MAX_BALANCE_FEN)

    @classmethod
    def post(cls, id: int, pending: Transfer, amount_fen: int | None = None, **fields: int) -> Transfer:
        """A transfer that posts ``pending`` (in full unless ``amount_fen`` is given)."""
        return cls._resolve(id, pending, TransferFlags.POST_PENDING_TRANSFER, amount_fen, **fields)

    @classmethod
    def void(cls, id: int, pending: Transfer, **fields: int) -> Transfer:
        """A transfer that voids ``pending``."""
        return cls._resolve(id, pending, TransferFlags.VOID_PENDING_TRANSFER, None, **fields)

    @classmethod
    def _resolve(
        cls, id: int, pending: Transfer, flag: TransferFlags, amount_fen: int | None, **fields: int
    ) -> Transfer:
        linked = TransferFlags.LINKED if fields.pop("linked", 0) else TransferFlags.NONE
        return cls(
            id=id,
            debit_account_id=pending.debit_account_id,
            credit_account_id=pending.credit_account_id,
            amount_fen=pending.amount_fen if amount_fen is None else amount_fen,
            pending_id=pending.id,
            ledger=pending.ledger,
            code=fields.pop("code", pending.code),
            flags=flag | linked,
            user_data=fields.pop("user_data", 0),
        )

    def same_content(self, other: Transfer) -> bool:
        """Equal in every field but the timestamp the ledger assigned."""
        return replace(self, timestamp_ns=0) == replace(other, timestamp_ns=0)

    def stored_at(self, timestamp_ns: int) -> Transfer:
        """This transfer as the ledger stores it, stamped ``timestamp_ns`` (checked as ``__init__`` does; the
        other fields were when it was built)."""
        _check_unsigned("transfer.timestamp_ns", timestamp_ns, MAX_BALANCE_FEN)
        return evolve(self, timestamp_ns=timestamp_ns)

    @property
    def expires_at_ns(self) -> int | None:
        """When a stored pending transfer with a timeout expires (None: it never does)."""
        if not self.flags & TransferFlags.PENDING or not self.timeout_s:
            return None
        return self.timestamp_ns + self.timeout_s * 1_000_000_000

    @property
    def is_resolution(self) -> bool:
        """A post or a void of a pending transfer."""
        return bool(self.flags & (TransferFlags.POST_PENDING_TRANSFER | TransferFlags.VOID_PENDING_TRANSFER))


_V = TypeVar("_V", Account, Transfer)
_new = object.__new__
_set = object.__setattr__


def evolve(value: _V, **changes: int) -> _V:
    """``dataclasses.replace`` without ``__post_init__``: for the values the engine derives from checked ones
    (a balance plus or minus a checked amount, kept in bounds by the engine's own checks and asserted by
    ``engine.account_violation``). ``replace`` costs four to five times as much, most of it the eleven field
    checks, and the engine made three per transfer."""
    cls = type(value)
    new = _new(cls)
    for name in cls.__slots__:
        _set(new, name, getattr(value, name))
    for name, field_value in changes.items():
        _set(new, name, field_value)
    return new
