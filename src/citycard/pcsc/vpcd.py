"""Bridge an emulated card into PC/SC through vsmartcard's virtual reader driver ``vpcd``.

The Debian package ``vsmartcard-vpcd`` installs a pcsc-lite driver ("Virtual PCD" reader) that listens on
TCP port 35963 (first slot). A virtual card connects to it as a client; from then on every PC/SC
application (pyscard, ``pcsc_scan``, ``opensc-tool``, a bank's terminal software) sees a card inserted.

The wire protocol (vsmartcard documentation, "Creating a virtual smart card"): every message in both
directions is a 2-byte big-endian length followed by that many bytes. From the reader, a 1-byte message is
a control code — ``00`` power off, ``01`` power on, ``02`` reset, ``04`` get ATR (answered with the ATR);
the first three get no answer. Any longer message is a command APDU, answered with the response APDU.

This module is an adapter (it does socket I/O). The card itself stays in the pure ``chip`` package; the
caller passes an object with ``power_on() -> atr``, ``power_off()`` and ``transmit(apdu) -> response``, and
an ``after_command`` hook that persists the card image after each APDU.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from citycard.chip.card import Card, Interface
from citycard.files import card_lock_path, exclusive_lock, load_card, save_card

__all__ = [
    "DEFAULT_PORT",
    "CardFileBridge",
    "VirtualCard",
    "VpcdError",
    "VpcdStats",
    "parse_address",
    "serve",
    "serve_card_file",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 35963
MAX_MESSAGE = 65_535 + 2  # a 16-bit length prefix cannot announce more
_CTRL_OFF, _CTRL_ON, _CTRL_RESET, _CTRL_ATR = 0x00, 0x01, 0x02, 0x04


class VirtualCard(Protocol):
    def power_on(self) -> bytes: ...
    def power_off(self) -> None: ...
    def transmit(self, apdu: bytes) -> bytes: ...


class VpcdError(ConnectionError):
    """The vpcd peer could not be reached or broke the framing."""


@dataclass
class VpcdStats:
    apdus: int = 0
    power_ons: int = 0
    resets: int = 0


def parse_address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` → (host, port); host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"vpcd address {text!r}: port must be a number") from None
    if not 0 < number < 65536:
        raise ValueError(f"vpcd address {text!r}: port out of range")
    return host or "127.0.0.1", number


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            if not buf:
                raise
            continue
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, payload: bytes) -> None:
    assert len(payload) < 65536
    sock.sendall(len(payload).to_bytes(2, "big") + payload)


def _handle(card: VirtualCard, msg: bytes, stats: VpcdStats, atr: list[bytes]) -> bytes | None:
    """One message from the reader; returns the answer to send, if any."""
    if len(msg) == 1:
        code = msg[0]
        if code == _CTRL_OFF:
            card.power_off()
        elif code in (_CTRL_ON, _CTRL_RESET):
            card.power_off()
            atr[0] = card.power_on()
            stats.power_ons += code == _CTRL_ON
            stats.resets += code == _CTRL_RESET
        elif code == _CTRL_ATR:
            if not atr[0]:
                atr[0] = card.power_on()
            return atr[0]
        else:
            log.warning("vpcd: unknown control code %02X ignored", code)
        return None
    stats.apdus += 1
    return card.transmit(msg)


def serve(
    card: VirtualCard,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    after_command: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
    poll_ms: int = 200,
    connect_timeout_ms: int = 5000,
) -> VpcdStats:
    """Connect to vpcd and answer it until ``stop`` is set, the peer closes, or Ctrl-C.

    ``after_command`` runs after every message that may have changed the card (an APDU or power
    control), so the caller persists the image each time. Returns counts of what was served.
    """
    stop = stop or threading.Event()
    stats = VpcdStats()
    atr: list[bytes] = [b""]
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout_ms / 1000)
    except OSError as exc:
        raise VpcdError(f"cannot reach vpcd at {host}:{port}: {exc} (is pcscd running?)") from exc
    with sock:
        sock.settimeout(poll_ms / 1000)
        log.info("vpcd: connected to %s:%d", host, port)
        while not stop.is_set():
            try:
                head = _recv_exact(sock, 2)
            except TimeoutError:
                continue
            if head is None:
                break
            length = int.from_bytes(head, "big")
            sock.settimeout(connect_timeout_ms / 1000)
            body = _recv_exact(sock, length) if length else b""
            sock.settimeout(poll_ms / 1000)
            if body is None:
                raise VpcdError("vpcd closed the connection in the middle of a message")
            answer = _handle(card, body, stats, atr)
            if after_command is not None:
                after_command()
            if answer is not None:
                _send(sock, answer)
    card.power_off()
    return stats


class CardFileBridge:
    """An emulated card loaded from a card-image file, saved back atomically after every change.

    The image is written only when its serialised form changed, so a READ RECORD costs no disk write while
    a GENERATE AC that debits the EC balance is durable before the response leaves for the reader.
    """

    def __init__(self, path: str | os.PathLike[str], interface: Interface = "contact") -> None:
        self.path = Path(path)
        self.image = load_card(self.path)
        self.card = Card(self.image, os.urandom)
        self.interface: Interface = interface
        self._saved = self.image.to_json()

    def power_on(self) -> bytes:
        return self.card.power_on(self.interface)

    def power_off(self) -> None:
        self.card.power_off()

    def transmit(self, apdu: bytes) -> bytes:
        return self.card.transmit(apdu)

    def persist(self) -> None:
        current = self.image.to_json()
        if current != self._saved:
            save_card(self.path, self.image)
            self._saved = current


def serve_card_file(
    path: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    interface: Interface = "contact",
    stop: threading.Event | None = None,
    lock_timeout_s: float | None = None,
) -> VpcdStats:
    """Serve the card image at ``path`` into vpcd, persisting it after every command. The image is locked
    (:func:`citycard.files.exclusive_lock`) from its load to the last save: no other process drives the
    card meanwhile (:class:`citycard.files.BusyError` if one holds it past ``lock_timeout_s``)."""
    with exclusive_lock(card_lock_path(path), f"card image {path}", lock_timeout_s):
        bridge = CardFileBridge(path, interface)
        try:
            return serve(bridge, host, port, after_command=bridge.persist, stop=stop)
        finally:
            bridge.persist()
