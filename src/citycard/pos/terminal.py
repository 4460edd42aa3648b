"""The terminal application: purchases, EC inquiries and loads, and the bus validator, over the kernel,
with the journal written at the right moments (see :mod:`citycard.pos.journal`).

Torn transactions (card pulled, or the terminal stopped, after the debiting command): on the next tap the
terminal reads the card's transaction log (JR/T 0025.13, ``9F4D``/``9F4F``) and looks for a record with the
torn transaction's date, time and amount. Found: the card was charged — the entry becomes ``recovered``
(captured for upload with the ATC from the log) and, on a validator, the fare counts as paid. Not found:
``void``. So a card is never charged twice for one fare.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from citycard.codec.pretty import mask_pan
from citycard.kernel.config import TerminalConfig
from citycard.kernel.events import (
    ChooseApplication,
    Event,
    OnlineRequest,
    OnlineResponse,
    Outcome,
    OutcomeKind,
    PinEntry,
    RequestPin,
    SendApdu,
)
from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
from citycard.kernel.runner import Trace, run

from .journal import Journal, JournalEntry, State
from .sealing import seal_pan

__all__ = ["Interface", "PosTerminal", "TapResult", "inquiry", "validator_config"]

Transmit = Callable[[bytes], bytes]
Interface = Literal["contact", "contactless"]
TORN_MAX_AGE_S = 3600
"""A torn transaction is looked for in the logs of the cards tapped within this time."""
RETAP_S = 120
"""A torn fare recovered within this time is the rider tapping again: the gate opens without a new charge.
Older, the rider is on a new trip: the torn fare is recorded as paid and the new one is charged."""
TORN_LOG_RECORDS = 3
"""The torn fare is the card's latest record unless the card paid elsewhere since: read only a few."""


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


@dataclass(frozen=True, slots=True)
class TapResult:
    outcome: Outcome
    entry: JournalEntry | None
    recovered: tuple[JournalEntry, ...] = ()  # torn transactions resolved as charged on this tap

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
    ) -> None:
        """``data_key`` (3DES, 16 bytes) seals PANs in the journal for the upload; without it none is kept."""
        self.data_key = data_key
        self.config = config
        self.journal = journal
        self.clock = clock
        self.rng = rng

    # -- torn transactions --------------------------------------------------------------------------------

    def _open_torn(self, now: dt.datetime) -> list[JournalEntry]:
        return [
            e for e in self.journal.entries("torn", 50) if (now - e.created).total_seconds() <= TORN_MAX_AGE_S
        ]

    def recover_torn(
        self, transmit: Transmit, interface: Interface, trace: Trace | None = None
    ) -> list[JournalEntry]:
        """Compare open torn transactions with this card's log; resolve those found as ``recovered``."""
        now = self.clock()
        torn = self._open_torn(now)
        if not torn:
            return []
        txn = Transaction(
            TransactionKind.TRANSACTION_LOG,
            now,
            interface=interface,
            log_records=TORN_LOG_RECORDS,
        )
        log = run(Kernel(self.config, txn, self.rng), transmit, trace=trace)
        if log.kind is not OutcomeKind.COMPLETED:
            return []
        recovered: list[JournalEntry] = []
        for entry in torn:
            when = entry.created
            for record in log.logs:
                if (
                    record.get("9A") == bytes.fromhex(when.strftime("%y%m%d"))
                    and record.get("9F21") == bytes.fromhex(when.strftime("%H%M%S"))
                    and record.get("9F02") == bytes.fromhex(f"{entry.amount_fen:012d}")
                ):
                    atc = record.get("9F36")
                    recovered.append(
                        self.journal.finish(
                            entry.txn_id,
                            "recovered",
                            reason="torn; charged per the card's transaction log",
                            atc=int.from_bytes(atc, "big") if atc else None,
                            aid=log.aid.hex().upper(),
                            pan_masked=mask_pan(log.pan) if log.pan else entry.pan_masked,
                        )
                    )
                    break
        return recovered

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
    ) -> tuple[Outcome, JournalEntry | None]:
        kernel = Kernel(config or self.config, txn, self.rng)
        entry: JournalEntry | None = None
        kind = txn.kind.name.lower()

        def on_event(event: Event) -> None:
            nonlocal entry
            if entry is not None or not isinstance(event, SendApdu):
                return
            debit = event.purpose == "GENERATE AC 1" or (
                event.purpose == "GET PROCESSING OPTIONS" and txn.interface == "contactless"
            )
            if debit:
                un = kernel.term.get("9F37", b"").hex().upper()
                entry = self.journal.begin(kind, txn.interface, txn.amount_fen, txn.now, un)

        outcome = run(kernel, transmit, online=online, pin=pin, choose=choose, trace=trace, on_event=on_event)
        if entry is not None:
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
        token = hashlib.sha256(f"{outcome.pan}|{outcome.psn}".encode()).hexdigest() if outcome.pan else ""
        sealed = seal_pan(self.data_key, outcome.pan).hex().upper() if outcome.pan and self.data_key else ""
        return self.journal.finish(
            entry.txn_id,
            state,
            pan_masked=mask_pan(outcome.pan) if outcome.pan else "",
            pan_token=token,
            pan_sealed=sealed,
            psn=outcome.psn,
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
    ) -> TapResult:
        recovered = self.recover_torn(transmit, interface, trace)
        now = self.clock()
        retry = [
            e
            for e in recovered
            if e.amount_fen == amount_fen and (now - e.created).total_seconds() <= RETAP_S
        ]
        if retry:  # the cashier retries the purchase the card already paid: do not charge it again
            outcome = Outcome(
                OutcomeKind.APPROVED_OFFLINE, reason="already paid (recovered torn transaction)"
            )
            return TapResult(outcome, retry[0], tuple(recovered))
        txn = Transaction(TransactionKind.PURCHASE, now, amount_fen, interface=interface)
        outcome, entry = self._run_journaled(
            txn, transmit, online=online, pin=pin, choose=choose, trace=trace
        )
        return TapResult(outcome, entry, tuple(recovered))

    def load(
        self,
        transmit: Transmit,
        amount_fen: int,
        *,
        online: Callable[[OnlineRequest], OnlineResponse],
        pin: Callable[[RequestPin], str | PinEntry | None] = lambda _: None,
        interface: Interface = "contact",
        trace: Trace | None = None,
    ) -> TapResult:
        txn = Transaction(
            TransactionKind.EC_LOAD,
            self.clock(),
            amount_fen,
            interface=interface,
            force_online=True,
        )
        outcome, entry = self._run_journaled(txn, transmit, online=online, pin=pin, trace=trace)
        return TapResult(outcome, entry)

    def inquiry(
        self,
        transmit: Transmit,
        kind: TransactionKind,
        interface: Interface = "contact",
        trace: Trace | None = None,
    ) -> Outcome:
        return inquiry(self.config, transmit, kind, interface, trace, clock=self.clock, rng=self.rng)

    def validate(self, transmit: Transmit, fare_fen: int, *, trace: Trace | None = None) -> TapResult:
        """Bus validator: fixed qPBOC fare, offline, no PIN; a torn fare is recovered, never charged twice."""
        recovered = self.recover_torn(transmit, "contactless", trace)
        now = self.clock()
        retap = [e for e in recovered if (now - e.created).total_seconds() <= RETAP_S]
        if retap:  # the rider tapped again because the gate did not open: that fare is paid
            outcome = Outcome(
                OutcomeKind.APPROVED_OFFLINE, reason="fare already paid (recovered torn transaction)"
            )
            return TapResult(outcome, retap[0], tuple(recovered))
        txn = Transaction(TransactionKind.PURCHASE, now, fare_fen, interface="contactless")
        outcome, entry = self._run_journaled(txn, transmit, config=validator_config(self.config), trace=trace)
        return TapResult(outcome, entry, tuple(recovered))
