"""A test double of the switch-and-issuer (for the acquirer's unit tests only), the acquirer on a real
database and HSM, and a terminal that signs on and MACs its requests. The double applies each request id
(32-37; a reversal ``R`` + that) once, as the issuer's idempotency does, and counts every delivery."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

from citycard.acquirer import SafPolicy
from citycard.codec.iso8583 import (
    AdviceRequest,
    AdviceResponse,
    AuthorizationRequest,
    AuthorizationResponse,
    Field60,
    Message,
    NetworkManagementRequest,
    ResponseCode,
    ReversalRequest,
    ReversalResponse,
    SignOnKeys,
    Tpdu,
    encode_message,
    mac_matches,
    response_mti,
)
from citycard.db import Database
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work
from citycard.hosts.acquirer import AcquirerConfig, AcquirerHost, AcquiringBank, TerminalCheck, tmk_label
from citycard.hosts.zone import ZoneMac, zak_label
from citycard.hsm import Algorithm, Hsm, KeyUsage
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import SoftHsm
from citycard.net.link import Iso8583Link, LinkLimits
from citycard.net.server import Iso8583Server

from tests.net.support import answer as net_answer
from tests.net.support import signed

TERMINAL = "10000019"
MERCHANT = "850100082410002"
INSTITUTION = "01000001"
PAN = "6224242900000113"
TMK = [bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes.fromhex("11" * 16)]


def stored_reversal(pan: str, terminal_id: str, merchant_id: str, stan: int, amount_fen: int) -> bytes:
    """A purchase's reversal (0400, 39 = ``98``) as the acquirer queues it: the encoded ISO message."""
    message = ReversalRequest(
        mti="0400",
        pan=pan,
        processing_code="000000",
        amount_fen=amount_fen,
        stan=stan,
        pos_entry_mode="071",
        condition_code="00",
        response_code=ResponseCode.ISSUER_TIMEOUT,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        currency="156",
        field60=Field60("22", 1),
    )
    return encode_message(message.to_fields())


FAST_LINK = LinkLimits(timeout_s=5, min_backoff_s=0.01, max_backoff_s=0.05, connect_timeout_s=1)


@dataclass
class SwitchDouble:
    """Answers like an idempotent issuer behind a switch; ``mode``: ``answer``, ``silent`` (no answer),
    ``91`` (issuer unavailable)."""

    mode: str = "answer"
    zone: ZoneMac | None = None
    """The acquirer leg's zone MAC: its answers carry field 64 (an acquirer built by the composition root
    checks it); None: unMACed, as for an acquirer built without one."""
    received: list[Message] = field(default_factory=list)
    deliveries: Counter[str] = field(default_factory=Counter)
    applied: dict[str, Message] = field(default_factory=dict)
    reversed: set[str] = field(default_factory=set)

    async def handle(self, request: Message) -> Message | None:
        answer = await self._handle(request)
        return answer if answer is None or self.zone is None else self.zone.sign(answer)

    async def _handle(self, request: Message) -> Message | None:
        self.received.append(request)
        if self.mode == "silent":
            return None
        if request.mti == "0820":  # the acquirer's echo test
            return net_answer(request)
        if self.mode == "91":
            return _answer(request, ResponseCode.ISSUER_UNAVAILABLE)
        assert request.acquirer_id is not None and request.rrn is not None
        request_id = f"{request.acquirer_id}-{request.rrn}"
        if isinstance(request, ReversalRequest):
            request_id = "R" + request_id
            self.reversed.add(f"{request.acquirer_id}-{request.rrn}")
        self.deliveries[request_id] += 1
        self.applied.setdefault(request_id, request)
        return _answer(request, ResponseCode.APPROVED)

    def net_posted_fen(self) -> int:
        """What stays posted: approved purchases not reversed."""
        return sum(
            m.amount_fen or 0
            for request_id, m in self.applied.items()
            if isinstance(m, AuthorizationRequest) and request_id not in self.reversed
        )


def _answer(request: Message, code: ResponseCode) -> Message:
    mti = response_mti(request.mti)
    kind = {"0210": AuthorizationResponse, "0230": AdviceResponse}.get(mti, ReversalResponse)
    return kind(
        mti=mti,
        processing_code=request.processing_code,
        amount_fen=request.amount_fen,
        stan=request.stan,
        rrn=request.rrn,
        auth_code="123456" if code.approved else None,
        response_code=code,
        terminal_id=request.terminal_id,
        merchant_id=request.merchant_id,
    )


def platform_hsm() -> SoftHsm:
    hsm = SoftHsm(b"\x01" * 32)
    hsm.import_components(tmk_label(TERMINAL), KeyUsage.KEK, TMK)
    hsm.generate_key("B1-zpk", KeyUsage.PIN_ENCRYPTION)
    return hsm


def registry(terminal_id: str, merchant_id: str) -> TerminalCheck:
    if terminal_id != TERMINAL:
        return TerminalCheck("58")
    if merchant_id != MERCHANT:
        return TerminalCheck("03")
    return TerminalCheck(None, "B1")


def banks(code: str) -> AcquiringBank | None:
    return AcquiringBank(code, INSTITUTION, f"{code}-zpk") if code == "B1" else None


def fast_config(switch_port: int, **overrides: object) -> AcquirerConfig:
    values: dict[str, object] = {
        "switch_port": switch_port,
        "port": 0,
        "hop_timeout_s": 0.5,
        "saf_timeout_s": 0.5,
        "saf_idle_s": 0.05,
        "saf_policy": SafPolicy(min_backoff_ns=20_000_000, max_backoff_ns=100_000_000),
        "link_limits": FAST_LINK,
        "stop_timeout_s": 5,
    }
    values.update(overrides)
    return AcquirerConfig(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def acquirer(
    database: Database, hsm: SoftHsm, switch_port: int, **overrides: object
) -> AsyncIterator[AcquirerHost]:
    protection = RecordProtection.open(hsm)

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, protection)

    async with AcquirerHost(hsm, uow, registry, banks, fast_config(switch_port, **overrides)) as host:
        yield host


@asynccontextmanager
async def switch(double: SwitchDouble, port: int = 0) -> AsyncIterator[Iso8583Server]:
    async with Iso8583Server(double.handle, port=port) as server:
        yield server


class Terminal:
    """A terminal: its own HSM with the TMK, a link to the acquirer, a STAN counter, batch 1."""

    def __init__(
        self,
        link: Iso8583Link,
        terminal_id: str = TERMINAL,
        merchant_id: str = MERCHANT,
        *,
        hsm: SoftHsm | None = None,
        tmk: str = "tmk",
    ) -> None:
        if hsm is None:
            hsm = SoftHsm(b"\x02" * 32)
            hsm.import_components(tmk, KeyUsage.KEK, TMK)
        self.hsm = hsm
        self.tmk = tmk
        self.link = link
        self.terminal_id = terminal_id
        self.merchant_id = merchant_id
        self.stan = 0
        self.signed_on: Message | None = None
        """The last sign-on's 0810."""

    def next_stan(self) -> int:
        self.stan += 1
        return self.stan

    async def sign_on(self) -> SignOnKeys:
        answer = await self.link.request(
            NetworkManagementRequest(
                mti="0800",
                stan=self.next_stan(),
                terminal_id=self.terminal_id,
                merchant_id=self.merchant_id,
                field60=Field60("00", 1, "003"),
            )
        )
        assert answer.response_code == ResponseCode.APPROVED and answer.private62 is not None, answer
        self.signed_on = answer
        keys = SignOnKeys.decode(answer.private62)
        tmk = self.hsm.get(self.tmk)
        self.hsm.import_working_key(
            "pik", tmk, KeyUsage.PIN_ENCRYPTION, keys.pik_under_tmk, keys.pik_check_value, replace=True
        )
        self.hsm.import_working_key(
            "mak", tmk, KeyUsage.MAC_X9_19, keys.mak_under_tmk, keys.mak_check_value, replace=True
        )
        return keys

    def sign(self, message: Message) -> Message:
        mak = self.hsm.get("mak")
        return signed(message, lambda block: self.hsm.pos_mac(mak, block))

    def verifies(self, answer: Message) -> bool:
        mak = self.hsm.get("mak")
        return answer.mac is not None and mac_matches(
            replace(answer).to_bytes(), lambda block: self.hsm.pos_mac(mak, block)
        )

    async def send(self, message: Message, **kw: float) -> Message:
        return await self.link.request(self.sign(message), **kw)

    def purchase(self, amount_fen: int = 1250, *, stan: int | None = None, pin: str | None = None) -> Message:
        block = None
        if pin is not None:
            block = self.hsm.encrypt_pin(self.hsm.get("pik"), pin, PAN)
        return AuthorizationRequest(
            mti="0200",
            pan=PAN,
            processing_code="000000",
            amount_fen=amount_fen,
            stan=stan or self.next_stan(),
            pos_entry_mode="071",
            condition_code="00",
            terminal_id=self.terminal_id,
            merchant_id=self.merchant_id,
            currency="156",
            pin_block=block,
            field60=Field60("22", 1),
            mac=bytes(8),
        )

    def void(self, amount_fen: int = 1250, *, stan: int, original_stan: int) -> Message:
        """A void (0200, 3 = 200000, 60.1 = 23) of this terminal's purchase ``original_stan`` of batch 1,
        named in 61 (batch, trace, date 1203)."""
        return replace(
            self.purchase(amount_fen, stan=stan),
            processing_code="200000",
            field60=Field60("23", 1),
            original=f"000001{original_stan:06d}1203",
        )

    def refund(self, amount_fen: int, *, stan: int, original: str) -> Message:
        """A refund advice (0220, 60.1 = 25) of the transaction ``original`` names (field 61)."""
        return AdviceRequest(
            mti="0220",
            pan=PAN,
            processing_code="200000",
            amount_fen=amount_fen,
            stan=stan,
            pos_entry_mode="071",
            condition_code="00",
            terminal_id=self.terminal_id,
            merchant_id=self.merchant_id,
            currency="156",
            field60=Field60("25", 1),
            original=original,
            mac=bytes(8),
        )


@asynccontextmanager
async def terminal_link(
    port: int, make: Callable[[Iso8583Link], Terminal] = Terminal
) -> AsyncIterator[Terminal]:
    async with Iso8583Link("127.0.0.1", port, tpdu=Tpdu(6, 1), limits=FAST_LINK) as link:
        yield make(link)


def in_batch(message: Message, batch: int) -> Message:
    """``message`` with 60.2 = ``batch``."""
    assert message.field60 is not None
    return replace(message, field60=replace(message.field60, batch_number=batch))


@asynccontextmanager
async def signed_on(double: SwitchDouble, database: Database) -> AsyncIterator[tuple[AcquirerHost, Terminal]]:
    """A switch answering as ``double``, an acquirer on ``database`` linked to it, and a terminal signed on
    to the acquirer."""
    async with (
        switch(double) as sw,
        acquirer(database, platform_hsm(), sw.port) as host,
        terminal_link(host.port) as terminal,
    ):
        await terminal.sign_on()
        yield host, terminal


def saf_counts(database: Database) -> tuple[int, int]:
    """(pending, done) entries of the acquirer's SAF queue."""
    from citycard.acquirer import SafStatus

    with database.unit_of_work(AcquirerUnitOfWork) as uow:
        return uow.saf.count(SafStatus.PENDING), uow.saf.count(SafStatus.DONE)


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.02)


ZAK = bytes.fromhex("0123456789ABCDEF0123456789ABCDEF")[::-1]


def enter_zone_key(hsm: Hsm, link: str = "acquirer") -> ZoneMac:
    """The link's zone MAC key entered in ``hsm`` as one component (a test's way to give two HSMs, the
    acquirer process's and the switch's, the same key)."""
    hsm.import_components(zak_label(link), KeyUsage.MAC_X9_19, [ZAK], algorithm=Algorithm.TDEA)
    return ZoneMac.open(hsm, link)
