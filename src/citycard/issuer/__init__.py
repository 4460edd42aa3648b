"""The issuing bank: products, cardholders, issuance, online authorization, EC load and the card's life.

Domain ring: commands (:mod:`.commands`), handlers (:mod:`.handlers`), values (:mod:`.model`), read shapes
(:mod:`.views`) and ports (:mod:`.ports`). Storage comes in through the ports (``citycard.db``); keys stay
in the HSM (``citycard.hsm.api``).
"""

from __future__ import annotations
