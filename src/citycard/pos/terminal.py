"""The terminal application: purchases, EC inquiries and loads, and the bus validator, over the kernel,
with the journal written at the right moments (see :mod:`citycard.pos.journal`).

Torn transactions (card pulled, or the terminal stopped, after the debiting command): on the next tap of a
transaction of the same kind the terminal reads the card's log — the transaction log for a purchase, the
load log for an EC load (JR/T 0025.13, ``9F4D``/``9F4F``, ``DF4D``/``DF4F``) — and which card it is (PAN and
PSN), and looks for a record of *that card* with the torn transaction's date, time and amount (and ATC when
known), written by this terminal and not already accounted for by another journal entry. Found: the card
was charged (or loaded) — the entry becomes ``recovered`` (captured for upload with the ATC from the log)
and a retry within :data:`RETAP_S` is not charged again. Not found: it stays ``torn`` until it ages out. So
a card is never charged twice for one fare, and no other card rides on it. An EC load torn after the card's
TC has its reversal held by the host: found on the load log, the reversal is dropped; proved absent (no
record of its ATC where the log reaches back past it), the load becomes ``void`` and its reversal is sent.
A terminal with a host also reads the load log at a contact purchase or online balance inquiry while a
torn load is open, so a card not loaded here again still settles its held reversal.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from citycard.codec.cn import cn_digits
from citycard.codec.dol import fit_value
from citycard.codec.emvbits import TVR_CARD_ON_EXCEPTION_FILE
from citycard.codec.iso8583.service import ServiceReference
from citycard.codec.money import bcd_amount
from citycard.codec.pan import mask_pan
from citycard.kernel.config import TerminalConfig
from citycard.kernel.events import (
    ChooseApplication,
    Event,
    LogEntry,
    OnlineRequest,
    OnlineResponse,
    Outcome,
    OutcomeKind,
    PinEntry,
    RequestPin,
    SendApdu,
)
from citycard.kernel.extension import Extension
from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
from citycard.kernel.runner import Trace, run

from .journal import FOLLOW_UP_STANDS, Funding, Journal, JournalEntry, State
from .online import OnlineHost, OnlineKind, SourceAccount
from .sealing import seal_pan

__all__ = [
    "AlreadyVoided",
    "Interface",
    "NotThisBatch",
    "PosTerminal",
    "TapResult",
    "inquiry",
    "self_service_config",
    "validator_config",
]

Transmit = Callable[[bytes], bytes]
Interface = Literal["contact", "contactless"]


class AlreadyVoided(ValueError):
    """A void of a purchase this terminal's journal already holds a void of — approved, or torn or pending
    (it may stand at the issuer): refused before the card is asked anything, nothing sent online."""

    def __init__(self, original: str, void: JournalEntry) -> None:
        self.original, self.void = original, void
        super().__init__(f"{original} is already voided ({void.txn_id}, {void.state}): not voided twice")


class NotThisBatch(ValueError):
    """A void of a purchase of an earlier batch: a void (消费撤销) is of a purchase of the terminal's current
    batch only, before its settlement; a settled one is refunded (退货) instead. Refused before the card is
    asked anything, nothing sent online (docs/terminal.md)."""

    def __init__(self, original: JournalEntry, batch: int) -> None:
        self.original, self.batch = original, batch
        super().__init__(
            f"{original.txn_id} is in batch {original.batch}, settled (now batch {batch}): a void is of a "
            "purchase of the current batch only; refund it instead (citycard pos refund)"
        )


TORN_MAX_AGE_S = 3600
"""A torn transaction is looked for in the logs of the cards tapped within this time (an EC load whose
reversal is held: at the card's next load, whenever it comes)."""
TORN_OPEN_MAX = 50
"""The most torn entries of one kind a tap compares with the card's log (newest first)."""
RETAP_S = 120
"""A torn fare recovered within this time is the rider tapping again: the gate opens without a new charge.
Older, the rider is on a new trip: the torn fare is recorded as paid and the new one is charged."""
TORN_LOG_RECORDS = 3
"""The torn fare is the card's latest record unless the card paid elsewhere since: read only a few."""
DOUBLE_TAP_LOG_RECORDS = 1
"""A double tap is a card whose latest log record is a fare paid here: one record is enough."""
RECENT_FARES = 1000
"""The most fares of the double-tap window a validator looks at (at most a busy hour's worth)."""
_PAID: tuple[State, ...] = ("approved", "recovered")
"""States of a fare the card paid (a recovered torn fare was charged per the card's log)."""
_TORN: tuple[State, ...] = ("torn",)
_REFUND: tuple[State, ...] = ("refund",)
_LOGS = {
    TransactionKind.PURCHASE: TransactionKind.TRANSACTION_LOG,
    TransactionKind.EC_LOAD: TransactionKind.LOAD_LOG,
}
"""The log where the card records each kind of transaction (JR/T 0025.13: 9F4D, DF4D)."""


def pan_token(pan: str, psn: str) -> str:
    """SHA-256 of PAN ‖ PSN: recognises a card again without keeping its PAN (the journal's ``pan_token``)."""
    return hashlib.sha256(f"{pan}|{psn}".encode()).hexdigest()


def _record_atc(record: LogEntry) -> int | None:
    atc = record.get("9F36")
    return int.from_bytes(atc, "big") if atc else None


def _not_loaded(entry: JournalEntry, records: Sequence[LogEntry]) -> bool:
    """The card's load log proves that ``entry``, an EC load torn after the card's TC (so its ATC is known),
    never reached the chip: no record of its ATC among those read, and they reach back past it (a record of
    an earlier ATC) or are the whole log (fewer than asked). A chip that takes a load writes its load-log
    record with the new balance in one step (JR/T 0025.13; ``chip.card``'s PUT DATA 9F79), so the log is
    the chip's own word on it; a record without an ATC proves nothing."""
    if entry.atc is None:
        return False
    atcs = [_record_atc(record) for record in records]
    known = [atc for atc in atcs if atc is not None]
    if entry.atc in known or len(known) < len(atcs):
        return False
    return len(known) < TORN_LOG_RECORDS or min(known) < entry.atc


def _fen(value: bytes | None) -> int | None:
    text = value.hex() if value is not None else ""
    return int(text) if text.isdigit() else None


def _unable(_: OnlineRequest) -> OnlineResponse:
    return OnlineResponse(unable_to_go_online=True)


def inquiry(
    config: TerminalConfig,
    transmit: Transmit,
    kind: TransactionKind,
    interface: Interface = "contact",
    trace: Trace | None = None,
    *,
    clock: Callable[[], dt.datetime] = dt.datetime.now,
    rng: Callable[[int], bytes] = secrets.token_bytes,
) -> Outcome:
    """An EC balance, transaction-log or load-log inquiry: it moves no money, so nothing is journaled."""
    assert kind in (TransactionKind.EC_BALANCE, TransactionKind.TRANSACTION_LOG, TransactionKind.LOAD_LOG)
    return run(Kernel(config, Transaction(kind, clock(), interface=interface), rng), transmit, trace=trace)


def validator_config(config: TerminalConfig) -> TerminalConfig:
    """A bus validator: unattended, offline only (9F35 = 26), qPBOC only, no PIN, no cardholder choice."""
    return replace(
        config,
        terminal_type=0x26,
        ttq=bytes.fromhex("28000000"),
        contactless_cvm_limit_fen=0,
        cardholder_confirmation=False,
    )


def self_service_config(config: TerminalConfig) -> TerminalConfig:
    """A self-service terminal of the service center (information inquiry, docs/public-services.md): the
    only cardholder verification it supports is the online PIN (9F33 byte 2 = ``40``, EMV Book 4 Annex
    A2), so a card's CVM list (PBOC: offline PIN if supported, else online PIN ...) selects the online
    PIN and the issuer verifies it; no cardholder choice of application."""
    caps = bytearray(config.capabilities)
    caps[1] = 0x40
    return replace(config, capabilities=bytes(caps), cardholder_confirmation=False)


@dataclass(frozen=True, slots=True)
class TapResult:
    outcome: Outcome
    entry: JournalEntry | None
    recovered: tuple[JournalEntry, ...] = ()  # torn transactions settled on this tap: charged (recovered) or,
    # an EC load the card's log shows it never took, void with its reversal released (a purchase's tap
    # settles the card's torn loads too: their kind says which)

    @property
    def approved(self) -> bool:
        return self.outcome.approved


class PosTerminal:
    def __init__(
        self,
        config: TerminalConfig,
        journal: Journal,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(),
        rng: Callable[[int], bytes] = secrets.token_bytes,
        data_key: bytes = b"",
        host: OnlineHost | None = None,
        pin_pad: Callable[[str, str], bytes] | None = None,
    ) -> None:
        """``data_key`` (3DES, 16 bytes) seals PANs in the journal for the upload; without it none is kept.
        ``host``: the way online (the acquirer, ``citycard.hosts.terminal``), used when a transaction is
        given no ``online`` function; ``pin_pad(pin, pan)`` enciphers online PINs (under the PIK)."""
        self.data_key = data_key
        self.host = host
        self.pin_pad = pin_pad
        self.config = config
        self.journal = journal
        self.clock = clock
        self.rng = rng

    # -- torn transactions --------------------------------------------------------------------------------

    def _open_torn(self, kind: str, now: dt.datetime, *, held: bool = False) -> list[JournalEntry]:
        """The ``torn`` entries of ``kind`` younger than :data:`TORN_MAX_AGE_S`; with ``held``, also the EC
        loads whose reversal is held, whatever their age (their money waits on the card's load log)."""
        since = now - dt.timedelta(seconds=TORN_MAX_AGE_S)
        torn = [
            e
            for e in self.journal.recent(_TORN, since, kind=kind, limit=TORN_OPEN_MAX)
            if (now - e.created).total_seconds() <= TORN_MAX_AGE_S
        ]
        if held and self.host is not None:
            young = {e.txn_id for e in torn}
            for txn_id in self.host.held_reversals(TORN_OPEN_MAX):
                entry = self.journal.get(txn_id)
                if txn_id not in young and entry.state == "torn" and entry.kind == kind:
                    torn.append(entry)
        return torn

    def recover_torn(
        self,
        transmit: Transmit,
        interface: Interface,
        trace: Trace | None = None,
        *,
        kind: TransactionKind = TransactionKind.PURCHASE,
        held: bool = False,
    ) -> list[JournalEntry]:
        """Compare this card's log with the open torn transactions of the same ``kind`` (a purchase with
        the transaction log, an EC load with the load log); resolve those found as ``recovered``. Open: torn
        within :data:`TORN_MAX_AGE_S`, and with ``held`` (at the card's next load) any EC load whose
        reversal is still held, however old: a holder back at the counter the next day settles it too.

        A torn entry is matched on the card — its PAN and PSN when the terminal had read them before the
        tear — and on one log record of that card written by this terminal at the entry's date, time and
        amount (and ATC, when the tear came after the card's answer). A record that another entry of this
        journal already accounts for (the same card and ATC) is not taken again, and a record settles at
        most one entry: another card, or the card's own later transaction, never pays a torn fare.

        An EC load found is the chip's: its held reversal is dropped. One torn after the card's TC that the
        load log proves absent (:func:`_not_loaded`) becomes ``void`` and its reversal is released; it is
        returned too, with the recovered ones (its state says which)."""
        assert kind in _LOGS
        now = self.clock()
        torn = self._open_torn(kind.name.lower(), now, held=held)
        if not torn:
            return []
        txn = Transaction(_LOGS[kind], now, interface=interface, log_records=TORN_LOG_RECORDS, identify=True)
        log = run(Kernel(self.config, txn, self.rng), transmit, trace=trace)
        if log.kind is not OutcomeKind.COMPLETED or not log.pan:
            return []
        token = pan_token(log.pan, log.psn)
        taken: set[int | None] = {
            e.atc
            for e in self.journal.entries(None, 200)
            if e.pan_token == token and e.atc is not None and e.state != "torn"
        }
        recovered: list[JournalEntry] = []
        loads = self.host if kind is TransactionKind.EC_LOAD else None  # whose held reversals are decided
        for entry in sorted(torn, key=lambda e: e.created):
            if entry.pan_token and entry.pan_token != token:
                continue  # another card's torn transaction
            for record in log.logs:
                atc = _record_atc(record)
                if atc in taken or not self._logged(entry, record, kind):
                    continue
                taken.add(atc)
                recovered.append(
                    self.journal.finish(
                        entry.txn_id,
                        "recovered",
                        reason="torn; charged per the card's log",
                        atc=atc,
                        aid=log.aid.hex().upper(),
                        **self._card_fields(log.pan, log.psn),
                    )
                )
                if loads is not None:
                    loads.drop_reversal(entry.txn_id)  # the chip took it: the issuer's load stands
                break
            else:  # no record of it: an EC load whose absence the log proves is reversed
                if loads is not None and entry.pan_token == token and _not_loaded(entry, log.logs):
                    loads.release_reversal(entry.txn_id)  # first: a crash before the next line
                    reason = "torn; not on the card's load log: reversed"
                    if entry.funding == "cash":
                        reason += "; the cash paid for it goes back to the holder"
                    voided = self.journal.finish(  # leaves it torn, released, decided again next tap
                        entry.txn_id, "void", reason=reason
                    )
                    recovered.append(voided)
        return recovered

    def _settle_torn_loads(
        self, transmit: Transmit, interface: Interface, trace: Trace | None
    ) -> list[JournalEntry]:
        """At a contact tap that is not a load (a purchase, an online balance inquiry), the torn EC loads are
        settled by the card's load log too, as at its next load (:meth:`recover_torn`): a card torn at a load
        and never loaded here again would otherwise keep the load's reversal held. Only a terminal with a
        host holds such reversals; a load is contact only, and the log is read only while a torn load is
        open, within :data:`TORN_MAX_AGE_S`."""
        if self.host is None or interface != "contact":
            return []
        return self.recover_torn(transmit, interface, trace, kind=TransactionKind.EC_LOAD)

    def _logged(self, entry: JournalEntry, record: LogEntry, kind: TransactionKind) -> bool:
        """``record`` is the card's trace of ``entry``: this terminal, its date, time, amount (and ATC)."""
        when = entry.created
        if (
            record.get("9A") != bytes.fromhex(when.strftime("%y%m%d"))
            or record.get("9F21") != bytes.fromhex(when.strftime("%H%M%S"))
            or not self._ours(record.get("9F4E"))
            or (entry.atc is not None and _record_atc(record) != entry.atc)
        ):
            return False
        if kind is TransactionKind.EC_LOAD:  # JR/T 0025.13 load log: balance before and after the load
            before, after = _fen(record.get("BEFORE")), _fen(record.get("AFTER"))
            return before is not None and after is not None and after - before == entry.amount_fen
        return record.get("9F02") == bcd_amount(entry.amount_fen) and record.get("9C") in (None, b"\x00")

    def _ours(self, merchant: bytes | None) -> bool:
        """The record's merchant name (9F4E, padded to its DOL length) is this terminal's."""
        name = self.config.merchant_name
        return merchant is None or merchant == fit_value(name, len(merchant), "ans")

    def _card_fields(self, pan: str, psn: str) -> dict[str, str]:
        """What the journal keeps to recognise the card (PAN masked, sealed; SHA-256 of PAN ‖ PSN)."""
        if not pan:
            return {}
        sealed = seal_pan(self.data_key, pan).hex().upper() if self.data_key else ""
        return {
            "pan_masked": mask_pan(pan),
            "pan_token": pan_token(pan, psn),
            "pan_sealed": sealed,
            "psn": psn,
        }

    # -- double taps and denied cards (validator) -------------------------------------------------------

    def _recent_fares(
        self,
        now: dt.datetime,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        *,
        pan_token: str | None = None,
        limit: int = RECENT_FARES,
    ) -> list[JournalEntry]:
        """Fares paid at this validator within ``double_tap_window_s`` (approved, or torn and recovered),
        newest first; only those created in [``since``, ``until``] and of ``pan_token`` when given. An
        indexed look-up of the window (``Journal.recent``), never a scan of the journal."""
        window = self.config.double_tap_window_s
        if not window:
            return []
        start = now - dt.timedelta(seconds=window)
        rows = self.journal.recent(
            _PAID,
            start if since is None else max(start, since),
            now if until is None else min(now, until),
            kind="purchase",
            interface="contactless",
            pan_token=pan_token,
            limit=limit,
        )
        return [e for e in rows if 0 <= (now - e.created).total_seconds() <= window]

    def _denied_here(self) -> list[JournalEntry]:
        """Refunds of cards this validator found on the deny list (TVR: card on exception file), the
        latest 50 refunds looked at."""
        return [
            e
            for e in self.journal.recent(_REFUND, kind="purchase", limit=50)
            if len(e.tvr) == 10 and int(e.tvr[:2], 16) & TVR_CARD_ON_EXCEPTION_FILE[1]
        ]

    def _known_card(self, transmit: Transmit, now: dt.datetime, trace: Trace | None) -> JournalEntry | None:
        """The fare paid here within the double-tap window, or the deny-list refund, that this card paid
        last, found before the GPO (which debits): the card's latest transaction-log record (JR/T 0025.13
        ``9F4D``/``9F4F``, readable without a GPO) was written by this terminal with the entry's date,
        time, amount and ATC. None when not found or the card has no readable log.

        The card's log is read only when there is a candidate at all (a fare in the window, a refused
        listed card); the fares are then looked up by the second the record names (an indexed look-up,
        not a scan of the window)."""
        denied = self._denied_here()
        if not denied and not self._recent_fares(now, limit=1):
            return None
        txn = Transaction(
            TransactionKind.TRANSACTION_LOG, now, interface="contactless", log_records=DOUBLE_TAP_LOG_RECORDS
        )
        log = run(Kernel(self.config, txn, self.rng), transmit, trace=trace)
        if log.kind is not OutcomeKind.COMPLETED or not log.logs:
            return None
        latest = log.logs[0]
        second = _record_time(latest, now)
        fares = [] if second is None else self._recent_fares(now, second, second.replace(microsecond=999_999))
        for entry in fares + denied:
            if entry.atc is not None and self._logged(entry, latest, TransactionKind.PURCHASE):
                return entry
        return None

    # -- transactions ---------------------------------------------------------------------------------------

    def _run_journaled(
        self,
        txn: Transaction,
        transmit: Transmit,
        *,
        config: TerminalConfig | None = None,
        online: Callable[[OnlineRequest], OnlineResponse] = _unable,
        pin: Callable[[RequestPin], str | PinEntry | None] = lambda _: None,
        choose: Callable[[ChooseApplication], int | None] = lambda _: 0,
        trace: Trace | None = None,
        refuse: Callable[[Outcome], str | None] = lambda _: None,
        online_kind: OnlineKind | None = None,
        follows: JournalEntry | None = None,
        service_ref: str = "",
        bus: tuple[int, str] | None = None,
        source: SourceAccount | None = None,
        funding: Funding | None = None,
    ) -> tuple[Outcome, JournalEntry | None]:
        """Run the kernel, journaling the transaction from its debiting command on. ``refuse`` may turn an
        approval into a terminal decline (its reason); a card that paid is then journaled ``refund``.

        With ``online_kind`` and a ``host``, the kernel goes online through the host for the journaled
        entry, and the host hears the outcome before it is recorded (a refused approval is reversed)."""
        kernel = Kernel(config or self.config, txn, self.rng, pin_pad=self.pin_pad)
        entry: JournalEntry | None = None
        named = {OnlineKind.BALANCE_INQUIRY: "balance", OnlineKind.VOID: "void"}
        kind = named.get(online_kind, txn.kind.name.lower()) if online_kind else txn.kind.name.lower()
        host = self.host if online_kind is not None else None
        if host is not None and online_kind is not None:
            go_online, through = online_kind, host

            def via_host(request: OnlineRequest) -> OnlineResponse:
                assert entry is not None, "the kernel goes online after its debiting command"
                return through.authorize(go_online, request, entry, txn.interface, follows, source)

            online = via_host

        def on_event(event: Event) -> None:
            nonlocal entry
            if entry is not None or not isinstance(event, SendApdu):
                return
            if event.cryptogram:  # contact: the card's records (PAN, PSN) are read; qPBOC: not yet
                un = kernel.term.get("9F37", b"").hex().upper()
                pan = cn_digits(kernel.card.get("5A", b""))
                psn = kernel.card.get("5F34", b"").hex()
                card: dict[str, str | int] = {**(self._card_fields(pan, psn) if pan.isdigit() else {})}
                if service_ref:
                    card["service_ref"] = service_ref
                if bus is not None:  # a validator's fare: the line and vehicle it ran
                    card["line"], card["vehicle"] = bus
                if follows is not None:  # a void: the journal links it to the purchase it cancels
                    card["original_txn_id"] = follows.txn_id
                if funding is not None:  # an EC load: a reversed cash load's cash goes back to the holder
                    card["funding"] = funding
                amount, what = txn.amount_fen, kind
                if txn.extension is not None:  # the amount the extension decided before the GPO
                    amount = int(kernel.term["9F02"].hex())
                    what = kind if amount else "tap"  # a record-only tap (TC for 0): no money to upload
                entry = self.journal.begin(what, txn.interface, amount, txn.now, un, **card)

        try:
            outcome = run(
                kernel, transmit, online=online, pin=pin, choose=choose, trace=trace, on_event=on_event
            )
        except Exception as exc:
            # a bug (the kernel's or a callback's) is raised, once the money is safe: the transaction is
            # recorded as interrupted, as after a tear. An approval the card did not complete is reversed;
            # a card that may have paid is torn, settled by its log at its next tap.
            if entry is not None:
                stopped = kernel.interrupted(f"terminal error: {type(exc).__name__}")
                if host is not None:
                    stopped = host.completed(entry, stopped)
                self._record(entry, stopped)
            raise
        refused = refuse(outcome) if outcome.approved else None
        if refused is not None:
            outcome = replace(outcome, kind=OutcomeKind.DECLINED_OFFLINE, reason=refused)
        if entry is not None:
            if host is not None:
                outcome = host.completed(entry, outcome)
            entry = self._record(entry, outcome)
        return outcome, entry

    def _record(self, entry: JournalEntry, outcome: Outcome) -> JournalEntry:
        state: State
        card_paid = outcome.cid is not None and outcome.cid & 0xC0 == 0x40 and bool(outcome.cryptogram)
        if outcome.approved:
            state = "approved"
        elif card_paid and outcome.kind is OutcomeKind.DECLINED_OFFLINE:
            state = "refund"  # the card debited itself with a TC, the terminal declined: give it back
        elif outcome.kind in (OutcomeKind.DECLINED_OFFLINE, OutcomeKind.DECLINED_ONLINE):
            state = "declined"
        elif outcome.torn:
            state = "torn"
        else:
            state = "void"
        return self.journal.finish(
            entry.txn_id,
            state,
            **self._card_fields(outcome.pan, outcome.psn),
            expiry=outcome.expiry,
            aid=outcome.aid.hex().upper(),
            outcome=outcome.kind.value,
            reason=outcome.reason,
            cryptogram=outcome.cryptogram.hex().upper(),
            atc=outcome.atc,
            tvr=outcome.tvr.hex().upper(),
            tsi=outcome.tsi.hex().upper(),
            field55=outcome.field55.hex().upper(),
            ec_balance_fen=outcome.ec_balance_fen,
        )

    def purchase(
        self,
        transmit: Transmit,
        amount_fen: int,
        *,
        interface: Interface = "contact",
        online: Callable[[OnlineRequest], OnlineResponse] = _unable,
        pin: Callable[[RequestPin], str | PinEntry | None] = lambda _: None,
        choose: Callable[[ChooseApplication], int | None] = lambda _: 0,
        trace: Trace | None = None,
        service_ref: str = "",
    ) -> TapResult:
        """A purchase: EC offline when the card takes it, else online through the host. ``service_ref``:
        the public service it pays at this counter (``HR-202612030017``; ServiceReferenceError, a
        ValueError, before the card is asked anything when it is malformed): journaled with the
        transaction, sent in field 48 of the 0200 or of the 0320 upload."""
        if service_ref:
            service_ref = ServiceReference.parse(service_ref).text
        loads = self._settle_torn_loads(transmit, interface, trace)
        recovered = self.recover_torn(transmit, interface, trace)
        now = self.clock()
        retry = [
            e
            for e in recovered
            if e.amount_fen == amount_fen and (now - e.created).total_seconds() <= RETAP_S
        ]
        recovered += loads
        if retry:  # the cashier retries the purchase the card already paid: do not charge it again
            outcome = Outcome(
                OutcomeKind.APPROVED_OFFLINE, reason="already paid (recovered torn transaction)"
            )
            return TapResult(outcome, retry[0], tuple(recovered))
        txn = Transaction(TransactionKind.PURCHASE, now, amount_fen, interface=interface)
        outcome, entry = self._run_journaled(
            txn,
            transmit,
            online=online,
            pin=pin,
            choose=choose,
            trace=trace,
            online_kind=OnlineKind.PURCHASE if online is _unable else None,
            service_ref=service_ref,
        )
        return TapResult(outcome, entry, tuple(recovered))

    def load(
        self,
        transmit: Transmit,
        amount_fen: int,
        *,
        online: Callable[[OnlineRequest], OnlineResponse] = _unable,
        pin: Callable[[RequestPin], str | PinEntry | None] = lambda _: None,
        interface: Interface = "contact",
        trace: Trace | None = None,
        cash: bool = False,
        from_account: tuple[str, str] | None = None,
    ) -> TapResult:
        """EC load (圈存) from the cardholder's designated account, or (``cash``) in cash at a counter, or
        (``from_account``: the number of a card of another account and its PIN, 非指定账户圈存) from another
        account, possibly at another bank: online through ``online`` or the terminal's host; the card takes
        the new balance by the issuer's script. The other account's PIN is enciphered at once by the PIN pad
        (ValueError for a number or PIN it refuses, before the card is touched)."""
        assert not (cash and from_account), "a cash load takes no account"
        source = None
        if from_account is not None:
            assert self.host is not None and self.pin_pad is not None, "a load from an account goes online"
            account, account_pin = from_account
            if not (account.isdigit() and 12 <= len(account) <= 19):
                raise ValueError("the account's card number is 12 to 19 digits")
            source = SourceAccount(account, self.pin_pad(account_pin, account))
        recovered = self.recover_torn(transmit, interface, trace, kind=TransactionKind.EC_LOAD, held=True)
        now = self.clock()
        retry = [
            e
            for e in recovered
            if e.state == "recovered"
            and e.amount_fen == amount_fen
            and (now - e.created).total_seconds() <= RETAP_S
        ]
        if retry:  # the card took the load that tore: loading it again would credit it twice
            outcome = Outcome(OutcomeKind.APPROVED_ONLINE, reason="already loaded (recovered torn load)")
            return TapResult(outcome, retry[0], tuple(recovered))
        txn = Transaction(TransactionKind.EC_LOAD, now, amount_fen, interface=interface, force_online=True)
        funding: Funding = "cash" if cash else "account"
        kind = OnlineKind.EC_CASH_LOAD if cash else OnlineKind.EC_LOAD
        if source is not None:
            kind, funding = OnlineKind.EC_LOAD_OTHER, "other account"
        outcome, entry = self._run_journaled(
            txn,
            transmit,
            online=online,
            pin=pin,
            trace=trace,
            online_kind=kind if online is _unable else None,
            source=source,
            funding=funding,
        )
        return TapResult(outcome, entry, tuple(recovered))

    def balance_inquiry(
        self,
        transmit: Transmit,
        *,
        pin: Callable[[RequestPin], str | PinEntry | None] = lambda _: None,
        interface: Interface = "contact",
        trace: Trace | None = None,
    ) -> TapResult:
        """The account balance, asked online (0200 310000): an ARQC for amount 0 with 9C = 31, journaled
        ``balance``; the balance comes in the host's answer (field 54). A torn EC load of the card is settled
        first (:meth:`_settle_torn_loads`): a reversal it releases goes ahead of the inquiry."""
        assert self.host is not None, "a balance inquiry goes online"
        settled = self._settle_torn_loads(transmit, interface, trace)
        txn = Transaction(
            TransactionKind.PURCHASE,
            self.clock(),
            0,
            interface=interface,
            force_online=True,
            transaction_type=0x31,
        )
        outcome, entry = self._run_journaled(
            txn, transmit, pin=pin, trace=trace, online_kind=OnlineKind.BALANCE_INQUIRY
        )
        return TapResult(outcome, entry, tuple(settled))

    def void(
        self,
        transmit: Transmit,
        original: JournalEntry,
        *,
        pin: Callable[[RequestPin], str | PinEntry | None] = lambda _: None,
        interface: Interface = "contact",
        trace: Trace | None = None,
    ) -> TapResult:
        """Void (消费撤销) ``original``, an online purchase of this terminal, the card present: the card's
        ARQC for the purchase's whole amount with 9C = 20, sent as 0200 200000 with 61 naming the purchase;
        journaled ``void``, linked to ``original``. A purchase with a void already journaled approved (or torn
        or pending: it may stand) is refused here, before the card or the host is asked:
        :class:`AlreadyVoided`; so is a purchase of an earlier (settled) batch: :class:`NotThisBatch`. A
        declined void (a reversed one is journaled declined) may be tried again."""
        assert self.host is not None, "a void goes online"
        assert original.kind == "purchase" and original.outcome == "approved online"
        batch = self.journal.current_batch()
        if original.batch != batch:
            raise NotThisBatch(original, batch)
        for earlier in self.journal.follow_ups_of(original.txn_id):
            if earlier.kind == "void" and earlier.state in FOLLOW_UP_STANDS:
                raise AlreadyVoided(original.txn_id, earlier)
        txn = Transaction(
            TransactionKind.PURCHASE,
            self.clock(),
            original.amount_fen,
            interface=interface,
            force_online=True,
            transaction_type=0x20,
        )
        outcome, entry = self._run_journaled(
            txn, transmit, pin=pin, trace=trace, online_kind=OnlineKind.VOID, follows=original
        )
        return TapResult(outcome, entry)

    def inquiry(
        self,
        transmit: Transmit,
        kind: TransactionKind,
        interface: Interface = "contact",
        trace: Trace | None = None,
    ) -> Outcome:
        return inquiry(self.config, transmit, kind, interface, trace, clock=self.clock, rng=self.rng)

    def validate(
        self,
        transmit: Transmit,
        fare_fen: int,
        *,
        trace: Trace | None = None,
        extension: Extension | None = None,
        bus: tuple[int, str] | None = None,
    ) -> TapResult:
        """Bus validator: a qPBOC fare, offline, no PIN; a torn fare is recovered, never charged twice.
        ``bus``: the line and vehicle of this validator (the registry's), journaled with the fare.

        The fare is ``fare_fen``, or (``extension``, e.g. :class:`citycard.transit.FareHook`) what the
        extension decides from the card's own records read after the SELECT, before the GPO: it may refuse
        the tap there (nothing charged, nothing journaled), or charge an amount — 0 on a distance line's
        tap-in, a free concession or a reached cap, journaled ``tap`` and never uploaded — and stage the
        record the card writes with the debit (:mod:`citycard.kernel.extension`).

        Double taps: a card that paid a fare here within ``double_tap_window_s`` is refused. Before the GPO
        (which debits) the card is recognised by its transaction log; a card whose log cannot be read is
        recognised after the GPO by its PAN token, and that second fare is journaled ``refund``.

        Deny list: a qPBOC card shows its PAN only in the GPO, after it has paid, so a listed card's first
        tap here is a ``refund``; its later taps are recognised by the log (its latest payment is that
        refunded one) and refused before the GPO, without a charge."""
        recovered = self.recover_torn(transmit, "contactless", trace)
        now = self.clock()
        retap = [e for e in recovered if (now - e.created).total_seconds() <= RETAP_S]
        if retap:  # the rider tapped again because the gate did not open: that fare is paid
            outcome = Outcome(
                OutcomeKind.APPROVED_OFFLINE, reason="fare already paid (recovered torn transaction)"
            )
            return TapResult(outcome, retap[0], tuple(recovered))
        known = self._known_card(transmit, now, trace)
        if known is not None:  # refused before the GPO: nothing is charged, nothing journaled
            if known.state == "refund":  # its last payment was the one refused here: still denied
                reason = (
                    f"card on the exception file (refused here at {known.created:%Y-%m-%d %H:%M:%S}, "
                    f"{known.txn_id}); not charged again"
                )
            else:
                reason = _double_tap_reason(known, now)
            return TapResult(Outcome(OutcomeKind.DECLINED_OFFLINE, reason), None, tuple(recovered))

        def refuse(outcome: Outcome) -> str | None:
            token = pan_token(outcome.pan, outcome.psn) if outcome.pan else ""
            paid = self._recent_fares(now, pan_token=token, limit=1) if token else []
            twice = paid[0] if paid else None
            return None if twice is None else _double_tap_reason(twice, now) + "; the card paid: refund"

        amount = 0 if extension is not None else fare_fen
        txn = Transaction(TransactionKind.PURCHASE, now, amount, interface="contactless", extension=extension)
        outcome, entry = self._run_journaled(
            txn, transmit, config=validator_config(self.config), trace=trace, refuse=refuse, bus=bus
        )
        return TapResult(outcome, entry, tuple(recovered))


def _record_time(record: LogEntry, now: dt.datetime) -> dt.datetime | None:
    """The date and time (9A, 9F21: YYMMDD, HHMMSS in BCD) of a card's log record, in ``now``'s time zone;
    None when the card's bytes are not a date and time."""
    try:
        digits = ((record.get("9A") or b"") + (record.get("9F21") or b"")).hex()
        if len(digits) != 12 or not digits.isdigit():
            return None
        yy, mo, dd, hh, mi, ss = (int(digits[i : i + 2]) for i in range(0, 12, 2))
        return dt.datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=now.tzinfo)
    except ValueError:
        return None


def _double_tap_reason(paid: JournalEntry, now: dt.datetime) -> str:
    age = (now - paid.created).total_seconds()
    return f"double tap: this card paid the fare here {age:.0f} s ago ({paid.txn_id}); not charged again"
