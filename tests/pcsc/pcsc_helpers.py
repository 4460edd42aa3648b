"""Helpers for tests that go through pcscd + vsmartcard's vpcd driver, as a terminal would."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from citycard.pcsc.vpcd import DEFAULT_PORT, VirtualCard, serve

from tests.conftest import require_or_skip

READER_PREFIX = "Virtual PCD"


def vpcd_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", DEFAULT_PORT), timeout=0.5):
            pass
    except OSError:
        return False
    return True


def require_vpcd() -> None:
    if not vpcd_available():
        require_or_skip("CITYCARD_REQUIRE_PCSC", "pcscd with vsmartcard-vpcd is not listening on 35963")


@contextmanager
def served(card: VirtualCard, after_command=None) -> Iterator[dict]:
    """Serve ``card`` into the Virtual PCD reader in a thread; stop it afterwards (and always)."""
    # vpcd accepts one card at a time: wait until a previous test's bridge is gone.
    stop = threading.Event()
    result: dict = {}

    def run() -> None:
        result["stats"] = serve(card, after_command=after_command, stop=stop, poll_ms=50)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(timeout=5)


def connect_reader(timeout_s: float = 10.0):
    """A pyscard connection to the card in the first Virtual PCD slot, once pcscd sees it."""
    from smartcard.Exceptions import CardConnectionException, NoCardException
    from smartcard.System import readers

    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        names = [r for r in readers() if str(r).startswith(READER_PREFIX)]
        if names:
            conn = names[0].createConnection()
            try:
                conn.connect()
                return conn
            except (NoCardException, CardConnectionException) as exc:
                last = exc
        time.sleep(0.1)
    raise AssertionError(f"no card appeared in {READER_PREFIX}: {last}")
