"""A clearing day built with the real code: the issuer's banks ICBC and BOC with cards personalised by the
issuer (keys from its HSM), EC loads and online purchases answered by ``IssuerService.authorize`` from the
emulated chip's ARQCs, offline purchases and fares made by ``PosTerminal`` (the level-2 kernel) with the
same emulated chips, their 0320 uploads built by ``pos.online.upload_request`` and kept by the acquirer's
``store_upload``, and the journal exports written by ``SqliteJournal.export``. Nothing here is a hard-coded
answer: every TC is the chip's, every verification the HSM's."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from citycard.acquirer import TransactionKey
from citycard.acquirer.commands import StoreUpload
from citycard.acquirer.handlers import store_upload
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.handlers import handle
from citycard.center.model import TerminalKind
from citycard.center.ports import CenterDeps
from citycard.chip.card import Card as ChipCard
from citycard.clearing import BEIJING
from citycard.codec.pan import mask_pan
from citycard.crypto.rsa_cert import RsaKey
from citycard.db import Database
from citycard.db.acquirer_repositories import acquirer_unit_of_work
from citycard.db.center_repositories import CenterUnitOfWork
from citycard.hsm.api import Hsm
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import MemoryKeyStore, SoftHsm
from citycard.issuer.commands import AuthorizationKind, AuthorizationRequest
from citycard.issuer.handlers import IssuerService
from citycard.kernel.config import CaPublicKey
from citycard.pos.journal import JournalEntry
from citycard.pos.online import TerminalIdentity, upload_request
from citycard.pos.terminal import PosTerminal, validator_config
from citycard.sqlite_journal import SqliteJournal

from tests.hosts.conftest import funded
from tests.issuer.conftest import Terminal
from tests.kernel.cardlab import PIN_KEY
from tests.kernel.cardlab import terminal_config as kernel_config

SUPERMARKET = ("SUPERMARKET0001", "5411", "ICBC", "POS00001")
PHARMACY = ("PHARMACY0000001", "5912", "BOC", "POS00002")
BUS = ("CITYBUS00000001", "4111", "ICBC", "BUS00001")
DAY = dt.date(2026, 11, 25)
TERMINAL_NOW = dt.datetime(2026, 11, 25, 10, 0, 0)  # the terminals' clock (Beijing wall time)


def beijing_ns(when: dt.datetime) -> int:
    return int(when.replace(tzinfo=BEIJING).timestamp()) * 10**9


def register(database: Database, clock: Any) -> None:
    """The three merchants (supermarket and bus company at ICBC, pharmacy at BOC) and their terminals."""
    platform = SoftHsm(bytes(range(32)))
    own: dict[str, SoftHsm] = {}

    def terminal_hsm(tid: str) -> SoftHsm:
        return own.setdefault(tid, SoftHsm(bytes(range(1, 33)), MemoryKeyStore()))

    deps = CenterDeps(clock, platform, terminal_hsm)
    for mid, mcc, bank, tid in (SUPERMARKET, PHARMACY, BUS):
        handle(
            AddMerchant(mid, mid.title(), mcc, "Downtown", bank),
            database.unit_of_work(CenterUnitOfWork),
            deps,
        )
        kind = TerminalKind.VALIDATOR if tid.startswith("BUS") else TerminalKind.POS
        handle(AddTerminal(tid, mid, kind), database.unit_of_work(CenterUnitOfWork), deps)


@dataclass
class Holder:
    """A registered card with its emulated chip."""

    pan: str
    chip: ChipCard
    bank: str

    @property
    def psn(self) -> str:
        return "01"


def card(service: IssuerService, sink: Any, bank: str, holder: int, deposit_fen: int) -> Holder:
    from tests.chip.conftest import counter_rng

    pan = funded(service, bank, deposit_fen, holder=holder)
    chip = ChipCard(sink.images[pan], counter_rng(pan.encode()))
    return Holder(pan, chip, bank)


def ec_load(service: IssuerService, h: Holder, amount_fen: int, rid: str) -> None:
    term = Terminal(h.chip)
    f55 = term.first_ac(amount_fen, un=rid.encode()[:4].ljust(4, b"\0"), txn_type=0x60)
    place = SUPERMARKET  # at the supermarket's counter
    kind = AuthorizationKind.EC_LOAD
    request = AuthorizationRequest(
        rid, kind, h.pan, h.psn, amount_fen, f55, terminal_id=place[3], merchant_id=place[0]
    )
    answer = service.authorize(request)
    assert answer.approved, answer.reason
    _, sws = term.complete(answer.field55, answer.arc)
    assert sws == [0x9000]


def online_purchase(
    service: IssuerService, h: Holder, amount_fen: int, rid: str, place: tuple[str, str, str, str]
) -> None:
    term = Terminal(h.chip)
    f55 = term.first_ac(amount_fen, un=rid.encode()[-4:].rjust(4, b"\0"))
    request = AuthorizationRequest(
        rid,
        AuthorizationKind.PURCHASE,
        h.pan,
        h.psn,
        amount_fen,
        f55,
        terminal_id=place[3],
        merchant_id=place[0],
    )
    answer = service.authorize(request)
    assert answer.approved, answer.reason
    cid, _ = term.complete(answer.field55, answer.arc)
    assert cid == 0x40


@dataclass
class Till:
    """A terminal application with its journal (offline EC purchases and fares)."""

    tid: str
    mid: str
    pos: PosTerminal
    pans: dict[str, str] = field(
        default_factory=dict
    )  # txn id -> PAN (what the terminal's sealed copy holds)
    hsm: Hsm | None = None  # the platform HSM: the acquirer seals the uploads under its data key there

    def buy(self, h: Holder, amount_fen: int) -> JournalEntry:
        h.chip.power_on("contact")
        result = self.pos.purchase(h.chip.transmit, amount_fen)
        assert result.approved and result.entry is not None, result.outcome.reason
        assert result.outcome.kind.name == "APPROVED_OFFLINE", result.outcome.kind
        self.pans[result.entry.txn_id] = h.pan
        return result.entry

    def fare(self, h: Holder, amount_fen: int) -> JournalEntry:
        h.chip.power_on("contactless")
        result = self.pos.validate(h.chip.transmit, amount_fen)
        assert result.entry is not None, result.outcome.reason
        self.pans[result.entry.txn_id] = h.pan
        return result.entry

    def upload(self, database: Database, entry: JournalEntry, received_ns: int, **changes: Any) -> bool:
        """The 0320 the terminal sends for ``entry`` (``changes`` alter it: a tampered upload), kept by the
        acquirer's handler."""
        message = upload_request(
            identity=TerminalIdentity(changes.pop("terminal_id", self.tid), self.mid),
            pan=self.pans[entry.txn_id],
            psn=entry.psn,
            expiry=entry.expiry,
            amount_fen=changes.pop("amount_fen", entry.amount_fen),
            stan=changes.pop("stan", entry.stan),
            batch=entry.batch,
            interface=entry.interface,
            field55=changes.pop("field55", bytes.fromhex(entry.field55)),
        )
        assert not changes
        assert message.terminal_id is not None and message.stan is not None and message.field60 is not None
        key = TransactionKey(message.terminal_id, message.field60.batch_number, message.stan)
        command = StoreUpload(
            key,
            self.mid,
            message.amount_fen,
            mask_pan(message.pan or ""),
            replace(message, mac=None).to_bytes(),
        )
        assert self.hsm is not None, "the acquirer keeps uploads sealed: give the till the platform HSM"
        uow = acquirer_unit_of_work(database, RecordProtection.open(self.hsm))
        return store_upload(command, uow, lambda: received_ns)

    def export(self, directory: Path) -> list[Path]:
        return self.pos.journal.export(directory)


def till(
    tmp: Path,
    place: tuple[str, str, str, str],
    demo_ca: RsaKey,
    *,
    validator: bool = False,
    hsm: Hsm | None = None,
) -> Till:
    mid, _, _, tid = place
    capk = CaPublicKey(bytes.fromhex("A000000333"), 0xF1, demo_ca.public.modulus, demo_ca.public.exponent)
    config = kernel_config(capks=(capk,), pin_key=PIN_KEY, terminal_id=tid.encode(), merchant_id=mid.encode())
    if validator:
        config = validator_config(config)
    rnd = random.Random(tid)
    pos = PosTerminal(
        config, SqliteJournal(tmp / f"{tid}.db", tid), clock=lambda: TERMINAL_NOW, rng=rnd.randbytes
    )
    return Till(tid, mid, pos, hsm=hsm)
