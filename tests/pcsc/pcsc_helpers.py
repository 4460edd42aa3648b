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


def wait_card_absent(timeout_s: float = 10.0) -> None:
    """Wait until pcscd has seen the virtual card go, so the next test cannot meet a stale card state."""
    from smartcard.Exceptions import CardConnectionException, NoCardException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        conn = _virtual_readers()[0].createConnection()
        try:
            conn.connect()
        except (NoCardException, CardConnectionException):
            return
        conn.disconnect()
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


@contextmanager
def served(card: VirtualCard, after_command=None) -> Iterator[dict]:
    """Serve ``card`` into the Virtual PCD reader in a thread; stop it afterwards (and always)."""
    stop = threading.Event()
    result: dict = {}

    def run() -> None:
        result["stats"] = serve(card, after_command=after_command, stop=stop, poll_ms=50)

    with vpcd_slot():
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield result
        finally:
            stop.set()
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
