"""The network adapter: ISO 8583 (UnionPay POS profile) over asyncio TCP.

- :mod:`.framing`: one frame from or to an asyncio stream (2-byte big-endian length, bounded).
- :mod:`.server`: a TCP server that decodes frames, calls an async handler for many requests at once per
  connection, answers malformed requests with 30 and a wrong MAC with A0, and closes on garbage.
- :mod:`.link`: a client link on one connection that matches answers to requests (MTI class, STAN and
  terminal, or RRN), with per-request timeouts, reconnection with bounded backoff and echo keep-alive.

What each piece guarantees and its limits: ``docs/network.md``. The frame is the codec's
(:mod:`citycard.codec.iso8583`, ``docs/iso8583.md``).
"""

from __future__ import annotations
