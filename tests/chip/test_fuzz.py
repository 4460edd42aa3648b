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

apdus = st.one_of(
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
