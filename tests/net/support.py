"""Messages and helpers shared by the network tests: a purchase, an echo test, their answers, a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from citycard.codec.iso8583 import (
    AuthorizationRequest,
    AuthorizationResponse,
    Field60,
    Message,
    NetworkManagementRequest,
    NetworkManagementResponse,
    ResponseCode,
    response_mti,
    with_mac,
)
from citycard.net.loop import run as run_loop

TERMINAL = "10000019"
MERCHANT = "850100082410002"
DEADLINE_S = 60.0
"""No network test may run longer: a hung server or link fails the test instead of the suite."""


def run(coro: Coroutine[Any, Any, None], deadline_s: float = DEADLINE_S) -> None:
    """Run one test's coroutine on a fresh event loop of the hosts' kind (``citycard.net.loop``), failing
    it after ``deadline_s``."""

    async def bounded() -> None:
        async with asyncio.timeout(deadline_s):
            await coro

    run_loop(bounded())


def purchase(stan: int, amount_fen: int = 1250, *, terminal: str = TERMINAL, mac: bool = False) -> Message:
    return AuthorizationRequest(
        mti="0200",
        pan="6224242900000113",
        processing_code="000000",
        amount_fen=amount_fen,
        stan=stan,
        pos_entry_mode="071",
        condition_code="00",
        terminal_id=terminal,
        merchant_id=MERCHANT,
        currency="156",
        field60=Field60("22", 24),
        mac=bytes(8) if mac else None,
    )


def echo_test(stan: int) -> Message:
    return NetworkManagementRequest(
        mti="0820", stan=stan, terminal_id=TERMINAL, merchant_id=MERCHANT, field60=Field60("00", 24, "301")
    )


def answer(request: Message, code: ResponseCode = ResponseCode.APPROVED) -> Message:
    """The answer a trivial host gives: the request's keys and amount echoed, 39 = ``code``."""
    mti = response_mti(request.mti)
    if mti in NetworkManagementResponse.MTIS:
        return NetworkManagementResponse(
            mti=mti,
            stan=request.stan,
            response_code=code,
            terminal_id=request.terminal_id,
            merchant_id=request.merchant_id,
            field60=request.field60,
        )
    return AuthorizationResponse(
        mti=mti,
        processing_code=request.processing_code,
        amount_fen=request.amount_fen,
        stan=request.stan,
        response_code=code,
        terminal_id=request.terminal_id,
        merchant_id=request.merchant_id,
    )


async def echo_handler(request: Message) -> Message:
    return answer(request)


def signed(message: Message, mac: Callable[[bytes], bytes]) -> Message:
    """``message`` with field 64 set to ``mac`` over its MAC block (the terminal's HSM computes it)."""
    placeholder = replace(message, mac=bytes(8))
    return replace(message, mac=with_mac(placeholder.to_bytes(), mac)[-8:])
