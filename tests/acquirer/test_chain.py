"""The acquirer in the real chain over loopback (SQLite and PostgreSQL): a terminal registered in the
center (its TMK injected into its own key store and the platform HSM) signs on to the acquirer, which
forwards through the switch to the issuer front end of the card's bank and the issuer service, with real
cards and ARQCs. Ledger and deposit balances are checked around every fault."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from citycard.bootstrap import acquirer_banks, acquirer_registry, acquirer_registry_in_transaction
from citycard.center.commands import AddMerchant, AddTerminal
from citycard.center.handlers import handle
from citycard.center.model import tmk_label
from citycard.center.ports import CenterDeps
from citycard.codec.iso8583 import (
    AuthorizationRequest,
    Field60,
    IccData,
    Message,
    ResponseCode,
    ReversalRequest,
)
from citycard.db import Database
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work
from citycard.db.center_repositories import CenterUnitOfWork
from citycard.hosts.acquirer import AcquirerHost
from citycard.hosts.issuer import IssuerFrontEnd
from citycard.hosts.switch import SwitchFrontEnd, SwitchLimits
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import SoftHsm
from citycard.issuer.commands import SetPin
from citycard.issuer.handlers import IssuerService

from tests.acquirer.support import Terminal, eventually, fast_config, saf_counts, terminal_link
from tests.hosts import conftest as chain_fixtures
from tests.hosts.conftest import funded, routing
from tests.hosts.test_chain import deposit_fen
from tests.issuer.conftest import Terminal as Chip
from tests.issuer.conftest import ledger_snapshot
from tests.net.support import run, signed

# the fixtures of tests/issuer through tests/hosts: a database (SQLite and PostgreSQL), the HSM, the banks
banks = chain_fixtures.banks
certify_issuer = chain_fixtures.certify_issuer
clock = chain_fixtures.clock
database = chain_fixtures.database
demo_ca = chain_fixtures.demo_ca
hsm = chain_fixtures.hsm
service = chain_fixtures.service
sink = chain_fixtures.sink
terminal_for = chain_fixtures.terminal_for

TID = "P0000001"
MID = "SHOP00000000001"
BOC_ID = "01000002"


def register(database: Database, platform: SoftHsm) -> SoftHsm:
    """A merchant acquired by BOC and its terminal in the center's registry; the terminal's own HSM."""
    own = SoftHsm(b"\x07" * 32)
    deps = CenterDeps(time.time_ns, platform, lambda _tid: own)
    handle(
        AddMerchant(MID, "Corner shop", "5411", "Xihu", "BOC"), database.unit_of_work(CenterUnitOfWork), deps
    )
    handle(AddTerminal(TID, MID), database.unit_of_work(CenterUnitOfWork), deps)
    return own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Platform:
    acquirer: AcquirerHost
    switch: SwitchFrontEnd
    terminal: Terminal
    issuers: dict[str, IssuerFrontEnd]


@asynccontextmanager
async def platform(
    service: IssuerService,
    platform_hsm: SoftHsm,
    database: Database,
    own: SoftHsm,
    *,
    icbc_port: int | None = None,
) -> AsyncIterator[Platform]:
    """Issuer front ends (ICBC on ``icbc_port`` when given: started later by the test), the switch, the
    acquirer on the center's registry and the issuer's banks, a terminal linked to it and signed on."""
    table = routing(service, database)
    fronts = {"BOC": IssuerFrontEnd(service, "BOC", table, workers=2)}
    if icbc_port is None:
        fronts["ICBC"] = IssuerFrontEnd(service, "ICBC", table, workers=2)
    for front in fronts.values():
        await front.start()
    links = {code: ("127.0.0.1", front.port) for code, front in fronts.items()}
    if icbc_port is not None:
        links["ICBC"] = ("127.0.0.1", icbc_port)

    protection = RecordProtection.open(platform_hsm)

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(database, protection)

    try:
        limits = SwitchLimits(hop_timeout_s=1.0)
        async with SwitchFrontEnd(table, links, platform_hsm, limits=limits) as switch:
            config = fast_config(switch.port, hop_timeout_s=5.0, saf_timeout_s=3.0)
            registry, bank_of = acquirer_registry(database), acquirer_banks(database)
            async with (
                AcquirerHost(
                    platform_hsm,
                    uow,
                    registry,
                    bank_of,
                    config,
                    registry_in=acquirer_registry_in_transaction(),
                ) as acquirer,
                terminal_link(
                    acquirer.port, lambda link: Terminal(link, TID, MID, hsm=own, tmk=tmk_label(TID))
                ) as t,
            ):
                await t.sign_on()
                yield Platform(acquirer, switch, t, fronts)
    finally:
        for front in fronts.values():
            await front.stop()


def chip_purchase(
    t: Terminal, pan: str, chip: Chip, amount_fen: int, *, stan: int, pin: str | None = None
) -> Message:
    block = None if pin is None else t.hsm.encrypt_pin(t.hsm.get("pik"), pin, pan)
    return AuthorizationRequest(
        mti="0200",
        pan=pan,
        processing_code="000000",
        amount_fen=amount_fen,
        stan=stan,
        pos_entry_mode="051",
        card_sequence_number="001",
        condition_code="00",
        terminal_id=TID,
        merchant_id=MID,
        currency="156",
        pin_block=block,
        icc=IccData.from_bytes(chip.first_ac(amount_fen, un=stan.to_bytes(4, "big"))),
        field60=Field60("22", 1),
        mac=bytes(8),
    )


def terminal_reversal(original: Message) -> ReversalRequest:
    """The terminal's 0400 of ``original``: its 11 and 60.2 name it (UnionPay POS practice, no 61)."""
    return ReversalRequest(
        mti="0400",
        pan=original.pan,
        processing_code=original.processing_code,
        amount_fen=original.amount_fen,
        stan=original.stan,
        pos_entry_mode=original.pos_entry_mode,
        card_sequence_number=original.card_sequence_number,
        condition_code=original.condition_code,
        response_code=ResponseCode.ISSUER_TIMEOUT,
        terminal_id=TID,
        merchant_id=MID,
        currency="156",
        icc=original.icc,
        field60=Field60("22", 1),
        mac=bytes(8),
    )


def test_a_terminal_signs_on_and_its_purchase_with_pin_and_mac_is_posted_once_by_the_card_issuer(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Chip]
) -> None:
    own = register(database, hsm)
    pan = funded(banks, "ICBC", 100_000)
    banks.set_pin(SetPin(pan, hsm.encrypt_pin(hsm.get("icbc-zpk"), "147258", pan)))
    chip = terminal_for(pan)

    async def scenario() -> None:
        async with platform(banks, hsm, database, own) as p:
            t = p.terminal
            wrong_pin = await t.send(chip_purchase(t, pan, chip, 1_000, stan=10, pin="147200"))
            assert wrong_pin.response_code is ResponseCode.INCORRECT_PIN and t.verifies(wrong_pin)
            request = chip_purchase(t, pan, chip, 2_500, stan=11, pin="147258")
            answer = await t.send(request)
            assert answer.response_code is ResponseCode.APPROVED and t.verifies(answer)
            assert answer.rrn is not None and answer.auth_code and answer.icc and answer.icc.get("91")
            assert deposit_fen(database, pan) == 100_000 - 2_500
            again = await t.send(request)  # the terminal's retry: same RRN, the issuer's stored answer
            assert again.rrn == answer.rrn and again.response_code is ResponseCode.APPROVED
            assert deposit_fen(database, pan) == 100_000 - 2_500
            before = ledger_snapshot(database)
            rogue = t.hsm.generate_key("rogue", t.hsm.get("mak").usage)
            forged = signed(chip_purchase(t, pan, chip, 500, stan=12), lambda b: t.hsm.pos_mac(rogue, b))
            refused = await t.link.request(forged)
            assert refused.response_code is ResponseCode.MAC_ERROR
            assert ledger_snapshot(database) == before
            assert p.switch.stats.forwarded == 3  # the A0 never left the acquirer

    run(scenario())


def test_issuer_down_is_91_to_the_terminal_and_the_reversal_is_delivered_when_it_comes_back(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Chip]
) -> None:
    own = register(database, hsm)
    pan = funded(banks, "ICBC", 30_000)
    chip = terminal_for(pan)
    icbc_port = free_port()
    before = deposit_fen(database, pan)

    async def scenario() -> None:
        async with platform(banks, hsm, database, own, icbc_port=icbc_port) as p:
            t = p.terminal
            answer = await t.send(chip_purchase(t, pan, chip, 4_000, stan=21))
            assert answer.response_code is ResponseCode.ISSUER_UNAVAILABLE and t.verifies(answer)
            assert saf_counts(database)[0] == 1  # the reversal is on disk before the 91 went back
            await asyncio.sleep(1.5)
            assert saf_counts(database) == (1, 0)  # retried, not answered while the issuer is down
            table = routing(banks, database)
            async with IssuerFrontEnd(banks, "ICBC", table, port=icbc_port, workers=2):
                await eventually(lambda: saf_counts(database) == (0, 1), timeout_s=30)
            assert p.acquirer.saf_delivered == 1 and p.acquirer.saf_retried >= 1

    run(scenario())
    assert deposit_fen(database, pan) == before  # nets to zero


def test_a_terminal_reversal_sent_5_times_is_applied_once_and_one_before_its_original_posts_nothing(
    banks: IssuerService, hsm: SoftHsm, database: Database, terminal_for: Callable[[str], Chip]
) -> None:
    own = register(database, hsm)
    pan = funded(banks, "ICBC", 50_000)
    chip = terminal_for(pan)

    async def scenario() -> None:
        async with platform(banks, hsm, database, own) as p:
            t = p.terminal
            purchase = chip_purchase(t, pan, chip, 7_000, stan=31)
            assert (await t.send(purchase)).response_code is ResponseCode.APPROVED
            assert deposit_fen(database, pan) == 43_000
            reversal = terminal_reversal(purchase)
            acks = [await t.send(reversal) for _ in range(5)]
            assert {a.response_code for a in acks} == {ResponseCode.APPROVED}
            await eventually(lambda: saf_counts(database) == (0, 1), timeout_s=30)
            assert deposit_fen(database, pan) == 50_000
            late = chip_purchase(t, pan, chip, 9_000, stan=41)
            early = await t.send(terminal_reversal(late))  # the reversal before its original
            assert early.response_code is ResponseCode.APPROVED
            refused = await t.send(late)
            assert refused.response_code is ResponseCode.INVALID_TRANSACTION
            await asyncio.sleep(0.3)
            assert deposit_fen(database, pan) == 50_000
            assert p.switch.stats.forwarded == 2  # the purchase and one reversal: the rest never left

    run(scenario())


def test_a_group_of_purchases_reads_its_terminals_registry_in_one_statement(
    database: Database, hsm: SoftHsm, banks: object
) -> None:
    """``bootstrap.acquirer_registry_ahead``: the registry of a group's terminals read once, each check of
    the group answered from it exactly as alone (a registered terminal of its merchant: its acquiring
    bank; of another merchant: 03; not registered: 58), nothing read again."""
    from citycard.acquirer import BeginTransaction, Begun, TransactionKey, TransactionKind, begin_many
    from citycard.bootstrap import acquirer_registry_ahead, acquirer_registry_in_transaction
    from citycard.db.center_repositories import SqlTerminalRegistry
    from citycard.hsm.protection import RecordProtection

    register(database, hsm)
    registry, ahead = acquirer_registry_in_transaction(), acquirer_registry_ahead()
    protection = RecordProtection.open(hsm)
    asked: list[tuple[str, str]] = []
    words: list[object] = []

    def check_of(terminal: str, merchant: str) -> Callable[[AcquirerUnitOfWork], str | None]:
        def check(uow: AcquirerUnitOfWork) -> str | None:
            word = registry(uow, terminal, merchant)
            words.append(word)
            return word.refusal

        return check

    def begin(terminal: str, stan: int) -> BeginTransaction:
        return BeginTransaction(TransactionKey(terminal, 1, stan), MID, TransactionKind.PURCHASE, 100, None)

    real = SqlTerminalRegistry.binding

    def counted(self: SqlTerminalRegistry, terminal_id: str) -> object:
        asked.append((terminal_id, "read" if _reads(self) else "ahead"))
        return real(self, terminal_id)

    def _reads(repo: SqlTerminalRegistry) -> bool:
        found = repo.session.info.get("citycard.center.bindings_ahead")
        return found is None or found[0] is not repo.session.get_transaction()

    cases = [(TID, MID), (TID, "SHOP00000000099"), ("P0000099", MID)]
    alone = []
    for terminal, merchant in cases:  # each alone, in a transaction of its own, for comparison
        with acquirer_unit_of_work(database, protection) as uow:
            alone.append(registry(uow, terminal, merchant))
    SqlTerminalRegistry.binding = counted  # type: ignore[method-assign]
    try:
        results = begin_many(
            [(begin(t, n), check_of(t, m)) for n, (t, m) in enumerate(cases, 1)],
            lambda: acquirer_unit_of_work(database, protection),
            time.time_ns,
            ahead=ahead,
        )
    finally:
        SqlTerminalRegistry.binding = real  # type: ignore[method-assign]
    assert words == alone
    assert [w.refusal for w in alone] == [None, "03", "58"]  # type: ignore[attr-defined]
    assert isinstance(results[0], Begun) and results[0].fresh and results[1:] == ["03", "58"]
    assert [how for _, how in asked] == ["ahead"] * 3  # every check answered from the one read
