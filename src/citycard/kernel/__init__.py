"""The terminal level-2 kernel (EMV 4.3 Books 3-4; JR/T 0025.5/.6/.12/.13): a sans-I/O state machine.

Drive it with :func:`citycard.kernel.runner.run` over any ``transmit(bytes) -> bytes``, or by hand:
``event = kernel.start()`` then ``event = kernel.send(answer)`` until the event is an ``Outcome``.
"""

from __future__ import annotations

from .config import CaPublicKey, ConfigError, TerminalConfig, parse_config
from .events import Outcome, OutcomeKind
from .kernel import CardError, Kernel, Transaction, TransactionKind

__all__ = [
    "CaPublicKey",
    "CardError",
    "ConfigError",
    "Kernel",
    "Outcome",
    "OutcomeKind",
    "TerminalConfig",
    "Transaction",
    "TransactionKind",
    "parse_config",
]
