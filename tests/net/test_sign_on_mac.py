"""Field 64 over a real socket with keys from sign-on: the host's HSM makes the terminal's MAK under the
terminal master key, the terminal's HSM imports it; a terminal with another MAK is answered A0 and the
service is not called (nothing posted)."""

from __future__ import annotations

from citycard.codec.iso8583 import Message, ResponseCode, Tpdu, mac_matches
from citycard.hsm import KeyUsage
from citycard.hsm.soft import SoftHsm
from citycard.net.link import Iso8583Link, LinkLimits
from citycard.net.server import Iso8583Server

from tests.net.support import answer, purchase, run, signed

TMK_COMPONENTS = [bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), bytes.fromhex("11" * 16)]
FAST = LinkLimits(timeout_s=5, min_backoff_s=0.01, max_backoff_s=0.1)


def test_a_terminal_with_the_sign_on_mak_is_served_and_one_with_another_mak_gets_a0() -> None:
    host, terminal, rogue = (SoftHsm(bytes([n]) * 32) for n in (1, 2, 3))
    for hsm in (host, terminal, rogue):
        hsm.import_components("tmk", KeyUsage.KEK, TMK_COMPONENTS)
    made = host.generate_working_key("mak-10000019", host.get("tmk"), KeyUsage.MAC_X9_19)
    mak = terminal.import_working_key(
        "mak", terminal.get("tmk"), KeyUsage.MAC_X9_19, made.encrypted, made.check_value
    )
    other = rogue.generate_working_key("mak", rogue.get("tmk"), KeyUsage.MAC_X9_19).handle
    posted: list[Message] = []

    async def service(request: Message) -> Message:
        posted.append(request)
        return answer(request)

    async def check(request: Message, message: bytes) -> bool:
        key = host.get(f"mak-{request.terminal_id}")
        return request.mac is not None and mac_matches(message, lambda block: host.pos_mac(key, block))

    async def scenario() -> None:
        async with Iso8583Server(service, mac_check=check) as server:
            async with Iso8583Link("127.0.0.1", server.port, tpdu=Tpdu(6, 1), limits=FAST) as link:
                good = await link.request(signed(purchase(1, mac=True), lambda b: terminal.pos_mac(mak, b)))
                bad = await link.request(signed(purchase(2, mac=True), lambda b: rogue.pos_mac(other, b)))
                unsigned = await link.request(purchase(3))
            assert good.response_code == ResponseCode.APPROVED
            assert bad.response_code == ResponseCode.MAC_ERROR and bad.stan == 2
            assert unsigned.response_code == ResponseCode.MAC_ERROR
            assert [request.stan for request in posted] == [1]
            assert server.stats.mac_errors == 2

    run(scenario())
