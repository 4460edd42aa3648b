"""A small city for the web tests: two banks, registered cards with PINs (one holder with cards at both
banks), an anonymous card, merchants of two industries and districts with terminals, staff users of every
role, and the web application on it (``create_app`` over ``bootstrap.build_web_context``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert, make_url, select, text

from citycard.acquirer import TransactionKey
from citycard.acquirer.commands import StoreUpload
from citycard.acquirer.handlers import store_upload
from citycard.bootstrap import WebContext, build_hsm, build_web_context
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.model import TerminalKind
from citycard.chip.card import Card as ChipCard
from citycard.codec.pan import mask_pan
from citycard.config import Settings
from citycard.db.acquirer_repositories import acquirer_unit_of_work, pan_record
from citycard.db.clearing_tables import (
    clearing_items,
    clearing_outcomes,
    clearing_presentments,
    clearing_runs,
)
from citycard.db.issuer_tables import issuer_cards
from citycard.files import card_image_path, load_card
from citycard.hsm.protection import RecordProtection
from citycard.issuer.commands import (
    ActivateCard,
    AddBank,
    AddBinRange,
    AddProduct,
    AuthorizationKind,
    AuthorizationRequest,
    Deposit,
    IssueCards,
)
from citycard.issuer.model import bank_key_labels, id_number_check_character
from citycard.pos.online import TerminalIdentity, upload_request
from citycard.web import create_app
from citycard.web.figures import beijing_day
from citycard.web.store import Store

from tests.chip.conftest import counter_rng
from tests.conftest import POSTGRES_URL, require_or_skip
from tests.db.dbtargets import postgres_reachable
from tests.issuer.conftest import Terminal

PIN = "123456"
PASSWORD = "correct horse battery"


def id_number(seq: int) -> str:
    body = f"110105199001{seq:02d}{seq:03d}"[:17]
    return body + id_number_check_character(body)


@dataclass
class City:
    settings: Settings
    ctx: WebContext
    pans: dict[str, str] = field(default_factory=dict)  # name -> PAN
    ids: dict[str, str] = field(default_factory=dict)  # holder name -> ID number


def _build(home: Path, url: str | None = None, *, offline: bool = True) -> City:
    """The city (``offline``: with its offline records and clearing rows, :func:`_offline`)."""
    s = Settings(home=home, database_url=url or "")
    build_hsm(s, create_key=True)
    ctx = build_web_context(s)
    city = City(s, ctx)
    svc = ctx.issuer.service
    for code, bin_ in (("ICBC", "621226"), ("BOC", "621661")):
        svc.add_bank(AddBank(code, f"{code} city branch"))
        svc.add_bin_range(AddBinRange(code, bin_))
        svc.add_product(AddProduct(code, "debit-ec", "Citizen card", bin_, registered=True))
        svc.add_product(AddProduct(code, "anon-ec", "Anonymous EC card", bin_, registered=False))
    holders = [("zhang", "ICBC", 1), ("zhang_boc", "BOC", 1), ("li", "BOC", 2), ("wang", "ICBC", 3)]
    for name, bank, seq in holders:
        number = id_number(seq)
        city.ids[name.split("_")[0]] = number
        zpk = ctx.hsm.get(bank_key_labels(bank)["zpk"])
        (card,) = svc.issue_cards(
            IssueCards(
                bank,
                "debit-ec",
                holder_name=name.split("_")[0].title(),
                id_number=number,
                phone=f"1380000000{seq}",
                pin_block=ctx.hsm.encrypt_pin_iso1(zpk, PIN),
            )
        )
        svc.activate(ActivateCard(card.pan))
        svc.deposit(Deposit(card.pan, 50_000, f"seed-{name}"))
        city.pans[name] = card.pan
    (anon,) = svc.issue_cards(IssueCards("ICBC", "anon-ec"))
    city.pans["anon"] = anon.pan
    center = ctx.center
    center.handle(AddMerchant("MERCHANT0000001", "City Supermarket", "5411", "Xinhua District", "ICBC"))
    center.handle(AddMerchant("MERCHANT0000002", "City Hospital", "8062", "Luquan County", "BOC"))
    center.handle(AddTerminal("POS00001", "MERCHANT0000001"))
    center.handle(AddTerminal("POS00002", "MERCHANT0000002"))
    center.handle(AddTerminal("VAL00001", "MERCHANT0000002", TerminalKind.VALIDATOR))
    center.handle(AddMerchant("MERCHANT0000003", "City Bus Line 1", "4131", "Xinhua District", "ICBC"))
    center.handle(AddTerminal("VAL00002", "MERCHANT0000003", TerminalKind.VALIDATOR))
    chips: dict[str, Terminal] = {}
    # real purchases: ARQCs from the emulated chips, authorized by the issuer (approved ones count)
    for n, (name, terminal, merchant, amount) in enumerate(
        [
            ("zhang", "POS00001", "MERCHANT0000001", 1_250),
            ("zhang", "POS00001", "MERCHANT0000001", 3_000),
            ("li", "POS00002", "MERCHANT0000002", 8_800),
            ("wang", "POS00001", "MERCHANT0000001", 99_000_00),  # more than the deposit: declined (51)
        ]
    ):
        pan = city.pans[name]
        bank = "BOC" if name == "li" else "ICBC"
        if pan not in chips:
            image = load_card(card_image_path(home / "cards", bank, pan))
            chips[pan] = Terminal(ChipCard(image, counter_rng(pan.encode())))
        field55 = chips[pan].first_ac(amount, un=bytes((n + 1, 2, 3, 4)))
        svc.authorize(
            AuthorizationRequest(
                f"web-seed-{n}",
                AuthorizationKind.PURCHASE,
                pan,
                "01",
                amount,
                field55,
                stan=f"{n + 1:06d}",
                terminal_id=terminal,
                merchant_id=merchant,
            )
        )
    if offline:
        _offline(city, chips)
    store = Store(ctx.database)
    store.add_user("op", PASSWORD, "operator", "", ctx.clock())
    store.add_user("icbc", PASSWORD, "bank", "ICBC", ctx.clock())
    store.add_user("boc", PASSWORD, "bank", "BOC", ctx.clock())
    store.add_user("shop", PASSWORD, "merchant", "MERCHANT0000001", ctx.clock())
    store.add_user("hospital", PASSWORD, "merchant", "MERCHANT0000002", ctx.clock())
    return city


OFFLINE = [  # (card, terminal, merchant, interface, stan, amount): uploaded by the terminals
    ("zhang", "POS00001", "MERCHANT0000001", "contact", 11, 560),  # an offline EC purchase (ICBC card)
    ("wang", "POS00002", "MERCHANT0000002", "contact", 12, 1_999),  # at the hospital (ICBC card)
    ("li", "VAL00002", "MERCHANT0000003", "contactless", 13, 200),  # a bus fare on line 1 (BOC card)
]
JOURNAL_ONLY = ("li", "VAL00002", "MERCHANT0000003", 14, 200)  # a fare cleared from the journal export


def _offline(city: City, chips: dict[str, Terminal]) -> None:
    """Offline records as they reach the platform: 0320 uploads built by the terminal's ``upload_request``
    and kept by the acquirer's ``store_upload``, and clearing's rows for one of them (cleared) and for a
    fare that only a journal export brought. Field 55 is the emulated chip's first AC: enough for the
    figures, which count what was captured (clearing, not run here, would verify the TC)."""
    ctx = city.ctx
    now = ctx.clock()
    protection = RecordProtection.open(ctx.hsm)  # the platform HSM, as `citycard up` gives the acquirer
    for name, tid, mid, interface, stan, amount in OFFLINE:
        pan = city.pans[name]
        message = upload_request(
            identity=TerminalIdentity(tid, mid),
            pan=pan,
            psn="01",
            expiry="3012",
            amount_fen=amount,
            stan=stan,
            batch=1,
            interface=interface,
            field55=chips[pan].first_ac(amount, un=bytes((stan, 9, 9, 9))),
        )
        key = TransactionKey(tid, 1, stan)
        command = StoreUpload(key, mid, amount, mask_pan(pan), replace(message, mac=None).to_bytes())
        uow = acquirer_unit_of_work(ctx.database, protection)  # the acquirer seals what it keeps
        assert store_upload(command, uow, lambda: now)
    day = beijing_day(now).strftime("%Y%m%d")
    cleared = OFFLINE[0]
    name, tid, mid, stan, amount = JOURNAL_ONLY
    with ctx.database.engine.begin() as c:
        c.execute(insert(clearing_runs).values(clearing_date=day, status="cleared", started_ns=now))
        for (card, terminal, merchant, stan_, fen), bank, acquirer, mcc, industry in (
            ((cleared[0], cleared[1], cleared[2], cleared[4], cleared[5]), "ICBC", "ICBC", "5411", None),
            ((name, tid, mid, stan, amount), "BOC", "ICBC", "4131", "transport"),
        ):
            ref = f"{terminal}/1/{stan_}"
            c.execute(
                insert(clearing_presentments).values(
                    ref=ref,
                    clearing_date=day,
                    terminal_id=terminal,
                    batch=1,
                    stan=stan_,
                    pan_fingerprint=protection.pan_fingerprint(city.pans[card]),
                    pan_sealed=protection.seal(city.pans[card].encode(), pan_record(terminal, 1, stan_)),
                    pan_masked=mask_pan(city.pans[card]),
                    psn="01",
                    amount_fen=fen,
                    received_ns=now,
                )
            )
            c.execute(insert(clearing_outcomes).values(clearing_date=day, ref=ref, outcome="clear"))
            c.execute(
                insert(clearing_items).values(
                    clearing_date=day,
                    source="offline",
                    source_ref=ref,
                    kind="fare" if mcc == "4131" else "purchase",
                    sign=1,
                    amount_fen=fen,
                    issuer_bank=bank,
                    acquirer_bank=acquirer,
                    merchant_id=merchant,
                    terminal_id=terminal,
                    mcc=mcc,
                    industry=industry,
                    pan_masked=mask_pan(city.pans[card]),
                    txn_ns=now,
                )
            )


@contextmanager
def _database_url(kind: str) -> Iterator[str | None]:
    """None (SQLite in the home folder) or a new PostgreSQL database, dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    if not postgres_reachable():
        require_or_skip("CITYCARD_REQUIRE_POSTGRES", f"PostgreSQL not reachable at {POSTGRES_URL}")
    name = f"web_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f"CREATE DATABASE {name}"))
        try:
            yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as c:
                c.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.fixture(scope="module")
def city(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    """The city on SQLite, or on PostgreSQL where a module asks (``indirect`` parametrization of ``city``)."""
    with _database_url(getattr(request, "param", "sqlite")) as url:
        built = _build(tmp_path_factory.mktemp("city"), url)
        try:
            yield built
        finally:
            built.ctx.close()


@pytest.fixture
def client(city: City) -> Iterator[TestClient]:
    with TestClient(create_app(city.ctx)) as c:
        yield c


def ref_of(city: City, name: str) -> int:
    with city.ctx.database.engine.connect() as c:
        return int(
            c.execute(
                select(issuer_cards.c.ec_float_account_id).where(issuer_cards.c.pan == city.pans[name])
            ).scalar_one()
        )


def sign_in(client: TestClient, username: str) -> dict[str, str]:
    """Sign ``client`` in as staff; returns the headers for unsafe API calls (the CSRF token)."""
    r = client.post("/api/session", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def sign_in_card(client: TestClient, pan: str, pin: str = PIN) -> dict[str, str]:
    r = client.post("/api/session/card", json={"pan": pan, "pin": pin})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}
