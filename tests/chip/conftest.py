"""Fixtures for the card emulator tests: demo keys, personalised images, and a small terminal driver."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from citycard.chip.card import Card
from citycard.chip.image import CardImage
from citycard.chip.personalise import ProductProfile, personalise
from citycard.codec.money import bcd_amount
from citycard.codec.tlv import decode_dict
from citycard.crypto.derivation import derive_icc_mk_a, derive_pboc_session_key
from citycard.demokeys import DemoKeys

PSE = b"1PAY.SYS.DDF01".hex()
PPSE = b"2PAY.SYS.DDF01".hex()
DEBIT = "A000000333010101"
CREDIT = "A000000333010102"


def counter_rng(seed: bytes = b"chip") -> Callable[[int], bytes]:
    """A deterministic random source for reproducible tests."""
    state = {"n": 0}

    def rng(n: int) -> bytes:
        out = b""
        while len(out) < n:
            state["n"] += 1
            out += hashlib.sha256(seed + state["n"].to_bytes(8, "big")).digest()
        return out[:n]

    return rng


def apdu(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@dataclass
class Resp:
    data: bytes
    sw: int

    @property
    def tags(self) -> dict[str, bytes]:
        return decode_dict(self.data)


def cdol1_data(
    amount_fen: int = 100,
    *,
    un: bytes = b"\x11\x22\x33\x44",
    currency: str = "0156",
    date: str = "261125",
    time: str = "120000",
    tvr: bytes = bytes(5),
    merchant: bytes = b"CITY BUS".ljust(20, b" "),
) -> bytes:
    return (
        bcd_amount(amount_fen)
        + bytes(6)
        + bytes.fromhex("0156")
        + tvr
        + bytes.fromhex(currency)
        + bytes.fromhex(date)
        + b"\x00"
        + un
        + bytes.fromhex(time)
        + merchant
    )


def qpboc_pdol_data(
    amount_fen: int = 200, *, ttq: str = "20000000", currency: str = "0156", un: bytes = b"\xa1\xb2\xc3\xd4"
) -> bytes:
    return (
        bytes.fromhex(ttq)
        + b"\x01"
        + bcd_amount(amount_fen)
        + bytes(6)
        + bytes.fromhex("0156")
        + bytes(5)
        + bytes.fromhex(currency)
        + bytes.fromhex("261125")
        + b"\x00"
        + un
        + bytes.fromhex("083000")
        + b"BUS LINE 1".ljust(20, b" ")
    )


@dataclass
class Terminal:
    """Drives a card APDU by APDU, the way a kernel would, with issuer-side key material at hand."""

    card: Card
    keys: DemoKeys
    pan: str = ""
    psn: str = "01"
    log: list[tuple[bytes, Resp]] = field(default_factory=list)

    def send(self, command: bytes | str) -> Resp:
        raw = apdu(command) if isinstance(command, str) else command
        out = self.card.transmit(raw)
        resp = Resp(out[:-2], int.from_bytes(out[-2:], "big"))
        self.log.append((raw, resp))
        return resp

    def select(self, name_hex: str, p2: int = 0) -> Resp:
        name = bytes.fromhex(name_hex)
        return self.send(bytes((0x00, 0xA4, 0x04, p2, len(name))) + name + b"\x00")

    def read(self, sfi: int, record: int) -> Resp:
        return self.send(bytes((0x00, 0xB2, record, sfi << 3 | 4, 0x00)))

    def gpo(self, pdol_data: bytes) -> Resp:
        body = b"\x83" + bytes((len(pdol_data),)) + pdol_data
        return self.send(bytes((0x80, 0xA8, 0, 0, len(body))) + body + b"\x00")

    def gpo_contact(self, amount_fen: int = 100, ec: bool = True, currency: str = "0156") -> Resp:
        return self.gpo((b"\x01" if ec else b"\x00") + bcd_amount(amount_fen) + bytes.fromhex(currency))

    def generate_ac(self, p1: int, data: bytes) -> Resp:
        return self.send(bytes((0x80, 0xAE, p1, 0, len(data))) + data + b"\x00")

    def get_data(self, tag: str) -> Resp:
        return self.send(apdu(f"80CA{tag.rjust(4, '0')}00"))

    def balance(self) -> int:
        resp = self.get_data("9F79")
        assert resp.sw == 0x9000
        return int(resp.data[3:].hex())

    def start_contact(self, amount_fen: int = 100, ec: bool = True, aid: str = DEBIT) -> Resp:
        self.card.power_on("contact")
        assert self.select(aid).sw == 0x9000
        resp = self.gpo_contact(amount_fen, ec)
        assert resp.sw == 0x9000, hex(resp.sw)
        return resp

    # -- issuer side ---------------------------------------------------------------------------------
    def udk(self, which: str) -> bytes:
        imk = {"ac": self.keys.imk_ac, "mac": self.keys.imk_mac, "enc": self.keys.imk_enc}[which]
        return derive_icc_mk_a(imk, self.pan, self.psn)

    def session_key(self, which: str, atc: int) -> bytes:
        return derive_pboc_session_key(self.udk(which), atc)

    def online_arqc(self, amount_fen: int = 0) -> tuple[int, bytes]:
        """Contact transaction up to an ARQC: (ATC, ARQC)."""
        self.start_contact(amount_fen, ec=False)
        resp = self.generate_ac(0x80, cdol1_data(amount_fen))
        assert resp.sw == 0x9000
        tags = resp.tags
        assert tags["9F27"] == b"\x80"
        return int.from_bytes(tags["9F36"], "big"), tags["9F26"]


@pytest.fixture(scope="session")
def demo_keys() -> DemoKeys:
    return DemoKeys.generate(counter_rng(b"keys"))


@pytest.fixture(scope="session")
def registered_image(demo_keys: DemoKeys) -> bytes:
    profile = ProductProfile(
        registered=True, holder_name="ZHANG SAN", opening_balance_fen=10_000, ec_single_limit_fen=50_000
    )
    return personalise(profile, 42, demo_keys).to_json()


@pytest.fixture(scope="session")
def dual_image(demo_keys: DemoKeys) -> bytes:
    return personalise(ProductProfile(dual=True, opening_balance_fen=500), 7, demo_keys).to_json()


@pytest.fixture
def image(registered_image: bytes) -> CardImage:
    return CardImage.from_json(registered_image)


@pytest.fixture
def card(image: CardImage) -> Card:
    return Card(image, counter_rng())


@pytest.fixture
def term(card: Card, demo_keys: DemoKeys) -> Terminal:
    app = card.image.applications[0]
    pan = app.data["5A"].hex().upper().rstrip("F")
    return Terminal(card, demo_keys, pan=pan, psn=app.data["5F34"].hex())


@pytest.fixture
def make_terminal(demo_keys: DemoKeys) -> Callable[[CardImage], Terminal]:
    def make(image: CardImage) -> Terminal:
        app = image.applications[0]
        pan = app.data["5A"].hex().upper().rstrip("F")
        return Terminal(Card(image, counter_rng()), demo_keys, pan=pan, psn=app.data["5F34"].hex())

    return make


@pytest.fixture(scope="session")
def h() -> object:
    """This module, so that tests can use its helpers (``h.cdol1_data(...)``) without importing it."""
    return sys.modules[__name__]
