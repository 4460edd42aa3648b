"""Issuer benchmark: online purchase authorizations per second through the service layer (ARQC verified in
the software HSM, ledger transfer, card and authorization rows, one transaction each), beside the bare rate
of a one-row-update transaction on the same database in the same run.

``python -m benchmarks issuer`` (or ``make bench``). PostgreSQL is measured when reachable at
``CITYCARD_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), in a
throw-away schema.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from citycard.codec.money import bcd_amount
from citycard.codec.tlv import encode_many
from citycard.crypto.cryptograms import ac_input, generate_ac
from citycard.crypto.derivation import derive_pboc_session_key
from citycard.crypto.mac import mac_alg3
from citycard.db import Database, drop_schema, migrate
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hsm.api import KeyUsage
from citycard.hsm.soft import SoftHsm
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
from citycard.issuer.handlers import IssuerService

__all__ = ["main"]

POSTGRES_URL = os.environ.get(
    "CITYCARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CARDS = 20
AUTHS = 400
UPDATES = 2000
ISSUE = 40


def _field55(hsm: SoftHsm, pan: str, atc: int, amount_fen: int, un: int) -> bytes:
    """What the card sends: an ARQC, and in 9F10 its EC balance (0) with the MAC the issuer checks."""
    udk = hsm.derive_icc_key(hsm.get("bench-imk-ac"), KeyUsage.EMV_AC, pan, "01")
    session_key = derive_pboc_session_key(udk, atc)
    balance = b"\x01" + bcd_amount(0, 5)  # 01 ‖ EC balance n10 (docs/card-profile.md §9)
    balance_mac = mac_alg3(session_key, balance + atc.to_bytes(2, "big"), padding=2, length=4)
    values = {
        "9F02": bcd_amount(amount_fen),
        "9F03": bytes(6),
        "9F1A": bytes.fromhex("0156"),
        "95": bytes(5),
        "5F2A": bytes.fromhex("0156"),
        "9A": bytes.fromhex("261125"),
        "9C": b"\x00",
        "9F37": un.to_bytes(4, "big"),
        "82": bytes.fromhex("7C00"),
        "9F36": atc.to_bytes(2, "big"),
        "9F10": bytes.fromhex("07010103A00000010A") + balance + balance_mac,
    }
    arqc = generate_ac(session_key, ac_input(values))
    return encode_many([("9F26", arqc), ("9F27", b"\x80"), *values.items()])


def _authorizations(db: Database) -> float:
    hsm = SoftHsm(os.urandom(32))
    service = IssuerService(
        lambda: db.unit_of_work(IssuerUnitOfWork),
        hsm,
        time.time_ns,
    )
    service.add_bank(AddBank("BENCH", "benchmark bank"))
    service.add_bin_range(AddBinRange("BENCH", "622000"))
    service.add_product(AddProduct("BENCH", "debit-ec", "bench", "622000"))
    pans = []
    for i in range(CARDS):
        (card,) = service.issue_cards(
            IssueCards("BENCH", "debit-ec", holder_name=f"Holder {i}", id_number=_id_number(i))
        )
        service.activate(ActivateCard(card.pan))
        service.deposit(Deposit(card.pan, 10**10, f"dep-{i}"))
        pans.append(card.pan)
    requests = []
    for n in range(AUTHS):
        pan = pans[n % CARDS]
        atc = n // CARDS + 1
        f55 = _field55(hsm, pan, atc, 100, n)
        requests.append(AuthorizationRequest(f"r{n}", AuthorizationKind.PURCHASE, pan, "01", 100, f55))
    start = time.perf_counter()
    for req in requests:
        answer = service.authorize(req)
        assert answer.approved, answer.reason
    return AUTHS / (time.perf_counter() - start)


def _id_number(i: int) -> str:
    from citycard.issuer.model import id_number_check_character

    body = f"11010519800101{i:03d}"
    return body + id_number_check_character(body)


def _one_row_updates(db: Database) -> float:
    with db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)"))
        connection.execute(text("INSERT INTO bench_counter VALUES (1, 0)"))
    start = time.perf_counter()
    for _ in range(UPDATES):
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE bench_counter SET n = n + 1 WHERE id = 1"))
    return UPDATES / (time.perf_counter() - start)


def _measure(
    name: str, open_db: Callable[[], tuple[Database, Callable[[], None]]]
) -> tuple[str, float, float]:
    db, cleanup = open_db()
    try:
        return name, _authorizations(db), _one_row_updates(db)
    finally:
        db.close()
        cleanup()


def _sqlite() -> tuple[Database, Callable[[], None]]:
    directory = tempfile.mkdtemp(prefix="bench-issuer-")
    url = f"sqlite:///{Path(directory) / 'bench.db'}"
    migrate(url)
    return Database.open(url), lambda: shutil.rmtree(directory, ignore_errors=True)


def _postgres() -> tuple[Database, Callable[[], None]]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    migrate(POSTGRES_URL, schema=schema)
    return Database.open(POSTGRES_URL, schema=schema), lambda: drop_schema(POSTGRES_URL, schema)


class _NullSink:
    def save(self, card: object, image: object, record: object) -> str:
        return ""


def _issuance() -> tuple[float, float]:
    """(cards/s issued with personalisation through the HSM, RSA-1024 key pairs/s generated)."""
    from citycard.chip.personalise import IssuerPublicKeyData
    from citycard.crypto.rsa_cert import RsaKey, RsaPublicKey, build_issuer_certificate
    from citycard.issuer.personalisation import ChipPersonaliser

    ca = RsaKey.generate(1024, 3)

    def certify(public: RsaPublicKey, identifier: str) -> IssuerPublicKeyData:
        cert, rem = build_issuer_certificate(ca, public, identifier, "1235", b"\x00\x00\x01")
        return IssuerPublicKeyData(0xF1, cert, rem, public.exponent)

    db, cleanup = _sqlite()
    try:
        hsm = SoftHsm(os.urandom(32))
        service = IssuerService(
            lambda: db.unit_of_work(IssuerUnitOfWork),
            hsm,
            time.time_ns,
            personaliser=ChipPersonaliser(hsm, certify, _NullSink()),
        )
        service.add_bank(AddBank("BENCH", "benchmark bank"))
        service.add_bin_range(AddBinRange("BENCH", "622000"))
        service.add_product(AddProduct("BENCH", "anon-ec", "bench", "622000", registered=False))
        start = time.perf_counter()
        service.issue_cards(IssueCards("BENCH", "anon-ec", count=ISSUE))
        cards = ISSUE / (time.perf_counter() - start)
    finally:
        db.close()
        cleanup()
    start = time.perf_counter()
    for _ in range(ISSUE):
        RsaKey.generate(1024, 3)
    return cards, ISSUE / (time.perf_counter() - start)


def main() -> None:
    rows = [_measure("SQLite (file, WAL)", _sqlite)]
    try:
        rows.append(_measure("PostgreSQL", _postgres))
    except OperationalError as exc:  # an unreachable server is reported, not fatal (a failure still is)
        print(f"PostgreSQL skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    print(
        f"{AUTHS} purchase authorizations over {CARDS} cards; baseline {UPDATES} one-row-update transactions"
    )
    print(f"{'database':<22} {'authorizations/s':>17} {'1-row updates/s':>16} {'ratio':>7}")
    for name, auths, updates in rows:
        print(f"{name:<22} {auths:>17,.0f} {updates:>16,.0f} {auths / updates:>7.3f}")
    cards, keys = _issuance()
    print(
        f"\nissuance of {ISSUE} anonymous cards (SQLite), personalised with HSM keys,"
        " beside RSA-1024 key generation"
    )
    print(f"{'cards/s':>10} {'RSA-1024 key pairs/s':>21} {'ratio':>7}")
    print(f"{cards:>10,.1f} {keys:>21,.1f} {cards / keys:>7.3f}")


if __name__ == "__main__":
    main()
