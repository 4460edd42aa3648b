"""Terminal kernel + card emulator in one process: a contact EC offline purchase with DDA and a qPBOC bus
fare with fDDA, end to end, APDU for APDU.

Reported per transaction: the median time; the share spent in RSA (every raw RSA operation of either side:
the card's DDA/fDDA signature, the terminal's certificate and signature recoveries), in the card emulator
(excluding its RSA) and in the kernel (excluding its RSA); and the median as a fraction of the two budgets a
terminal vendor works to: a 300 ms bus-gate budget and a 500 ms contactless transaction budget (target:
a qPBOC fare within 1 % of the gate budget). Baseline measured in the same run: one raw RSA-1024 private
operation (CRT, gmpy2), the card's unavoidable cost per DDA/fDDA. Run: ``python -m benchmarks kernel``.
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from citycard.chip.card import Card, Interface
from citycard.chip.image import CardImage
from citycard.chip.personalise import ProductProfile, personalise
from citycard.crypto import rsa_cert
from citycard.demokeys import DemoKeys
from citycard.kernel.config import CaPublicKey, TerminalConfig
from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
from citycard.kernel.runner import run

GATE_BUDGET_MS = 300.0
CONTACTLESS_BUDGET_MS = 500.0
NOW = dt.datetime(2026, 11, 25, 8, 0, 0)
ROUNDS = 200


class _Clock:
    """Accumulates the time spent inside wrapped callables."""

    def __init__(self) -> None:
        self.total = 0.0

    def wrap(self, fn: Callable) -> Callable:  # type: ignore[type-arg]
        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start

        return timed


def _measure(
    label: str, image: bytes, config: TerminalConfig, interface: Interface, amount_fen: int
) -> tuple[str, float, float, float, float, bool]:
    rsa = _Clock()
    card_clock = _Clock()
    orig_pub, orig_priv = rsa_cert.rsa_public_raw, rsa_cert.rsa_private_raw
    rsa_cert.rsa_public_raw = rsa.wrap(orig_pub)
    rsa_cert.rsa_private_raw = rsa.wrap(orig_priv)
    card_rsa = _Clock()
    times: list[float] = []
    rsa_times: list[float] = []
    card_times: list[float] = []
    ok = True
    rnd = random.Random(1)
    try:
        for _ in range(ROUNDS):
            card = Card(CardImage.from_json(image), rnd.randbytes)
            card.power_on(interface)
            transmit = card.transmit
            kernel = Kernel(
                config,
                Transaction(TransactionKind.PURCHASE, NOW, amount_fen, interface=interface),
                rnd.randbytes,
            )
            rsa.total = card_clock.total = card_rsa.total = 0.0

            def card_side(apdu: bytes, transmit: Callable[[bytes], bytes] = transmit) -> bytes:
                before = rsa.total
                start = time.perf_counter()
                try:
                    return transmit(apdu)
                finally:
                    card_clock.total += time.perf_counter() - start
                    card_rsa.total += rsa.total - before

            start = time.perf_counter()
            outcome = run(kernel, card_side)
            times.append(time.perf_counter() - start)
            rsa_times.append(rsa.total)
            card_times.append(card_clock.total - card_rsa.total)
            ok = ok and outcome.approved
    finally:
        rsa_cert.rsa_public_raw, rsa_cert.rsa_private_raw = orig_pub, orig_priv
    median = statistics.median(times)
    total = sum(times)
    return (
        label,
        median,
        sum(rsa_times) / total,
        sum(card_times) / total,
        1 - (sum(rsa_times) + sum(card_times)) / total,
        ok,
    )


def _validator_app(image: bytes, other: bytes | None, config: TerminalConfig, fare_fen: int) -> float:
    """Median time of a whole validator tap through ``PosTerminal.validate`` with the SQLite journal
    (WAL, synchronous=FULL: two durable commits per fare), each in a fresh journal. With ``other``,
    another rider (that image) paid a second before (untimed): the validator then reads the tapping
    card's latest log record before the GPO (its double-tap guard); without, the validator was idle."""
    import tempfile
    from pathlib import Path

    from citycard.pos.terminal import PosTerminal
    from citycard.sqlite_journal import SqliteJournal

    rnd = random.Random(2)
    times: list[float] = []
    for _ in range(ROUNDS // 4):
        with tempfile.TemporaryDirectory() as tmp:
            journal = SqliteJournal(Path(tmp) / "journal.db", "BUS00001")
            now = [NOW]

            def clock(now: list[dt.datetime] = now) -> dt.datetime:
                return now[0]

            pos = PosTerminal(config, journal, clock=clock, rng=rnd.randbytes)
            if other is not None:
                rider = Card(CardImage.from_json(other), rnd.randbytes)
                rider.power_on("contactless")
                assert pos.validate(rider.transmit, fare_fen).approved
                now[0] = NOW + dt.timedelta(seconds=1)
            card = Card(CardImage.from_json(image), rnd.randbytes)
            card.power_on("contactless")
            start = time.perf_counter()
            result = pos.validate(card.transmit, fare_fen)
            times.append(time.perf_counter() - start)
            assert result.approved, result.outcome.reason
            journal.close()
    return statistics.median(times)


def main() -> None:
    keys = DemoKeys.generate(random.Random(7).randbytes)
    rid, index, ca = keys.ca_public_key()
    config = TerminalConfig(capks=(CaPublicKey(bytes.fromhex(rid), index, ca.modulus, ca.exponent),))
    validator = replace(
        config, terminal_type=0x26, ttq=bytes.fromhex("28000000"), contactless_cvm_limit_fen=0
    )
    image = personalise(ProductProfile(opening_balance_fen=100_000), 1, keys).to_json()

    base_key = keys.issuer_key
    block = (1).to_bytes(base_key.size, "big")
    start = time.perf_counter()
    for _ in range(500):
        rsa_cert.rsa_private_raw(base_key, block)
    baseline = (time.perf_counter() - start) / 500

    rows = [
        _measure("contact EC purchase, DDA", image, config, "contact", 1_250),
        _measure("qPBOC fare, fDDA (validator)", image, validator, "contactless", 200),
    ]
    print(f"{ROUNDS} transactions each; baseline: one RSA-1024 private operation = {baseline * 1e3:.3f} ms")
    head = (
        f"{'transaction':<30} {'median ms':>9} {'x RSA op':>8} {'RSA':>6} {'card':>6} {'kernel':>7} "
        f"{'/300ms gate':>11} {'/500ms cl':>9} {'ok':>3}"
    )
    print(head)
    print("-" * len(head))
    for label, median, rsa_share, card_share, kernel_share, ok in rows:
        print(
            f"{label:<30} {median * 1e3:>9.2f} {median / baseline:>8.1f} {rsa_share:>6.1%} "
            f"{card_share:>6.1%} {kernel_share:>7.1%} {median * 1e3 / GATE_BUDGET_MS:>11.2%} "
            f"{median * 1e3 / CONTACTLESS_BUDGET_MS:>9.2%} {'yes' if ok else 'NO':>3}"
        )
    other = personalise(ProductProfile(opening_balance_fen=100_000), 2, keys).to_json()
    for label, previous in (("validator app, idle", None), ("validator app, busy", other)):
        app = _validator_app(image, previous, config, 200)
        print(
            f"{label:<30} {app * 1e3:>9.2f} {app / baseline:>8.1f} {'':>6} {'':>6} {'':>7} "
            f"{app * 1e3 / GATE_BUDGET_MS:>11.2%} {app * 1e3 / CONTACTLESS_BUDGET_MS:>9.2%} yes"
        )


if __name__ == "__main__":
    main()
