"""The issuer host: set-up, issuance, online authorization and the card's life, over injected ports.

Every handler opens one unit of work, does its checks, writes, and commits; nothing is written when it
refuses. Keys stay in the HSM (``citycard.hsm.api.Hsm``): ARQCs are verified, ARPCs and script MACs made
there. Time comes from the injected clock (nanoseconds).

Online authorization (EMV Book 3 §10.9 online processing, §10.10 issuer-to-card script processing;
JR/T 0025.13 for the EC load):

1. idempotency: a request id seen before gets the stored answer, and nothing is posted again;
2. the card: known, PSN matching, in a state that allows the transaction, not expired;
3. chip data (field 55): the AC input (``crypto.cryptograms.ac_input``) and the ARQC verified in the HSM;
   the ATC must exceed the highest ATC seen for the card (a replay is declined); an unpredictable number
   seen before for the card is flagged; CVM results (``9F34``) claiming a successful offline PIN are checked
   against the card's own CVR in ``9F10`` — the "No PIN" attack of Murdoch, Drimer, Anderson and Bond
   (IEEE S&P 2010) makes the terminal believe a PIN was verified that the card never saw; an online PIN
   that the card's CTQ (``9F6C``) asks for, or that the CVM results claim, must come with a PIN block
   (field 52), else ``55`` with the flag ``online_pin_missing``; a PIN block is verified in the HSM against
   the card's IBM 3624 offset — every digit — and wrong ones are counted per card (``ONLINE_PIN_TRY_LIMIT``
   in a row: ``75`` until the PIN is re-set; a right PIN resets the count);
   the terminal: the ARQC does not cover field 41 (terminal ID) or 42 (merchant ID), so the issuer binds
   what it can — a terminal identification ``9F1C`` in field 55 must equal field 41 (``58``, flag
   ``terminal_mismatch``); every stored answer records fields 41 and 42, and a reversal must come from the
   original's terminal and merchant (``58``, nothing reversed); once terminals are registered, field 41
   must be an active terminal of the merchant in field 42 (``58`` / ``03``). Only the network's field 64
   MAC (not built yet) ties a message to the terminal that really sent it;
4. the business: purchase (deposit -> network settlement), balance inquiry, EC load 圈存 (deposit -> EC
   float, answered with ``PUT DATA 9F79``), EC cash load (counter cash -> EC float), reversal (the original's
   transfers mirrored — except an EC load whose reversal reports, in the issuer script results ``9F5B``,
   that the card applied the ``PUT DATA 9F79``: the card holds the money, so the load stands). Purchases
   post at once (single-message authorization): there are no pending holds to complete later;
5. the answer: response code, ARPC method 1 over the ARQC and ARC (the response code in ASCII), and issuer
   scripts (EC balance, then PIN CHANGE with a PIN the bank set, then application block/unblock, pending
   for the card; each is sent once). A qPBOC card (its CTQ ``9F6C`` in field 55) has left the field after
   its GPO — JR/T 0025.12 has no second GENERATE AC and no script processing — so what is pending for it
   waits for its next contact transaction.

Ledger transfer ids are derived from the request id (``transfer_id``), so a retry that slipped past step 1
would still be refused by the ledger as ``exists``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Protocol

from citycard.codec.tlv import TlvError, decode_dict
from citycard.crypto.cryptograms import CryptogramDataError, ac_input, amount_from_bcd, cvr_from_iad
from citycard.hsm.api import Algorithm, Hsm, KeyExistsError, KeyHandle, KeyNotFoundError, KeyUsage
from citycard.ledger.model import (
    MAX_ID,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)

from .commands import (
    ActivateCard,
    AddBank,
    AddBinRange,
    AddProduct,
    AuthorizationKind,
    AuthorizationRequest,
    AuthorizationResponse,
    BlockCard,
    ChargeAnnualFees,
    CloseCard,
    Deposit,
    ExpireCards,
    IssueCards,
    MalformedRequest,
    RecordOfflineClearing,
    RefundEcBalance,
    RenewCard,
    ReplaceCard,
    ReportLost,
    SetPin,
    UnblockCard,
    check_amount,
)
from .model import (
    FIRST_INSTITUTION_ID,
    ONLINE_PIN_TRY_LIMIT,
    AlreadyExists,
    Bank,
    BankAccount,
    BinOverlap,
    BinRange,
    Card,
    CardStateError,
    CardStatus,
    DenyListEntry,
    DuplicateIssuance,
    InstitutionIdTaken,
    InvalidIdNumber,
    IssuerError,
    NotFound,
    Product,
    TerminalStatus,
    UnregisteredCardLoss,
    bank_key_labels,
    institution_id_text,
    mask_pan,
    validate_id_number,
)
from .ports import Clock, IssuerUnitOfWork, StoredAuthorization
from .views import decode_response, deny_list_body, encode_response

__all__ = [
    "COOLING_PERIOD_NS",
    "CardPersonaliser",
    "IssuerService",
    "SignedDenyList",
    "request_fingerprint",
    "transfer_id",
]

COOLING_PERIOD_NS = 7 * 86_400 * 10**9
"""Default wait between a loss report and the refund of the lost card's EC balance (7 days)."""

_PRODUCT_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_ISSUE_BATCH = 500
_REQUIRED_TAGS = ("9F26", "9F36", "9F10", "9F37", "9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "82")
_CARD_BLOCK = {"block": bytes.fromhex("841E0000"), "unblock": bytes.fromhex("84180000")}
_SYMMETRIC_KEYS = {
    "imk_ac": (KeyUsage.EMV_AC, Algorithm.TDEA),
    "imk_smi": (KeyUsage.EMV_SMI, Algorithm.TDEA),
    "imk_smc": (KeyUsage.EMV_SMC, Algorithm.TDEA),
    "pvk": (KeyUsage.PIN_VERIFICATION_VISA, Algorithm.TDEA),
    "zpk": (KeyUsage.PIN_ENCRYPTION, Algorithm.TDEA),
    "id_hash": (KeyUsage.HMAC, Algorithm.HMAC),
    "pvk_ibm": (KeyUsage.PIN_VERIFICATION_IBM3624, Algorithm.TDEA),
    "pin_store": (KeyUsage.PIN_ENCRYPTION, Algorithm.TDEA),
}
_KEYS_ADDED_LATER = frozenset({"pvk_ibm", "pin_store"})  # made on first use for banks older than them
_OFFLINE_PIN_CVMS = {0x01, 0x03, 0x04, 0x05}  # EMV Book 3 Annex C3: PIN verified by the ICC
_CVR_PIN_PERFORMED = 0x04  # CVR byte 1 bit 3 (docs/card-profile.md §9, VIS/PBOC layout)
_CVR_PIN_FAILED = 0x02  # CVR byte 1 bit 2
_CVM_ONLINE_PIN = 0x02  # EMV Book 3 Annex C3: online enciphered PIN
_CVM_RESULT_FAILED = 0x01  # EMV Book 3 Annex A, CVM results byte 3
_CTQ_ONLINE_PIN = 0x80  # CTQ (9F6C) byte 1 bit 8, JR/T 0025.12: the card asks for an online PIN


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
    ) -> None:
        """``pin_block``: the PIN chosen at issuance (ISO format 1 under the bank's zone PIN key) for the
        chip's offline PIN; None keeps the chip profile's default."""
        ...

    def publish(self) -> list[str]: ...
    def discard(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SignedDenyList:
    bank_code: str
    version: int
    body: bytes  # canonical JSON (views.deny_list_body)
    signature: bytes  # RSASSA-PKCS1-v1_5 SHA-256 by the bank's deny-list key (S0) in the HSM
    key_label: str
    key_kcv: str
    modulus: int
    exponent: int


def transfer_id(request_id: str, leg: int) -> int:
    """A ledger transfer id derived from the request id and the leg number (1..MAX_ID)."""
    digest = hashlib.blake2b(f"{request_id}/{leg}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % MAX_ID + 1


def request_fingerprint(req: AuthorizationRequest) -> str:
    parts = (
        req.kind,
        req.pan,
        req.psn,
        str(req.amount_fen),
        req.field55.hex(),
        req.stan,
        req.terminal_id,
        req.merchant_id,
        (req.pin_block or b"").hex(),
        req.original_request_id or "",
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class IssuerService:
    """The handlers. ``uow`` makes a fresh unit of work per command."""

    def __init__(
        self,
        uow: Callable[[], IssuerUnitOfWork],
        hsm: Hsm,
        clock: Clock,
        *,
        personaliser: CardPersonaliser | None = None,
        cooling_period_ns: int = COOLING_PERIOD_NS,
        rsa_bits: int = 1024,
    ) -> None:
        self._uow = uow
        self.hsm = hsm
        self.clock = clock
        self.personaliser = personaliser
        self.cooling_period_ns = cooling_period_ns
        self.rsa_bits = rsa_bits
        self._keys: dict[str, KeyHandle] = {}
        self._banks: dict[str, Bank] = {}  # banks and products never change once added: cached
        self._products: dict[tuple[str, str], Product] = {}

    def _bank_of(self, uow: IssuerUnitOfWork, code: str) -> Bank:
        bank = self._banks.get(code)
        if bank is None:
            bank = self._banks[code] = _bank(uow, code)
        return bank

    def _product_of(self, uow: IssuerUnitOfWork, bank_code: str, code: str) -> Product | None:
        product = self._products.get((bank_code, code))
        if product is None:
            product = uow.products.get(bank_code, code)
            if product is not None:
                self._products[(bank_code, code)] = product
        return product

    @contextlib.contextmanager
    def _issuing(self) -> Iterator[None]:
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

    def _key(self, bank_code: str, role: str) -> KeyHandle:
        label = bank_key_labels(bank_code)[role]
        handle = self._keys.get(label)
        if handle is None:
            try:
                handle = self.hsm.get(label)
            except KeyNotFoundError:
                if role not in _KEYS_ADDED_LATER:
                    raise
                usage, algorithm = _SYMMETRIC_KEYS[role]  # a bank added before this key existed
                with contextlib.suppress(KeyExistsError):
                    self.hsm.generate_key(label, usage, algorithm=algorithm)
                handle = self.hsm.get(label)
            self._keys[label] = handle
        return handle

    # --- set-up -----------------------------------------------------------------------------------------
    def add_bank(self, cmd: AddBank) -> Bank:
        with self._uow() as uow:
            if uow.banks.get(cmd.code) is not None:
                raise AlreadyExists(f"bank {cmd.code} exists already")
            institution_id = cmd.institution_id or _next_institution_id(uow)
            holder = uow.banks.bank_by_institution(institution_id)
            if holder is not None:
                raise InstitutionIdTaken(f"institution id {institution_id} is bank {holder.code}'s already")
            self._bank_keys(cmd.code)
            cash, settlement, fees = uow.ids.allocate(3)
            accounts = [
                Account(cash, code=BankAccount.CASH, flags=AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
                Account(settlement, code=BankAccount.NETWORK_SETTLEMENT),
                Account(fees, code=BankAccount.FEE_INCOME),
            ]
            _expect_ok(uow.ledger.create_accounts(accounts))
            bank = Bank(cmd.code, cmd.name, cash, settlement, fees, institution_id)
            uow.banks.add(bank)
            uow.commit()
        return bank

    def _bank_keys(self, code: str) -> None:
        """Generate the bank's keys in the HSM (kept if a previous attempt made them already)."""
        labels = bank_key_labels(code)
        for role, (usage, algorithm) in _SYMMETRIC_KEYS.items():
            with contextlib.suppress(KeyExistsError):
                self.hsm.generate_key(labels[role], usage, algorithm=algorithm)
        for role, usage, exponent in (
            ("issuer_rsa", KeyUsage.CA, 3),
            ("deny_list", KeyUsage.SIGNATURE, 65537),
        ):
            with contextlib.suppress(KeyExistsError):
                self.hsm.generate_rsa_key(labels[role], usage, self.rsa_bits, public_exponent=exponent)

    def add_bin_range(self, cmd: AddBinRange) -> BinRange:
        """Assign a BIN range to a bank; the check that no range overlaps it (the same BIN, or one BIN the
        prefix of the other: a PAN would belong to both) is in the unit of work that adds it."""
        with self._uow() as uow:
            if uow.banks.get(cmd.bank_code) is None:
                raise NotFound(f"no bank {cmd.bank_code}")
            overlap = uow.banks.overlapping_bin(cmd.bin)
            if overlap is not None and overlap.bin == cmd.bin:
                raise AlreadyExists(f"BIN {cmd.bin} is assigned already")
            if overlap is not None:
                raise BinOverlap(f"BIN {cmd.bin} overlaps BIN {overlap.bin} of bank {overlap.bank_code}")
            bin_range = BinRange(cmd.bin, cmd.bank_code, cmd.pan_length)
            uow.banks.add_bin(bin_range)
            uow.commit()
        return bin_range

    def add_product(self, cmd: AddProduct) -> Product:
        if not _PRODUCT_CODE.match(cmd.code):
            raise MalformedRequest("code", "a product code is lower-case letters, digits and '-'")
        for name in ("ec_balance_limit_fen", "ec_single_limit_fen", "ec_reset_threshold_fen"):
            check_amount(getattr(cmd, name), name, allow_zero=True)
        if cmd.ec_single_limit_fen > cmd.ec_balance_limit_fen:
            raise MalformedRequest("ec_single_limit_fen", "exceeds the EC balance limit (9F78 above 9F77)")
        check_amount(cmd.issue_fee_fen, "issue_fee_fen", allow_zero=True)
        check_amount(cmd.annual_fee_fen, "annual_fee_fen", allow_zero=True)
        with self._uow() as uow:
            bin_range = uow.banks.get_bin(cmd.bin)
            if bin_range is None or bin_range.bank_code != cmd.bank_code:
                raise NotFound(f"BIN {cmd.bin} is not a BIN of bank {cmd.bank_code}")
            if uow.products.get(cmd.bank_code, cmd.code) is not None:
                raise AlreadyExists(f"product {cmd.code} exists already at {cmd.bank_code}")
            product = Product(
                cmd.code,
                cmd.bank_code,
                cmd.name,
                cmd.bin,
                cmd.registered,
                cmd.ec_balance_limit_fen,
                cmd.ec_single_limit_fen,
                cmd.ec_reset_threshold_fen,
                cmd.issue_fee_fen,
                cmd.annual_fee_fen,
                cmd.validity_years,
            )
            uow.products.add(product)
            uow.commit()
        return product

    # --- issuance ---------------------------------------------------------------------------------------
    def issue_cards(self, cmd: IssueCards, progress: Callable[[int], None] | None = None) -> list[Card]:
        """Issue ``cmd.count`` cards (in transactions of at most 500); ``progress(n)`` after each card."""
        issued: list[Card] = []
        remaining = cmd.count
        while remaining:
            n = min(remaining, _ISSUE_BATCH)
            issued += self._issue_batch(cmd, n, progress)
            remaining -= n
        return issued

    def _issue_batch(self, cmd: IssueCards, count: int, progress: Callable[[int], None] | None) -> list[Card]:
        now = self.clock()
        with self._issuing(), self._uow() as uow:
            bank = uow.banks.get(cmd.bank_code)
            if bank is None:
                raise NotFound(f"no bank {cmd.bank_code}")
            product = uow.products.get(cmd.bank_code, cmd.product_code)
            if product is None:
                raise NotFound(f"no product {cmd.product_code} at {cmd.bank_code}")
            if uow.banks.get_bin(product.bin) is None:
                raise NotFound(f"BIN {product.bin} of product {product.code} is not assigned")
            # the BIN range row is locked first: simultaneous issuances of the product queue here, so the
            # second to one citizen finds the first's card (DuplicateIssuance), not a unique-key error
            first = uow.banks.take_serials(product.bin, count)
            holder_id, deposit_id = self._holder_for(uow, cmd, product)
            bin_range = uow.banks.get_bin(product.bin)
            assert bin_range is not None
            ec_ids = uow.ids.allocate(count)
            _expect_ok(uow.ledger.create_accounts([_ec_float(i, product) for i in ec_ids]))
            expiry = _expiry(now, product.validity_years)
            cards = []
            for k in range(count):
                pan = bin_range.pan(first + k)
                if uow.cards.get(pan) is not None:
                    raise DuplicateIssuance(f"card {mask_pan(pan)} exists already")
                card = Card(
                    pan=pan,
                    psn=cmd.psn,
                    bank_code=bank.code,
                    product_code=product.code,
                    holder_id=holder_id,
                    status=CardStatus.ISSUED,
                    expiry=expiry,
                    ec_float_account_id=ec_ids[k],
                    deposit_account_id=deposit_id,
                    issued_at_ns=now,
                )
                if cmd.pin_block is not None:  # the holder's PIN: online (offset) and on the chip
                    zpk, pvk = self._key(bank.code, "zpk"), self._key(bank.code, "pvk_ibm")
                    offset = self.hsm.generate_pin_offset(zpk, pvk, cmd.pin_block, pan, iso_format=1)
                    card = replace(card, pin_offset=offset)
                uow.cards.add(card)
                if product.issue_fee_fen:  # paid at the counter: cash -> fee income
                    fee = Transfer(
                        transfer_id(f"issue-fee/{pan}", 1),
                        bank.cash_account_id,
                        bank.fee_account_id,
                        product.issue_fee_fen,
                        code=BankAccount.FEE_INCOME,
                    )
                    _expect_ok(uow.ledger.create_transfers([fee]))
                if self.personaliser is not None:
                    self.personaliser.personalise(bank, product, card, cmd.holder_name, cmd.pin_block)
                cards.append(card)
                if progress is not None:
                    progress(1)
            uow.commit()
        return cards

    def _holder_for(
        self, uow: IssuerUnitOfWork, cmd: IssueCards, product: Product
    ) -> tuple[int | None, int | None]:
        if not product.registered:
            if cmd.holder_name is not None:
                raise MalformedRequest("holder", f"product {product.code} is unregistered: it has no holder")
            return None, None
        if cmd.holder_name is None or cmd.id_number is None:
            raise MalformedRequest(
                "holder", f"product {product.code} is registered: give --holder and --id-number"
            )
        id_number = validate_id_number(cmd.id_number, today=_beijing_date(self.clock()))
        name = cmd.holder_name.strip()
        if not 1 <= len(name) <= 64:
            raise MalformedRequest("holder", "the holder's name is 1-64 characters")
        id_hash = self.hsm.keyed_hash(self._key(cmd.bank_code, "id_hash"), id_number.encode()).hex()
        holder = uow.cardholders.by_id_hash(id_hash)
        if holder is not None:
            for card in uow.cards.by_holder(holder.id):
                live = card.status not in (CardStatus.CLOSED, CardStatus.REPLACED, CardStatus.EXPIRED)
                if card.product_code == product.code and card.bank_code == cmd.bank_code and live:
                    raise DuplicateIssuance(
                        f"holder ****{holder.id_last4} already has card {mask_pan(card.pan)}"
                        f" of {product.code}"
                    )
            return holder.id, holder.deposit_account_id
        (deposit_id,) = uow.ids.allocate(1)
        deposit = Account(
            deposit_id, code=BankAccount.CARD_DEPOSIT, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
        )
        _expect_ok(uow.ledger.create_accounts([deposit]))
        holder = uow.cardholders.add(name, id_hash, id_number[-4:], cmd.phone, deposit_id)
        return holder.id, deposit_id

    # --- simple lifecycle -------------------------------------------------------------------------------
    def _card(self, uow: IssuerUnitOfWork, pan: str) -> Card:
        card = uow.cards.get(pan, for_update=True)
        if card is None:
            raise NotFound(f"no card {mask_pan(pan) if pan.isdigit() else repr(pan)}")
        return card

    def activate(self, cmd: ActivateCard) -> Card:
        with self._uow() as uow:
            card = self._card(uow, cmd.pan)
            if card.status != CardStatus.ISSUED:
                raise CardStateError(f"card {mask_pan(card.pan)} is {card.status}, not issued")
            card = replace(card, status=CardStatus.ACTIVE)
            uow.cards.update(card)
            uow.commit()
        return card

    def set_pin(self, cmd: SetPin) -> Card:
        with self._uow() as uow:
            card = self._card(uow, cmd.pan)
            if card.status in (CardStatus.CLOSED, CardStatus.REPLACED, CardStatus.EXPIRED):
                raise CardStateError(f"card {mask_pan(card.pan)} is {card.status}")
            zpk, pvk = self._key(card.bank_code, "zpk"), self._key(card.bank_code, "pvk_ibm")
            offset = self.hsm.generate_pin_offset(zpk, pvk, cmd.pin_block, card.pan)
            for_chip = self.hsm.translate_pin_block(
                zpk, self._key(card.bank_code, "pin_store"), cmd.pin_block, card.pan
            )
            card = replace(
                card,
                pvv=None,
                pvki=cmd.pvki,
                pin_offset=offset,
                online_pin_failures=0,
                pending_pin_change=for_chip,
            )
            uow.cards.update(card)
            uow.commit()
        return card

    def deposit(self, cmd: Deposit) -> int:
        """Cash into the holder's deposit account; returns the available balance. Idempotent by request id."""
        with self._uow() as uow:
            card = self._card(uow, cmd.pan)
            if card.deposit_account_id is None:
                raise CardStateError(f"card {mask_pan(card.pan)} is unregistered: it has no deposit account")
            bank = _bank(uow, card.bank_code)
            t = Transfer(
                transfer_id(cmd.request_id, 1), bank.cash_account_id, card.deposit_account_id, cmd.amount_fen
            )
            result = uow.ledger.create_transfers([t])[0]
            if result not in (CreateTransferResult.OK, CreateTransferResult.EXISTS):
                raise IssuerError(f"deposit refused by the ledger: {result.value}")
            uow.commit()
            return _available(uow, card.deposit_account_id)

    def block(self, cmd: BlockCard) -> Card:
        return self._pending_script(cmd.pan, "block")

    def unblock(self, cmd: UnblockCard) -> Card:
        return self._pending_script(cmd.pan, "unblock")

    def _pending_script(self, pan: str, which: str) -> Card:
        with self._uow() as uow:
            card = self._card(uow, pan)
            allowed = (CardStatus.ACTIVE,) if which == "block" else (CardStatus.BLOCKED, CardStatus.ACTIVE)
            if card.status not in allowed:
                raise CardStateError(f"card {mask_pan(card.pan)} is {card.status}: cannot {which}")
            card = replace(card, pending_script=which)
            uow.cards.update(card)
            now = self.clock()
            if which == "block":
                uow.deny_list.add(DenyListEntry(card.bank_code, card.pan, card.psn, "blocked", now))
            elif card.status == CardStatus.BLOCKED or card.pending_script:
                uow.deny_list.remove(card.bank_code, card.pan, now)
            uow.commit()
        return card

    def record_offline_clearing(self, cmd: RecordOfflineClearing) -> Card:
        with self._uow() as uow:
            card = self._card(uow, cmd.pan)
            if cmd.cleared_until_ns > card.offline_cleared_until_ns:
                card = replace(card, offline_cleared_until_ns=cmd.cleared_until_ns)
                uow.cards.update(card)
                uow.commit()
        return card

    # --- loss, replacement, renewal, closure ------------------------------------------------------------
    def report_lost(self, cmd: ReportLost) -> Card:
        with self._uow() as uow:
            card = self._card(uow, cmd.pan)
            if not card.registered:
                raise UnregisteredCardLoss(card.pan)
            if cmd.id_number is not None:
                holder = uow.cardholders.get(card.holder_id or 0)
                given = self.hsm.keyed_hash(
                    self._key(card.bank_code, "id_hash"),
                    validate_id_number(cmd.id_number, today=_beijing_date(self.clock())).encode(),
                )
                if holder is None or holder.id_hash != given.hex():
                    raise InvalidIdNumber("the ID number is not the card holder's")
            if card.status not in (CardStatus.ACTIVE, CardStatus.ISSUED, CardStatus.BLOCKED):
                raise CardStateError(f"card {mask_pan(card.pan)} is {card.status}: cannot report it lost")
            now = self.clock()
            card = replace(card, status=CardStatus.LOST, lost_at_ns=now, pending_script=None)
            uow.cards.update(card)
            uow.deny_list.add(DenyListEntry(card.bank_code, card.pan, card.psn, "lost", now))
            uow.commit()
        return card

    def replace_card(self, cmd: ReplaceCard) -> Card:
        """A new card (new PAN) for the same holder and deposit account; the old one stays denied."""
        with self._issuing(), self._uow() as uow:
            old = self._card(uow, cmd.pan)
            if not old.registered:
                raise UnregisteredCardLoss(old.pan)
            if old.status in (CardStatus.CLOSED, CardStatus.REPLACED) or old.replaced_by:
                raise CardStateError(f"card {mask_pan(old.pan)} is {old.status}: cannot replace it")
            new = self._successor(uow, old)
            status = CardStatus.LOST if old.status == CardStatus.LOST else CardStatus.REPLACED
            uow.cards.update(replace(old, status=status, replaced_by=new.pan))
            if status == CardStatus.REPLACED:
                uow.deny_list.add(DenyListEntry(old.bank_code, old.pan, old.psn, "replaced", self.clock()))
            uow.commit()
        return new

    def renew(self, cmd: RenewCard) -> Card:
        """Expiry and renewal: a new card with a new expiry; the old card's EC balance follows later."""
        with self._issuing(), self._uow() as uow:
            old = self._card(uow, cmd.pan)
            if (
                old.status not in (CardStatus.ACTIVE, CardStatus.ISSUED, CardStatus.EXPIRED)
                or old.replaced_by
            ):
                raise CardStateError(f"card {mask_pan(old.pan)} is {old.status}: cannot renew it")
            new = self._successor(uow, old)
            uow.cards.update(replace(old, status=CardStatus.EXPIRED, replaced_by=new.pan))
            uow.commit()
        return new

    def _successor(self, uow: IssuerUnitOfWork, old: Card) -> Card:
        bank = _bank(uow, old.bank_code)
        product = uow.products.get(old.bank_code, old.product_code)
        assert product is not None
        bin_range = uow.banks.get_bin(product.bin)
        assert bin_range is not None
        serial = uow.banks.take_serials(product.bin, 1)
        (ec_id,) = uow.ids.allocate(1)
        _expect_ok(uow.ledger.create_accounts([_ec_float(ec_id, product)]))
        now = self.clock()
        new = Card(
            pan=bin_range.pan(serial),
            psn=old.psn,
            bank_code=old.bank_code,
            product_code=old.product_code,
            holder_id=old.holder_id,
            status=CardStatus.ISSUED,
            expiry=_expiry(now, product.validity_years),
            ec_float_account_id=ec_id,
            deposit_account_id=old.deposit_account_id,
            issued_at_ns=now,
            pvv=None,
        )
        uow.cards.add(new)
        if self.personaliser is not None:
            holder = uow.cardholders.get(old.holder_id) if old.holder_id is not None else None
            self.personaliser.personalise(bank, product, new, holder.name if holder else None)
        return new

    def refund_ec_balance(self, cmd: RefundEcBalance) -> int:
        """Refund a lost or closed card's EC balance, once the cooling period has passed since the report
        (or closure) and the card's offline transactions up to then have cleared: to the holder's account,
        to the replacement card (delivered by ``PUT DATA 9F79`` at its next online contact), or in cash for
        an unregistered card. Returns the amount moved."""
        with self._uow() as uow:
            card = self._card(uow, cmd.pan)
            since = card.lost_at_ns if card.status == CardStatus.LOST else card.closed_at_ns
            if card.status not in (CardStatus.LOST, CardStatus.CLOSED) or since is None:
                raise CardStateError(
                    f"card {mask_pan(card.pan)} is {card.status}, not reported lost or closed"
                )
            if not card.registered and cmd.to != "cash":
                raise UnregisteredCardLoss(card.pan)
            now = self.clock()
            if now - since < self.cooling_period_ns:
                days = self.cooling_period_ns / 86_400e9
                raise CardStateError(f"the cooling period ({days:g} days) is not over")
            if card.offline_cleared_until_ns < since:
                raise CardStateError("the card's offline transactions up to the report have not cleared yet")
            amount = self._move_ec_balance(uow, card, cmd.to, f"refund/{card.pan}")
            uow.commit()
        return amount

    def _move_ec_balance(self, uow: IssuerUnitOfWork, card: Card, to: str, key: str) -> int:
        (ec,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
        amount = ec.credit_balance_fen
        if amount == 0:
            return 0
        if to == "replacement":
            if card.replaced_by is None:
                raise CardStateError(f"card {mask_pan(card.pan)} has no replacement")
            successor = self._card(uow, card.replaced_by)
            target = successor.ec_float_account_id
            uow.cards.update(
                replace(successor, pending_ec_credit_fen=successor.pending_ec_credit_fen + amount)
            )
        elif to == "account" and card.deposit_account_id is not None:
            target = card.deposit_account_id
        elif to == "cash":
            target = _bank(uow, card.bank_code).cash_account_id
        else:
            raise MalformedRequest("to", "the EC balance goes to 'account' or 'replacement'")
        t = Transfer(transfer_id(key, 1), card.ec_float_account_id, target, amount)
        (result,) = uow.ledger.create_transfers([t])
        if result == CreateTransferResult.EXCEEDS_LIMIT:
            raise CardStateError(
                f"the replacement's EC balance would exceed its limit: refund card {mask_pan(card.pan)} "
                "to the holder's account instead"
            )
        _expect_ok([result])
        return amount

    def close(self, cmd: CloseCard) -> Card:
        """Close the card: on the deny list at once; its EC balance is refunded by
        :meth:`refund_ec_balance` after the cooling period. The holder's deposit account stays open."""
        with self._uow() as uow:
            card = self._card(uow, cmd.pan)
            if card.status in (CardStatus.CLOSED, CardStatus.LOST, CardStatus.REPLACED):
                raise CardStateError(f"card {mask_pan(card.pan)} is {card.status}: cannot close it")
            now = self.clock()
            card = replace(card, status=CardStatus.CLOSED, closed_at_ns=now, pending_script=None)
            uow.cards.update(card)
            uow.deny_list.add(DenyListEntry(card.bank_code, card.pan, card.psn, "closed", now))
            uow.commit()
        return card

    # --- periodic jobs ----------------------------------------------------------------------------------
    def charge_annual_fees(self, cmd: ChargeAnnualFees) -> tuple[int, list[str]]:
        """Returns (fen charged, PANs whose account could not pay). Idempotent per card and period."""
        charged, unpaid = 0, []
        with self._uow() as uow:
            bank = _existing_bank(uow, cmd.bank_code)
            for card in uow.cards.list(cmd.bank_code, limit=100_000):
                product = self._product_of(uow, card.bank_code, card.product_code)
                live = card.status in (CardStatus.ACTIVE, CardStatus.BLOCKED)
                if (
                    product is None
                    or not product.annual_fee_fen
                    or not live
                    or card.deposit_account_id is None
                ):
                    continue
                fee = Transfer(
                    transfer_id(f"annual-fee/{card.pan}/{cmd.period}", 1),
                    card.deposit_account_id,
                    bank.fee_account_id,
                    product.annual_fee_fen,
                    code=BankAccount.FEE_INCOME,
                )
                result = uow.ledger.create_transfers([fee])[0]
                if result == CreateTransferResult.OK:
                    charged += fee.amount_fen
                elif result != CreateTransferResult.EXISTS:
                    unpaid.append(card.pan)
            uow.commit()
        return charged, unpaid

    def expire_cards(self, cmd: ExpireCards) -> list[str]:
        """PANs marked expired now."""
        now = _yymm(self.clock())
        expired = []
        with self._uow() as uow:
            _existing_bank(uow, cmd.bank_code)
            for card in uow.cards.list(cmd.bank_code, limit=100_000):
                if card.expiry < now and card.status in (
                    CardStatus.ISSUED,
                    CardStatus.ACTIVE,
                    CardStatus.BLOCKED,
                ):
                    uow.cards.update(replace(card, status=CardStatus.EXPIRED))
                    expired.append(card.pan)
            uow.commit()
        return expired

    # --- deny list --------------------------------------------------------------------------------------
    def export_deny_list(self, bank_code: str) -> SignedDenyList:
        with self._uow() as uow:
            _existing_bank(uow, bank_code)
            version, updated_ns = uow.deny_list.version(bank_code)
            entries = [e for e in uow.deny_list.entries(bank_code) if e.removed_ns is None]
        body = deny_list_body(bank_code, version, updated_ns, self.clock(), entries)
        key = self._key(bank_code, "deny_list")
        public = self.hsm.public_key(key)
        return SignedDenyList(
            bank_code, version, body, self.hsm.sign(key, body), key.label, key.kcv, public.n, public.e
        )

    # --- online authorization ---------------------------------------------------------------------------
    def authorize(self, req: AuthorizationRequest) -> AuthorizationResponse:
        """Answer ``req``; a retry (same request id) gets the stored answer. Two simultaneous first attempts
        meet on the card's row lock, or, for an unknown card, on the request-id row: the one that finds the
        id taken rolls back and answers from the stored row on its second pass."""
        fingerprint = request_fingerprint(req)
        for _ in range(2):
            response = self._authorize_once(req, fingerprint)
            if response is not None:
                return response
        raise AssertionError(f"request {req.request_id!r} neither stored nor found")

    def _authorize_once(self, req: AuthorizationRequest, fingerprint: str) -> AuthorizationResponse | None:
        with self._uow() as uow:
            card = uow.cards.get(req.pan, for_update=True)
            stored = uow.authorizations.get(req.request_id)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return AuthorizationResponse(req.request_id, "94", "request id reused with other content")
                return decode_response(stored.response)
            if req.kind == AuthorizationKind.REVERSAL:
                response, transfers = self._reverse(uow, req)
            else:
                response, transfers, card = self._authorize_card(uow, req, card)
                if card is not None:
                    uow.cards.update(card)
            added = uow.authorizations.add(
                StoredAuthorization(
                    request_id=req.request_id,
                    pan=req.pan,
                    kind=req.kind.value,
                    fingerprint=fingerprint,
                    response_code=response.response_code,
                    amount_fen=req.amount_fen,
                    response=encode_response(response),
                    transfer_ids=tuple(transfers),
                    created_ns=self.clock(),
                    terminal_id=req.terminal_id,
                    merchant_id=req.merchant_id,
                    original_request_id=req.original_request_id,
                )
            )
            if not added:
                return None  # rolled back on leaving the block: the stored answer is read next time
            uow.commit()
        return response

    def _authorize_card(
        self, uow: IssuerUnitOfWork, req: AuthorizationRequest, card: Card | None
    ) -> tuple[AuthorizationResponse, list[int], Card | None]:
        def decline(
            code: str, reason: str, *flags: str
        ) -> tuple[AuthorizationResponse, list[int], Card | None]:
            return AuthorizationResponse(req.request_id, code, reason, flags=flags), [], None

        if card is None or card.psn != req.psn:
            return decline("14", "unknown card")
        refused = _terminal_refusal(uow, req)
        if refused is not None:
            return decline(*refused)
        try:
            tags = decode_dict(req.field55)
        except TlvError as exc:
            return decline("30", f"field 55: {exc}")
        missing = [t for t in _REQUIRED_TAGS if t not in tags]
        if missing:
            return decline("30", f"field 55 lacks {', '.join(missing)}")
        try:
            data = ac_input(tags)
            cvr = cvr_from_iad(tags["9F10"])
            amount = amount_from_bcd(tags["9F02"])
        except (CryptogramDataError, ValueError) as exc:
            return decline("30", f"field 55: {exc}")
        if len(tags["9F36"]) != 2 or len(tags["9F26"]) != 8:
            return decline("30", "field 55: ATC must be 2 bytes and the ARQC 8")
        atc, arqc = int.from_bytes(tags["9F36"], "big"), tags["9F26"]
        if "9F27" in tags and tags["9F27"][:1] != b"\x80":
            return decline("30", "field 55: the cryptogram is not an ARQC")
        if "9F1C" in tags and tags["9F1C"].decode("ascii", "replace").rstrip() != req.terminal_id.rstrip():
            return decline(
                "58",
                "the terminal identification in field 55 (9F1C) differs from field 41",
                "terminal_mismatch",
            )
        if req.kind != AuthorizationKind.BALANCE_INQUIRY and amount != req.amount_fen:
            return decline("13", "the amount in the chip data differs from the amount of the request")
        imk = self._key(card.bank_code, "imk_ac")
        if not self.hsm.verify_arqc(imk, card.pan, card.psn, atc, data, arqc):
            return decline("05", "ARQC does not verify", "arqc_failed")
        if atc <= card.highest_atc:
            return decline(
                "05", f"ATC {atc} is not above the highest seen ({card.highest_atc})", "atc_replay"
            )
        flags: list[str] = []
        un = tags["9F37"]
        if uow.authorizations.seen_unpredictable_number(card.pan, un):
            flags.append("repeated_unpredictable_number")
        else:
            uow.authorizations.add_unpredictable_number(card.pan, un, atc)
        card = replace(card, highest_atc=atc)
        outcome = _Outcome()
        ec_data = _ec_balance_from_iad(tags["9F10"])
        if ec_data is not None:  # the card's EC balance is trusted only with its MAC (not under the ARQC)
            card_ec, mac_input, mac = ec_data
            if not self.hsm.verify_ac_session_mac(
                imk, card.pan, card.psn, atc, mac_input + tags["9F36"], mac
            ):
                return decline("05", "the EC balance in 9F10 fails its MAC", "iad_mac_failed")
            outcome.card_ec_balance = card_ec
        self._decide(uow, req, card, tags, cvr, outcome, flags)
        card = outcome.card or card
        scripts = self._scripts(card, atc, arqc, tags, outcome)
        if outcome.script_card is not None:
            card = outcome.script_card
        arc = outcome.code.encode("ascii")
        arpc = self.hsm.generate_arpc(imk, card.pan, card.psn, atc, arqc, arc)
        auth_code = f"{int(hashlib.sha256(req.request_id.encode()).hexdigest(), 16) % 10**6:06d}"
        balance = _available(uow, card.deposit_account_id) if card.deposit_account_id else None
        (ec,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
        response = AuthorizationResponse(
            request_id=req.request_id,
            response_code=outcome.code,
            reason=outcome.reason,
            authorization_code=auth_code if outcome.code == "00" else "",
            arpc=arpc,
            arc=arc,
            scripts=tuple(scripts),
            balance_fen=balance,
            ec_balance_fen=ec.credit_balance_fen,
            flags=tuple(flags),
        )
        return response, outcome.transfers, card

    def _decide(
        self,
        uow: IssuerUnitOfWork,
        req: AuthorizationRequest,
        card: Card,
        tags: dict[str, bytes],
        cvr: bytes,
        out: _Outcome,
        flags: list[str],
    ) -> None:
        """Fill ``out`` with the response code and post the transfers (nothing when declined)."""
        cvm = tags.get("9F34", b"")
        pin_claimed = len(cvm) == 3 and cvm[0] & 0x3F in _OFFLINE_PIN_CVMS and cvm[2] == 0x02
        if pin_claimed and (not cvr[1] & _CVR_PIN_PERFORMED or cvr[1] & _CVR_PIN_FAILED):
            flags.append("cvm_mismatch")
            return out.set("05", "CVM results claim an offline PIN the card did not verify")
        status_codes = {
            CardStatus.LOST: ("41", "card reported lost"),
            CardStatus.CLOSED: ("62", "card closed"),
            CardStatus.REPLACED: ("62", "card replaced"),
            CardStatus.EXPIRED: ("54", "card expired"),
            CardStatus.ISSUED: ("62", "card not activated"),
        }
        if card.status in status_codes:
            return out.set(*status_codes[card.status])
        if card.status == CardStatus.BLOCKED and card.pending_script != "unblock":
            return out.set("62", "card blocked")
        if card.pending_script == "block":
            return out.set("62", "card blocked by the issuer")
        if card.expiry < _yymm(self.clock()):
            return out.set("54", "card expired")
        if req.pin_block is None and _online_pin_asked(tags):
            flags.append("online_pin_missing")
            return out.set("55", "online PIN required (CTQ or CVM results) but no PIN block was sent")
        if req.pin_block is not None:
            checked = self._online_pin(card, req.pin_block, out, flags)
            if checked is None:
                return None
            card = out.card = checked
        bank = self._bank_of(uow, card.bank_code)
        kind = req.kind
        if kind == AuthorizationKind.BALANCE_INQUIRY:
            return out.set("00", "")
        if (
            kind in (AuthorizationKind.PURCHASE, AuthorizationKind.EC_LOAD)
            and card.deposit_account_id is None
        ):
            return out.set("57", "an unregistered card has no account: only cash loads at a counter")
        if kind == AuthorizationKind.PURCHASE:
            assert card.deposit_account_id is not None
            leg = Transfer(
                transfer_id(req.request_id, 1),
                card.deposit_account_id,
                bank.settlement_account_id,
                req.amount_fen,
                code=BankAccount.NETWORK_SETTLEMENT,
            )
            return self._post(uow, out, [leg])
        product = self._product_of(uow, card.bank_code, card.product_code)
        assert product is not None
        card_balance = out.card_ec_balance
        if card_balance is None:
            (ec,) = uow.ledger.lookup_accounts([card.ec_float_account_id])
            card_balance = ec.credit_balance_fen
        new_balance = card_balance + req.amount_fen + card.pending_ec_credit_fen
        if new_balance > product.ec_balance_limit_fen:
            return out.set(
                "61", f"the EC balance would exceed its limit of {product.ec_balance_limit_fen} fen"
            )
        source = card.deposit_account_id if kind == AuthorizationKind.EC_LOAD else bank.cash_account_id
        assert source is not None
        leg = Transfer(
            transfer_id(req.request_id, 1),
            source,
            card.ec_float_account_id,
            req.amount_fen,
            code=BankAccount.CARD_EC_FLOAT,
        )
        self._post(uow, out, [leg])
        if out.code == "00":
            out.new_ec_balance = new_balance
            out.card = replace(card, pending_ec_credit_fen=0)
        return None

    def _online_pin(self, card: Card, pin_block: bytes, out: _Outcome, flags: list[str]) -> Card | None:
        """Check the online PIN (field 52) in the HSM against the card's IBM 3624 offset — every digit — and
        count wrong ones: the card with its counter updated, or None with ``out`` declined (55, or 75 once
        :data:`ONLINE_PIN_TRY_LIMIT` wrong PINs in a row are reached; only ``card set-pin`` lifts that)."""
        if card.pin_offset is None:
            reason = "the PIN was set under the retired 4-digit PVV: re-set it" if card.pvv else "no PIN set"
            out.set("55", reason)
            return None
        if card.online_pin_failures >= ONLINE_PIN_TRY_LIMIT:
            flags.append("pin_tries_exceeded")
            out.set("75", "allowable number of PIN tries exceeded: the PIN must be re-set")
            return None
        zpk, pvk = self._key(card.bank_code, "zpk"), self._key(card.bank_code, "pvk_ibm")
        if self.hsm.verify_pin_offset(zpk, pvk, pin_block, card.pan, card.pin_offset):
            return replace(card, online_pin_failures=0)
        failures = card.online_pin_failures + 1
        out.card = replace(card, online_pin_failures=failures)
        if failures >= ONLINE_PIN_TRY_LIMIT:
            flags.append("pin_tries_exceeded")
            out.set("75", "incorrect PIN: allowable number of PIN tries exceeded")
        else:
            out.set("55", f"incorrect PIN ({ONLINE_PIN_TRY_LIMIT - failures} tries left)")
        return None

    def _post(self, uow: IssuerUnitOfWork, out: _Outcome, legs: Sequence[Transfer]) -> None:
        linked = [replace(t, flags=t.flags | TransferFlags.LINKED) for t in legs[:-1]] + [legs[-1]]
        results = uow.ledger.create_transfers(linked)
        if all(r == CreateTransferResult.OK for r in results):
            out.set("00", "")
            out.transfers = [t.id for t in legs]
            return
        first = next(
            r for r in results if r not in (CreateTransferResult.OK, CreateTransferResult.LINKED_EVENT_FAILED)
        )
        if first in (CreateTransferResult.EXCEEDS_CREDITS, CreateTransferResult.EXCEEDS_DEBITS):
            out.set("51", "insufficient funds")
        elif first == CreateTransferResult.EXCEEDS_LIMIT:
            out.set("61", "exceeds the account limit")
        else:
            out.set("96", f"ledger refused the transfer: {first.value}")

    def _scripts(
        self, card: Card, atc: int, arqc: bytes, tags: dict[str, bytes], out: _Outcome
    ) -> list[bytes]:
        smi = self._key(card.bank_code, "imk_smi")
        scripts: list[bytes] = []
        reachable = "9F6C" not in tags  # a qPBOC card (its CTQ) left the field at its GPO: pending items wait
        if out.new_ec_balance is not None:
            scripts.append(self.hsm.ec_load_script(smi, card.pan, card.psn, atc, arqc, out.new_ec_balance))
        elif (
            card.pending_ec_credit_fen
            and reachable
            and card.status == CardStatus.ACTIVE
            and out.code == "00"
            and (out.card_ec_balance is not None)
        ):
            new_balance = out.card_ec_balance + card.pending_ec_credit_fen
            scripts.append(self.hsm.ec_load_script(smi, card.pan, card.psn, atc, arqc, new_balance))
            out.script_card = card = replace(card, pending_ec_credit_fen=0)
        live = reachable and card.status in (CardStatus.ACTIVE, CardStatus.BLOCKED)
        if card.pending_pin_change is not None and live:  # the bank's PIN reaches the chip
            smc, store = self._key(card.bank_code, "imk_smc"), self._key(card.bank_code, "pin_store")
            scripts.append(
                self.hsm.pin_change_script(
                    smi, smc, card.pan, card.psn, atc, arqc, store, card.pending_pin_change
                )
            )
            out.script_card = card = replace(card, pending_pin_change=None)
        if card.pending_script in _CARD_BLOCK and live:
            header = _CARD_BLOCK[card.pending_script]
            scripts.append(self.hsm.script_command(smi, card.pan, card.psn, atc, arqc, header, b""))
            status = CardStatus.BLOCKED if card.pending_script == "block" else CardStatus.ACTIVE
            out.script_card = replace(card, status=status, pending_script=None)
        return scripts

    def _reverse(
        self, uow: IssuerUnitOfWork, req: AuthorizationRequest
    ) -> tuple[AuthorizationResponse, list[int]]:
        assert req.original_request_id is not None
        original = uow.authorizations.get(req.original_request_id, for_update=True)
        if original is None or original.pan != req.pan:
            return AuthorizationResponse(req.request_id, "25", "no such original transaction"), []
        if (req.terminal_id, req.merchant_id) != (original.terminal_id, original.merchant_id):
            return AuthorizationResponse(
                req.request_id,
                "58",
                "the reversal's terminal (field 41) or merchant (field 42) is not the original's",
                flags=("terminal_mismatch",),
            ), []
        if original.reversed_by is not None:
            return AuthorizationResponse(
                req.request_id, "00", f"already reversed by {original.reversed_by}"
            ), []
        if original.response_code != "00" or not original.transfer_ids:
            return AuthorizationResponse(req.request_id, "00", "nothing was posted; nothing to reverse"), []
        if original.kind == AuthorizationKind.EC_LOAD:
            try:
                applied = _ec_load_script_applied(req.field55)
            except TlvError as exc:
                return AuthorizationResponse(req.request_id, "30", f"field 55: {exc}"), []
            if applied:  # the card holds the loaded balance: the load stands (acknowledged, posts nothing)
                reason = "the card applied the EC load script (9F5B): the load stands, nothing reversed"
                return AuthorizationResponse(req.request_id, "00", reason), []
        legs = []
        for i, t in enumerate(uow.ledger.lookup_transfers(original.transfer_ids), start=1):
            legs.append(
                Transfer(
                    transfer_id(req.request_id, i),
                    t.credit_account_id,
                    t.debit_account_id,
                    t.amount_fen,
                    code=t.code,
                )
            )
        out = _Outcome()
        self._post(uow, out, legs)
        if out.code != "00":
            return AuthorizationResponse(req.request_id, out.code, f"reversal refused: {out.reason}"), []
        uow.authorizations.mark_reversed(original.request_id, req.request_id)
        return AuthorizationResponse(req.request_id, "00", "reversed"), out.transfers


class _Outcome:
    def __init__(self) -> None:
        self.code = "05"
        self.reason = ""
        self.transfers: list[int] = []
        self.new_ec_balance: int | None = None
        self.card_ec_balance: int | None = None  # from 9F10, MAC verified
        self.card: Card | None = None
        self.script_card: Card | None = None

    def set(self, code: str, reason: str) -> None:
        self.code, self.reason = code, reason


def _terminal_refusal(uow: IssuerUnitOfWork, req: AuthorizationRequest) -> tuple[str, str, str] | None:
    """(code, reason, flag) when the registry is in use and field 41 is not an active terminal of the
    merchant in field 42: ``58`` unknown or inactive terminal, ``03`` a terminal of another merchant."""
    if not uow.terminals.in_use():
        return None  # no terminal registered: nothing to check against (docs/issuer.md)
    terminal = uow.terminals.get(req.terminal_id)
    if terminal is None:
        return "58", f"terminal {req.terminal_id!r} (field 41) is not registered", "terminal_unknown"
    if terminal.status is not TerminalStatus.ACTIVE:
        return (
            "58",
            f"terminal {req.terminal_id!r} (field 41) is {terminal.status.value}",
            "terminal_inactive",
        )
    if terminal.merchant_id != req.merchant_id:
        return (
            "03",
            f"terminal {req.terminal_id!r} is not a terminal of merchant {req.merchant_id!r}",
            ("terminal_merchant_mismatch"),
        )
    return None


def _ec_float(account_id: int, product: Product) -> Account:
    """A card's EC float: what the bank owes for the card's electronic cash, never negative and never above
    the card's EC balance limit (``9F77``), both enforced by the ledger itself."""
    return Account(
        account_id,
        code=BankAccount.CARD_EC_FLOAT,
        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        limit_fen=product.ec_balance_limit_fen,
    )


def _expect_ok(results: Sequence[CreateAccountResult | CreateTransferResult]) -> None:
    for r in results:
        assert r in (CreateAccountResult.OK, CreateTransferResult.OK), r


def _next_institution_id(uow: IssuerUnitOfWork) -> str:
    """The lowest free institution id from ``01000001`` on (banks are few: they are all read)."""
    taken = {bank.institution_id for bank in uow.banks.list()}
    number = FIRST_INSTITUTION_ID
    while institution_id_text(number) in taken:
        number += 1
    return institution_id_text(number)


def _bank(uow: IssuerUnitOfWork, code: str) -> Bank:
    bank = uow.banks.get(code)
    assert bank is not None, code
    return bank


def _existing_bank(uow: IssuerUnitOfWork, code: str) -> Bank:
    """The bank a command names, or :class:`NotFound` (a bank code typed by an operator)."""
    bank = uow.banks.get(code)
    if bank is None:
        raise NotFound(f"no bank {code}")
    return bank


def _available(uow: IssuerUnitOfWork, account_id: int) -> int:
    (account,) = uow.ledger.lookup_accounts([account_id])
    return account.available_fen


def _online_pin_asked(tags: dict[str, bytes]) -> bool:
    """Whether the chip data say an online PIN belongs to this transaction: the card's CTQ (``9F6C``) asks
    for one (qPBOC), or the CVM results (``9F34``) name online PIN as the method performed and not failed."""
    ctq, cvm = tags.get("9F6C", b""), tags.get("9F34", b"")
    if ctq and ctq[0] & _CTQ_ONLINE_PIN:
        return True
    return len(cvm) == 3 and cvm[0] & 0x3F == _CVM_ONLINE_PIN and cvm[2] != _CVM_RESULT_FAILED


def _ec_balance_from_iad(iad: bytes) -> tuple[int, bytes, bytes] | None:
    """(balance, MAC input, MAC) from the IAD's discretionary data ``0A 01 balance(5) MAC(4)`` (card profile
    §9: MAC under the AC session key over ``01 ‖ balance ‖ ATC``); None when absent or not BCD."""
    if len(iad) >= 19 and iad[8] == 0x0A and iad[9] == 0x01:
        try:
            balance = amount_from_bcd(iad[10:15])
        except ValueError:
            return None
        return balance, iad[9:15], iad[15:19]
    return None


def _ec_load_script_applied(field55: bytes) -> bool:
    """Whether the reversal's chip data report that the card ran the ``PUT DATA 9F79`` of the load.

    Issuer Script Results ``9F5B`` (EMV Book 3 Annex A, §10.10): 5 bytes per script, the high nibble of the
    first byte ``2`` = processed successfully, then the 4-byte script identifier (``9F18``); the load's
    ``PUT DATA 9F79`` is script 0 of the answer. No ``9F5B`` (the terminal never got to script processing,
    e.g. the answer timed out or the card was torn away) means the card did not apply it."""
    results = decode_dict(field55).get("9F5B", b"") if field55 else b""
    entries = [results[i : i + 5] for i in range(0, len(results) - 4, 5)]
    return any(e[0] >> 4 == 2 and e[1:] == bytes(4) for e in entries)


def _beijing_date(now_ns: int) -> date:
    """Today's date in China (UTC+8), where ID numbers' dates of birth are."""
    return datetime.fromtimestamp(now_ns / 1e9, timezone(timedelta(hours=8))).date()


def _yymm(now_ns: int) -> str:
    return datetime.fromtimestamp(now_ns / 1e9, UTC).strftime("%y%m")


def _expiry(now_ns: int, years: int) -> str:
    moment = datetime.fromtimestamp(now_ns / 1e9, UTC)
    return f"{(moment.year + years) % 100:02d}{moment.month:02d}"
