"""The chain of ``tests/pos/chain.py`` (acquirer, switch, issuer front end, issuer, all real on loopback)
with public-service counters registered: a hospital (MCC 8062) and its registration desk ``HOSP0001``, a
service-center self-service terminal ``SELF0001`` (public utility), and a second registered card (another
holder, PIN 654321) beside the chain's own (Li Ming, PIN 123456)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citycard import bootstrap
from citycard.acquirer import TransactionKey
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.chip.card import Card as ChipCard
from citycard.config import settings
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work
from citycard.db.public_repositories import PublicUnitOfWork
from citycard.demokeys import DemoKeys
from citycard.files import card_image_path, load_card
from citycard.hosts.terminal import AcquirerClient
from citycard.hsm.protection import RecordProtection
from citycard.issuer.commands import ActivateCard, Deposit, IssueCards, SetPin
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.pos.online import TerminalIdentity
from citycard.pos.terminal import PosTerminal, self_service_config
from citycard.sqlite_journal import SqliteJournal

from tests.chip.conftest import counter_rng
from tests.pos.chain import Chain

DATA_KEY = bytes.fromhex("89ABCDEF01234567FEDCBA9876543210")
HOSPITAL, HOSPITAL_DESK = "HOSPITAL0000001", "HOSP0001"
CENTER, SELF_SERVICE = "SERVICECENTER01", "SELF0001"
OTHER_PIN = "654321"


@dataclass
class Counter:
    """One terminal of the chain: its journal, its own HSM, its client and terminal application."""

    tid: str
    mid: str
    journal: SqliteJournal
    config: TerminalConfig

    def client(self, port: int) -> AcquirerClient:
        return AcquirerClient(
            "127.0.0.1",
            port,
            identity=TerminalIdentity(self.tid, self.mid),
            hsm=bootstrap.terminal_hsm(settings(), self.tid),
            journal=self.journal,
            data_key=DATA_KEY,
            timeout_s=10.0,
        )

    def pos(self, client: AcquirerClient) -> PosTerminal:
        return PosTerminal(self.config, self.journal, data_key=DATA_KEY, host=client, pin_pad=client.pin_pad)


class PublicWorld:
    def __init__(self, net: Chain, tmp_path: Path) -> None:
        self.net = net
        center = bootstrap.Center(settings(), net.issuer.database, net.issuer.hsm)
        center.handle(AddMerchant(HOSPITAL, "City No.1 Hospital", "8062", "Xihu", "ICBC"))
        center.handle(AddTerminal(HOSPITAL_DESK, HOSPITAL))
        center.handle(AddMerchant(CENTER, "Citizen Card Service Center", "4900", "Shangcheng", "ICBC"))
        center.handle(AddTerminal(SELF_SERVICE, CENTER))
        rid, index, key = DemoKeys.load_or_create(net.home / "demo-keys.json").ca_public_key()
        capk = CaPublicKey(bytes.fromhex(rid), index, key.modulus, key.exponent)
        config = TerminalConfig(capks=(capk,))
        self.desk = Counter(
            HOSPITAL_DESK, HOSPITAL, SqliteJournal(tmp_path / "desk.db", HOSPITAL_DESK), config
        )
        kiosk = self_service_config(config)
        self.kiosk = Counter(SELF_SERVICE, CENTER, SqliteJournal(tmp_path / "kiosk.db", SELF_SERVICE), kiosk)
        self.chips: dict[str, ChipCard] = {}
        self.banks: dict[str, str] = {}  # PAN -> bank, for cards not of ICBC
        self.other_pan = self._second_card()

    def _second_card(self) -> str:
        service, hsm = self.net.issuer.service, self.net.issuer.hsm
        (card,) = service.issue_cards(
            IssueCards("ICBC", "debit-ec", holder_name="Wang Fang", id_number="110105198001010016")
        )
        service.activate(ActivateCard(card.pan))
        service.set_pin(SetPin(card.pan, hsm.encrypt_pin(hsm.get("icbc-zpk"), OTHER_PIN, card.pan)))
        service.deposit(Deposit(card.pan, 30_000, "dep-2"))
        return card.pan

    def card_at(self, bank: str, holder_name: str, id_number: str, pin: str) -> str:
        """A registered card of ``bank`` (a bank of the chain) for the holder of ``id_number``, active,
        with ``pin`` and a deposit."""
        service, hsm = self.net.issuer.service, self.net.issuer.hsm
        (card,) = service.issue_cards(
            IssueCards(bank, "debit-ec", holder_name=holder_name, id_number=id_number)
        )
        service.activate(ActivateCard(card.pan))
        zpk = hsm.get(f"{bank.lower()}-zpk")
        service.set_pin(SetPin(card.pan, hsm.encrypt_pin(zpk, pin, card.pan)))
        service.deposit(Deposit(card.pan, 30_000, f"dep-{card.pan}"))
        self.banks[card.pan] = bank
        return card.pan

    def tap(self, pan: str | None = None, interface: str = "contact") -> Callable[[bytes], bytes]:
        pan = pan or self.net.pan
        if pan not in self.chips:
            bank = self.banks.get(pan, "ICBC")
            image = load_card(card_image_path(self.net.home / "cards", bank, pan))
            self.chips[pan] = ChipCard(image, counter_rng(pan.encode()))
        chip = self.chips[pan]
        chip.power_on(interface)
        return chip.transmit

    def public(self) -> PublicUnitOfWork:
        return self.net.issuer.database.unit_of_work(PublicUnitOfWork)

    def acquirer_record(self, tid: str, batch: int, stan: int) -> Any:
        with self.net.issuer.database.unit_of_work(AcquirerUnitOfWork, read_only=True) as uow:
            return uow.transactions.get(TransactionKey(tid, batch, stan))

    def upload(self, tid: str, batch: int, stan: int) -> Any:
        protection = RecordProtection.open(self.net.issuer.hsm)
        with acquirer_unit_of_work(self.net.issuer.database, protection, read_only=True) as uow:
            return uow.uploads.get(TransactionKey(tid, batch, stan))

    def authorization(self, request_id: str) -> Any:
        with self.net.issuer.unit_of_work(read_only=True) as uow:
            return uow.authorizations.get(request_id)
