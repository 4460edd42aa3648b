"""Helpers for tests that go through pcscd + vsmartcard's vpcd driver, as a terminal would."""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from citycard.pcsc.vpcd import VirtualCard, serve

from tests.conftest import require_or_skip

READER_PREFIX = "Virtual PCD"
LOCK_PATH = os.path.join(tempfile.gettempdir(), "citycard-vpcd.lock")


def _virtual_readers() -> list:
    """The Virtual PCD readers pcscd knows (asking pcscd, not vpcd: a probe connection to vpcd's port
    would itself look like a card being inserted)."""
    try:
        from smartcard.System import readers

        return [r for r in readers() if str(r).startswith(READER_PREFIX)]
    except Exception:  # no pcscd: pyscard raises its own establish-context errors
        return []


def require_vpcd() -> None:
    try:
        import smartcard  # noqa: F401 - is the optional pcsc extra installed?
    except ImportError:
        require_or_skip("CITYCARD_REQUIRE_PCSC", "pyscard is not installed: 'make pcsc' (the pcsc extra)")
    if not _virtual_readers():
        require_or_skip("CITYCARD_REQUIRE_PCSC", "pcscd with the vsmartcard-vpcd reader is not running")


def _card_present() -> bool:
    """Whether pcscd reports a card in the first Virtual PCD slot (a connection that is closed at once)."""
    from smartcard.Exceptions import CardConnectionException, NoCardException

    names = _virtual_readers()
    if not names:
        return False
    conn = names[0].createConnection()
    try:
        conn.connect()
    except (NoCardException, CardConnectionException):
        return False
    conn.disconnect()
    return True


def wait_card_absent(timeout_s: float = 10.0) -> None:
    """Wait until pcscd has seen the virtual card go, so the next test cannot meet a stale card state."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _card_present():
            return
        time.sleep(0.05)
    raise AssertionError("the virtual card was still present after its bridge stopped")


@contextmanager
def vpcd_slot() -> Iterator[None]:
    """Hold the one Virtual PCD slot (across processes too: xdist workers, parallel test runs), and on
    leaving wait until pcscd has seen the card go."""
    lock = open(LOCK_PATH, "a+")  # noqa: SIM115 - held for the whole with-block below
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield
        wait_card_absent()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


BRIDGE_RETRY_S = 5.0
"""How long a bridge may stay connected to vpcd before pcscd reports its card. About one run in two of
tests/pcsc after the slot was used, pcscd never reported the card of a bridge that connected right after
the previous one left (waited 30 s), while a new connection of the bridge was seen at once: so the bridge
is reconnected after this long, within :func:`connect_reader`'s deadline."""


@contextmanager
def served(card: VirtualCard, after_command=None, *, timeout_s: float = 30.0) -> Iterator[dict]:
    """Serve ``card`` into the Virtual PCD reader in a thread until pcscd reports it (reconnecting the
    bridge every :data:`BRIDGE_RETRY_S` it does not); stop it afterwards (and always)."""
    result: dict = {}
    stop = threading.Event()
    thread: threading.Thread | None = None

    def start() -> tuple[threading.Event, threading.Thread]:
        event = threading.Event()

        def run() -> None:
            result["stats"] = serve(card, after_command=after_command, stop=event, poll_ms=50)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        return event, worker

    with vpcd_slot():
        try:
            deadline = time.monotonic() + timeout_s
            stop, thread = start()
            retry_at = time.monotonic() + BRIDGE_RETRY_S
            while not _card_present() and time.monotonic() < deadline:
                if time.monotonic() >= retry_at:
                    stop.set()
                    thread.join(timeout=5)
                    stop, thread = start()
                    retry_at = time.monotonic() + BRIDGE_RETRY_S
                time.sleep(0.1)
            yield result
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=5)


def connect_reader(timeout_s: float = 30.0):
    """A pyscard connection to the card in the first Virtual PCD slot, once pcscd sees it. Generous: twice
    (a CI run, then the first run after it) pcscd took over 10 s to report a card served after its vpcd
    slot had been idle for some minutes; the next runs saw it within 0.1 s."""
    from smartcard.Exceptions import CardConnectionException, NoCardException

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        names = _virtual_readers()
        if names:
            conn = names[0].createConnection()
            try:
                conn.connect()
                return conn
            except (NoCardException, CardConnectionException) as exc:
                last = exc
        time.sleep(0.1)
    raise AssertionError(f"no card appeared in {READER_PREFIX}: {last}")
