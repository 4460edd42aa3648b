"""The vpcd bridge, exercised through the real pcscd + vpcd driver + pyscard (CI starts pcscd)."""

from __future__ import annotations

import threading

import pytest

from citycard.pcsc.vpcd import parse_address

from tests.pcsc.pcsc_helpers import connect_reader, require_vpcd, served


class EchoCard:
    """A minimal card: answers ``00 B0`` with its counter, anything else with 6D00."""

    def __init__(self) -> None:
        self.powered = 0
        self.counter = 0
        self.lock = threading.Lock()

    def power_on(self) -> bytes:
        self.powered += 1
        return bytes.fromhex("3B6800000073C84013009000")

    def power_off(self) -> None:
        pass

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\x00\xb0":
            self.counter += 1
            return self.counter.to_bytes(2, "big") + b"\x90\x00"
        return b"\x6d\x00"


def test_parse_address() -> None:
    assert parse_address("35963") == ("127.0.0.1", 35963)
    assert parse_address("localhost:35964") == ("localhost", 35964)
    with pytest.raises(ValueError):
        parse_address("host:notaport")
    with pytest.raises(ValueError):
        parse_address("70000")


@pytest.mark.pcsc
def test_card_appears_in_pcsc_and_answers() -> None:
    require_vpcd()
    card = EchoCard()
    persisted = []
    with served(card, after_command=lambda: persisted.append(card.counter)) as result:
        conn = connect_reader()
        assert bytes(conn.getATR()) == bytes.fromhex("3B6800000073C84013009000")
        data, sw1, sw2 = conn.transmit([0x00, 0xB0, 0x00, 0x00, 0x02])
        assert (bytes(data), sw1, sw2) == (b"\x00\x01", 0x90, 0x00)
        data, sw1, sw2 = conn.transmit([0x80, 0xCA, 0x9F, 0x79, 0x00])
        assert (sw1, sw2) == (0x6D, 0x00)
        conn.disconnect()
    assert result["stats"].apdus == 2
    assert card.powered >= 1
    assert persisted and persisted[-1] == card.counter == 1  # saved after the APDU that changed it
