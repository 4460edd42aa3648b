"""Key custody: the HSM interface (:mod:`.api`), key blocks (:mod:`.keyblock`, TR-31 / X9.143 version D),
the software backend (:mod:`.soft`) and the chip personalisation bridge (:mod:`.personalisation`)."""

from __future__ import annotations

from .api import (
    Algorithm,
    Hsm,
    HsmError,
    HsmInputError,
    KeyExistsError,
    KeyHandle,
    KeyNotFoundError,
    KeyUsage,
    KeyUsageError,
)

__all__ = [
    "Algorithm",
    "Hsm",
    "HsmError",
    "HsmInputError",
    "KeyExistsError",
    "KeyHandle",
    "KeyNotFoundError",
    "KeyUsage",
    "KeyUsageError",
]
