"""An issuing bank's front end: host-to-host ISO 8583 requests in, ``IssuerService.authorize`` behind.

One front end serves ONE bank (``citycard serve issuer --bank CODE``). It is an
:class:`~citycard.net.server.Iso8583Server` whose handler turns each request of the host-to-host legs
(``docs/network.md`` "The issuer front end"; the UnionPay POS profile of ``docs/iso8583.md``) into the
issuer's :class:`~citycard.issuer.commands.AuthorizationRequest`, runs it in a bounded pool of worker
threads (the service is synchronous SQLAlchemy), and answers with the issuer's decision:

====================================  ===================================================================
request                               answer
====================================  ===================================================================
0200 purchase / balance / EC loads    0210: 39, 38 auth code, 37 and 32 echoed, 55 (ARPC, scripts), 54
0200 620000 without 55                0210: the other account's leg of an EC load from a non-designated
                                      account (PIN, debit; request id ``D`` + 32-37, :func:`debit_leg`)
0400 / 0420 reversal of one of them   0410 / 0430: 39 (``00`` also when there was nothing to reverse)
0820 echo test (60.3 = 301)           0830 ``00``, answered here
a PAN of another bank                 ``15`` (no such issuer), nothing posted
field 32 or 37 missing, a field the   ``30`` (format error), nothing posted (the issuer's
issuer cannot use (MalformedRequest)  ``MalformedRequest``; the codec already answered a message that
                                      does not decode at all)
a PIN block that does not             ``99`` (PIN format error), nothing posted
decipher under the bank's ZPK
a transaction we do not carry         ``40`` (function not supported): 0320, 0500, sign-on
====================================  ===================================================================

**Group commit** (``hosts.groups``). Each worker thread answers a *group* of requests in one database
transaction (``IssuerService.authorize_many``): a request that arrives while every worker is busy waits in
the front end, and a worker that becomes free takes all that wait (up to ``max_group``), ordered by card so
that concurrent groups lock cards in one order, a card's requests in their order of arrival. Every request
keeps its own idempotency key, checks and stored answer; nobody is answered before the group's commit (a
crash loses no answered request); if the group cannot commit, each of its requests runs alone, so one
failing request never takes another's answer with it. One request at a time is a group of one.

The idempotency key is field 32 (acquiring institution) + ``-`` + 37 (RRN); a reversal's is ``R`` + that,
naming the original's (``NETWORK.md``); a void (0200, 60.1 = 23) or refund (0220, 60.1 = 25) names its
original by the RRN the acquirer appends to field 61 (original batch n6, trace n6, date n4, RRN n12). An
acquirer that repeats a request gets the issuer's stored answer, and a reversal repeated as 0420 is
applied once. The kind comes from the table of transactions
(``codec.iso8583.messages.transaction_type``: processing code 3, condition code 25, 60.1).

Field 54 of a balance inquiry is one 20-character additional amount (ISO 8583:1987 field 54 layout, as
UnionPay POS terminals read it): account type ``10`` (savings), amount type ``02`` (available balance),
currency ``156``, ``C`` (credit) or ``D`` (debit), 12 digits of fen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from citycard.codec.iso8583 import (
    AdviceRequest,
    AuthorizationRequest,
    Iso8583Error,
    Message,
    NetworkManagementRequest,
    ResponseCode,
    ReversalRequest,
    TransactionType,
    service_reference,
    transaction_type,
)
from citycard.codec.money import format_amount
from citycard.codec.pan import mask_pan
from citycard.codec.tlv import decode, encode
from citycard.issuer import commands
from citycard.issuer.commands import AuthorizationKind, MalformedRequest
from citycard.issuer.handlers import IssuerService
from citycard.issuer.usecases.authorize import MAX_GROUP
from citycard.net.server import Iso8583Server, ServerLimits
from citycard.switch import RoutingTable

from .answers import answer
from .groups import Groups, grouped_line
from .routing_reload import DEFAULT_INTERVAL_S, RoutingReload
from .zone import ZoneMac, is_key_exchange

__all__ = [
    "DEFAULT_WORKERS",
    "KINDS",
    "IssuerFrontEnd",
    "IssuerFrontEndStats",
    "balance_field",
    "debit_leg",
    "request_id",
    "to_authorization",
]

log = logging.getLogger(__name__)

KINDS: Final[dict[str, str]] = {
    "purchase": "PURCHASE",
    "balance inquiry": "BALANCE_INQUIRY",
    "EC load, designated account": "EC_LOAD",
    "EC load, cash": "EC_CASH_LOAD",
    "EC load, other account": "EC_LOAD_OTHER",  # the EC card's leg; without 55 the other account's
    "void": "VOID",
    "refund": "REFUND",
}
"""Transaction (``codec.iso8583.messages.TRANSACTIONS`` name) → ``AuthorizationKind`` member name; a kind
the issuer does not have (yet) is answered ``40``."""

DEFAULT_WORKERS: Final = 1
"""Groups (database transactions) of a front end at once, by default: one writer, and whatever arrives while
it writes goes in its next transaction. Measured end to end (docs/performance.md, "e2e", 2026-12-06): one
worker costs a quarter less CPU per authorization in every process than four, whose groups were mostly of
one request, and answers more per second at a lower p99. More workers only help when one transaction waits
on something other than the server's CPU (a lock held elsewhere)."""
_FOLLOW_UPS: Final = frozenset({"void", "refund"})
"""Kinds whose original is named in field 61 (the original's RRN after its batch, trace and date)."""
_MAX_FIELD55: Final = 255
"""Field 55 of a response (LLLVAR b..255, docs/iso8583.md)."""


@dataclass(slots=True)
class IssuerFrontEndStats:
    """Counters since start."""

    authorizations: int = 0
    """Requests handed to the issuer (retries included)."""
    not_ours: int = 0
    """Requests for a card of another bank, answered 15."""
    malformed: int = 0
    """Requests answered 30 before the issuer was called."""
    unsupported: int = 0
    """Requests answered 40."""
    echoes: int = 0


def request_id(message: Message) -> str:
    """The issuer's idempotency key: field 32 + ``-`` + field 37 (:class:`MalformedRequest` if absent)."""
    if not message.acquirer_id:
        raise MalformedRequest("32", "the acquiring institution (field 32) is missing")
    if not message.rrn:
        raise MalformedRequest("37", "the retrieval reference number (field 37) is missing")
    return f"{message.acquirer_id}-{message.rrn}"


def _original_request_id(message: Message) -> str:
    """The request a void or refund follows up: 32 + ``-`` + the original's RRN, which the acquirer puts
    after the terminal's original batch n6, trace n6 and date n4 in field 61 (:class:`MalformedRequest`
    when it is not there)."""
    digits = message.original or ""
    if len(digits) < 28:
        raise MalformedRequest("61", "a void or refund carries its original's RRN after batch, trace, date")
    return f"{message.acquirer_id}-{digits[16:28]}"


_OTHER_ACCOUNT: Final = "EC load, other account"


def debit_leg(message: Message) -> bool:
    """Whether ``message`` (or the reversal of it) is the other account's leg of an EC load from a
    non-designated account (620000/91/47): the leg the switch sends without field 55 (the chip data are
    the EC card's and go to its issuer only). Its request id is ``D`` + 32-37, so that both legs of one
    load have their own ids when both accounts are at one bank."""
    return _is_debit_leg(message, transaction_type(message))


def _is_debit_leg(message: Message, row: TransactionType | None) -> bool:
    """:func:`debit_leg` with the message's row of the table of transactions already looked up."""
    return row is not None and row.name == _OTHER_ACCOUNT and message.icc is None


def _psn(message: Message, kind: AuthorizationKind) -> str:
    """The card sequence number: field 23 (n3, ``001``), else 5F34 in field 55; a reversal without either
    uses ``00`` (the issuer reverses by the original's request id and never reads it), and so does the
    other account's leg of a load (a keyed or swiped card has none; the issuer finds it by its PAN)."""
    if message.card_sequence_number is not None:
        return message.card_sequence_number[-2:]
    psn = message.icc.get("5F34") if message.icc is not None else None
    if psn is not None and len(psn) == 1:
        return psn.hex()
    if kind in (AuthorizationKind.REVERSAL, AuthorizationKind.EC_LOAD_OTHER_DEBIT):
        return "00"
    raise MalformedRequest("23", "no card sequence number (field 23, or 5F34 in field 55)")


def to_authorization(
    message: Message, kind: AuthorizationKind, *, debit: bool | None = None
) -> commands.AuthorizationRequest:
    """The issuer's request for ``message`` (:class:`MalformedRequest` naming the field it cannot use);
    ``debit``: whether it is a :func:`debit_leg`, when the caller knows already (else looked up)."""
    pan = message.card_number
    if pan is None:
        raise MalformedRequest("2", "no card number (field 2 or 35)")
    if debit is None:
        debit = debit_leg(message)
    base = ("D" if debit else "") + request_id(message)
    reversal = kind is AuthorizationKind.REVERSAL
    original = base if reversal else None
    if kind.value in _FOLLOW_UPS:
        original = _original_request_id(message)
    return commands.AuthorizationRequest(
        request_id=f"R{base}" if reversal else base,
        kind=kind,
        pan=pan,
        psn=_psn(message, kind),
        amount_fen=message.amount_fen or 0,
        field55=message.icc.raw if message.icc is not None else b"",
        stan=f"{message.stan or 0:06d}",
        terminal_id=message.terminal_id or "",
        merchant_id=message.merchant_id or "",
        pin_block=message.pin_block,
        original_request_id=original,
        service_ref=_service_ref(message, kind),
    )


def _service_ref(message: Message, kind: AuthorizationKind) -> str | None:
    """Field 48 of a purchase at a public-service counter, as text (``HR-…``); :class:`MalformedRequest`
    for 48 when it is not that layout, or not on a purchase."""
    try:
        reference = service_reference(message.additional_data)
    except Iso8583Error as exc:
        raise MalformedRequest("48", exc.reason) from None
    if reference is not None and kind is not AuthorizationKind.PURCHASE:
        raise MalformedRequest("48", "only a purchase carries a public-service reference")
    return None if reference is None else reference.text


def balance_field(balance_fen: int) -> str:
    """Field 54 for a balance (module docstring): ``1002156C000000012345``."""
    sign = "C" if balance_fen >= 0 else "D"
    return f"1002156{sign}{abs(balance_fen):012d}"


def _response_field55(data: bytes) -> bytes:
    """The issuer's field 55, or its ARPC alone when scripts would make it longer than the field allows."""
    if len(data) <= _MAX_FIELD55:
        return data
    log.warning("response field 55 of %d bytes exceeds %d: scripts left out", len(data), _MAX_FIELD55)
    arpc = next((obj.value for obj in decode(data) if obj.tag == "91"), None)
    return encode("91", arpc) if arpc is not None else b""


class IssuerFrontEnd:
    """The front end of ``bank_code`` (module docstring). ``async with IssuerFrontEnd(...) as front:``
    listens (``front.port``) and, on exit, stops taking requests, lets those in flight finish and waits for
    the worker threads (an authorization is never cut in the middle of posting)."""

    def __init__(
        self,
        service: IssuerService,
        bank_code: str,
        table: RoutingTable,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int = DEFAULT_WORKERS,
        max_group: int = MAX_GROUP,  # 64: under load, twice the old 32 (docs/performance.md)
        limits: ServerLimits | None = None,
        zone: ZoneMac | None = None,
        reload: Callable[[], RoutingTable] | None = None,
        reload_interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        assert workers > 0 and 0 < max_group <= MAX_GROUP
        assert table.member(bank_code) is not None, f"bank {bank_code} is not in the routing table"
        self.bank_code = bank_code
        self.table = table
        self.stats = IssuerFrontEndStats()
        self._service = service
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"issuer-{bank_code}")
        self._groups: Groups[commands.AuthorizationRequest, commands.AuthorizationResponse] = Groups(
            self._executor,
            service.authorize_many,
            workers=workers,
            max_group=max_group,
            order=lambda request: request.pan,  # concurrent groups lock cards in one order
        )
        self.zone = zone  # field 64 on the switch leg (hosts.zone); bootstrap always gives it
        self.reload = (  # a BIN added while it runs is this bank's at once (hosts.routing_reload)
            None
            if reload is None
            else RoutingReload(
                reload, lambda: self.table, self._use_table, interval_s=reload_interval_s, name=bank_code
            )
        )
        if zone is None:
            self.server = Iso8583Server(self.handle, host=host, port=port, limits=limits)
        else:
            self.server = Iso8583Server(
                self._signed_handle, host=host, port=port, limits=limits, mac_check=zone.check_request
            )

    @property
    def port(self) -> int:
        return self.server.port

    def status(self) -> str:
        """One line for an operator (``citycard serve issuer`` prints it when it changes)."""
        st = self.stats
        server = self.server.stats.summary(self.server.open_connections)
        line = f"issuer {self.bank_code}: {server}; {st.authorizations:,} to the issuer service"
        for count, what in ((st.malformed, "30 (malformed)"), (st.not_ours, "15 (not this bank's card)")):
            if count:
                line += f", {count:,} {what}"
        return line + (f", {st.unsupported:,} 40 (not supported)" if st.unsupported else "")

    async def start(self) -> None:
        await self.server.start()
        if self.reload is not None:
            await self.reload.start()

    @property
    def grouped(self) -> dict[str, tuple[int, int]]:
        """(database transactions, requests in them) since start, by kind of group (``hosts.groups``)."""
        return {"authorizations": self._groups.counts()}

    async def stop(self) -> None:
        if self.reload is not None:
            await self.reload.stop()
        await self.server.stop()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        log.info("issuer front end %s stopped: %s", self.bank_code, grouped_line(self.grouped))

    async def __aenter__(self) -> IssuerFrontEnd:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reload_routing(self) -> bool:
        """Read the routing table now (SIGHUP); True when it changed."""
        return False if self.reload is None else await self.reload.reload_now()

    def _use_table(self, table: RoutingTable) -> None:
        if table.member(self.bank_code) is None:  # the bank is gone from the database: keep serving as was
            log.error("routing table without bank %s: not applied", self.bank_code)
            return
        self.table = table

    async def _signed_handle(self, message: Message) -> Message | None:
        """:meth:`handle` behind the server's check of the request's MAC, its answer MACed for the switch."""
        assert self.zone is not None
        response = await self.handle(message)
        return None if response is None else self.zone.sign(response)

    async def handle(self, message: Message) -> Message | None:
        """The answer to one request (module docstring)."""
        if isinstance(message, NetworkManagementRequest):
            if message.field60 is not None and message.field60.network_code == "301":
                self.stats.echoes += 1
                return answer(message, ResponseCode.APPROVED)
            if self.zone is not None and is_key_exchange(message):  # its MAC under the current ZAK checked
                return self.zone.accept(message)
            return self._unsupported(message)
        if not isinstance(message, AuthorizationRequest | AdviceRequest | ReversalRequest):
            return self._unsupported(message)
        kind, debit = self._kind(message)
        if kind is None:
            return self._unsupported(message)
        pan = message.card_number
        if pan is not None:
            owner = self.table.route(pan)
            if owner is None or owner.bank_code != self.bank_code:
                self.stats.not_ours += 1
                return answer(message, ResponseCode.NO_SUCH_ISSUER)
        try:
            request = to_authorization(message, kind, debit=debit)
        except MalformedRequest as exc:
            self.stats.malformed += 1
            log.info("%s stan %s refused 30: %s", message.mti, message.stan, exc)
            return answer(message, ResponseCode.FORMAT_ERROR)
        self.stats.authorizations += 1
        response = await self._groups.submit(request)
        if log.isEnabledFor(logging.INFO):  # the decision as a log line (``serve issuer --verbose``)
            log.info(
                "%s %s %s stan %s rrn %s terminal %s card %s amount %s: %s %s",
                self.bank_code,
                message.mti,
                kind.value,
                request.stan,
                message.rrn,
                request.terminal_id,
                mask_pan(request.pan),
                format_amount(request.amount_fen),
                response.response_code,
                response.reason or ("approved" if response.approved else "declined"),
            )
        return self._answer(message, kind, response)

    def _kind(self, message: Message) -> tuple[AuthorizationKind | None, bool]:
        """The issuer's kind of ``message`` (None: not one it carries) and whether it is a
        :func:`debit_leg`, from one look-up in the table of transactions."""
        row = transaction_type(message)
        debit = _is_debit_leg(message, row)
        if isinstance(message, ReversalRequest):
            return AuthorizationKind.REVERSAL, debit
        if debit:
            return AuthorizationKind.EC_LOAD_OTHER_DEBIT, debit
        name = KINDS.get(row.name) if row is not None else None
        return (AuthorizationKind.__members__.get(name) if name is not None else None), debit

    def _unsupported(self, message: Message) -> Message:
        self.stats.unsupported += 1
        return answer(message, ResponseCode.FUNCTION_NOT_SUPPORTED)

    def _answer(
        self, message: Message, kind: AuthorizationKind, response: commands.AuthorizationResponse
    ) -> Message:
        extra: dict[int, str | bytes] = {}
        if response.authorization_code:
            extra[38] = response.authorization_code
        field55 = _response_field55(response.field55)
        if field55:
            extra[55] = field55
        if kind is AuthorizationKind.BALANCE_INQUIRY and response.balance_fen is not None:
            extra[54] = balance_field(response.balance_fen)
        return answer(message, ResponseCode(response.response_code), extra)
