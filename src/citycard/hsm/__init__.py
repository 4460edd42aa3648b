"""Key custody: the HSM interface (:mod:`.api`), key blocks (:mod:`.keyblock`, TR-31 / X9.143 version D),
the software backend (:mod:`.soft`) and the chip personalisation bridge (:mod:`.personalisation`).

The package re-exports the interface (:data:`citycard.hsm.api.__all__`): ``from citycard.hsm import Hsm``.
"""

from __future__ import annotations

from . import api
from .api import *  # noqa: F403  (the interface is the package's public surface, listed once in api)

__all__ = list(api.__all__)
