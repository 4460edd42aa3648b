"""Issuer fixtures: a migrated database (SQLite and PostgreSQL), a software HSM, a clock, the service, and
an emulated card driven the way a terminal does (for ARQCs that come from the real chip emulator)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from citycard.chip.card import Card as ChipCard
from citycard.chip.image import CardImage
from citycard.chip.personalise import IssuerPublicKeyData
from citycard.codec.money import bcd_amount
from citycard.codec.tlv import decode_dict, encode_many
from citycard.crypto.rsa_cert import RsaKey, RsaPublicKey, build_issuer_certificate
from citycard.db import Database
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import AddBank, AddBinRange, AddProduct
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import Card
from citycard.issuer.personalisation import ChipPersonaliser

from tests.chip.conftest import counter_rng
from tests.db.dbtargets import KINDS, fresh_database

START_NS = int(datetime(2026, 11, 25, 9, 0, tzinfo=UTC).timestamp()) * 10**9
DAY_NS = 86_400 * 10**9
ICBC_BIN = "621226"
BOC_BIN = "621661"
HOLDER_ID = "11010519491231002X"  # the GB 11643-1999 example number


class Clock:
    def __init__(self) -> None:
        self.now = START_NS

    def __call__(self) -> int:
        self.now += 1_000_000  # time moves on a millisecond per reading
        return self.now

    def advance(self, ns: int) -> None:
        self.now += ns


@dataclass
class MemorySink:
    images: dict[str, CardImage] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def save(self, card: Card, image: CardImage, record: dict[str, Any]) -> str:
        self.images[card.pan] = image
        self.records[card.pan] = record
        return f"memory:{card.pan}"


@pytest.fixture(scope="session")
def demo_ca() -> RsaKey:
    return RsaKey.generate(1024, 3)


@pytest.fixture
def certify_issuer(demo_ca: RsaKey) -> Callable[[RsaPublicKey, str], IssuerPublicKeyData]:
    def certify(public: RsaPublicKey, identifier: str) -> IssuerPublicKeyData:
        cert, remainder = build_issuer_certificate(demo_ca, public, identifier, "1235", b"\x00\x00\x01")
        return IssuerPublicKeyData(0xF1, cert, remainder, public.exponent)

    return certify


@pytest.fixture(params=KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with fresh_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hsm() -> SoftHsm:
    return SoftHsm(bytes(range(32)))


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def service(
    database: Database, hsm: SoftHsm, clock: Clock, sink: MemorySink, certify_issuer: Any
) -> IssuerService:
    def uow() -> IssuerUnitOfWork:
        return database.unit_of_work(IssuerUnitOfWork, clock=clock)

    return IssuerService(uow, hsm, clock, personaliser=ChipPersonaliser(hsm, certify_issuer, sink))


@pytest.fixture
def banks(service: IssuerService) -> IssuerService:
    """ICBC and BOC city branches, each with a registered debit-EC product and an anonymous EC card."""
    for code, name, bin_ in (("ICBC", "ICBC city branch", ICBC_BIN), ("BOC", "BOC city branch", BOC_BIN)):
        service.add_bank(AddBank(code, name))
        service.add_bin_range(AddBinRange(code, bin_))
        service.add_product(AddProduct(code, "debit-ec", "Citizen card (debit + EC)", bin_, registered=True))
        service.add_product(AddProduct(code, "anon-ec", "Anonymous EC card", bin_, registered=False))
    return service


def ledger_snapshot(database: Database) -> tuple[Any, ...]:
    """Everything the ledger holds: totals, every balance, every transfer id."""
    with database.unit_of_work() as uow:
        balances = tuple(uow.ledger.balances())
        journal = tuple(t.id for t in uow.ledger.journal(limit=100_000))
        return uow.ledger.totals(), balances, journal


# --- driving the emulated card like a terminal ------------------------------------------------------------
DEBIT_AID = bytes.fromhex("A000000333010101")


@dataclass
class Terminal:
    card: ChipCard
    aip: bytes = b""
    un: bytes = b""
    cdol1: dict[str, bytes] = field(default_factory=dict)

    def send(self, raw: bytes) -> tuple[bytes, int]:
        out = self.card.transmit(raw)
        return out[:-2], int.from_bytes(out[-2:], "big")

    def first_ac(
        self,
        amount_fen: int,
        *,
        un: bytes = b"\x11\x22\x33\x44",
        txn_type: int = 0x00,
        date: str = "261125",
        pin: str | None = None,
    ) -> bytes:
        """Contact transaction up to the ARQC; returns the field 55 an acquirer would send."""
        self.card.power_on("contact")
        data, sw = self.send(bytes((0x00, 0xA4, 0x04, 0x00, len(DEBIT_AID))) + DEBIT_AID + b"\x00")
        assert sw in (0x9000, 0x6283), hex(sw)  # 6283: application blocked (the issuer may unblock it)
        pdol = b"\x00" + bcd_amount(amount_fen) + bytes.fromhex("0156")
        body = b"\x83" + bytes((len(pdol),)) + pdol
        data, sw = self.send(bytes((0x80, 0xA8, 0, 0, len(body))) + body + b"\x00")
        assert sw == 0x9000, hex(sw)
        self.aip = _template(data)["82"]
        if pin is not None:  # offline plaintext PIN: VERIFY with an ISO 9564 format 2 block
            block = bytes.fromhex((f"2{len(pin):X}" + pin).ljust(16, "F"))
            _, sw = self.send(bytes.fromhex("0020008008") + block)
            assert sw in (0x9000, 0x63C2, 0x63C1, 0x63C0), hex(sw)
        self.un = un
        self.cdol1 = {
            "9F02": bcd_amount(amount_fen),
            "9F03": bytes(6),
            "9F1A": bytes.fromhex("0156"),
            "95": bytes(5),
            "5F2A": bytes.fromhex("0156"),
            "9A": bytes.fromhex(date),
            "9C": bytes((txn_type,)),
            "9F37": un,
            "9F21": bytes.fromhex("120000"),
            "9F4E": b"CITY SUPERMARKET".ljust(20, b" "),
        }
        cdol = b"".join(self.cdol1.values())
        data, sw = self.send(bytes((0x80, 0xAE, 0x80, 0x00, len(cdol))) + cdol + b"\x00")
        assert sw == 0x9000, hex(sw)
        tags = _template(data)
        assert tags["9F27"] == b"\x80"
        items = [(t, tags[t]) for t in ("9F26", "9F27", "9F10", "9F36")]
        items += [(t, self.cdol1[t]) for t in ("9F37", "9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C")]
        items.append(("82", self.aip))
        return encode_many(items)

    def complete(self, response_field55: bytes, arc: bytes) -> tuple[int, list[int]]:
        """The scripts of template ``71``, the second GENERATE AC with the issuer's ARPC, then the scripts of
        ``72`` (EMV Book 3 §10.10): (CID, script status words in the order run)."""
        tags = decode_dict(response_field55, duplicates=True) if response_field55 else {}
        issuer_auth = tags.get("91", bytes(10))
        sws = [self.send(command)[1] for command in _script_commands(response_field55, "71")]
        cdol2 = arc + self.un + bytes(5) + issuer_auth
        data, sw = self.send(bytes((0x80, 0xAE, 0x40, 0x00, len(cdol2))) + cdol2 + b"\x00")
        assert sw == 0x9000, hex(sw)
        cid = _template(data)["9F27"][0]
        sws += [self.send(command)[1] for command in _script_commands(response_field55, "72")]
        return cid, sws

    def ec_balance(self) -> int:
        data, sw = self.send(bytes.fromhex("80CA9F7900"))
        if sw == 0x6985:  # no application selected yet: power on and select it
            self.card.power_on("contact")
            self.send(bytes((0x00, 0xA4, 0x04, 0x00, len(DEBIT_AID))) + DEBIT_AID + b"\x00")
            data, sw = self.send(bytes.fromhex("80CA9F7900"))
        assert sw == 0x9000, hex(sw)
        return int(data[3:].hex())


def _template(data: bytes) -> dict[str, bytes]:
    """The data objects of a response: format 2 (``77`` template) or format 1 (``80``: AIP ‖ AFL)."""
    top = decode_dict(data)
    if "77" in top:
        return decode_dict(top["77"])
    if "80" in top:
        return {"82": top["80"][:2], "94": top["80"][2:]}
    return top


def _script_commands(field55: bytes, template: str) -> list[bytes]:
    from citycard.codec.tlv import decode

    out = []
    for obj in decode(field55) if field55 else ():
        if obj.tag == template and obj.children is not None:
            out += [child.value for child in obj.children if child.tag == "86"]
    return out


@pytest.fixture
def terminal_for(sink: MemorySink) -> Callable[[str], Terminal]:
    def make(pan: str) -> Terminal:
        return Terminal(ChipCard(sink.images[pan], counter_rng(pan.encode())))

    return make
