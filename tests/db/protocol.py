"""What a psycopg connection sends to PostgreSQL, from libpq's trace of the protocol: for tests that count
how often the client waits for the server (a count, not a time)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import pq

__all__ = ["sent", "waits"]


@contextmanager
def sent(pgconn: Any) -> Iterator[list[str]]:
    """The frontend's protocol messages (``Parse``, ``Bind``, ``Execute``, ``Sync``, ``Query`` …) on
    ``pgconn`` (a psycopg connection's ``pgconn``) while the block runs; the list is filled when it is
    left."""
    messages: list[str] = []
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield messages
        finally:
            pgconn.untrace()
            trace.seek(0)
            lines = trace.read().decode().splitlines()
            messages.extend(line.split("\t")[2] for line in lines if line.startswith("F\t"))


def waits(messages: list[str]) -> int:
    """The times the client waited for the server: each ``Sync`` (extended protocol) or ``Query`` (simple
    protocol: a command without parameters) ends what the server answers before it is asked again."""
    return messages.count("Sync") + messages.count("Query")
