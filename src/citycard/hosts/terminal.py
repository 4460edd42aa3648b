"""The terminal's online client: a POS terminal talking ISO 8583 to its acquirer over TCP (docs/terminal.md
"Going online", docs/network.md, NETWORK.md of issue 8).

The terminal application and its kernel are synchronous (a card answers APDU by APDU), the link
(:class:`citycard.net.link.Iso8583Link`) is asyncio. :class:`AcquirerClient` runs the link on an event
loop in a background thread for as long as the client is open, and each synchronous call waits for its
coroutine there. Chosen over ``asyncio.run`` per transaction because one command makes several exchanges
on one connection (sign-on, the queued reversals, the transaction, an upload of many records), and the
link's own connection task must outlive each of them; a loop per exchange would connect again each time.

What it does, with the terminal's own HSM (its TMK, PIK and MAK) and journal:

- sign-on (0800 / 0810, 60.3 = ``003``): the PIK and MAK of field 62 (:mod:`citycard.codec.iso8583.signon`)
  imported with ``hsm.import_working_key`` under the TMK, check values verified; a new sign-on replaces
  them (labels ``terminal/<TID>/pik/<STAN>`` and ``.../mak/<STAN>``, the current pair named in the
  journal). Signed on automatically when the terminal has no keys yet, and again on an ``A0`` answer;
- every request carries field 64, the ANSI X9.19 MAC under the MAK (``hsm.pos_mac``); an answer carrying
  64 must verify, and an approval without a MAC that verifies is not believed (it is reversed);
- the online PIN is enciphered by the PIN pad under the PIK (``hsm.encrypt_pin``, ISO 9564 format 0);
- reversals: when the answer to a 0200 does not come (timeout, connection lost, malformed), or the card
  refuses an approval (second GENERATE AC gives an AAC) or never completes it (pulled, or that command
  failed, before its TC), a reversal (0400, 39 = ``98`` / ``06``, 61 =
  original batch, STAN, date) is persisted in the journal **before** anyone is told, and sent at the next
  online contact (every operation flushes the queue first) or ``citycard pos flush``: 0400 the first time,
  0420 after, until the host answers with anything but 91, 96 or A0;
- ``upload``: each offline EC purchase of the journal as a 0320 (60.1 = ``36``, 55 with the TC),
  acknowledged one by one (0330) in the journal, so a second run uploads nothing new.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

from citycard.center.model import tmk_label
from citycard.codec import tlv
from citycard.codec.iso8583 import (
    BusRide,
    IccData,
    Iso8583Error,
    Message,
    ResponseCode,
    Tpdu,
    mac_matches,
    parse,
    with_mac,
)
from citycard.codec.iso8583.messages import Field60, SettlementRequest
from citycard.codec.iso8583.signon import SignOnKeys
from citycard.codec.iso8583.totals import BatchTotals
from citycard.codec.iso8583.wire import decode_message
from citycard.codec.money import format_amount
from citycard.hsm.api import Hsm, HsmError, KeyHandle, KeyNotFoundError, KeyUsage
from citycard.kernel.events import OnlineRequest, OnlineResponse, OnlineUnavailable, Outcome, OutcomeKind
from citycard.net.link import Iso8583Link, LinkError, LinkLimits, MalformedResponse, NoAnswer, NotSent
from citycard.net.loop import new_event_loop
from citycard.pos.journal import FOLLOW_UP_STANDS, JournalEntry, State
from citycard.pos.online import (
    OnlineKind,
    Original,
    SourceAccount,
    TerminalIdentity,
    authorization_request,
    batch_upload_end,
    batch_upload_record,
    echo_request,
    online_response,
    reversal_request,
    sign_on_request,
    upload_request,
)
from citycard.pos.sealing import SealError, seal_pan, unseal_pan
from citycard.sqlite_journal import HELD, IN_FLIGHT, Advice, OnlineRecord, SqliteJournal

__all__ = [
    "TERMINAL_TPDU",
    "AcquirerClient",
    "AcquirerUnreachable",
    "BatchSettlement",
    "FlushResult",
    "OnlineError",
    "RefundRefused",
    "SignOnError",
    "UploadResult",
    "parse_address",
]

TERMINAL_TPDU: Final = Tpdu(destination=0x0006, source=0x0001)
"""TPDU of the terminal's requests: to the POS centre (0006) from the terminal (0001); answers swap them."""
_KEYS_COUNTER: Final = "working_keys"
"""The journal counter naming the current PIK and MAK (the STAN of the sign-on that brought them)."""
_RETRY_CODES: Final = frozenset(
    {ResponseCode.ISSUER_UNAVAILABLE, ResponseCode.SYSTEM_MALFUNCTION, ResponseCode.MAC_ERROR}
)
"""Answers that leave a store-and-forward message queued (docs/network.md)."""
_SAF_BATCH: Final = 100
"""At most this many queued messages are sent per contact."""
_BALANCE_INQUIRY: Final = "310000"
"""Its approval posts nothing: one the card did not complete needs no reversal."""
_EC_LOADS: Final = frozenset(
    kind.row.processing_code
    for kind in (OnlineKind.EC_LOAD, OnlineKind.EC_CASH_LOAD, OnlineKind.EC_LOAD_OTHER)
)
"""The loads whose money reaches the chip by the issuer's script after the card's TC: one torn after the TC
gets a held reversal, which the card's load log at its next tap releases or drops."""

_T = TypeVar("_T")
log = logging.getLogger(__name__)


class OnlineError(OnlineUnavailable):
    """The terminal cannot work online (one line for the user). Raised inside a transaction, the kernel
    goes on unable to go online (:class:`~citycard.kernel.events.OnlineUnavailable`)."""


class RefundRefused(OnlineError):
    """A refund this terminal's journal shows cannot stand (its purchase voided, or not that much of it
    left): refused before anything is sent."""


class AcquirerUnreachable(OnlineError):
    """No connection to the acquirer: nothing was sent."""


class SignOnError(OnlineError):
    """The sign-on was refused, or its keys did not import (wrong TMK, check value mismatch)."""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (ValueError naming what is wrong)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


@dataclass(frozen=True, slots=True)
class FlushResult:
    answered: tuple[Advice, ...]
    pending: int
    held: int = 0  # reversals kept unsent until a card's load log says whether they are needed


@dataclass(frozen=True, slots=True)
class UploadResult:
    acknowledged: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # txn_id, why


@dataclass(frozen=True, slots=True)
class BatchSettlement:
    """The batch settlement's outcome: the batch, the terminal's totals, the acquirer's answer (39 and its
    totals from 48), and the new batch number when it balanced (the batch is closed)."""

    batch: int
    totals: BatchTotals
    response_code: str
    host_totals: BatchTotals | None
    new_batch: int | None
    upload: UploadResult
    batch_upload: int | None = None
    """After a 95: the batch's online transactions uploaded (批上送) before the batch was closed out of
    balance (``new_batch`` set); None when no batch upload was made or it was not acknowledged."""


class _LoopThread:
    """An asyncio event loop running in a daemon thread; ``call`` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="terminal-link", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class AcquirerClient:
    """The terminal's link to its acquirer (module docstring); ``with AcquirerClient(...) as client:``.

    ``data_key`` seals the PANs of queued reversals in the journal (:mod:`citycard.pos.sealing`), as the
    journal does for its transactions. ``clock`` gives the local date and time of each message."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        identity: TerminalIdentity,
        hsm: Hsm | Callable[[], Hsm],
        journal: SqliteJournal,
        data_key: bytes,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        clock: Callable[[], dt.datetime] = dt.datetime.now,
    ) -> None:
        assert data_key, "the PANs of queued reversals are sealed under the terminal's data key"
        self.host, self.port = host, port
        self.identity = identity
        self._hsm_source = hsm
        self._hsm: Hsm | None = None
        self.journal = journal
        self.data_key = data_key
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.clock = clock
        self.tmk_label = tmk_label(identity.terminal_id)
        self._thread: _LoopThread | None = None
        self._link: Iso8583Link | None = None
        self._sent: dict[str, Message] = {}  # txn_id -> the 0200 sent, while its transaction runs
        self._answered: dict[str, OnlineResponse] = {}
        self.answers: dict[str, Message] = {}
        """The host's answers by journal transaction, as they came (field 54 of a balance inquiry ...)."""
        self.failure: OnlineError | None = None
        """The first reason the terminal could not go online, for the caller to report (the kernel only
        sees "unable to go online")."""
        self.batch_closed: tuple[int, int] | None = None
        """After an authorization answered 77 and the sign-on that followed: (the batch the acquirer had
        closed, the batch the terminal goes on in), for the operator to be told."""

    @property
    def hsm(self) -> Hsm:
        """The terminal's own HSM, opened on first use (an offline transaction never needs it): given, or
        made by the function given, which raises :class:`OnlineError` when the terminal has none."""
        if self._hsm is None:
            source = self._hsm_source
            if callable(source):
                try:
                    self._hsm = source()
                except OnlineError as exc:
                    self.failure = self.failure or exc
                    raise
            else:
                self._hsm = source
        return self._hsm

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # --- life -----------------------------------------------------------------------------------------
    def __enter__(self) -> AcquirerClient:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Connect (:class:`AcquirerUnreachable` when the acquirer does not accept the connection)."""
        assert self._thread is None, "client opened twice"
        self._thread = _LoopThread()
        try:
            self._thread.call(self._connect())
        except BaseException:
            self.close()
            raise

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, OSError) and exc.errno:
                reason = os.strerror(exc.errno)
            else:
                reason = str(exc) or f"no connection within {self.connect_timeout_s:g} s"
            raise AcquirerUnreachable(f"acquirer {self.address} unreachable ({reason.lower()})") from None
        writer.close()
        limits = LinkLimits(timeout_s=self.timeout_s, connect_timeout_s=self.connect_timeout_s)
        self._link = Iso8583Link(self.host, self.port, tpdu=TERMINAL_TPDU, limits=limits)
        await self._link.start()
        try:
            await self._link.wait_connected(self.connect_timeout_s)
        except NotSent as exc:
            raise AcquirerUnreachable(f"acquirer {self.address} unreachable ({exc})") from None

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        link, self._link = self._link, None
        if link is not None:
            thread.call(link.close())
        thread.close()

    def _exchange(self, message: Message, timeout_s: float | None = None) -> Message:
        """One request and its answer (the link's typed outcomes propagate); connects on first use
        (:class:`AcquirerUnreachable`, also kept in ``unreachable`` for the caller to report)."""
        if self._thread is None:
            try:
                self.open()
            except AcquirerUnreachable as exc:
                self.failure = self.failure or exc
                raise
        assert self._thread is not None and self._link is not None
        return self._thread.call(self._link.request(message, timeout_s=timeout_s))

    # --- keys -----------------------------------------------------------------------------------------
    def _keys(self) -> tuple[KeyHandle, KeyHandle] | None:
        """The current (PIK, MAK), or None before the first sign-on."""
        generation = self.journal.counter(_KEYS_COUNTER)
        if generation is None:
            return None
        try:
            return self.hsm.get(self._label("pik", generation)), self.hsm.get(self._label("mak", generation))
        except KeyNotFoundError:
            return None

    def _label(self, key: str, generation: int) -> str:
        """``terminal/<TID>/pik/<sign-on STAN>`` (and ``mak``): beside the TMK, a new pair each time."""
        return f"terminal/{self.identity.terminal_id}/{key}/{generation:06d}"

    def sign_on(self) -> tuple[str, str]:
        """Sign on (0800 / 0810): import the new PIK and MAK; returns their check values (hex)."""
        stan = self.journal.next_stan()
        request = sign_on_request(self.identity, stan=stan, batch=self.journal.current_batch())
        try:
            answer = self._exchange(request)
        except LinkError as exc:
            raise OnlineError(f"sign-on to {self.address} failed: {exc}") from None
        if not answer.approved or answer.private62 is None:
            raise SignOnError(f"sign-on refused by {self.address}: {answer.response_code!r}")
        try:
            keys = SignOnKeys.decode(answer.private62)
            tmk = self.hsm.get(self.tmk_label)
            self.hsm.import_working_key(
                self._label("pik", stan),
                tmk,
                KeyUsage.PIN_ENCRYPTION,
                keys.pik_under_tmk,
                keys.pik_check_value,
            )
            self.hsm.import_working_key(
                self._label("mak", stan), tmk, KeyUsage.MAC_X9_19, keys.mak_under_tmk, keys.mak_check_value
            )
        except (Iso8583Error, HsmError) as exc:
            raise SignOnError(f"sign-on keys from {self.address} not taken: {exc}") from None
        if answer.field60 is not None and answer.field60.batch_number > 0:  # the batch to go on with
            self.journal.advance_batch(answer.field60.batch_number)
        self.journal.set_counter(_KEYS_COUNTER, stan)
        return keys.pik_check_value.hex().upper(), keys.mak_check_value.hex().upper()

    def ensure_signed_on(self) -> None:
        if self._keys() is None:
            self.sign_on()

    def pin_pad(self, pin: str, pan: str) -> bytes:
        """The PIN pad: ISO 9564 format 0 under the PIK, in the terminal's HSM (signed on first)."""
        self.ensure_signed_on()
        keys = self._keys()
        assert keys is not None
        return self.hsm.encrypt_pin(keys[0], pin, pan)

    def _signed(self, message: Message) -> Message:
        """``message`` with field 64 under the MAK; :class:`OnlineError` when it cannot be encoded (the
        card's data do not fit the profile's fields) or the terminal's key store cannot make the MAC:
        nothing is sent."""
        keys = self._keys()
        assert keys is not None, "signed on first"
        mak = keys[1]
        try:
            unsigned = replace(message, mac=bytes(8)).to_bytes()
        except ValueError as exc:  # Iso8583Error
            raise OnlineError(f"the card's data cannot be sent online: {exc}") from None
        try:
            data = with_mac(unsigned, lambda block: self.hsm.pos_mac(mak, block))
        except HsmError as exc:
            raise OnlineError(f"the terminal's MAK cannot be used: {exc}") from None
        return replace(message, mac=data[-8:])

    def _authentic(self, answer: Message) -> bool:
        """An answer with field 64 must verify under the MAK; one without may only decline. One the
        terminal's key store cannot check is not believed (an approval is then reversed)."""
        keys = self._keys()
        if answer.mac is None or keys is None:
            return not answer.approved
        mak = keys[1]
        try:
            return mac_matches(answer.to_bytes(), lambda block: self.hsm.pos_mac(mak, block))
        except HsmError:
            log.warning("terminal %s: the answer's MAC cannot be checked", self.identity.terminal_id)
            return False

    def _send(self, message: Message, timeout_s: float | None = None) -> Message:
        """Sign, send, check the answer's MAC; on ``A0`` sign on again and send once more."""
        self.ensure_signed_on()
        answer = self._exchange(self._signed(message), timeout_s)
        if answer.response_code is ResponseCode.MAC_ERROR:
            self.sign_on()
            answer = self._exchange(self._signed(message), timeout_s)
        return answer

    # --- store and forward ----------------------------------------------------------------------------
    def _queue_reversal(
        self, txn_id: str, original: Message, reason: ResponseCode, *, hold: str = "", atc: int | None = None
    ) -> Advice:
        """Persist the reversal of ``original`` (sent for ``txn_id``) before the outcome is told (``hold``
        :data:`HELD`: not sent before :meth:`release_reversal`), in place of its in-flight one (``hold``
        :data:`IN_FLIGHT`: that one, persisted before ``original`` leaves). It carries the original's STAN
        (:func:`~citycard.pos.online.reversal_request`), so it consumes none: voucher numbers run on."""
        reversal = reversal_request(original, reason=reason, repeat=False)
        return self._queue(txn_id, "reversal", reversal, reason, hold=hold, atc=atc)

    def release_reversal(self, txn_id: str) -> bool:
        """The reversal held for ``txn_id`` is to be sent (with the queue, at this contact's next flush):
        the card's log shows it never took the load. Whether one was held."""
        released = self.journal.release_advice(txn_id, "reversal")
        if released:
            log.info("terminal %s: the held reversal of %s released", self.identity.terminal_id, txn_id)
        return released

    def drop_reversal(self, txn_id: str) -> bool:
        """The reversal held for ``txn_id`` is never to be sent: the card's log shows the load. Whether one
        was held."""
        return self.journal.drop_advice(txn_id, "reversal")

    def held_reversals(self, limit: int) -> list[str]:
        """The transactions whose reversal is held, newest first, at most ``limit``."""
        return self.journal.held("reversal", limit)

    def _queue(
        self,
        txn_id: str,
        kind: str,
        message: Message,
        reason: ResponseCode,
        *,
        hold: str = "",
        atc: int | None = None,
    ) -> Advice:
        """Persist ``message`` in the store-and-forward queue, its PAN sealed apart (``atc``: the pending
        transaction's, in the same commit)."""
        assert message.pan is not None and message.stan is not None
        without_pan = replace(message, pan=None, mac=bytes(8)).to_bytes().hex().upper()
        sealed = seal_pan(self.data_key, message.pan).hex().upper()
        return self.journal.queue_advice(
            txn_id, kind, message.stan, str(reason), without_pan, sealed, self.clock(), hold=hold, atc=atc
        )

    def _advice_message(self, advice: Advice) -> Message:
        message = parse(decode_message(bytes.fromhex(advice.message)))
        pan = unseal_pan(self.data_key, bytes.fromhex(advice.pan_sealed))
        if advice.kind == "reversal":
            message = replace(message, mti="0400" if advice.attempts == 0 else "0420")
            entry = self.journal.get(advice.txn_id)
            if message.stan != entry.stan:  # queued before 2026-12-08: a STAN of its own, the original in 61
                message = replace(message, stan=entry.stan, original=self._repeated_61(entry))
        return replace(message, pan=pan)

    def _repeated_61(self, entry: JournalEntry) -> str | None:
        """Field 61 of ``entry``'s 0200, as its reversal repeats it: a void's names its purchase."""
        if entry.kind != "void" or not entry.original_txn_id:
            return None
        return self._original(self.journal.get(entry.original_txn_id)).digits()

    def flush(self, limit: int = _SAF_BATCH) -> FlushResult:
        """Send the queued reversals, oldest first, until one gets no answer (it stays queued); the
        in-flight reversals of transactions no longer running decided first (``settle_in_flight``)."""
        self.journal.settle_in_flight()
        answered: list[Advice] = []
        for advice in self.journal.advices(limit=limit):
            try:
                message = self._advice_message(advice)  # 0400 the first time it leaves, then 0420
            except (Iso8583Error, SealError) as exc:  # a row this terminal wrote: a bug or a damaged file
                raise OnlineError(f"queued reversal of {advice.txn_id} unreadable: {exc}") from None
            try:
                answer = self._send(message)
            except NotSent:
                break  # it never left: still the first attempt
            except (NoAnswer, MalformedResponse):
                self.journal.advice_sending(advice.saf_id)
                break
            sending = self.journal.advice_sending(advice.saf_id)
            if answer.response_code is None or answer.response_code in _RETRY_CODES:
                break
            if not self._authentic(answer):
                break
            self.journal.advice_answered(advice.saf_id, str(answer.response_code))
            answered.append(replace(sending, response_code=str(answer.response_code)))
        return FlushResult(tuple(answered), *self.journal.queue_counts())

    # --- transactions -----------------------------------------------------------------------------------
    def authorize(
        self,
        kind: OnlineKind,
        request: OnlineRequest,
        entry: JournalEntry,
        interface: str,
        follows: JournalEntry | None = None,
        source: SourceAccount | None = None,
    ) -> OnlineResponse:
        """The :class:`~citycard.pos.online.OnlineHost` call: the queue flushed, then the 0200 of ``entry``
        (11 its STAN, 60.2 its batch; a void's 61 names ``follows``); no answer: the reversal is queued, and
        the kernel goes on unable to go online."""
        self.flush()
        original = self._original(follows) if follows is not None else None
        try:
            message = authorization_request(
                kind,
                request,
                identity=self.identity,
                stan=entry.stan,
                batch=entry.batch,
                interface=interface,
                original=original,
                service_ref=entry.service_ref if kind is OnlineKind.PURCHASE else "",
                source=source,
            )
        except ValueError as exc:  # the card's data do not fit the profile's fields: nothing is sent
            raise OnlineError(f"the card's data cannot be sent online: {exc}") from None
        atc = None
        if kind.row.processing_code in _EC_LOADS:  # a load torn by a stopped terminal: the log needs its ATC
            found = tlv.decode_dict(request.field55, duplicates=True).get("9F36", b"")
            atc = int.from_bytes(found, "big") if found else None
        return self._online(entry.txn_id, message, atc)

    def _original(self, entry: JournalEntry) -> Original:
        """Field 61 for a follow-up of ``entry``: its batch, STAN and the date it went online."""
        record = self.journal.online_record(txn_id=entry.txn_id)
        if record is None or not record.rrn:
            raise OnlineError(f"{entry.txn_id} was not approved online here: nothing to void or refund")
        return Original(entry.batch, entry.stan, record.date_mmdd)

    def _online(self, txn_id: str, message: Message, atc: int | None = None) -> OnlineResponse:
        """``message`` sent and answered for ``txn_id``; ``atc``: the card's, journaled with the in-flight
        reversal (an EC load's: its load log can then prove the load absent)."""
        now = self.clock()
        posts = message.mti == "0200" and message.processing_code != _BALANCE_INQUIRY
        if posts:  # a terminal stopped before the outcome is recorded leaves its reversal behind
            self._queue_reversal(txn_id, message, ResponseCode.ERROR, hold=IN_FLIGHT, atc=atc)
        try:
            answer = self._send(message)
        except NotSent:
            self.journal.forget_in_flight(txn_id)
            return OnlineResponse(unable_to_go_online=True)  # nothing left: nothing to reverse
        except OnlineError:  # no connection, or a sign-on refused (before it left, or after an A0): unposted
            self.journal.forget_in_flight(txn_id)
            raise
        except (NoAnswer, MalformedResponse):
            self.journal.record_online(OnlineRecord(txn_id, "", "", "", now.strftime("%m%d")))
            if message.mti == "0200":
                self._queue_reversal(txn_id, message, ResponseCode.ISSUER_TIMEOUT)
            return OnlineResponse(unable_to_go_online=True)
        self.journal.record_online(
            OnlineRecord(
                txn_id,
                answer.rrn or "",
                answer.auth_code or "",
                str(answer.response_code),
                now.strftime("%m%d"),
            )
        )
        if not self._authentic(answer):  # an approval we cannot believe may still have been posted
            if message.mti == "0200":
                self._queue_reversal(txn_id, message, ResponseCode.SYSTEM_MALFUNCTION)
            return OnlineResponse(unable_to_go_online=True)
        if posts and not answer.approved:  # declined: nothing was posted
            self.journal.forget_in_flight(txn_id)
        if answer.response_code is ResponseCode.BATCH_MISMATCH:  # the acquirer settled this batch: a
            with contextlib.suppress(OnlineError):  # sign-on names the one to go on with (the next request
                self.sign_on()  # goes in it; this one stays declined, journaled in the closed batch)
                closed = message.field60.batch_number if message.field60 is not None else 0
                self.batch_closed = (closed, self.journal.current_batch())
        self._sent[txn_id] = message
        self.answers[txn_id] = answer
        response = online_response(answer)
        self._answered[txn_id] = response
        return response

    def completed(self, entry: JournalEntry, outcome: Outcome) -> Outcome:
        """After the kernel, before the outcome is recorded and shown; returns the outcome to record.

        - An approval the card refused (AAC at the second GENERATE AC) is reversed (39 = ``06``), the
          reversal persisted before the outcome is shown. Its field 55 carries the card's script results
          (``9F5B``) when the kernel has them, so the issuer lets an EC load stand whose ``PUT DATA 9F79``
          the card applied.
        - An approval the card never answered (torn: pulled, or the second GENERATE AC failed, before the
          card gave its TC) is reversed the same way and recorded declined, not ``torn``: the issuer's
          scripts (an EC load's ``PUT DATA 9F79``, template 72) come after that command, so the chip took
          nothing, and a purchase it never accepted must not stand. A purchase, void or inquiry whose card
          gave its TC and left during the issuer's scripts after it (template 72: a PIN change, a block) is
          approved online: the card accepted it, the scripts do not change the outcome (EMV Book 3 §10.10),
          and recorded torn it would be "recovered" from the card's log at the next tap and exported for
          clearing as an offline purchase beside its online authorization. An EC load whose card is gone
          *after* its TC stays ``torn``: whether it took the load is known only from its load log at the
          next tap (docs/terminal.md), so the load's reversal is persisted **held** now, and that tap
          releases it (:meth:`release_reversal`: the card never took the load) or drops it
          (:meth:`drop_reversal`)."""
        sent = self._sent.pop(entry.txn_id, None)
        response = self._answered.pop(entry.txn_id, None)
        if sent is None or response is None or response.response_code not in ("00", "10", "11"):
            return outcome
        if outcome.kind is OutcomeKind.TERMINATED:
            tc = outcome.cid is not None and outcome.cid & 0xC0 == 0x40 and bool(outcome.cryptogram)
            if tc and sent.processing_code in _EC_LOADS:
                self._queue_reversal(entry.txn_id, sent, ResponseCode.ERROR, hold=HELD)
                reason = f"{outcome.reason}; the load's reversal held until the card's load log is read"
                return replace(outcome, reason=reason)
            if tc:  # the card took the issuer's approval: only the scripts after its TC were cut short
                reason = f"approved online; the card left during the issuer's scripts ({outcome.reason})"
                return replace(outcome, kind=OutcomeKind.APPROVED_ONLINE, reason=reason, torn=False)
            if sent.processing_code == _BALANCE_INQUIRY:
                return outcome
            self._queue_reversal(entry.txn_id, sent, ResponseCode.ERROR)
            reason = f"{outcome.reason}: the card did not complete the issuer's approval; reversal queued"
            return replace(outcome, kind=OutcomeKind.DECLINED_ONLINE, reason=reason, torn=False)
        if outcome.kind not in (OutcomeKind.DECLINED_ONLINE, OutcomeKind.DECLINED_OFFLINE):
            return outcome
        if outcome.script_results and sent.icc is not None:
            icc = IccData(sent.icc.raw + tlv.encode("9F5B", outcome.script_results))
            sent = replace(sent, icc=icc)
        self._queue_reversal(entry.txn_id, sent, ResponseCode.ERROR)
        return outcome

    def refund(self, original: JournalEntry, amount_fen: int) -> tuple[JournalEntry, str]:
        """A refund (退货, 0220 200000/25) of all or part of ``original``, an online purchase of this
        terminal: no card (its PAN sealed in the journal), 61 = its batch, STAN and date. Journaled as a
        transaction of its own (``refund``, linked to ``original``); returns it and the response code. A
        refund that gets no answer is queued (store-and-forward, 0220 again) and journaled approved: the
        acquirer takes it. Refused here, nothing sent (:class:`RefundRefused`): a refund of a purchase
        voided here, or of more than is left of it after the refunds journaled here (those approved, or
        not finished: they may stand). The acquirer checks the same on its records."""
        kind = OnlineKind.REFUND
        assert 0 < amount_fen <= original.amount_fen
        follow_ups = [e for e in self.journal.follow_ups_of(original.txn_id) if e.state in FOLLOW_UP_STANDS]
        void = next((e for e in follow_ups if e.kind == "void"), None)
        if void is not None:
            voided = f"{original.txn_id} is voided ({void.txn_id}, {void.state})"
            raise RefundRefused(f"{voided}: nothing to refund")
        left = original.amount_fen - sum(e.amount_fen for e in follow_ups if e.kind == "refund")
        if amount_fen > left:
            raise RefundRefused(f"{original.txn_id}: only CNY {format_amount(left)} of it is left to refund")
        where = self._original(original)
        try:
            pan = unseal_pan(self.data_key, bytes.fromhex(original.pan_sealed))
        except (SealError, ValueError):
            raise OnlineError(f"{original.txn_id}: the journal holds no sealed PAN for it") from None
        self.flush()
        now = self.clock()
        card = {k: getattr(original, k) for k in ("pan_masked", "pan_token", "pan_sealed", "psn")}
        card["original_txn_id"] = original.txn_id
        entry = self.journal.begin(kind.name.lower(), original.interface, amount_fen, now, "", **card)
        request = OnlineRequest(
            pan=pan,
            psn=original.psn,
            track2=b"",
            amount_fen=amount_fen,
            transaction_type=0x20,
            field55=b"",
            pin_block=None,
            expiry=original.expiry,
        )
        message = authorization_request(
            kind,
            request,
            identity=self.identity,
            stan=entry.stan,
            batch=entry.batch,
            interface=original.interface,
            original=where,
        )
        response = self._online(entry.txn_id, message)
        self._sent.pop(entry.txn_id, None)
        self._answered.pop(entry.txn_id, None)
        if response.unable_to_go_online:
            self._queue(entry.txn_id, "advice", message, ResponseCode.APPROVED)
            done = self.journal.finish(
                entry.txn_id, "approved", outcome="approved online", reason="queued (SAF)"
            )
            return done, "00"
        code = response.response_code or "unable to go online"
        state: State = "approved" if code in ("00", "10", "11") else "declined"
        outcome = "approved online" if state == "approved" else "declined online"
        done = self.journal.finish(entry.txn_id, state, outcome=outcome, reason=f"host answered {code}")
        return done, code

    def upload(self) -> UploadResult:
        """Each offline EC purchase not yet acknowledged, as a 0320 (its own STAN and batch), one by one."""
        self.flush()
        acknowledged: list[str] = []
        failed: list[tuple[str, str]] = []
        for entry in self.journal.offline_purchases():
            try:
                pan = unseal_pan(self.data_key, bytes.fromhex(entry.pan_sealed))
            except (SealError, ValueError):
                failed.append((entry.txn_id, "no sealed PAN in the journal"))
                continue
            message = upload_request(
                identity=self.identity,
                pan=pan,
                psn=entry.psn,
                expiry=entry.expiry,
                amount_fen=entry.amount_fen,
                stan=entry.stan,
                batch=entry.batch,
                interface=entry.interface,
                field55=bytes.fromhex(entry.field55),
                service_ref=entry.service_ref,
                bus=BusRide.of(entry.line, entry.vehicle),
            )
            try:
                answer = self._send(message)
            except LinkError as exc:
                failed.append((entry.txn_id, str(exc)))
                break
            if (
                answer.response_code is None
                or answer.response_code in _RETRY_CODES
                or not self._authentic(answer)
            ):
                failed.append((entry.txn_id, f"answered {answer.response_code!r}"))
                continue
            self.journal.uploaded(entry.txn_id, str(answer.response_code))
            acknowledged.append(entry.txn_id)
        return UploadResult(tuple(acknowledged), tuple(failed))

    def settle(self) -> BatchSettlement:
        """批结算: upload the offline purchases first, then a 0500 with the batch's totals (48); when the
        acquirer answers 00 (balanced) the batch is closed and the next one begins; 95 leaves it open."""
        uploaded = self.upload()
        batch = self.journal.current_batch()
        totals = BatchTotals(*self.journal.batch_totals(batch))
        request = SettlementRequest(
            mti="0500",
            stan=self.journal.next_stan(),
            terminal_id=self.identity.terminal_id,
            merchant_id=self.identity.merchant_id,
            additional_data=totals.field48(),
            currency="156",
            field60=Field60("00", batch, "201"),
            mac=bytes(8),
        )
        answer = self._send(request)
        if not self._authentic(answer):
            raise OnlineError(f"the acquirer's 0510 for batch {batch} fails its MAC")
        code = str(answer.response_code)
        try:
            host_totals: BatchTotals | None = BatchTotals.parse(answer.additional_data)[0]
        except Iso8583Error:
            host_totals = None
        if code == "00":
            return BatchSettlement(batch, totals, code, host_totals, self.journal.close_batch(), uploaded)
        if answer.response_code is not ResponseCode.RECONCILE_ERROR:
            return BatchSettlement(batch, totals, code, host_totals, None, uploaded)
        records = self._batch_upload(batch)  # out of balance: the acquirer's records rule
        new_batch = self.journal.close_batch() if records is not None else None
        return BatchSettlement(batch, totals, code, host_totals, new_batch, uploaded, records)

    def _batch_upload(self, batch: int) -> int | None:
        """批上送 after a 95: each online transaction the batch's totals count as a 0320 (60.3 201; its 3, 4,
        11, 37), then the end (0320, 60.3 202, 48 the count). The records sent once the end is acknowledged
        (the acquirer then closes the batch, its own records ruling), or once the acquirer answers 77 (it
        closed the batch already: an end whose answer this terminal never recorded); None when one is not
        acknowledged (the batch stays open: settle again)."""
        entries = self.journal.batch_online(batch)
        for entry in entries:
            record = self.journal.online_record(txn_id=entry.txn_id)
            message = batch_upload_record(
                OnlineKind(entry.kind),  # purchase, void or refund: the journal's kinds are the rows' names
                identity=self.identity,
                amount_fen=entry.amount_fen,
                stan=entry.stan,
                batch=batch,
                rrn=record.rrn if record is not None else "",
            )
            code = self._upload_answer(message)
            if code is not ResponseCode.APPROVED:
                return len(entries) if code is ResponseCode.BATCH_MISMATCH else None
        end = batch_upload_end(
            identity=self.identity, stan=self.journal.next_stan(), batch=batch, records=len(entries)
        )
        closed = self._upload_answer(end) in (ResponseCode.APPROVED, ResponseCode.BATCH_MISMATCH)
        return len(entries) if closed else None

    def _upload_answer(self, message: Message) -> ResponseCode | None:
        """``message`` sent; its answer's 39, or None when the answer's MAC does not verify."""
        answer = self._send(message)
        return answer.response_code if self._authentic(answer) else None

    def echo(self) -> Message:
        request = echo_request(
            self.identity, stan=self.journal.next_stan(), batch=self.journal.current_batch()
        )
        return self._exchange(request)
