"""Network front ends and clients on asyncio (the layer between :mod:`citycard.bootstrap`, which builds
them, and the adapters), putting the domain services on TCP over ``citycard.net`` (issue 8):

- :mod:`.terminal`: the terminal's online client;
- :mod:`.acquirer`: the acquirer (the POS centre terminals connect to: sign-on, MAC, RRNs, SAF);
- :mod:`.switch`: the switch (acquirers in, one link per issuer front end out, routing by BIN);
- :mod:`.issuer`: an issuing bank's front end (host-to-host requests in, ``IssuerService`` behind);
- :mod:`.answers`: the responses the front ends build from a request (fields echoed, one place).

``docs/network.md`` describes what each does, its limits and its timeouts.
"""

from __future__ import annotations
