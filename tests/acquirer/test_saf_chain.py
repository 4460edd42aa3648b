"""10,000 refund advices in the acquirer's store-and-forward queue, drained by ``citycard serve acquirer``
(a real process) through the real switch and issuer front end to the issuer service; the acquirer killed
with SIGKILL mid-flush and started again. Counted at the issuer: the purchase they refund (1 fen each) is
refunded by exactly 10,000 fen and the card's deposit account is whole again. SQLite (the acquirer process
shares the file with the issuer; the PostgreSQL fixture lives in a schema the process cannot be given)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from citycard.acquirer import SafEntry, SafKind, SafStatus, format_rrn
from citycard.codec.iso8583 import AdviceRequest, Field60, ResponseCode
from citycard.db import Database
from citycard.db.acquirer_repositories import acquirer_unit_of_work
from citycard.db.issuer_repositories import IssuerUnitOfWork
from citycard.hosts.issuer import IssuerFrontEnd
from citycard.hosts.switch import SwitchFrontEnd, SwitchLimits
from citycard.hosts.zone import ZoneMac
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import DirectoryKeyStore, SoftHsm
from citycard.issuer.handlers import IssuerService
from citycard.net.link import Iso8583Link

from tests.acquirer.support import enter_zone_key, eventually, saf_counts
from tests.hosts import conftest as chain_fixtures
from tests.hosts.conftest import ACQUIRER_TPDU, BOC_ID, FAST_LINK, funded, purchase, routing
from tests.hosts.test_chain import deposit_fen
from tests.issuer.conftest import Terminal as Chip
from tests.net.support import run

banks = chain_fixtures.banks
certify_issuer = chain_fixtures.certify_issuer
clock = chain_fixtures.clock
database = chain_fixtures.database
demo_ca = chain_fixtures.demo_ca
hsm = chain_fixtures.hsm
service = chain_fixtures.service
sink = chain_fixtures.sink
terminal_for = chain_fixtures.terminal_for

ADVICES = 10_000
ROOT = Path(__file__).parents[2]
ORIGINAL_RRN = "900000000001"


def refund(n: int, template: dict[str, object]) -> bytes:
    return AdviceRequest(
        **template,  # type: ignore[arg-type]
        amount_fen=1,
        stan=n % 1_000_000,
        rrn=format_rrn(n),
        original=f"000001000001{1203:04d}{ORIGINAL_RRN}",
    ).to_bytes()


def refunded_fen(db: Database) -> int:
    with db.unit_of_work(IssuerUnitOfWork, read_only=True) as uow:
        stored = uow.authorizations.get(f"{BOC_ID}-{ORIGINAL_RRN}")
    assert stored is not None
    return stored.refunded_fen


# SQLite only: the acquirer child takes its database by URL, and a test's PostgreSQL schema cannot be named
# in one. The acquirer's store-and-forward on PostgreSQL is covered in-process by the other chain tests.
@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
def test_10000_refund_advices_killed_mid_flush_are_each_applied_once_by_the_issuer(
    banks: IssuerService,
    hsm: SoftHsm,
    database: Database,
    terminal_for: Callable[[str], Chip],
    tmp_path: Path,
) -> None:
    url = str(database.engine.url)
    assert url.startswith("sqlite"), url  # the child process is given the database by URL (no schema option)
    pan = funded(banks, "ICBC", 200_000)
    original = purchase(pan, terminal_for(pan).first_ac(ADVICES), ADVICES, ORIGINAL_RRN, stan=1)
    template: dict[str, object] = {
        "mti": "0220",
        "pan": pan,
        "processing_code": "200000",
        "pos_entry_mode": "051",
        "card_sequence_number": "001",
        "condition_code": "00",
        "acquirer_id": BOC_ID,
        "terminal_id": original.terminal_id,
        "merchant_id": original.merchant_id,
        "currency": "156",
        "field60": Field60("25", 1),
    }
    # queued as the acquirer process queues them: sealed under its data key (its HSM: home and master key)
    acquirer_hsm = SoftHsm(bytes.fromhex("22" * 32), DirectoryKeyStore(tmp_path / "acquirer-home/hsm/keys"))
    enter_zone_key(acquirer_hsm)  # the acquirer process and the switch share the acquirer leg's key
    zones = {"acquirer": enter_zone_key(hsm), "ICBC": ZoneMac.open(hsm, "ICBC")}
    with acquirer_unit_of_work(database, RecordProtection.open(acquirer_hsm)) as uow:
        for n in range(1, ADVICES + 1):
            message = refund(n, template)
            entry = SafEntry(0, SafKind.ADVICE, format_rrn(n), message, SafStatus.PENDING, 0, 0, None, 0)
            assert uow.saf.add(entry) is not None
        uow.commit()
    env = {
        **os.environ,
        "CITYCARD_HOME": str(tmp_path / "acquirer-home"),
        "CITYCARD_DATABASE_URL": url,
        "CITYCARD_HSM_MASTER_KEY": "22" * 32,
        "PYTHONPATH": str(ROOT / "src"),
    }

    async def acquirer(port: int) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from citycard.cli import main; main()",
            "serve",
            "acquirer",
            "--port",
            "0",
            "--switch",
            f"127.0.0.1:{port}",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def scenario() -> None:
        table = routing(banks, database)
        async with (
            IssuerFrontEnd(banks, "ICBC", table, workers=2, zone=zones["ICBC"]) as icbc,
            SwitchFrontEnd(
                table, {"ICBC": ("127.0.0.1", icbc.port)}, hsm, limits=SwitchLimits(), zones=zones
            ) as switch,
        ):
            async with Iso8583Link("127.0.0.1", switch.port, tpdu=ACQUIRER_TPDU, limits=FAST_LINK) as link:
                answer = await link.request(zones["acquirer"].sign(original))
                assert answer.response_code is ResponseCode.APPROVED
            assert deposit_fen(database, pan) == 200_000 - ADVICES
            first = await acquirer(switch.port)
            await eventually(lambda: refunded_fen(database) >= ADVICES // 4, timeout_s=180)
            first.kill()
            await first.wait()
            at_kill = refunded_fen(database)
            assert at_kill < ADVICES, "killed after the flush: the test proves nothing"
            second = await acquirer(switch.port)
            await eventually(lambda: saf_counts(database) == (0, ADVICES), timeout_s=300)
            second.terminate()
            _, err = await second.communicate()
            assert second.returncode == 0, err
            # repeats: at most the round the killed process had not committed, and one more send of each
            # advice the issuer front end did not answer within the switch's hop timeout (a loaded machine)
            assert switch.stats.forwarded - 1 - ADVICES <= 256 + switch.stats.unanswered

    run(scenario(), deadline_s=600)
    assert refunded_fen(database) == ADVICES  # each refund applied exactly once, counted at the issuer
    assert deposit_fen(database, pan) == 200_000
