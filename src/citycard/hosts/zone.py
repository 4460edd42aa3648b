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
the first time (two processes at once keep one: the key store never overwrites).

**Key exchange and rotation** (docs/network.md "Zone keys: exchange and rotation"). A link's ZAK is replaced
by a network management request on that link, 0800 with 60.3 = ``101`` (our code: no public text gives
UnionPay's host-to-host one) and field 62 = :class:`~citycard.codec.iso8583.ZoneKeyExchange` (version ‖ the
new ZAK under the link's zone master key ``zone/<link>/zmk`` (``K0``) ‖ its check value), MACed under the
current ZAK. The sender makes the key (:func:`new_zone_key`, ``hsm.generate_working_key``, kept as
``zone/<link>/zak/<version>``); the receiver takes it in (:meth:`ZoneMac.accept`, ``hsm.import_working_key``,
kept as ``zone/<link>/zak/<version>/received``, which checks the check value: a wrong one is answered
``A7`` and nothing changes), signs from then on under it, and accepts the previous key for ``grace_s``
(300 s). The sender's side adopts the new version when a MAC that no known key verifies leads it to read
the HSM's labels again (at most once a second): a received copy of a newer version means the exchange was
agreed. Version 1 is the original ``zone/<link>/zak``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Final

from citycard.codec.iso8583 import (
    Field60,
    Message,
    NetworkManagementRequest,
    ResponseCode,
    ZoneKeyExchange,
    mac_block,
)
from citycard.codec.iso8583.signon import SignOnKeysError
from citycard.hsm.api import Algorithm, Hsm, HsmInputError, KeyExistsError, KeyHandle, KeyUsage
from citycard.hsm.protection import key_or_new

from .answers import answer

OPERATOR_TERMINAL: Final = "ZONEKEYS"
"""Fields 41 and 42 of an operator's key exchange (``citycard zone rotate``)."""
OPERATOR_MERCHANT: Final = "ZONEKEYS0000000"

__all__ = [
    "ACQUIRER_LINK",
    "DEFAULT_GRACE_S",
    "KEY_EXCHANGE",
    "ZoneMac",
    "is_key_exchange",
    "key_exchange_request",
    "new_zone_key",
    "rotate_zone_key",
    "zak_label",
    "zmk_label",
]

ACQUIRER_LINK: Final = "acquirer"
"""The link name of the acquirer ↔ switch leg (a bank's code names its switch ↔ issuer leg)."""
KEY_EXCHANGE: Final = "101"
"""60.3 of a zone key exchange (0800)."""
DEFAULT_GRACE_S: Final = 300.0
"""How long the previous ZAK of a link is still accepted once a new one is in use."""
_REFRESH_S: Final = 1.0
"""At most one reading of the HSM's labels per second (a peer sending bad MACs cannot make more)."""


def zak_label(link: str, version: int = 1) -> str:
    return f"zone/{link}/zak" if version == 1 else f"zone/{link}/zak/{version}"


def _received_label(link: str, version: int) -> str:
    return f"{zak_label(link, version)}/received"


def zmk_label(link: str) -> str:
    return f"zone/{link}/zmk"


def _is_echo(message: Message) -> bool:
    return (
        isinstance(message, NetworkManagementRequest)
        and message.mti == "0820"
        and message.field60 is not None
        and message.field60.network_code == "301"
    )


def is_key_exchange(message: Message) -> bool:
    return (
        isinstance(message, NetworkManagementRequest)
        and message.mti == "0800"
        and message.field60 is not None
        and message.field60.network_code == KEY_EXCHANGE
    )


def _zmk(hsm: Hsm, link: str) -> KeyHandle:
    return key_or_new(hsm, zmk_label(link), KeyUsage.KEK, Algorithm.TDEA)


def new_zone_key(hsm: Hsm, link: str, version: int) -> ZoneKeyExchange:
    """The sender's side: a new ZAK of ``version`` made in ``hsm`` under the link's zone master key;
    :class:`KeyExistsError` when that version was made already."""
    made = hsm.generate_working_key(zak_label(link, version), _zmk(hsm, link), KeyUsage.MAC_X9_19)
    return ZoneKeyExchange(version, made.encrypted, made.check_value)


def key_exchange_request(exchange: ZoneKeyExchange, stan: int, terminal_id: str, merchant_id: str) -> Message:
    """The 0800 carrying ``exchange`` (to be MACed under the link's current ZAK)."""
    return NetworkManagementRequest(
        mti="0800",
        stan=stan,
        terminal_id=terminal_id,
        merchant_id=merchant_id,
        field60=Field60("00", 0, KEY_EXCHANGE),
        private62=exchange.encode(),
    )


class ZoneMac:
    """Field 64 of one link under its ZAK in ``hsm`` (module docstring): signs under the current version,
    verifies under it or a previous one within its grace time; single-threaded (the event loop's)."""

    def __init__(
        self,
        hsm: Hsm,
        link: str,
        keys: dict[int, KeyHandle],
        *,
        grace_s: float = DEFAULT_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert keys and grace_s >= 0
        self.hsm, self.link, self.grace_s, self._clock = hsm, link, grace_s, clock
        self._keys = dict(keys)
        self.version = max(keys)
        now = clock()
        self._retired = {v: now for v in keys if v != self.version}  # the previous ones: grace from now
        self._refreshed = float("-inf")

    @classmethod
    def open(cls, hsm: Hsm, link: str, *, grace_s: float = DEFAULT_GRACE_S) -> ZoneMac:
        """The link's ZAK (version 1 made in ``hsm`` the first time) and every agreed later version."""
        keys = {1: key_or_new(hsm, zak_label(link), KeyUsage.MAC_X9_19, Algorithm.TDEA)}
        keys.update(_agreed(hsm, link, hsm.labels()))
        return cls(hsm, link, keys, grace_s=grace_s)

    @property
    def key(self) -> KeyHandle:
        return self._keys[self.version]

    def _mac(self, key: KeyHandle, encoded: bytes) -> bytes:
        return self.hsm.pos_mac(key, mac_block(encoded))

    def sign(self, message: Message) -> Message:
        """``message`` with field 64 under the current ZAK (encoded once: ``Message.signed``)."""
        key = self.key
        return message.signed(lambda block: self.hsm.pos_mac(key, block))

    def _usable(self) -> list[KeyHandle]:
        now = self._clock()
        usable = [self.key]
        usable += [self._keys[v] for v, since in self._retired.items() if now - since <= self.grace_s]
        return usable

    def _matches(self, encoded: bytes, mac: bytes) -> bool:
        for _ in range(2):
            if any(hmac.compare_digest(self._mac(key, encoded), mac) for key in self._usable()):
                return True
            if not self.refresh():
                return False
        return False

    def refresh(self) -> bool:
        """Read the HSM's labels again (at most once a second): True when a newer agreed version was
        found and is now the current one (the old one retired, accepted for its grace time)."""
        now = self._clock()
        if now - self._refreshed < _REFRESH_S:
            return False
        self._refreshed = now
        newer = {v: k for v, k in _agreed(self.hsm, self.link, self.hsm.labels()).items() if v > self.version}
        if not newer:
            return False
        self._adopt(newer)
        return True

    def _adopt(self, keys: dict[int, KeyHandle]) -> None:
        now = self._clock()
        self._keys.update(keys)
        self._retired[self.version] = now
        self.version = max(self._keys)
        self._retired.pop(self.version, None)

    def verifies(self, message: Message) -> bool:
        """Whether ``message`` carries a field 64 that is its MAC under a usable ZAK (constant-time): over
        the bytes received when the link or server decoded it (``codec.iso8583.note_received``), else
        over its encoding."""
        if message.mac is None:
            return False
        return self._matches(message.to_bytes(), message.mac)

    async def check_request(self, request: Message, encoded: bytes) -> bool:
        """``Iso8583Server``'s ``mac_check``: field 64 of the request as received is its MAC; an echo test
        (0820, 60.3 = ``301``) passes without one (it moves nothing and is answered by the hop itself)."""
        if request.mac is None:
            return _is_echo(request)
        return self._matches(encoded, request.mac)

    def answer_ok(self, answer: Message) -> bool:
        """An answer to act on: MACed under a usable ZAK, or an ``A0`` (module docstring)."""
        return answer.response_code == ResponseCode.MAC_ERROR or self.verifies(answer)

    def accept(self, request: Message) -> Message:
        """The receiver's answer to a key exchange (its MAC already checked): ``00`` once the new key is
        kept (and in use), ``A7`` with nothing changed when its check value does not match, ``30`` when
        field 62 is not the layout, ``12`` for a version not above the current one (a repeat of the last
        exchange, with the same check value, is answered ``00`` again)."""
        assert is_key_exchange(request)
        try:
            exchange = ZoneKeyExchange.decode(request.private62 or b"")
        except SignOnKeysError:
            return answer(request, ResponseCode.FORMAT_ERROR)
        label = _received_label(self.link, exchange.version)
        if exchange.version <= self.version:
            repeat = exchange.version == self.version and self.key.label == label
            same = repeat and self.key.kcv == exchange.check_value[:3].hex().upper()
            return answer(request, ResponseCode.APPROVED if same else ResponseCode.INVALID_TRANSACTION)
        try:
            key = self.hsm.import_working_key(
                label,
                _zmk(self.hsm, self.link),
                KeyUsage.MAC_X9_19,
                exchange.key_under_zmk,
                exchange.check_value,
            )
        except HsmInputError:
            return answer(request, ResponseCode.SECURITY_PROCESSING_FAILED)
        except KeyExistsError:  # taken in already (by another process on this key store): the same key?
            key = self.hsm.get(label)
            if key.kcv != exchange.check_value[:3].hex().upper():
                return answer(request, ResponseCode.SECURITY_PROCESSING_FAILED)
        self._adopt({exchange.version: key})
        return answer(request, ResponseCode.APPROVED)


def _agreed(hsm: Hsm, link: str, labels: list[str]) -> dict[int, KeyHandle]:
    """The versions above 1 whose exchange was accepted (a received copy exists), by version."""
    prefix, out = f"zone/{link}/zak/", {}
    for label in labels:
        rest = label.removeprefix(prefix)
        if rest != label and rest.endswith("/received") and rest[: -len("/received")].isdigit():
            version = int(rest[: -len("/received")])
            out[version] = hsm.get(label)
    return out


async def rotate_zone_key(
    hsm: Hsm, link: str, host: str, port: int, *, stan: int = 1, timeout_s: float = 10.0
) -> tuple[int, ResponseCode]:
    """The operator's side of a key exchange on ``link`` (``citycard zone rotate``): a new ZAK version made
    in ``hsm`` and sent to the link's receiving end at ``host:port`` (a bank's issuer front end, or the
    switch for the acquirer link) in an 0800 MACed under the current ZAK. Returns (version, its answer);
    the hosts sending on the link take the new key up by themselves (module docstring). A version made by an
    exchange that failed is never used: the next attempt makes the next one."""
    from citycard.codec.iso8583 import Tpdu
    from citycard.net.link import Iso8583Link

    zone = ZoneMac.open(hsm, link)
    version = zone.version + 1
    while True:
        try:
            exchange = new_zone_key(hsm, link, version)
            break
        except KeyExistsError:  # made by an attempt that was refused or never answered
            version += 1
    request = zone.sign(key_exchange_request(exchange, stan, OPERATOR_TERMINAL, OPERATOR_MERCHANT))
    async with Iso8583Link(host, port, tpdu=Tpdu(0, 0)) as connection:
        response = await connection.request(request, timeout_s=timeout_s)
    assert response.response_code is not None
    return version, ResponseCode(response.response_code)
