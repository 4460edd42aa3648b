"""Network front ends and clients on asyncio (the layer between :mod:`citycard.bootstrap` and the
adapters): the terminal's online client (:mod:`.terminal`), the acquirer, the switch and the issuers'
front ends (docs/network.md)."""
