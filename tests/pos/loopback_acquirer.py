"""A small acquirer for the terminal's tests, on a real loopback socket, in front of the **real**
``IssuerService``: sign-on (working keys made under the TMK in the platform HSM), field 64 checked and set
under the MAK, the PIN translated from the PIK to the bank's zone PIN key, 0200 / 0220 / 0400 / 0420 turned
into the issuer's authorization requests (request id = terminal, batch, STAN: a retry is the same id),
reversals matched by field 61, 0320 kept and acknowledged.

It stands in for the acquirer and switch of issue 8 (``citycard.hosts.acquirer``, ``citycard.hosts.switch``)
until they land; it is not a stub of the issuer: every answer is the issuer's. ``drop`` makes it post a
request and then not answer (the response lost on the way back).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from citycard.center.model import tmk_label
from citycard.codec.iso8583 import (
    AdviceResponse,
    AuthorizationResponse,
    BatchUploadResponse,
    IccData,
    Message,
    NetworkManagementResponse,
    ResponseCode,
    ReversalResponse,
    mac_matches,
    response_mti,
    with_mac,
)
from citycard.codec.iso8583.signon import SignOnKeys
from citycard.hsm import KeyUsage
from citycard.hsm.injection import inject_terminal_master_key
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest
from citycard.issuer.handlers import IssuerService
from citycard.net.server import Iso8583Server

KINDS = {
    ("000000", "22"): AuthorizationKind.PURCHASE,
    ("310000", "01"): AuthorizationKind.BALANCE_INQUIRY,
    ("600000", "45"): AuthorizationKind.EC_LOAD,
    ("630000", "46"): AuthorizationKind.EC_CASH_LOAD,
}


def inject_tmk(platform: SoftHsm, terminal: SoftHsm, tid: str) -> None:
    """``citycard terminal add``'s key injection: the same TMK in both HSMs."""
    inject_terminal_master_key(platform, terminal, tmk_label(tid))


@dataclass
class LoopbackAcquirer:
    issuer: IssuerService
    hsm: SoftHsm
    bank: str = "ICBC"
    drop: int = 0  # answers to drop after posting (0200 only)
    corrupt_arpc: int = 0  # answers whose ARPC (91) is damaged on the way: the card refuses the approval
    received: list[Message] = field(default_factory=list)
    uploads: dict[tuple[str, int, int], Message] = field(default_factory=dict)
    _generation: int = 0
    _rrn: int = 0
    _rrns: dict[tuple[str, int, int], str] = field(default_factory=dict)

    def _mak(self, tid: str):
        return self.hsm.get(f"mak-{tid}-{self._generation}")

    def _sign(self, message: Message) -> Message:
        mak = self._mak(message.terminal_id)
        data = with_mac(replace(message, mac=bytes(8)).to_bytes(), lambda b: self.hsm.pos_mac(mak, b))
        return replace(message, mac=data[-8:])

    async def mac_check(self, request: Message, data: bytes) -> bool:
        if request.mti == "0800":
            return True
        try:
            mak = self._mak(request.terminal_id)
        except Exception:
            return False
        return request.mac is not None and mac_matches(data, lambda b: self.hsm.pos_mac(mak, b))

    async def handle(self, request: Message) -> Message | None:
        self.received.append(request)
        if request.mti == "0800":
            return self._sign_on(request)
        if request.mti == "0320":
            key = (request.terminal_id, request.field60.batch_number, request.stan)
            self.uploads.setdefault(key, request)
            return self._sign(
                BatchUploadResponse(
                    mti="0330",
                    stan=request.stan,
                    response_code=ResponseCode.APPROVED,
                    terminal_id=request.terminal_id,
                    merchant_id=request.merchant_id,
                )
            )
        answer = await asyncio.to_thread(self._authorize, request)
        if request.mti == "0200" and self.drop > 0:
            self.drop -= 1
            return None
        if request.mti == "0200" and self.corrupt_arpc > 0 and answer.icc is not None:
            self.corrupt_arpc -= 1
            raw = bytearray(answer.icc.raw)
            at = raw.index(0x91) + 2  # first byte of the ARPC
            raw[at] ^= 0xFF
            answer = replace(answer, icc=IccData(bytes(raw)))
        return self._sign(answer)

    def _sign_on(self, request: Message) -> Message:
        tid = request.terminal_id
        self._generation += 1
        tmk = self.hsm.get(tmk_label(tid))
        pik = self.hsm.generate_working_key(f"pik-{tid}-{self._generation}", tmk, KeyUsage.PIN_ENCRYPTION)
        mak = self.hsm.generate_working_key(f"mak-{tid}-{self._generation}", tmk, KeyUsage.MAC_X9_19)
        keys = SignOnKeys(pik.encrypted, pik.check_value, mak.encrypted, mak.check_value)
        return NetworkManagementResponse(
            mti="0810",
            stan=request.stan,
            response_code=ResponseCode.APPROVED,
            terminal_id=tid,
            merchant_id=request.merchant_id,
            field60=request.field60,
            private62=keys.encode(),
        )

    def _request_id(self, tid: str, batch: int, stan: int) -> str:
        key = (tid, batch, stan)
        if key not in self._rrns:
            self._rrn += 1
            self._rrns[key] = f"{self._rrn:012d}"
        return f"01000001-{self._rrns[key]}"

    def _authorize(self, request: Message) -> Message:
        tid, f60 = request.terminal_id, request.field60
        request_id = self._request_id(tid, f60.batch_number, request.stan)
        pin = request.pin_block
        if pin is not None:
            pik = self.hsm.get(f"pik-{tid}-{self._generation}")
            pin = self.hsm.translate_pin_block(
                pik, self.hsm.get(f"{self.bank.lower()}-zpk"), pin, request.pan
            )
        common = dict(
            pan=request.pan,
            psn=(request.card_sequence_number or "001")[-2:],
            field55=request.icc.raw if request.icc is not None else b"",
            stan=f"{request.stan:06d}",
            terminal_id=tid,
            merchant_id=request.merchant_id,
        )
        if request.mti in ("0400", "0420"):
            batch, stan = int(request.original[:6]), int(request.original[6:12])
            original = self._request_id(tid, batch, stan)
            issued = self.issuer.authorize(
                AuthorizationRequest(
                    "R" + original,
                    AuthorizationKind.REVERSAL,
                    amount_fen=request.amount_fen or 0,
                    original_request_id=original,
                    **common,
                )
            )
            return ReversalResponse(
                mti=response_mti(request.mti),
                processing_code=request.processing_code,
                stan=request.stan,
                response_code=ResponseCode(issued.response_code),
                terminal_id=tid,
                merchant_id=request.merchant_id,
            )
        kind = KINDS[(request.processing_code, f60.message_type_code)]
        issued = self.issuer.authorize(
            AuthorizationRequest(
                request_id, kind, amount_fen=request.amount_fen or 0, pin_block=pin, **common
            )
        )
        response_class = AdviceResponse if request.mti == "0220" else AuthorizationResponse
        return response_class(
            mti=response_mti(request.mti),
            processing_code=request.processing_code,
            amount_fen=request.amount_fen,
            stan=request.stan,
            rrn=request_id[-12:],
            auth_code=issued.authorization_code or None,
            response_code=ResponseCode(issued.response_code),
            terminal_id=tid,
            merchant_id=request.merchant_id,
            icc=IccData(issued.field55) if issued.field55 else None,
            balance=f"1002156C{issued.balance_fen:012d}"
            if kind is AuthorizationKind.BALANCE_INQUIRY and issued.balance_fen is not None
            else None,
        )

    def server(self) -> Iso8583Server:
        return Iso8583Server(self.handle, mac_check=self.mac_check)


@contextmanager
def serving(acquirer: LoopbackAcquirer) -> Iterator[int]:
    """The acquirer on 127.0.0.1, a free port, in a thread of its own (the terminal's client has its own)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = acquirer.server()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server.port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
