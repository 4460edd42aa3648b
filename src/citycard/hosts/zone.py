"""Field 64 on the host-to-host legs: a zone MAC key (ZAK) per link, checked at each hop (issue 8).

The legs acquirer → switch and switch → each bank's issuer front end carry field 64 as the terminal leg
does (ANSI X9.19, ISO 9797-1 MAC algorithm 3, over the message from the MTI to the end of field 63:
``codec.iso8583.mac_block``), under the link's own double-length 3DES key (``M3``) in the HSM:

=====================================  ========================  ===========================================
link                                   key label                 who MACs / checks
=====================================  ========================  ===========================================
acquirer ↔ switch                      ``zone/acquirer/zak``     acquirer MACs its requests, checks answers;
                                                                 switch checks requests, MACs its answers
switch ↔ issuer front end of ``B``     ``zone/B/zak``            switch MACs what it forwards, checks
                                                                 answers; front end checks, MACs answers
=====================================  ========================  ===========================================

A request whose MAC is missing or wrong is answered ``A0`` by the receiving server
(``Iso8583Server(mac_check=...)``) before any handler runs: nothing is forwarded or posted. An echo test
(0820, 60.3 = ``301``) is taken without a MAC: it moves nothing and each hop answers it itself. An answer
whose MAC is missing or wrong is treated as no answer (the acquirer declines and reverses, the switch
answers ``91``, a SAF entry is sent again), except an ``A0`` answer, which is accepted unMACed (a peer whose
key differs cannot MAC it, and it approves nothing).

The keys are held in the platform HSM, which the acquirer, the switch and the issuer front ends share (one
process, or one key store for ``citycard serve ...`` processes): :meth:`ZoneMac.open` makes a link's key
the first time (two processes at once keep one: the key store never overwrites). Exchanging a ZAK under a
zone master key between two HSMs of different owners is not done.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from typing import Final

from citycard.codec.iso8583 import Message, NetworkManagementRequest, ResponseCode, mac_block
from citycard.hsm.api import Algorithm, Hsm, KeyHandle, KeyUsage
from citycard.hsm.protection import key_or_new

__all__ = ["ACQUIRER_LINK", "ZoneMac", "zak_label"]

ACQUIRER_LINK: Final = "acquirer"
"""The link name of the acquirer ↔ switch leg (a bank's code names its switch ↔ issuer leg)."""


def zak_label(link: str) -> str:
    return f"zone/{link}/zak"


def _is_echo(message: Message) -> bool:
    return (
        isinstance(message, NetworkManagementRequest)
        and message.mti == "0820"
        and message.field60 is not None
        and message.field60.network_code == "301"
    )


@dataclass(frozen=True, slots=True)
class ZoneMac:
    """Field 64 of one link under its ZAK in ``hsm`` (module docstring)."""

    hsm: Hsm
    key: KeyHandle

    @classmethod
    def open(cls, hsm: Hsm, link: str) -> ZoneMac:
        """The link's ZAK, made in ``hsm`` the first time."""
        return cls(hsm, key_or_new(hsm, zak_label(link), KeyUsage.MAC_X9_19, Algorithm.TDEA))

    def _mac(self, encoded: bytes) -> bytes:
        return self.hsm.pos_mac(self.key, mac_block(encoded))

    def sign(self, message: Message) -> Message:
        """``message`` with field 64 under the ZAK."""
        return replace(message, mac=self._mac(replace(message, mac=bytes(8)).to_bytes()))

    def verifies(self, message: Message) -> bool:
        """Whether ``message`` carries a field 64 that is its MAC under the ZAK (constant-time compare)."""
        if message.mac is None:
            return False
        return hmac.compare_digest(self._mac(message.to_bytes()), message.mac)

    async def check_request(self, request: Message, encoded: bytes) -> bool:
        """``Iso8583Server``'s ``mac_check``: field 64 of the request as received is its MAC; an echo test
        (0820, 60.3 = ``301``) passes without one (it moves nothing and is answered by the hop itself)."""
        if request.mac is None:
            return _is_echo(request)
        return hmac.compare_digest(self._mac(encoded), request.mac)

    def answer_ok(self, answer: Message) -> bool:
        """An answer to act on: MACed under the ZAK, or an ``A0`` (module docstring)."""
        return answer.response_code == ResponseCode.MAC_ERROR or self.verifies(answer)
