"""Zone keys exchanged and rotated while the chain runs (``citycard.hosts.zone``; the chain of
``tests/pos/chain.py``, every leg MACed as ``citycard.bootstrap`` builds it): purchases keep flowing and are
all answered while the acquirer ↔ switch and switch ↔ ICBC keys are replaced; a key exchange with a wrong
check value is refused ``A7`` and changes nothing; the previous key is accepted for its grace time only."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from citycard.codec.iso8583 import ResponseCode, Tpdu, ZoneKeyExchange
from citycard.hosts.zone import (
    ACQUIRER_LINK,
    ZoneMac,
    key_exchange_request,
    new_zone_key,
    rotate_zone_key,
    zak_label,
)
from citycard.hsm.api import KeyNotFoundError, KeyUsage
from citycard.hsm.soft import SoftHsm
from citycard.net.link import Iso8583Link

from tests.pos.chain import PIN, chain
from tests.pos.test_online import World, _balanced


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with chain(tmp_path / "home", monkeypatch, deposit_fen=100_000) as net:
        yield World(net, tmp_path)


def test_rotation_while_purchases_flow_loses_none(world: World) -> None:
    """Purchases in this thread, one after another; the keys of both host-to-host legs replaced by an
    operator from another thread meanwhile. Every purchase is answered 00."""
    servers, hsm = world.net.servers, world.net.issuer.hsm
    codes: list[str] = []
    rotated: list[tuple[int, ResponseCode]] = []

    def operator() -> None:
        _wait(lambda: len(codes) >= 2)
        rotated.append(asyncio.run(rotate_zone_key(hsm, "ICBC", "127.0.0.1", servers["issuer"].port)))
        seen = len(codes)
        _wait(lambda: len(codes) >= seen + 2)
        rotated.append(asyncio.run(rotate_zone_key(hsm, ACQUIRER_LINK, "127.0.0.1", servers["switch"].port)))

    rotating = threading.Thread(target=operator, daemon=True)
    rotating.start()
    with world.client() as client:
        pos = world.pos(client)
        after = None
        while len(codes) < 40 and (after is None or len(codes) < after + 3):
            result = pos.purchase(world.tap(), 100, pin=lambda _: PIN)
            assert result.entry is not None
            codes.append(str(client.answers[result.entry.txn_id].response_code))
            if after is None and not rotating.is_alive():
                after = len(codes)
    rotating.join(30)
    assert rotated == [(2, ResponseCode.APPROVED), (2, ResponseCode.APPROVED)]
    assert set(codes) == {"00"} and len(codes) >= 7, codes  # none lost: no A0, no 91
    assert servers["issuer"].zone.version == 2 and servers["switch"].zones["ICBC"].version == 2
    assert servers["switch"].zones[ACQUIRER_LINK].version == 2 and servers["acquirer"].zone.version == 2
    assert world.net.status()["deposit_available_fen"] == 100_000 - 100 * len(codes)
    assert _balanced(world)


def test_a_key_exchange_with_a_wrong_check_value_is_refused_and_changes_nothing(world: World) -> None:
    servers, hsm = world.net.servers, world.net.issuer.hsm
    zone = ZoneMac.open(hsm, "ICBC")
    good = new_zone_key(hsm, "ICBC", 2)
    bad = ZoneKeyExchange(2, good.key_under_zmk, bytes(b ^ 0x01 for b in good.check_value))
    answer = asyncio.run(
        _send(servers["issuer"].port, zone.sign(key_exchange_request(bad, 9, "ZONEKEYS", "ZONEKEYS0000000")))
    )
    assert answer.response_code == ResponseCode.SECURITY_PROCESSING_FAILED
    assert servers["issuer"].zone.version == 1
    with pytest.raises(KeyNotFoundError):
        hsm.get(zak_label("ICBC", 2) + "/received")
    unsigned = key_exchange_request(good, 10, "ZONEKEYS", "ZONEKEYS0000000")  # no MAC: refused A0 first
    assert asyncio.run(_send(servers["issuer"].port, unsigned)).response_code == ResponseCode.MAC_ERROR
    assert servers["issuer"].zone.version == 1
    with world.client() as client:  # the link works on under the old key
        assert world.pos(client).purchase(world.tap(), 100, pin=lambda _: PIN).approved


def test_the_previous_key_is_accepted_for_its_grace_time_only() -> None:
    hsm = SoftHsm(bytes(32))
    now = [0.0]
    receiver = ZoneMac.open(hsm, "BOC")
    receiver = ZoneMac(hsm, "BOC", {1: receiver.key}, grace_s=60, clock=lambda: now[0])
    sender = ZoneMac.open(hsm, "BOC")
    old_signed = sender.sign(_echo_like())
    exchange = new_zone_key(hsm, "BOC", 2)
    accepted = receiver.accept(sender.sign(key_exchange_request(exchange, 1, "ZONEKEYS", "ZONEKEYS0000000")))
    assert accepted.response_code == ResponseCode.APPROVED and receiver.version == 2
    assert receiver.verifies(old_signed)  # within the grace time
    now[0] = 61.0
    assert not receiver.verifies(old_signed)  # past it
    assert receiver.verifies(ZoneMac.open(hsm, "BOC").sign(_echo_like()))  # the new key, found by open
    repeat = receiver.accept(sender.sign(key_exchange_request(exchange, 2, "ZONEKEYS", "ZONEKEYS0000000")))
    assert repeat.response_code == ResponseCode.APPROVED and receiver.version == 2  # a repeat: same answer
    older = ZoneKeyExchange(1, exchange.key_under_zmk, exchange.check_value)
    refused = receiver.accept(key_exchange_request(older, 3, "ZONEKEYS", "ZONEKEYS0000000"))
    assert refused.response_code == ResponseCode.INVALID_TRANSACTION and receiver.version == 2
    assert hsm.get(zak_label("BOC", 2)).usage is KeyUsage.MAC_X9_19


def _echo_like():  # a message to MAC
    return replace(
        key_exchange_request(ZoneKeyExchange(1, bytes(16), bytes(4)), 5, "T0000001", "M00000000000001")
    )


async def _send(port: int, message):
    async with Iso8583Link("127.0.0.1", port, tpdu=Tpdu(0, 0)) as link:
        return await link.request(message, timeout_s=10)


def _wait(check, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
