"""What the issuer's handlers are given besides their command and unit of work: :class:`Deps` — the HSM,
the clock, where card images go, the settings values — and the small helpers every use case shares (keys by
role, the bank and product caches, ledger transfer ids, posting linked legs).

Handlers are functions ``(command, uow, deps)`` (Cosmic Python, ch. 9-13): ``uow`` is a fresh unit of work
the handler enters (``with uow:``), once per transaction (an issuance of many cards enters it per batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from citycard.codec.pan import mask_pan
from citycard.hsm.api import Algorithm, Hsm, KeyExistsError, KeyHandle, KeyNotFoundError, KeyUsage
from citycard.ledger.model import (
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)

from ..decision import beijing_date, yymm
from ..model import (
    CITIZEN_KEY_LABEL,
    Bank,
    BankAccount,
    Card,
    CardRecord,
    NotFound,
    Product,
    bank_key_labels,
    transfer_id,
)
from ..ports import Clock, IssuerUnitOfWork

__all__ = [
    "COOLING_PERIOD_NS",
    "KEYS_ADDED_LATER",
    "SYMMETRIC_KEYS",
    "CardPersonaliser",
    "Deps",
    "available",
    "beijing_date",
    "card_for_update",
    "ec_float",
    "existing_bank",
    "expect_ok",
    "expiry_after",
    "link",
    "transfer_id",
    "yymm",
]

COOLING_PERIOD_NS = 7 * 86_400 * 10**9
"""Default wait between a loss report and the refund of the lost card's EC balance (7 days)."""

SYMMETRIC_KEYS = {
    "imk_ac": (KeyUsage.EMV_AC, Algorithm.TDEA),
    "imk_smi": (KeyUsage.EMV_SMI, Algorithm.TDEA),
    "imk_smc": (KeyUsage.EMV_SMC, Algorithm.TDEA),
    "pvk": (KeyUsage.PIN_VERIFICATION_VISA, Algorithm.TDEA),
    "zpk": (KeyUsage.PIN_ENCRYPTION, Algorithm.TDEA),
    "id_hash": (KeyUsage.HMAC, Algorithm.HMAC),
    "pvk_ibm": (KeyUsage.PIN_VERIFICATION_IBM3624, Algorithm.TDEA),
    "pin_store": (KeyUsage.PIN_ENCRYPTION, Algorithm.TDEA),
}
"""Each bank's symmetric keys by role (``model.bank_key_labels``): TR-31 usage and algorithm."""
KEYS_ADDED_LATER = frozenset({"pvk_ibm", "pin_store"})  # made on first use for banks older than them


class CardPersonaliser(Protocol):
    """Makes the card's image (keys from the HSM) inside the issuing transaction; stores it only when told
    the transaction committed (``publish``), or forgets it when it did not (``discard``)."""

    def personalise(
        self,
        bank: Bank,
        product: Product,
        card: Card,
        holder_name: str | None,
        pin_block: bytes | None = None,
        records: Sequence[CardRecord] = (),
    ) -> None:
        """``pin_block``: the PIN chosen at issuance (ISO format 1 under the bank's zone PIN key) for the
        chip's offline PIN; None keeps the chip profile's default. ``records``: the card's records of its
        proprietary files (the industry applications enabled on it, its transit concession) to personalise."""
        ...

    def publish(self) -> list[str]: ...
    def discard(self) -> None: ...


@dataclass
class Deps:
    """The issuer's dependencies and settings values; it caches key handles, banks and products (banks and
    products never change once added)."""

    hsm: Hsm
    clock: Clock
    personaliser: CardPersonaliser | None = None
    cooling_period_ns: int = COOLING_PERIOD_NS
    rsa_bits: int = 1024
    _keys: dict[str, KeyHandle] = field(default_factory=dict, repr=False)
    _banks: dict[str, Bank] = field(default_factory=dict, repr=False)
    _products: dict[tuple[str, str], Product] = field(default_factory=dict, repr=False)

    def key(self, bank_code: str, role: str) -> KeyHandle:
        """The bank's key of ``role`` (a key of ``bank_key_labels``); a key added to the scheme after the
        bank was (:data:`KEYS_ADDED_LATER`) is generated on first use."""
        label = bank_key_labels(bank_code)[role]
        handle = self._keys.get(label)
        if handle is None:
            try:
                handle = self.hsm.get(label)
            except KeyNotFoundError:
                if role not in KEYS_ADDED_LATER:
                    raise
                usage, algorithm = SYMMETRIC_KEYS[role]
                with contextlib.suppress(KeyExistsError):
                    self.hsm.generate_key(label, usage, algorithm=algorithm)
                handle = self.hsm.get(label)
            self._keys[label] = handle
        return handle

    def citizen_key(self, id_number: str) -> str:
        """The service center's HMAC of a (valid) resident ID number: the holder's key at every bank; its
        HSM key (:data:`~..model.CITIZEN_KEY_LABEL`) is made on first use."""
        handle = self._keys.get(CITIZEN_KEY_LABEL)
        if handle is None:
            try:
                handle = self.hsm.get(CITIZEN_KEY_LABEL)
            except KeyNotFoundError:
                with contextlib.suppress(KeyExistsError):
                    self.hsm.generate_key(CITIZEN_KEY_LABEL, KeyUsage.HMAC, algorithm=Algorithm.HMAC)
                handle = self.hsm.get(CITIZEN_KEY_LABEL)
            self._keys[CITIZEN_KEY_LABEL] = handle
        return self.hsm.keyed_hash(handle, id_number.encode()).hex()

    def bank(self, uow: IssuerUnitOfWork, code: str) -> Bank:
        """A bank that must exist (a card's or a stored row's); cached."""
        bank = self._banks.get(code)
        if bank is None:
            found = uow.banks.get(code)
            assert found is not None, code
            bank = self._banks[code] = found
        return bank

    def product(self, uow: IssuerUnitOfWork, bank_code: str, code: str) -> Product | None:
        product = self._products.get((bank_code, code))
        if product is None:
            product = uow.products.get(bank_code, code)
            if product is not None:
                self._products[(bank_code, code)] = product
        return product

    @contextlib.contextmanager
    def issuing(self) -> Iterator[None]:
        """Around a unit of work that personalises cards: their images are stored once it has committed,
        dropped if it fails (issuance is all or nothing, for the files too)."""
        try:
            yield
        except BaseException:
            if self.personaliser is not None:
                self.personaliser.discard()
            raise
        if self.personaliser is not None:
            self.personaliser.publish()


def link(legs: Sequence[Transfer]) -> list[Transfer]:
    """The legs as one linked chain: all of them post, or none (TigerBeetle's linked events)."""
    assert legs
    return [replace(t, flags=t.flags | TransferFlags.LINKED) for t in legs[:-1]] + [legs[-1]]


def card_for_update(uow: IssuerUnitOfWork, pan: str) -> Card:
    card = uow.cards.get(pan, for_update=True)
    if card is None:
        raise NotFound(f"no card {mask_pan(pan) if pan.isdigit() else repr(pan)}")
    return card


def existing_bank(uow: IssuerUnitOfWork, code: str) -> Bank:
    """The bank a command names, or :class:`NotFound` (a bank code typed by an operator)."""
    bank = uow.banks.get(code)
    if bank is None:
        raise NotFound(f"no bank {code}")
    return bank


def available(uow: IssuerUnitOfWork, account_id: int) -> int:
    (account,) = uow.ledger.lookup_accounts([account_id])
    return account.available_fen


def ec_float(account_id: int, product: Product) -> Account:
    """A card's EC float: what the bank owes for the card's electronic cash, never negative and never above
    the card's EC balance limit (``9F77``), both enforced by the ledger itself."""
    return Account(
        account_id,
        code=BankAccount.CARD_EC_FLOAT,
        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        limit_fen=product.ec_balance_limit_fen,
    )


def expect_ok(results: Sequence[CreateAccountResult | CreateTransferResult]) -> None:
    for r in results:
        assert r in (CreateAccountResult.OK, CreateTransferResult.OK), r


def expiry_after(now_ns: int, years: int) -> str:
    moment = datetime.fromtimestamp(now_ns / 1e9, UTC)
    return f"{(moment.year + years) % 100:02d}{moment.month:02d}"
