"""Anti-tearing: power lost at every write point of every state-changing command leaves the image exactly
as before or exactly as after the command once the card is powered again (docs/card-profile.md §13)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from citycard.chip.image import CardImage, PowerLoss
from citycard.crypto.cryptograms import arpc_method1, ec_load_script, script_command
from citycard.crypto.pin import PinChangeFormat, encrypt_pin_change_data, plaintext_offline_pin_block

Setup = Callable[[Any, Any], bytes]
"""Brings the card to the state before the command (using the terminal and the helpers); returns it."""


def _ec_tc(t: Any, h: Any) -> bytes:
    t.start_contact(700, ec=True)
    return bytes.fromhex("80AE400034") + h.cdol1_data(700) + b"\x00"


def _gpo_contact(t: Any, h: Any) -> bytes:
    t.card.power_on()
    t.select(h.DEBIT)
    return bytes.fromhex("80A800000B8309") + b"\x01" + bytes.fromhex("0000000001000156") + b"\x00"


def _qpboc(t: Any, h: Any) -> bytes:
    t.card.power_on("contactless")
    t.select(h.DEBIT)
    data = h.qpboc_pdol_data(300)
    return bytes((0x80, 0xA8, 0, 0, len(data) + 2, 0x83, len(data))) + data + b"\x00"


def _arqc(t: Any, h: Any) -> bytes:
    t.start_contact(0, ec=False)
    return bytes.fromhex("80AE800034") + h.cdol1_data(0) + b"\x00"


def _second_tc(t: Any, h: Any) -> bytes:
    atc, arqc = t.online_arqc()
    arpc = arpc_method1(t.session_key("ac", atc), arqc, b"00")
    return bytes.fromhex("80AE400015") + b"00" + bytes(9) + arpc + b"00" + b"\x00"


def _verify_wrong(t: Any, h: Any) -> bytes:
    t.start_contact()
    return bytes.fromhex("0020008008") + plaintext_offline_pin_block("999999")


def _verify_right_after_wrong(t: Any, h: Any) -> bytes:
    t.start_contact()
    t.send(bytes.fromhex("0020008008") + plaintext_offline_pin_block("999999"))
    return bytes.fromhex("0020008008") + plaintext_offline_pin_block("123456")


def _ec_load(t: Any, h: Any) -> bytes:
    atc, arqc = t.online_arqc()
    return ec_load_script(t.session_key("mac", atc), atc, arqc, 90_000)


def _script(header: str, data: Callable[[Any, int], bytes] = lambda t, atc: b"") -> Setup:
    def setup(t: Any, h: Any) -> bytes:
        atc, arqc = t.online_arqc()
        return script_command(t.session_key("mac", atc), bytes.fromhex(header), data(t, atc), atc, arqc)

    return setup


def _application_unblock(t: Any, h: Any) -> bytes:
    block = _script("841E0000")(t, h)
    assert t.send(block).sw == 0x9000
    t.card.power_on()
    assert t.select(h.DEBIT).sw == 0x6283  # selected, application blocked
    assert t.gpo_contact(0, ec=False).sw == 0x9000
    resp = t.generate_ac(0x80, h.cdol1_data(0))
    assert resp.sw == 0x9000 and resp.tags["9F27"] == b"\x80"
    atc, arqc = int.from_bytes(resp.tags["9F36"], "big"), resp.tags["9F26"]
    return script_command(t.session_key("mac", atc), bytes.fromhex("84180000"), b"", atc, arqc)


def _pin_unblock(t: Any, h: Any) -> bytes:
    t.start_contact()
    t.send(bytes.fromhex("0020008008") + plaintext_offline_pin_block("999999"))
    return _script("84240000")(t, h)


def _pin_change(t: Any, atc: int) -> bytes:
    return encrypt_pin_change_data(t.session_key("enc", atc), "8642", pin_format=PinChangeFormat.ISO2_ECB)


SCENARIOS: dict[str, Setup] = {
    "GPO contact (ATC)": _gpo_contact,
    "GPO qPBOC offline (ATC, EC debit, log)": _qpboc,
    "GENERATE AC TC (EC debit, log)": _ec_tc,
    "GENERATE AC ARQC": _arqc,
    "second GENERATE AC TC": _second_tc,
    "VERIFY wrong PIN": _verify_wrong,
    "VERIFY right PIN resets the counter": _verify_right_after_wrong,
    "PUT DATA 9F79 (EC load)": _ec_load,
    "PUT DATA 9F77": _script("84DA9F77", lambda t, atc: bytes.fromhex("000000200000")),
    "APPLICATION BLOCK": _script("841E0000"),
    "APPLICATION UNBLOCK": _application_unblock,
    "CARD BLOCK": _script("84160000"),
    "PIN UNBLOCK": _pin_unblock,
    "PIN CHANGE": _script("84240002", _pin_change),
}


class _Counter:
    def __init__(self, fail_at: int | None = None) -> None:
        self.labels: list[str] = []
        self.fail_at = fail_at

    def __call__(self, label: str) -> None:
        if self.fail_at is not None and len(self.labels) == self.fail_at:
            raise PowerLoss(label)
        self.labels.append(label)


def _prepared(name: str, registered_image: bytes, make_terminal: Any, h: Any) -> tuple[Any, bytes]:
    t = make_terminal(CardImage.from_json(registered_image))
    command = SCENARIOS[name](t, h)
    return t, command


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_tearing_at_every_write_point(name: str, registered_image: bytes, make_terminal: Any, h: Any) -> None:
    t, command = _prepared(name, registered_image, make_terminal, h)
    before = t.card.image.to_json()
    counter = _Counter()
    t.card.fault = counter
    out = t.card.transmit(command)
    assert out[-2:] in (b"\x90\x00", b"\x63\xc2"), out.hex()
    after = t.card.image.to_json()
    assert after != before, "the command must change the image"
    labels = counter.labels
    # Every cell the command changed has a write point in the journal and one in place, plus the commit
    # mark and the journal clear: the loop below tears at each of them.
    old, new = json.loads(before)["nvm"], json.loads(after)["nvm"]
    changed = sorted(key for key in new if new[key] != old[key])
    assert sorted(label[len("write ") :] for label in labels if label.startswith("write ")) == changed
    assert len(labels) == 2 * len(changed) + 2
    journal = len(changed)
    assert labels[journal] == "journal commit" and labels[-1] == "journal clear"
    for k in range(len(labels)):
        t, command = _prepared(name, registered_image, make_terminal, h)
        assert t.card.image.to_json() == before
        t.card.fault = _Counter(fail_at=k)
        with pytest.raises(PowerLoss):
            t.card.transmit(command)
        torn = t.card.image.to_json()
        t.card.fault = None
        assert t.card.transmit(command) == b"\x69\x85"  # unpowered until the next power-on
        t.card.power_on()
        recovered = t.card.image.to_json()
        expected = before if k <= journal else after
        assert recovered == expected, f"{name}: power lost at {labels[k]!r}"
        assert recovered != torn or k == 0  # the torn image itself was a mix or carried a journal
        torn_doc = json.loads(torn)
        assert torn_doc["journal"]["committed"] is (k > journal)
        if k <= journal:  # nothing but the journal was touched yet
            assert torn_doc["nvm"] == json.loads(before)["nvm"]


def test_torn_image_survives_serialisation(registered_image: bytes, make_terminal: Any, h: Any) -> None:
    """A card torn mid-commit and saved in that state recovers from the saved document."""
    t, command = _prepared("GENERATE AC TC (EC debit, log)", registered_image, make_terminal, h)
    t.card.fault = _Counter(fail_at=4)  # 2 journal entries, commit, balance written, log not yet
    with pytest.raises(PowerLoss):
        t.card.transmit(command)
    saved = t.card.image.to_json()
    assert b'"committed": true' in saved
    image = CardImage.from_json(saved)
    image.recover()
    t2 = make_terminal(image)
    t2.card.power_on()
    t2.select(h.DEBIT)
    assert t2.balance() == 10_000 - 700
