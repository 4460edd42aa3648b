from __future__ import annotations

from citycard.kernel.kernel import Kernel, Transaction, TransactionKind
from citycard.kernel.runner import run

from .cardlab import NOW, det_rng, new_card, terminal_config


def test_contact_ec_purchase():
    card = new_card("contact")
    trace = []
    k = Kernel(terminal_config(), Transaction(TransactionKind.PURCHASE, NOW, 1250), det_rng())
    out = run(k, card.transmit, trace=lambda p, c, r: trace.append((p, c.hex(), r.hex())))
    for t in trace:
        print(t)
    print(out.kind, out.reason, out.tvr.hex(), out.ec_balance_fen)
    assert out.approved
