"""Seeding the demo city (:mod:`citycard.city.plan`) into the platform's database, idempotently.

Only data is seeded — banks with their keys, BIN ranges and products, merchants, terminals with their
master keys, cards and their holders — and every piece goes through the service that owns it (the issuer's
handlers, the center's registry), so the rules that hold for ``citycard bank add``, ``merchant add``,
``terminal add`` and ``card issue`` hold here too. Nothing here moves money, with one exception that is a
bank's own operation and not a card payment: each card of the simulated terminals' pool that has a deposit
account gets a cash deposit at the bank's counter (``IssuerService.deposit``, as ``citycard card deposit``),
so that its holder can load and pay online. Every payment, load and fare afterwards goes through the real
chain (:mod:`citycard.city.traffic`).

Bulk: unregistered cards are issued in the issuer's batches (500 a transaction, one ledger call for their
EC float accounts), registered ones :data:`HOLDERS_PER_TRANSACTION` holders a transaction
(``IssuerService.issue_for_holders``: each holder, deposit account and card by the rules of one issuance);
chip images are made only for the pool (:data:`~citycard.city.plan.POOL_REGISTERED` and
:data:`~citycard.city.plan.POOL_ANONYMOUS` a bank), the rest of the cards exist at the issuer as issued
cards without a chip file (an RSA key pair per chip would take minutes for 10,100 cards).

Every card carries the transit file (the issuer's products personalise it); a registered holder of an
elderly or student age (:func:`~citycard.city.plan.holder`) gets the concession at issuance. The city's fare
table (:func:`~citycard.city.plan.fare_table`: flat and distance lines) is installed as the home's
``fares.toml`` (as ``citycard transit load`` does) unless the home has one.

A second seeding counts what is there and adds only what is missing: banks, merchants and terminals by
their IDs, cards by how many of each bank and product exist.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from citycard.bootstrap import Center, Issuer
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.model import AlreadyExists as CenterExists
from citycard.center.ports import MerchantQuery
from citycard.durable import atomic_write
from citycard.issuer.commands import ActivateCard, AddBank, AddBinRange, AddProduct, Deposit, IssueCards
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import AlreadyExists, Card, CardStatus, DuplicateIssuance, bank_key_labels
from citycard.issuer.ports import CardQuery

if TYPE_CHECKING:
    from citycard.db import Database

from .plan import (
    BANKS,
    PIN,
    POOL_ANONYMOUS,
    POOL_REGISTERED,
    CityBank,
    Holder,
    fare_table,
    holder,
    merchants,
    terminals,
)

__all__ = [
    "ANONYMOUS",
    "DEMO_PASSWORD",
    "POOL_DEPOSIT_FEN",
    "REGISTERED",
    "Progress",
    "SeedReport",
    "demo_users",
    "install_fare_table",
    "pool_cards",
    "seed_city",
]

REGISTERED, ANONYMOUS = "debit-ec", "anon-ec"
EC_LIMIT_FEN = 100_000
POOL_DEPOSIT_FEN = 5_000_00
"""The counter deposit of each registered pool card (5,000.00)."""
HOLDERS_PER_TRANSACTION = 250
"""Registered cards issued in one transaction (``IssuerService.issue_for_holders``)."""
INACTIVE_EVERY = 20
"""One card in this many (not of the pool) stays issued and not yet activated, as cards not yet collected."""


class Progress(Protocol):
    def __call__(self, label: str, total: int) -> Callable[[int], None]:
        """Start a step of ``total`` units; the function returned advances it."""
        ...


def _silent(label: str, total: int) -> Callable[[int], None]:
    return lambda n: None


@dataclass
class SeedReport:
    """What a seeding added (zero everywhere on a second run) and how long it took."""

    banks: int = 0
    merchants: int = 0
    terminals: int = 0
    cards: Counter[str] = field(default_factory=Counter)  # "BANK/product" -> cards issued now
    activated: int = 0
    seconds: float = 0.0

    @property
    def added(self) -> int:
        return self.banks + self.merchants + self.terminals + sum(self.cards.values())


def seed_city(issuer: Issuer, center: Center, progress: Progress = _silent) -> SeedReport:
    """Seed the demo city into the database of ``issuer`` and ``center`` (the same one), adding only what
    is missing. ``center`` needs the platform HSM (terminal master keys)."""
    start = time.perf_counter()
    report = SeedReport()
    _banks(issuer, report, progress)
    _registry(center, report, progress)
    for index, bank in enumerate(BANKS):
        _cards(issuer, index, bank, report, progress)
    _activate(issuer, report, progress)
    install_fare_table(issuer.home)
    report.seconds = time.perf_counter() - start
    return report


def install_fare_table(home: Path) -> Path:
    """The city's fare table as ``home/fares.toml`` (the installed one of ``citycard transit``), unless the
    home has one already (an operator's own table is kept)."""
    target = home / "fares.toml"
    if not target.exists():
        atomic_write(target, fare_table().encode("utf-8"))
    return target


def _issue(bank_code: str, who: Holder, pin_block: bytes | None = None) -> IssueCards:
    """A registered card for ``who``, with the transit concession of their age."""
    return IssueCards(
        bank_code,
        REGISTERED,
        1,
        who.name,
        who.id_number,
        who.phone,
        pin_block=pin_block,
        concession=who.concession,
        concession_until=who.concession_until,
    )


def _banks(issuer: Issuer, report: SeedReport, progress: Progress) -> None:
    service = issuer.service
    advance = progress("banks", len(BANKS))
    for bank in BANKS:
        steps: list[Callable[[], object]] = [
            lambda b=bank: service.add_bank(AddBank(b.code, b.name)),  # type: ignore[misc]
            lambda b=bank: service.add_bin_range(AddBinRange(b.code, b.bin)),  # type: ignore[misc]
        ]
        for code, name, registered in (
            (REGISTERED, "Citizen card: debit with electronic cash", True),
            (ANONYMOUS, "Unregistered electronic cash card", False),
        ):
            product = AddProduct(
                bank.code, code, name, bank.bin, registered, EC_LIMIT_FEN, ec_single_limit_fen=EC_LIMIT_FEN
            )
            steps.append(lambda p=product: service.add_product(p))  # type: ignore[misc]
        added = False
        for step in steps:
            try:
                step()
                added = True
            except AlreadyExists:
                pass
        report.banks += int(added)
        advance(1)


_T = TypeVar("_T")
_PAGE = 1_000
"""Rows read at a time where the seeding looks at everything there is (no bound that would lose rows)."""


class _Pages(Protocol[_T]):
    def __call__(self, *, limit: int, offset: int) -> list[_T]: ...


def _every(page: _Pages[_T]) -> Iterator[_T]:
    """Every row a listing ``page(limit=, offset=)`` gives, a page at a time, however many there are."""
    offset = 0
    while True:
        rows = page(limit=_PAGE, offset=offset)
        yield from rows
        if len(rows) < _PAGE:
            return
        offset += len(rows)


def _registry(center: Center, report: SeedReport, progress: Progress) -> None:
    city = merchants()
    with center.unit_of_work(read_only=True) as uow:
        known = {m.merchant_id for m in _every(partial(uow.merchants.find, MerchantQuery()))}
        have_terminals = {t.terminal_id for t in _every(partial(uow.terminals.find, None))}
    advance = progress("merchants", len(city))
    for m in city:
        if m.merchant_id not in known:
            try:
                center.handle(AddMerchant(m.merchant_id, m.name, m.mcc, m.district, m.bank_code, m.industry))
                report.merchants += 1
            except CenterExists:
                pass
        advance(1)
    plan = terminals(city)
    advance = progress("terminals (master keys injected)", len(plan))
    for t in plan:
        if t.terminal_id not in have_terminals:
            try:
                center.handle(AddTerminal(t.terminal_id, t.merchant_id, t.kind, t.line, t.vehicle))
                report.terminals += 1
            except CenterExists:
                pass
        advance(1)


def _cards(issuer: Issuer, index: int, bank: CityBank, report: SeedReport, progress: Progress) -> None:
    """The bank's pool (chip images, PIN, deposit) first, then the rest in bulk without chip images."""
    with issuer.unit_of_work(read_only=True) as uow:
        have_registered, have_anonymous = (
            uow.cards.count(CardQuery(bank_code=bank.code, product_code=product))
            for product in (REGISTERED, ANONYMOUS)
        )
    todo = max(0, bank.registered - have_registered) + max(0, bank.anonymous - have_anonymous)
    advance = progress(f"cards of {bank.code}", bank.registered + bank.anonymous)
    advance(min(have_registered, bank.registered) + min(have_anonymous, bank.anonymous))
    if not todo:
        return
    full = issuer.service  # personalises: chip image files and bureau records
    bulk = IssuerService(issuer.unit_of_work, issuer.hsm, full.clock)  # no chip image
    hsm = issuer.hsm
    zpk = hsm.get(bank_key_labels(bank.code)["zpk"])
    serial = have_registered

    def issue_registered(service: IssuerService, with_pin: bool) -> Card | None:
        nonlocal serial
        while True:  # a holder already served (by an earlier, interrupted seeding) is skipped
            who = holder(index, serial)
            serial += 1
            block = hsm.encrypt_pin_iso1(zpk, PIN) if with_pin else None
            try:
                (card,) = service.issue_cards(_issue(bank.code, who, block))
                return card
            except DuplicateIssuance:
                continue

    key = f"{bank.code}/{REGISTERED}"
    for _ in range(max(0, min(POOL_REGISTERED, bank.registered) - have_registered)):
        card = issue_registered(full, with_pin=True)
        assert card is not None
        full.deposit(Deposit(card.pan, POOL_DEPOSIT_FEN, f"city-seed-deposit/{card.pan}"))
        report.cards[key] += 1
        advance(1)
    pool_anonymous = max(0, POOL_ANONYMOUS - have_anonymous)
    if pool_anonymous:
        full.issue_cards(IssueCards(bank.code, ANONYMOUS, pool_anonymous), progress=advance)
        report.cards[f"{bank.code}/{ANONYMOUS}"] += pool_anonymous
    remaining = max(0, bank.registered - max(have_registered, POOL_REGISTERED))
    while remaining:
        n = min(remaining, HOLDERS_PER_TRANSACTION)
        holders = [holder(index, serial + k) for k in range(n)]
        try:
            bulk.issue_for_holders([_issue(bank.code, h) for h in holders])
            serial += n
        except DuplicateIssuance:  # one of them has a card (an interrupted seeding): one at a time
            for _ in range(n):
                issue_registered(bulk, with_pin=False)
        report.cards[key] += n
        remaining -= n
        advance(n)
    rest = max(0, bank.anonymous - max(have_anonymous, POOL_ANONYMOUS))
    if rest:
        bulk.issue_cards(IssueCards(bank.code, ANONYMOUS, rest), progress=advance)
        report.cards[f"{bank.code}/{ANONYMOUS}"] += rest


def _activate(issuer: Issuer, report: SeedReport, progress: Progress) -> None:
    """Activate every issued card of the city's banks but one in :data:`INACTIVE_EVERY` of those without a
    chip image (the pool's cards are all activated)."""
    from citycard.files import card_image_path

    folder = issuer.home / "cards"
    pending: list[Card] = []
    for bank in BANKS:
        issued = CardQuery(bank_code=bank.code, status=CardStatus.ISSUED)
        with issuer.unit_of_work(read_only=True) as uow:
            cards = list(_every(partial(uow.cards.find, issued)))
        for card in cards:
            serial = int(card.pan[len(bank.bin) : -1])
            if serial % INACTIVE_EVERY or card_image_path(folder, card.bank_code, card.pan).is_file():
                pending.append(card)
    advance = progress("activating cards", len(pending))
    for card in pending:
        issuer.service.activate(ActivateCard(card.pan))
        report.activated += 1
        advance(1)


def pool_cards(issuer: Issuer, bank_code: str, *, scan: int = 200) -> list[Card]:
    """The bank's cards with a chip image under the home (the simulated terminals' pool): the first
    ``scan`` cards in PAN order that have one, active."""
    from citycard.files import card_image_path

    with issuer.unit_of_work(read_only=True) as uow:
        first = uow.cards.list(bank_code, limit=scan)
    cards = issuer.home / "cards"
    return [
        c
        for c in first
        if c.status is CardStatus.ACTIVE and card_image_path(cards, c.bank_code, c.pan).is_file()
    ]


DEMO_PASSWORD = "citycard-demo"
"""The password of the demo city's web users (printed by ``citycard up --demo``; demo only)."""


def demo_users(database: Database) -> list[tuple[str, str, str]]:
    """The web console's demo users, added when absent: (user name, role, scope) — an operator of the
    service center, a bank user of each bank, a merchant user of the first supermarket. Their password is
    :data:`DEMO_PASSWORD` (one already there keeps the password it has)."""
    from citycard.web.store import Store, UserExists

    shop = next(m for m in merchants() if m.mcc == "5411")
    users = [("operator", "operator", "")]
    users += [(bank.code.lower(), "bank", bank.code) for bank in BANKS]
    users.append(("supermarket1", "merchant", shop.merchant_id))
    store = Store(database)
    for username, role, scope in users:
        with contextlib.suppress(UserExists):
            store.add_user(username, DEMO_PASSWORD, role, scope, time.time_ns())
    return users
