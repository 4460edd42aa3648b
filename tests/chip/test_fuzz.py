"""Hypothesis: any bytes sent as an APDU get a status word, and change the image only when they were a
valid state-changing command that succeeded (9000) or a wrong PIN (63Cx)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citycard.chip.card import Card
from citycard.chip.image import CardImage

# Commands that may write non-volatile memory: GPO, GENERATE AC, VERIFY, script commands.
_STATE_CHANGING = {(0x80, 0xA8), (0x80, 0xAE), (0x00, 0x20)} | {
    (cla, ins) for cla in (0x04, 0x84) for ins in (0xDA, 0x1E, 0x18, 0x16, 0x24)
}
_HEADERS = [bytes.fromhex(x) for x in ("00A4", "00B2", "80A8", "80CA", "80AE", "0082", "0088", "0084", "0020",
                                       "84DA", "04DA", "841E", "8418", "8416", "8424")]  # fmt: skip

_NAMES = [b"1PAY.SYS.DDF01", b"2PAY.SYS.DDF01"] + [
    bytes.fromhex(aid) for aid in ("A000000333010101", "A000000333010102", "A0000003330101", "A000000333")
]
_GET_DATA = ["9F79", "9F77", "9F78", "9F6D", "9F51", "9F36", "9F13", "9F17", "9F4F", "DF4F", "9F5D", "5A"]


def _case2(header: str, le: int = 0) -> bytes:
    return bytes.fromhex(header) + bytes((le,))


def _case4(header: str, data: bytes) -> bytes:
    return bytes.fromhex(header) + bytes((len(data),)) + data + b"\x00"


# Well-formed commands a terminal sends (the ones that must not change the image as well as the ones
# that may), so that the property is exercised on accepted commands and not only on refused bytes.
valid = st.one_of(
    st.builds(lambda n, p2: _case4(f"00A404{p2:02X}", n), st.sampled_from(_NAMES), st.sampled_from((0, 2))),
    st.builds(lambda r, s: bytes((0x00, 0xB2, r, s << 3 | 4, 0x00)), st.integers(0, 5), st.integers(0, 12)),
    st.builds(lambda tag: _case2(f"80CA{tag.rjust(4, '0')}"), st.sampled_from(_GET_DATA)),
    st.builds(lambda un: _case4("00880000", un), st.binary(min_size=4, max_size=4)),
    st.just(_case2("00840000", 8)),
    st.builds(lambda tail: _case4("80A80000", b"\x83\x09" + tail), st.binary(min_size=9, max_size=9)),
    st.builds(lambda p1, data: _case4(f"80AE{p1:02X}00", data), st.sampled_from((0x00, 0x40, 0x80, 0x50)),
              st.binary(min_size=32, max_size=32) | st.binary(min_size=21, max_size=21)),
    st.builds(lambda block: _case4("00200080", block), st.binary(min_size=8, max_size=8)),
)  # fmt: skip


def _mutate(command: bytes, at: int, value: int, cut: int) -> bytes:
    """One byte changed, then maybe truncated or extended: near-valid commands."""
    out = bytearray(command)
    out[at % len(out)] = value
    return bytes(out[: len(out) - cut] if cut >= 0 else out + bytes(-cut))


apdus = st.one_of(
    valid,
    st.builds(_mutate, valid, st.integers(0, 300), st.integers(0, 255), st.integers(-3, 3)),
    st.binary(max_size=300),
    st.builds(lambda head, rest: head + rest, st.sampled_from(_HEADERS), st.binary(max_size=80)),
    st.builds(
        lambda head, p1p2, data: head + p1p2 + bytes((len(data),)) + data + b"\x00",
        st.sampled_from(_HEADERS),
        st.binary(min_size=2, max_size=2),
        st.binary(min_size=1, max_size=60),
    ),
)

_STATES = ("fresh", "selected", "after_gpo", "after_arqc", "contactless_selected", "after_qpboc_arqc")


def _card_in(state: str, image_json: bytes, h: Any, demo_keys: Any) -> Card:
    image = CardImage.from_json(image_json)
    card = Card(image, h.counter_rng())
    t = h.Terminal(card, demo_keys)
    if state in ("contactless_selected", "after_qpboc_arqc"):
        card.power_on("contactless")
        t.select(h.DEBIT)
        if state == "after_qpboc_arqc":
            t.gpo(h.qpboc_pdol_data(50_000))
        return card
    card.power_on()
    if state == "fresh":
        return card
    t.select(h.DEBIT)
    if state in ("after_gpo", "after_arqc"):
        t.gpo_contact(100, ec=True)
    if state == "after_arqc":
        t.generate_ac(0x80, h.cdol1_data(100))
    return card


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.sampled_from(_STATES), commands=st.lists(apdus, min_size=1, max_size=4))
def test_any_bytes_get_a_status_word(
    state: str, commands: list[bytes], registered_image: bytes, h: Any, demo_keys: Any
) -> None:
    card = _card_in(state, registered_image, h, demo_keys)
    for raw in commands:
        before = card.image.to_json()
        out = card.transmit(raw)
        assert len(out) >= 2
        sw = int.from_bytes(out[-2:], "big")
        assert sw != 0x6F00, f"unexpected internal error for {raw.hex()}"
        if card.image.to_json() != before:
            assert len(raw) >= 4 and (raw[0], raw[1]) in _STATE_CHANGING, raw.hex()
            assert sw == 0x9000 or sw & 0xFFF0 == 0x63C0, (raw.hex(), hex(sw))
        else:
            assert not card.image.journal
