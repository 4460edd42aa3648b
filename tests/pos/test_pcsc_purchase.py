"""The same EC purchase through pcscd + the vpcd bridge + pyscard, as a terminal with a real reader runs it
(``citycard.pcsc.reader.PcscReader`` as the kernel's transport)."""

from __future__ import annotations

import time

import pytest

from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
from citycard.kernel.runner import run
from citycard.pcsc.reader import PcscReader, ReaderError

from tests.kernel.cardlab import NOW, det_rng, new_card, terminal_config
from tests.pcsc.pcsc_helpers import READER_PREFIX, require_vpcd, served

pytestmark = [pytest.mark.pcsc, pytest.mark.xdist_group("vpcd")]


def _reader(timeout_s: float = 10.0) -> PcscReader:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return PcscReader(READER_PREFIX)
        except ReaderError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_ec_purchase_through_a_pcsc_reader():
    require_vpcd()
    card = new_card("contact", balance_fen=10_000)
    with served(card), _reader() as reader:
        kernel = Kernel(terminal_config(), Transaction(TransactionKind.PURCHASE, NOW, 1_250), det_rng())
        out = run(kernel, reader.transmit)
        balance = run(
            Kernel(terminal_config(), Transaction(TransactionKind.EC_BALANCE, NOW), det_rng()),
            reader.transmit,
        )
    assert out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason
    assert out.ec_balance_fen == 8_750 == balance.ec_balance_fen
