"""10,000 advices queued at the acquirer, the acquirer (``citycard serve acquirer``, a real process) killed
with SIGKILL mid-flush and started again: every advice reaches the issuer (the switch double, idempotent by
request id 32-37 as the issuer is), none is lost, and the repeats are bounded by the one batch whose results
the killed process had not committed. Then SIGTERM stops it cleanly with nothing left in the queue."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from citycard.acquirer import SafEntry, SafKind, SafPolicy, SafStatus, format_rrn
from citycard.codec.iso8583 import AdviceRequest, Field60
from citycard.db import Database, migrate
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work
from citycard.hsm.protection import RecordProtection
from citycard.hsm.soft import DirectoryKeyStore, SoftHsm

from tests.acquirer.support import (
    INSTITUTION,
    MERCHANT,
    PAN,
    TERMINAL,
    SwitchDouble,
    enter_zone_key,
    eventually,
    switch,
)
from tests.net.support import run

ADVICES = 10_000
ROOT = Path(__file__).parents[2]


def advice(n: int) -> bytes:
    return AdviceRequest(
        mti="0220",
        pan=PAN,
        processing_code="200000",
        amount_fen=100,
        stan=n % 1_000_000,
        pos_entry_mode="071",
        condition_code="00",
        acquirer_id=INSTITUTION,
        rrn=format_rrn(n),
        terminal_id=TERMINAL,
        merchant_id=MERCHANT,
        currency="156",
        field60=Field60("25", 1),
    ).to_bytes()


def fill(database: Database, home: Path) -> None:
    """Queued as the acquirer process queues them: sealed under its data key (its home's HSM), whose zone
    MAC key for the switch leg is the one the switch double MACs its answers with."""
    hsm = SoftHsm(bytes.fromhex("11" * 32), DirectoryKeyStore(home / "hsm" / "keys"))
    enter_zone_key(hsm)
    with acquirer_unit_of_work(database, RecordProtection.open(hsm)) as uow:
        for n in range(1, ADVICES + 1):
            entry = SafEntry(0, SafKind.ADVICE, format_rrn(n), advice(n), SafStatus.PENDING, 0, 0, None, 0)
            assert uow.saf.add(entry) is not None
        uow.commit()


def counts(database: Database) -> tuple[int, int]:
    with database.unit_of_work(AcquirerUnitOfWork, read_only=True) as uow:
        return uow.saf.count(SafStatus.PENDING), uow.saf.count(SafStatus.DONE)


def test_10000_advices_survive_a_kill_mid_flush_and_each_reaches_the_issuer_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'citycard.db'}"
    migrate(url)
    database = Database.open(url)
    fill(database, tmp_path)
    double = SwitchDouble(zone=enter_zone_key(SoftHsm(bytes(32))))
    env = {
        **os.environ,
        "CITYCARD_HOME": str(tmp_path),
        "CITYCARD_HSM_MASTER_KEY": "11" * 32,
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
        async with switch(double) as sw:
            first = await acquirer(sw.port)
            await eventually(lambda: len(double.applied) >= ADVICES // 4, timeout_s=300)
            first.kill()  # SIGKILL: no clean stop, results of the batch in flight not committed
            await first.wait()
            at_kill = len(double.applied)
            pending, done = await asyncio.to_thread(counts, database)
            assert at_kill < ADVICES and pending > 0, "killed after the flush: the test proves nothing"
            assert done <= at_kill
            second = await acquirer(sw.port)
            await eventually(lambda: len(double.applied) == ADVICES, timeout_s=300)
            await eventually(lambda: counts(database) == (0, ADVICES), timeout_s=30)
            second.send_signal(signal.SIGTERM)
            out, err = await second.communicate()
            assert second.returncode == 0, err
            assert b"stopped\n0 reversal(s) and advice(s) queued" in out

    try:
        run(scenario(), deadline_s=600)  # bounds for a loaded machine: about 15 s when idle
    finally:
        database.close()
    assert set(double.applied) == {f"{INSTITUTION}-{format_rrn(n)}" for n in range(1, ADVICES + 1)}
    repeats = sum(double.deliveries.values()) - ADVICES
    assert 0 <= repeats <= SafPolicy().batch  # at most the batch whose results were not committed
