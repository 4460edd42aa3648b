"""The acquirer front end: the POS centre that terminals connect to (ISO 8583, UnionPay POS profile).

One :class:`~citycard.net.server.Iso8583Server` for the terminals and one
:class:`~citycard.net.link.Iso8583Link` to the switch. Per request (``docs/network.md``, "The acquirer"):

1. **MAC** (``mac_check``): field 64, ANSI X9.19 under the terminal's MAK (``terminal/<TID>/mak``, made at
   sign-on) through ``hsm.pos_mac``, on every request but the sign-on 0800; a missing or wrong MAC, or a
   terminal that never signed on, is answered ``A0`` and nothing is forwarded.
2. **Registry**: field 41 must be a registered, active terminal of the merchant in 42 (``58``/``03``
   otherwise); the merchant's acquiring bank gives field 32 (its institution id) and its zone PIN key.
3. **Sign-on** 0800 (60.3 ``003``): a PIK and a MAK made under the terminal master key
   ``terminal/<TID>/tmk`` by ``hsm.generate_working_key``; 0810 with field 62 =
   :class:`~citycard.codec.iso8583.signon.SignOnKeys`. Echo 0820 (``301``) and sign-off (``002``): 0830.
4. **Authorizations** 0200 (purchase, balance, void, EC loads): an RRN (37) from the acquirer's records
   (the same on a retry), 32 added, the PIN block (52) translated from the terminal's PIK to the bank's ZPK
   (``hsm.translate_pin_block``), 64 removed (the registry read, the RRN and the record in one transaction
   shared with the purchases that arrived meanwhile: group commit, ``hosts.groups``; the answer recorded
   likewise, a group in one statement); a void's 61 gets its original's RRN appended (batch n6,
   trace n6, date n4, original RRN n12); forwarded with a per-hop timeout. No answer (or the switch's 91):
   the reversal is queued *before* the terminal is answered 98 (timeout) or 91. An EC load from another
   account (620000) that is not approved is reversed the same way (39 = ``06``): the switch sends it in two
   legs, and a decline of the EC card's leg comes after the other account's was posted. The answer is
   relayed with 64 under the terminal's MAK.
5. **Advices** 0220 (refunds): persisted with their RRN and queued, then acknowledged 0230 ``00``;
   forwarded by the SAF task. A refund the records show the issuer would refuse is answered at once and
   not kept: its purchase declined, reversed or voided ``12``, more than is left of it after its refunds
   ``64`` (``acquirer.refund_refusal``). **Reversals** 0400/0420 from a terminal: the original is found
   by 61 (or 60.2 and 11); queued (or a tombstone recorded), then acknowledged 0410 ``00``. **Offline
   uploads** 0320 (60.1 ``36``, field 55): kept for clearing, acknowledged 0330 ``00`` per record, a repeat
   acknowledged again and not kept twice.
6. **SAF task**: drains the queue to the switch (reversals 0400, repeated as 0420; advices 0220); an entry
   is done when answered with any code but 91, 96, 98, A0, else retried after a doubling backoff.
7. **Zone MAC** (``zone``, ``citycard.hosts.zone``): everything sent to the switch carries field 64 under
   the acquirer leg's ZAK, and an answer whose MAC does not verify is treated as no answer (an A0 is
   taken as it is).
8. **The link to the switch** sends echo tests (0820, 41 = ``ACQUIRER``) after 30 s without receiving
   anything; a switch that sends nothing while requests wait 2 s, and then leaves an echo test unanswered,
   is **silent** (``net.link``): the requests waiting end unanswered (91, their reversals queued), later
   terminals are answered ``91`` at once with nothing to reverse, and the SAF task waits, as while the link
   is down, until the switch answers an echo test again.

Stopping (:meth:`AcquirerHost.stop`, Ctrl-C): the server stops taking requests and finishes those in
flight (each one's reversal is persisted before its answer, so nothing is lost), then the SAF task
finishes its batch; what is still queued stays on disk for the next start. A bank's institution id and
zone PIN key label are read once per bank (a change needs a restart, as the switch's routing table does).
Database work runs in a small thread pool so the event loop never waits on a disk. Logs name MTI, STAN,
terminal and RRN: never a PAN, a PIN block or a key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Final, TypeVar

from citycard.acquirer import (
    IN_BATCH_TOTALS,
    MAX_MOVES,
    AcquirerTransaction,
    AcquirerUnitOfWork,
    AdviceRefusal,
    BeginTransaction,
    Begun,
    GiveUp,
    QueueAdvice,
    RecordAnswer,
    ReverseAtTerminal,
    SafAnswered,
    SafEntry,
    SafFailed,
    SafKind,
    SafPolicy,
    SafStatus,
    StoreUpload,
    TransactionKey,
    TransactionKind,
    TransactionStatus,
    begin_many,
    due_entries,
    give_up,
    parse_original,
    queue_advice,
    record_answers,
    record_saf_results,
    reverse_at_terminal,
    store_upload,
)
from citycard.codec.iso8583 import (
    BATCH_UPLOAD_DETAIL,
    BATCH_UPLOAD_END,
    TRANSACTIONS,
    AdviceRequest,
    AdviceResponse,
    AuthorizationRequest,
    BatchUpload,
    BatchUploadResponse,
    BusRide,
    Iso8583Error,
    Message,
    NetworkManagementRequest,
    NetworkManagementResponse,
    ResponseCode,
    ReversalRequest,
    ReversalResponse,
    SettlementRequest,
    SettlementResponse,
    SignOnKeys,
    Tpdu,
    bus_ride,
    decode_message,
    mac_matches,
    parse,
    response_mti,
    reversal_of,
    service_reference,
    transaction_type,
)
from citycard.codec.pan import mask_pan
from citycard.hsm.api import Hsm, HsmError, KeyHandle, KeyNotFoundError, KeyUsage
from citycard.net.link import (
    Iso8583Link,
    LinkError,
    LinkLimits,
    MalformedResponse,
    NoAnswer,
    NotSent,
    Timeout,
    echo_keepalive,
)
from citycard.net.server import Iso8583Server, ServerLimits, refusal

from .groups import Groups, grouped_line
from .zone import ZoneMac

__all__ = [
    "AcquirerConfig",
    "AcquirerHost",
    "AcquiringBank",
    "BankLookup",
    "RegistryAhead",
    "RegistryInTransaction",
    "TerminalCheck",
    "TerminalRegistry",
    "mak_label",
    "pik_label",
    "tmk_label",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
_Check = tuple[BeginTransaction, Callable[[AcquirerUnitOfWork], "_Refused | str | None"]]
"""A purchase's record to begin and the registry's check of its 41/42 run first in the same transaction."""

_KINDS: Final = {
    "purchase": TransactionKind.PURCHASE,
    "balance inquiry": TransactionKind.BALANCE,
    "void": TransactionKind.VOID,
    "refund": TransactionKind.REFUND,
    "EC load, designated account": TransactionKind.EC_LOAD,
    "EC load, cash": TransactionKind.EC_CASH_LOAD,
    "EC load, other account": TransactionKind.EC_LOAD_OTHER,
    "offline EC purchase upload": TransactionKind.OFFLINE_UPLOAD,
}
"""Rows of ``codec.iso8583.TRANSACTIONS`` the acquirer serves, and the kind it records."""

_UPLOADED: Final = {
    row.message_type_code: _KINDS[row.name]
    for row in TRANSACTIONS
    if row.name in ("purchase", "void", "refund")
}
"""60.1 of a batch-upload record (批上送, after a 95) and the kind of transaction it names."""

_NOT_DELIVERED: Final = frozenset(
    {
        ResponseCode.ISSUER_UNAVAILABLE,
        ResponseCode.SYSTEM_MALFUNCTION,
        ResponseCode.ISSUER_TIMEOUT,
        ResponseCode.MAC_ERROR,
    }
)
"""Answers after which a SAF entry is sent again (NETWORK contract: 91, 96, A0; and 98, a timeout)."""


def tmk_label(terminal_id: str) -> str:
    """The terminal master key in the platform HSM (made by ``citycard terminal add``)."""
    return f"terminal/{terminal_id}/tmk"


def pik_label(terminal_id: str) -> str:
    return f"terminal/{terminal_id}/pik"


def mak_label(terminal_id: str) -> str:
    return f"terminal/{terminal_id}/mak"


@dataclass(frozen=True, slots=True)
class TerminalCheck:
    """The registry's word on fields 41/42: a refusal code (``58``, ``03``) or the acquiring bank's code."""

    refusal: str | None
    bank_code: str | None = None


@dataclass(frozen=True, slots=True)
class AcquiringBank:
    """The acquiring bank of a merchant: field 32 and the label of its zone PIN key in the HSM."""

    code: str
    institution_id: str
    zpk_label: str


TerminalRegistry = Callable[[str, str], TerminalCheck]
"""``(terminal_id, merchant_id)`` → the registry's word (blocking: run in the database pool)."""
RegistryInTransaction = Callable[[AcquirerUnitOfWork, str, str], TerminalCheck]
"""The same word read in the acquirer's own database transaction (``citycard.bootstrap``'s on the center's
tables), so that a purchase's registry read, RRN and record are one transaction."""
RegistryAhead = Callable[[AcquirerUnitOfWork, Sequence[BeginTransaction]], None]
"""What a group of purchases' registry checks will ask, read in one go in the group's transaction
(``citycard.bootstrap.acquirer_registry_ahead``; ``acquirer.begin_many``'s ``ahead``)."""
ACQUIRER_TERMINAL: Final = "ACQUIRER"
"""Field 41 of the acquirer's own echo tests on its link to the switch."""
ACQUIRER_MERCHANT: Final = "ACQUIRER0000000"

BankLookup = Callable[[str], AcquiringBank | None]
"""A bank code → the acquiring bank (blocking: run in the database pool)."""


_SETTLED_CLOCK_SLACK_NS: Final = 60 * 10**9
"""The settled batches are read back this far before the last look: another acquirer's clock may run a
little behind this one's (an NTP-kept fleet is within a second)."""


@dataclass(frozen=True, slots=True)
class AcquirerConfig:
    """The acquirer's bounds and addresses (seconds end in ``_s``)."""

    switch_host: str = "127.0.0.1"
    switch_port: int = 9584
    host: str = "127.0.0.1"
    port: int = 9583
    hop_timeout_s: float = 10.0
    """How long the answer of a forwarded request may take before the terminal is answered 98."""
    saf_timeout_s: float = 10.0
    saf_idle_s: float = 0.5
    """With nothing due, how often the SAF task looks at the queue again (a new entry wakes it at once)."""
    saf_in_flight: int = 128
    """SAF entries sent at once."""
    db_threads: int = 4
    max_group: int = 64
    """Purchases begun (and answers recorded) together in one database transaction at most (group commit,
    ``hosts.groups``)."""
    stop_timeout_s: float = 10.0
    settled_reload_s: float = 5.0
    """How often the batches settled through another acquirer on the same database are read (those settled
    here are known at once): a request into one of them is answered 77 within this long after."""
    saf_policy: SafPolicy = field(default_factory=SafPolicy)
    server_limits: ServerLimits = field(default_factory=ServerLimits)
    link_limits: LinkLimits = field(default_factory=lambda: LinkLimits(silent_after_s=2.0))
    """The link to the switch: echo tests after 30 s without receiving anything; a switch that sends nothing
    while requests wait 2 s for their answers, and leaves the echo test sent then unanswered too (hung, or a
    half-open connection), is silent, and the terminals are answered 91 at once until it answers again
    (``net.link``)."""
    tpdu: Tpdu = field(default_factory=lambda: Tpdu(destination=0x0001, source=0x0006))
    """TPDU of the link to the switch (NII: switch 0001, acquirer 0006)."""

    def __post_init__(self) -> None:
        assert min(self.hop_timeout_s, self.saf_timeout_s, self.saf_idle_s, self.stop_timeout_s) > 0
        assert self.settled_reload_s > 0
        assert 0 < self.saf_in_flight <= self.link_limits.max_pending and 0 < self.db_threads <= 64
        assert 0 < self.max_group <= MAX_MOVES


class _Refused(Exception):
    """A request answered with ``code`` without being forwarded."""

    def __init__(self, code: ResponseCode, why: str) -> None:
        super().__init__(why)
        self.code = code


class AcquirerHost:
    """The acquirer front end (module docstring). ``async with AcquirerHost(...) as host:`` listens on
    ``config.host``/``config.port`` (``host.port`` when 0 was asked) and stops on exit."""

    def __init__(
        self,
        hsm: Hsm,
        unit_of_work: Callable[[], AcquirerUnitOfWork],
        registry: TerminalRegistry,
        banks: BankLookup,
        config: AcquirerConfig | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        zone: ZoneMac | None = None,
        registry_in: RegistryInTransaction | None = None,
        registry_ahead: RegistryAhead | None = None,
    ) -> None:
        self.hsm = hsm
        self.zone = zone  # field 64 on the switch leg (hosts.zone); bootstrap always gives it
        self.config = config or AcquirerConfig()
        self._uow = unit_of_work
        self._registry = registry
        self._registry_in: RegistryInTransaction = registry_in or (lambda _uow, t, m: registry(t, m))
        self._banks = banks
        self._bank_of: dict[str, AcquiringBank] = {}  # read once per bank: institution id, ZPK label
        self._settled: dict[str, int] = {}
        """Each terminal's last batch settled balanced (read at start, at each sign-on, kept at each
        settlement): a request into it or an earlier one is answered 77 (:meth:`_check_batch`)."""
        self._clock = clock
        self._pool = ThreadPoolExecutor(self.config.db_threads, thread_name_prefix="acquirer-db")
        # group commit (hosts.groups): one group of begins and one of answers at a time, each in one
        # transaction; whatever arrives meanwhile goes in the next group
        self._begins: Groups[_Check, Begun | _Refused | str] = Groups(
            self._pool,
            lambda items: begin_many(items, self._uow, self._clock, ahead=registry_ahead),
            workers=1,
            max_group=self.config.max_group,
        )
        self._answers: Groups[RecordAnswer, AcquirerTransaction | None] = Groups(
            self._pool,
            lambda cmds: record_answers(cmds, self._uow, self._clock),
            workers=1,
            max_group=self.config.max_group,
        )
        limits = self.config.server_limits
        drain_s = max(
            limits.drain_timeout_s, self.config.hop_timeout_s + 5.0
        )  # in flight: answer or reversal
        self.server = Iso8583Server(
            self._handle,
            host=self.config.host,
            port=self.config.port,
            limits=replace(limits, drain_timeout_s=drain_s),
            mac_check=self._mac_check,
        )
        self.link = Iso8583Link(
            self.config.switch_host,
            self.config.switch_port,
            tpdu=self.config.tpdu,
            limits=self.config.link_limits,
            keepalive=echo_keepalive(
                ACQUIRER_TERMINAL, ACQUIRER_MERCHANT, None if zone is None else zone.sign
            ),
        )
        self._saf_wake = asyncio.Event()
        self._saf_task: asyncio.Task[None] | None = None
        self._settled_task: asyncio.Task[None] | None = None
        self._settled_read_ns = 0  # the clock when the settled batches were last read
        self._stopping = False
        self.saf_delivered = 0
        self.saf_retried = 0

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        self._settled_read_ns = self._clock()
        self._settled = await self._db(self._read_settled)
        await self.link.start()
        await self.server.start()
        self._saf_task = asyncio.create_task(self._saf_loop(), name="acquirer-saf")
        self._settled_task = asyncio.create_task(self._settled_loop(), name="acquirer-settled")

    async def stop(self) -> None:
        """Finish what is in flight, leave the queue on disk, close the link and the pool."""
        if self._stopping:
            return
        self._stopping = True
        await self.server.stop()
        if self._settled_task is not None:
            self._settled_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._settled_task
        self._saf_wake.set()
        if self._saf_task is not None:
            done, _ = await asyncio.wait([self._saf_task], timeout=self.config.stop_timeout_s)
            if not done:
                self._saf_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._saf_task
        await self.link.close()
        self._pool.shutdown(wait=True)
        log.info("acquirer stopped: %s", grouped_line(self.grouped))

    @property
    def grouped(self) -> dict[str, tuple[int, int]]:
        """(database transactions, requests in them) since start, by kind of group (``hosts.groups``): the
        records begun, the answers recorded."""
        return {"begins": self._begins.counts(), "answers": self._answers.counts()}

    async def __aenter__(self) -> AcquirerHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def status(self) -> str:
        """One line for an operator (``citycard serve acquirer`` prints it when it changes): the terminals'
        side, the store-and-forward deliveries, the link to the switch."""
        saf = f"{self.saf_delivered:,} reversal(s) and advice(s) delivered, {self.saf_retried:,} to repeat"
        server = self.server.stats.summary(self.server.open_connections)
        return f"acquirer: {server}; {saf}; switch {self.link.state}"

    def queued(self) -> int:
        """SAF entries not yet answered (blocking: a database read)."""
        with self._uow() as uow:
            return uow.saf.count(SafStatus.PENDING)

    async def _db(self, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, work)

    # --- MAC ------------------------------------------------------------------------------------------
    def _mak(self, terminal_id: str) -> KeyHandle | None:
        try:
            return self.hsm.get(mak_label(terminal_id))
        except KeyNotFoundError:
            return None

    async def _mac_check(self, request: Message, message: bytes) -> bool:
        if isinstance(request, NetworkManagementRequest) and request.mti == "0800":
            return True  # the sign-on comes before the terminal has a MAK
        if request.mac is None or request.terminal_id is None:
            return False
        mak = self._mak(request.terminal_id)
        if mak is None:
            return False
        return mac_matches(message, lambda block: self.hsm.pos_mac(mak, block))

    def _signed(self, answer: Message) -> Message:
        """``answer`` with field 64 under the terminal's MAK (without, if the terminal has none)."""
        assert answer.terminal_id is not None
        mak = self._mak(answer.terminal_id)
        if mak is None:
            return replace(answer, mac=None)
        return answer.signed(lambda block: self.hsm.pos_mac(mak, block))  # encoded once, for the MAC

    # --- requests -------------------------------------------------------------------------------------
    async def _handle(self, request: Message) -> Message | None:
        try:
            if isinstance(request, NetworkManagementRequest):
                return await self._network_management(request)
            if not isinstance(request, SettlementRequest):  # a settlement may be sent again once balanced
                self._check_batch(request)
            if isinstance(request, AuthorizationRequest):  # the registry read in its own transaction
                return self._signed(await self._authorize(request))
            bank = await self._check_terminal(request)
            if isinstance(request, AdviceRequest):
                return self._signed(await self._advice(request, bank))
            if isinstance(request, ReversalRequest):
                return self._signed(await self._reversal(request, bank))
            if isinstance(request, BatchUpload):
                return self._signed(await self._upload(request))
            if isinstance(request, SettlementRequest):
                return self._signed(await self._batch_settlement(request))
            raise _Refused(ResponseCode.FUNCTION_NOT_SUPPORTED, f"{request.mti} is not served")
        except _Refused as refused:
            log.info(
                "refused %s stan %s terminal %s: %s (%s)",
                request.mti,
                request.stan,
                request.terminal_id,
                refused.code,
                refused,
            )
            return self._signed(parse(refusal(replace(request, mac=None).to_fields(), refused.code)))

    def _check_batch(self, request: Message) -> None:
        """77 (batch number mismatch, sign on again) for a request whose 60.2 names a batch this terminal
        settled balanced, or an earlier one: nothing is forwarded or recorded. The sign-on answers the
        next batch, which the terminal takes (docs/iso8583.md, "Batch settlement"). The reversal of a
        transaction the batch's totals do not count (an EC load) is not refused: settling the batch did not
        close it, and the terminal may send it long after (one held for the card's load log)."""
        if request.terminal_id is None or request.field60 is None:  # not a terminal's batch to check
            return
        if isinstance(request, ReversalRequest):
            row = transaction_type(request)  # the original's row (a reversal keeps its 3, 25 and 60.1)
            kind = None if row is None else _KINDS.get(row.name)
            if kind is not None and kind not in IN_BATCH_TOTALS:
                return
        settled = self._settled.get(request.terminal_id)
        if settled is not None and request.field60.batch_number <= settled:
            raise _Refused(
                ResponseCode.BATCH_MISMATCH,
                f"batch {request.field60.batch_number} closed (batch {settled} settled): sign on again",
            )

    async def _settled_loop(self) -> None:
        """Every ``settled_reload_s``, the batches settled (here or through another acquirer on the same
        database) since the last look, less a minute for the other acquirers' clocks: a terminal's batch
        settled elsewhere is closed here too within that long, not only at its next sign-on."""
        while True:
            await asyncio.sleep(self.config.settled_reload_s)
            since = self._settled_read_ns - _SETTLED_CLOCK_SLACK_NS
            now = self._clock()
            try:
                recent = await self._db(partial(self._read_settled, since_ns=since))
            except Exception:  # the database is away: the next look reads from the same point
                log.exception("acquirer: cannot read the settled batches")
                continue
            self._settled_read_ns = now
            for terminal, batch in recent.items():
                if batch > self._settled.get(terminal, 0):
                    self._settled[terminal] = batch

    def _read_settled(self, terminal_id: str | None = None, since_ns: int | None = None) -> dict[str, int]:
        """Every terminal's last batch settled balanced (only ``terminal_id``'s, or those settled at
        ``since_ns`` or later, when given); on a worker."""
        with self._uow() as uow:
            return uow.batches.settled(terminal_id, since_ns=since_ns)

    async def _check_terminal(self, request: Message) -> AcquiringBank:
        assert request.terminal_id is not None and request.merchant_id is not None
        terminal, merchant = request.terminal_id, request.merchant_id
        check = await self._db(lambda: self._registry(terminal, merchant))
        if check.refusal is not None:
            raise _Refused(ResponseCode(check.refusal), "registry refuses 41/42")
        return await self._bank(check.bank_code)

    async def _bank(self, code: str | None) -> AcquiringBank:
        bank = None if code is None else self._bank_of.get(code)
        if bank is None and code is not None:
            bank = await self._db(lambda: self._banks(code))
            if bank is not None:
                self._bank_of[code] = bank
        if bank is None:
            raise _Refused(ResponseCode.NOT_PERMITTED_TO_TERMINAL, "the merchant has no acquiring bank")
        return bank

    async def _network_management(self, request: NetworkManagementRequest) -> Message:
        assert request.field60 is not None and request.terminal_id is not None
        network = request.field60.network_code
        keys = None
        field60 = request.field60
        if request.mti == "0800":
            if network != "003":
                raise _Refused(ResponseCode.FUNCTION_NOT_SUPPORTED, f"sign-on 60.3 {network}")
            await self._check_terminal(request)
            terminal = request.terminal_id  # its settled batch as stored (another acquirer may have settled)
            settled = (await self._db(lambda: self._read_settled(terminal))).get(terminal)
            if settled is not None:
                self._settled[terminal] = settled
                if request.field60.batch_number <= settled:  # the next batch, which the terminal takes
                    field60 = replace(request.field60, batch_number=settled + 1)
            keys = self._sign_on(terminal)  # last: a sign-on that fails before leaves the old keys
        elif network not in ("301", "002"):
            raise _Refused(ResponseCode.FUNCTION_NOT_SUPPORTED, f"0820 60.3 {network}")
        answer = NetworkManagementResponse(
            mti=response_mti(request.mti),
            stan=request.stan,
            response_code=ResponseCode.APPROVED,
            terminal_id=request.terminal_id,
            merchant_id=request.merchant_id,
            field60=field60,
            private62=None if keys is None else keys.encode(),
        )
        return answer if request.mti == "0800" else self._signed(answer)

    def _sign_on(self, terminal_id: str) -> SignOnKeys:
        try:
            tmk = self.hsm.get(tmk_label(terminal_id))
        except KeyNotFoundError:
            raise _Refused(ResponseCode.TERMINAL_NOT_REGISTERED, "no terminal master key") from None
        made = []
        for label, usage in (
            (pik_label(terminal_id), KeyUsage.PIN_ENCRYPTION),
            (mak_label(terminal_id), KeyUsage.MAC_X9_19),
        ):
            made.append(self.hsm.generate_working_key(label, tmk, usage, replace=True))  # a new sign-on
        pik, mak = made
        log.info("terminal %s signed on (MAK KCV %s)", terminal_id, mak.check_value.hex().upper())
        return SignOnKeys(pik.encrypted, pik.check_value, mak.encrypted, mak.check_value)

    # --- authorizations -------------------------------------------------------------------------------
    def _begin_command(self, request: AuthorizationRequest) -> BeginTransaction:
        """The record to begin for a 0200 (:class:`_Refused` for one the acquirer does not serve)."""
        row = transaction_type(request)
        kind = None if row is None or request.mti != "0200" else _KINDS.get(row.name)
        if kind is None or kind in (TransactionKind.REFUND, TransactionKind.OFFLINE_UPLOAD):
            raise _Refused(ResponseCode.INVALID_TRANSACTION, "not a transaction the acquirer serves")
        key = _key(request)
        original = None
        if kind == TransactionKind.VOID:
            original = parse_original(key.terminal_id, request.original)
            if original is None:
                raise _Refused(ResponseCode.NO_ORIGINAL_TRANSACTION, "a void without field 61")
            if original.batch != key.batch:  # 消费撤销 is of the current batch; a settled one is refunded
                raise _Refused(ResponseCode.INVALID_TRANSACTION, "a void of a purchase of another batch")
        return BeginTransaction(
            key,
            request.merchant_id or "",
            kind,
            request.amount_fen,
            _masked(request),
            original,
            _service_ref(request),
        )

    async def _begin(self, request: AuthorizationRequest) -> tuple[AcquiringBank, BeginTransaction, Begun]:
        """The registry's word on 41/42 (58/03 first, as for every request), then the request's own checks,
        then its record and RRN: one database transaction (``begin_checked``), shared with the purchases that
        arrived meanwhile (``begin_many``, group commit). A bank not yet known to the
        acquirer is read once (its own transaction), then the whole is run again."""
        assert request.terminal_id is not None and request.merchant_id is not None
        terminal, merchant = request.terminal_id, request.merchant_id
        try:
            command = self._begin_command(request)
        except _Refused:
            await self._check_terminal(request)  # the registry's refusal comes first
            raise
        bank: list[AcquiringBank] = []

        def check(uow: AcquirerUnitOfWork) -> _Refused | str | None:
            word = self._registry_in(uow, terminal, merchant)
            if word.refusal is not None:
                return _Refused(ResponseCode(word.refusal), "registry refuses 41/42")
            known = None if word.bank_code is None else self._bank_of.get(word.bank_code)
            if known is None:  # not read yet (or none at all: refused by _bank)
                return word.bank_code or ""
            bank.append(known)
            return None

        for _ in range(2):
            begun = await self._begins.submit((command, check))
            if isinstance(begun, _Refused):
                raise begun
            if isinstance(begun, str):
                await self._bank(begun or None)  # now cached, or refused 58
                continue
            assert isinstance(begun, Begun)
            return bank[-1], command, begun
        raise AssertionError("the bank was read and cached")

    async def _authorize(self, request: AuthorizationRequest) -> Message:
        bank, command, begun = await self._begin(request)
        key, kind = command.key, command.kind
        if begun.record is None:
            raise _Refused(ResponseCode.NO_ORIGINAL_TRANSACTION, "the original is not in the records")
        record = begun.record
        if begun.refused:
            raise _Refused(ResponseCode.INVALID_TRANSACTION, "the terminal reversed it before it came")
        if record.status == TransactionStatus.REVERSAL_QUEUED:  # given up or reversed: never again
            raise _Refused(ResponseCode(record.response_code or "91"), "reversed already")
        forwarded = request.replaced(  # only the values changed checked again
            rrn=record.rrn,
            acquirer_id=bank.institution_id,
            pin_block=self._translated_pin(request, bank),
            original=_with_original_rrn(request.original, record.original_rrn),
            mac=None,
        )
        try:
            answer = await self.link.request(self._to_switch(forwarded), timeout_s=self.config.hop_timeout_s)
            if self.zone is not None and not self.zone.answer_ok(answer):
                raise MalformedResponse(Iso8583Error("64", None, "MAC does not verify"), None)
        except asyncio.CancelledError:  # stopped past the drain time: it may be posted, reverse it first
            await asyncio.shield(self._give_up(key, forwarded))
            raise
        except NotSent as exc:  # never left: nothing can have been posted, the terminal may retry
            log.info("not sent to the switch (%s): rrn %s answered 91", exc, record.rrn)
            raise _Refused(ResponseCode.ISSUER_UNAVAILABLE, "switch not reachable") from None
        except (NoAnswer, MalformedResponse) as exc:
            code = (
                ResponseCode.ISSUER_TIMEOUT if isinstance(exc, Timeout) else ResponseCode.ISSUER_UNAVAILABLE
            )
            await self._give_up(key, forwarded, recorded=code.value)  # what the terminal is told, and a retry
            raise _Refused(
                code, f"no answer from the switch ({type(exc).__name__}): reversal queued"
            ) from None
        if answer.response_code == ResponseCode.ISSUER_UNAVAILABLE and kind != TransactionKind.BALANCE:
            # the switch lost the issuer: it may have posted
            await self._give_up(key, forwarded, recorded=ResponseCode.ISSUER_UNAVAILABLE.value)
        elif kind == TransactionKind.EC_LOAD_OTHER and answer.response_code != ResponseCode.APPROVED:
            # two legs: a decline may come from the EC card's leg after the other account's was posted
            await self._give_up(key, forwarded, ResponseCode.ERROR, recorded=str(answer.response_code))
        else:
            await self._answers.submit(RecordAnswer(key, str(answer.response_code)))
        return answer.replaced(acquirer_id=None, mac=None)

    def _to_switch(self, message: Message) -> Message:
        """``message`` as sent on the switch leg: field 64 under the zone MAC key (never stored)."""
        return message if self.zone is None else self.zone.sign(message)

    def _translated_pin(self, request: Message, bank: AcquiringBank) -> bytes | None:
        if request.pin_block is None:
            return None
        pan = request.card_number
        if pan is None:
            raise _Refused(ResponseCode.FORMAT_ERROR, "a PIN block without a PAN")
        assert request.terminal_id is not None
        try:
            pik = self.hsm.get(pik_label(request.terminal_id))
            zpk = self.hsm.get(bank.zpk_label)
            return self.hsm.translate_pin_block(pik, zpk, request.pin_block, pan)
        except KeyNotFoundError:
            raise _Refused(ResponseCode.PIN_FORMAT_ERROR, "no PIK or zone PIN key") from None
        except HsmError:
            raise _Refused(ResponseCode.PIN_FORMAT_ERROR, "the PIN block does not decipher") from None

    async def _give_up(
        self,
        key: TransactionKey,
        forwarded: Message,
        reason: ResponseCode = ResponseCode.ISSUER_TIMEOUT,
        *,
        recorded: str = "98",
    ) -> None:
        """Queue the reversal of ``forwarded`` (39 = ``reason``), the record marked with ``recorded``."""
        reversal = reversal_of(forwarded, reason).to_bytes()
        entry = await self._db(lambda: give_up(GiveUp(key, reversal, recorded), self._uow(), self._clock))
        log.info("rrn %s given up: reversal %s queued", entry.rrn, entry.id)
        self._saf_wake.set()

    # --- advices, reversals, uploads ------------------------------------------------------------------
    async def _advice(self, request: AdviceRequest, bank: AcquiringBank) -> Message:
        row = transaction_type(request)
        if row is None or _KINDS.get(row.name) != TransactionKind.REFUND:
            raise _Refused(ResponseCode.INVALID_TRANSACTION, "only refund advices are served")
        key = _key(request)
        original = parse_original(key.terminal_id, request.original)
        if original is None:
            raise _Refused(ResponseCode.NO_ORIGINAL_TRANSACTION, "a refund without field 61")

        def advice_for(rrn: str, original_rrn: str | None) -> bytes:
            forwarded = replace(
                request,
                rrn=rrn,
                acquirer_id=bank.institution_id,
                pin_block=None,
                original=_with_original_rrn(request.original, original_rrn),
                mac=None,
            )
            return forwarded.to_bytes()

        begin = BeginTransaction(
            key,
            request.merchant_id or "",
            TransactionKind.REFUND,
            request.amount_fen,
            _masked(request),
            original,
        )
        begun = await self._db(lambda: queue_advice(QueueAdvice(begin, advice_for), self._uow(), self._clock))
        if isinstance(begun, AdviceRefusal):
            raise _Refused(ResponseCode(begun.code), begun.reason)
        if begun.record is None:
            raise _Refused(ResponseCode.NO_ORIGINAL_TRANSACTION, "the original is not in the records")
        if begun.refused:
            raise _Refused(ResponseCode.INVALID_TRANSACTION, "the terminal reversed it before it came")
        self._saf_wake.set()
        return AdviceResponse(
            mti="0230",
            processing_code=request.processing_code,
            amount_fen=request.amount_fen,
            stan=request.stan,
            rrn=begun.record.rrn,
            response_code=ResponseCode.APPROVED,
            terminal_id=request.terminal_id,
            merchant_id=request.merchant_id,
        )

    async def _reversal(self, request: ReversalRequest, bank: AcquiringBank) -> Message:
        assert request.terminal_id is not None and request.response_code is not None
        original = _key(request)  # the original's 11 and 60.2 (61 of a void's reversal names the purchase)
        if request.card_number is None:
            raise _Refused(ResponseCode.FORMAT_ERROR, "a reversal names its card (field 2 or 35)")

        def reversal_for(rrn: str) -> bytes:
            return replace(request, mti="0400", rrn=rrn, acquirer_id=bank.institution_id, mac=None).to_bytes()

        command = ReverseAtTerminal(
            original, request.merchant_id or "", reversal_for, str(request.response_code)
        )
        outcome, record = await self._db(lambda: reverse_at_terminal(command, self._uow(), self._clock))
        log.info("terminal %s reversal of rrn %s: %s", request.terminal_id, record.rrn, outcome.value)
        self._saf_wake.set()
        return ReversalResponse(
            mti=response_mti(request.mti),
            processing_code=request.processing_code,
            amount_fen=request.amount_fen,
            stan=request.stan,
            rrn=record.rrn,
            response_code=ResponseCode.APPROVED,
            terminal_id=request.terminal_id,
            merchant_id=request.merchant_id,
        )

    async def _upload(self, request: BatchUpload) -> Message:
        assert request.field60 is not None
        network_code = request.field60.network_code
        if network_code == BATCH_UPLOAD_END:  # a batch out of balance, uploaded: closed, our records rule
            stored = True
            await self._close_out_of_balance(request)
        elif network_code == BATCH_UPLOAD_DETAIL:  # one of its online transactions: compared, not kept
            stored = False
            await self._compare_uploaded(request)
        else:
            if request.field60.message_type_code != "36" or request.icc is None:  # 3 and 25 are optional
                raise _Refused(ResponseCode.INVALID_TRANSACTION, "only offline EC uploads with 55 are kept")
            ride = _bus_ride(request)
            command = StoreUpload(
                _key(request),
                request.merchant_id or "",
                request.amount_fen,
                _masked(request),
                replace(request, mac=None).to_bytes(),
                _service_ref(request),
                ride.line if ride is not None else None,
                ride.vehicle if ride is not None else None,
            )
            stored = await self._db(lambda: store_upload(command, self._uow(), self._clock))
        log.info(
            "terminal %s upload stan %s %s", request.terminal_id, request.stan, "kept" if stored else "again"
        )
        return BatchUploadResponse(
            mti="0330",
            processing_code=request.processing_code,
            amount_fen=request.amount_fen,
            stan=request.stan,
            rrn=request.rrn,  # a batch-upload record names its transaction's RRN: its answer is matched by it
            response_code=ResponseCode.APPROVED,
            terminal_id=request.terminal_id,
            merchant_id=request.merchant_id,
            field60=request.field60,
        )

    def _record_settled(self, terminal: str, batch: int) -> int:
        """Close ``batch`` of ``terminal`` (blocking): the last batch it has settled."""
        with self._uow() as uow:
            last = uow.batches.record_settled(terminal, batch, self._clock())
            uow.commit()
        return last

    async def _compare_uploaded(self, request: BatchUpload) -> None:
        """A batch-upload record (批上送, after a 95): the terminal's online transaction against our record of
        it; a difference is logged for the operator (WARNING), nothing is recorded or changed."""
        assert request.field60 is not None
        kind = _UPLOADED.get(request.field60.message_type_code)
        if kind is None:
            raise _Refused(
                ResponseCode.INVALID_TRANSACTION, "a batch-upload record of a purchase, void or refund"
            )
        key = _key(request)

        def ours() -> AcquirerTransaction | None:
            with self._uow() as uow:
                return uow.transactions.get(key)

        record = await self._db(ours)
        if record is None:
            why = "we have no record of it"
        elif record.kind != kind or record.amount_fen != request.amount_fen:
            why = f"we have a {record.kind} of {record.amount_fen} fen"
        elif record.status not in (TransactionStatus.ANSWERED, TransactionStatus.PENDING) or (
            record.response_code not in (None, "00")
        ):
            why = f"ours is {record.status} ({record.response_code})"
        else:
            return
        log.warning(
            "batch upload: terminal %s batch %s stan %06d, a %s of %s fen approved there: %s",
            key.terminal_id,
            key.batch,
            key.stan,
            kind,
            request.amount_fen,
            why,
        )

    async def _close_out_of_balance(self, request: BatchUpload) -> None:
        """The end of a batch upload: the batch is closed as a balanced 0500 closes it (77 to later requests
        into it), out of balance; what it pays is what our records say (docs/iso8583.md)."""
        assert request.terminal_id is not None and request.field60 is not None
        terminal, batch = request.terminal_id, request.field60.batch_number
        self._settled[terminal] = await self._db(lambda: self._record_settled(terminal, batch))
        log.warning(
            "terminal %s batch %s closed out of balance after a batch upload of %s record(s)",
            terminal,
            batch,
            request.additional_data,
        )

    async def _batch_settlement(self, request: SettlementRequest) -> Message:
        """0500: the terminal's batch totals (48) against the acquirer's own records of that terminal and
        batch (``citycard.db.settlement_batch``): 00 balanced, 95 out of balance; 48 of the 0510 carries
        the acquirer's totals with settlement code 1 or 2 (docs/iso8583.md, "Batch settlement")."""
        from citycard.codec.iso8583.totals import BatchTotals, SettleCode

        assert request.field60 is not None and request.terminal_id is not None
        try:
            theirs, _ = BatchTotals.parse(request.additional_data)
        except Iso8583Error as exc:
            raise _Refused(ResponseCode.FORMAT_ERROR, str(exc)) from None
        terminal, batch = request.terminal_id, request.field60.batch_number

        def own() -> BatchTotals | None:
            with self._uow() as uow:
                try:
                    return uow.batches.totals(terminal, batch)
                except Iso8583Error:  # more than n3/n12 can say: cannot balance
                    return None

        ours = await self._db(own)
        balanced = ours == theirs
        log.info(
            "terminal %s batch %s settlement: %s",
            terminal,
            batch,
            "balanced" if balanced else "out of balance",
        )
        if balanced:  # the batch is closed: later requests into it are answered 77
            self._settled[terminal] = await self._db(lambda: self._record_settled(terminal, batch))
        return SettlementResponse(
            mti="0510",
            stan=request.stan,
            response_code=ResponseCode.APPROVED if balanced else ResponseCode.RECONCILE_ERROR,
            terminal_id=request.terminal_id,
            merchant_id=request.merchant_id,
            additional_data=(ours or BatchTotals()).field48(
                SettleCode.BALANCED if balanced else SettleCode.OUT_OF_BALANCE
            ),
            currency=request.currency,
            field60=request.field60,
        )

    # --- store and forward ----------------------------------------------------------------------------
    async def _saf_loop(self) -> None:
        config = self.config
        slots = asyncio.Semaphore(config.saf_in_flight)
        while not self._stopping:
            self._saf_wake.clear()
            if self.link.down is not None or self.link.silent is not None:  # the switch refuses connections
                await asyncio.sleep(config.saf_idle_s)  # or answers nothing: nothing can be delivered, so no
                continue  # entry spends an attempt (the link reconnects, or probes, by itself)
            try:
                entries = await self._db(lambda: due_entries(self._uow(), self._clock, config.saf_policy))
            except Exception:  # the database is away: try again later
                log.exception("SAF: cannot read the queue")
                entries = []
            if not entries:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(config.saf_idle_s):
                        await self._saf_wake.wait()
                continue

            async def deliver(entry: SafEntry) -> SafAnswered | SafFailed:
                async with slots:
                    return await self._deliver(entry)

            results = await asyncio.gather(*(deliver(entry) for entry in entries))
            self.saf_delivered += sum(isinstance(result, SafAnswered) for result in results)
            self.saf_retried += sum(isinstance(result, SafFailed) for result in results)
            await self._db(partial(record_saf_results, results, self._uow(), self._clock, config.saf_policy))

    async def _deliver(self, entry: SafEntry) -> SafAnswered | SafFailed:
        message = parse(decode_message(entry.message))
        if entry.kind == SafKind.REVERSAL and entry.attempts > 0:
            message = replace(message, mti="0420")  # a repeat of a reversal
        try:
            answer = await self.link.request(self._to_switch(message), timeout_s=self.config.saf_timeout_s)
        except (LinkError, Iso8583Error) as exc:
            log.info("SAF %s rrn %s attempt %s: %s", entry.kind.value, entry.rrn, entry.attempts + 1, exc)
            return SafFailed(entry.id, entry.attempts + 1)
        if self.zone is not None and not self.zone.answer_ok(answer):
            log.info("SAF %s rrn %s: the answer's MAC does not verify", entry.kind.value, entry.rrn)
            return SafFailed(entry.id, entry.attempts + 1)
        if answer.response_code is None or answer.response_code in _NOT_DELIVERED:
            code = answer.response_code
            return SafFailed(entry.id, entry.attempts + 1, None if code is None else str(code))
        return SafAnswered(entry.id, str(answer.response_code))


def _key(request: Message) -> TransactionKey:
    assert request.terminal_id is not None and request.stan is not None and request.field60 is not None
    return TransactionKey(request.terminal_id, request.field60.batch_number, request.stan)


def _masked(request: Message) -> str | None:
    pan = request.card_number
    return None if pan is None else mask_pan(pan)


def _service_ref(request: Message) -> str | None:
    """Field 48 of a payment at a public-service counter, as text (``HR-202612030017``); a field 48 of
    another layout is refused with 30 (format error) before anything is recorded."""
    try:
        reference = service_reference(request.additional_data)
    except Iso8583Error as exc:
        raise _Refused(ResponseCode.FORMAT_ERROR, str(exc)) from None
    return None if reference is None else reference.text


def _bus_ride(request: BatchUpload) -> BusRide | None:
    """Field 63 of a validator's fare upload: its bus line and vehicle; field 63 of another layout is refused
    with 30 (format error) before anything is recorded."""
    try:
        return bus_ride(request.private63)
    except Iso8583Error as exc:
        raise _Refused(ResponseCode.FORMAT_ERROR, str(exc)) from None


def _with_original_rrn(field61: str | None, original_rrn: str | None) -> str | None:
    """Field 61 on the host-to-host legs: the terminal's original batch n6, trace n6 and date n4, then the
    original's RRN n12 (so the issuer finds the transaction a void or refund follows up)."""
    if field61 is None or original_rrn is None:
        return field61
    return field61[:16].ljust(16, "0") + original_rrn
