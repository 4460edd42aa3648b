"""The switch: routes host-to-host ISO 8583 requests from acquirers to the issuing banks' front ends.

Domain ring, pure (no asyncio, no storage): the routing table (longest BIN prefix of the PAN → issuing
bank, :mod:`.routing`) and the decisions the switch takes for each request (:mod:`.decisions`): where it
goes, whether its PIN block is translated and between which zone PIN keys, and what the acquirer is answered
when the issuer does not answer. The asyncio front end that carries these decisions out is
``citycard.hosts.switch``; see ``docs/network.md`` ("The switch").
"""

from __future__ import annotations

from .decisions import (
    Forward,
    Leg,
    PinTranslation,
    Refuse,
    TwoLegs,
    answer_when_unanswered,
    decide,
    split_other_account_load,
)
from .routing import BinRoute, Member, RoutingError, RoutingTable

__all__ = [
    "BinRoute",
    "Forward",
    "Leg",
    "Member",
    "PinTranslation",
    "Refuse",
    "RoutingError",
    "RoutingTable",
    "TwoLegs",
    "answer_when_unanswered",
    "decide",
    "split_other_account_load",
]
