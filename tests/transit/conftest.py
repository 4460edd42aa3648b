from __future__ import annotations

from pathlib import Path

import pytest

from citycard.hsm.api import KeyUsage
from citycard.hsm.soft import SoftHsm
from citycard.transit import Network, TripSealer, parse_network

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "fares.toml"


@pytest.fixture(scope="session")
def network() -> Network:
    return parse_network(EXAMPLE.read_text())


@pytest.fixture(scope="session")
def sealer() -> TripSealer:
    """The validators' secure module: a software HSM holding a transit key (E6) made for this session."""
    hsm = SoftHsm(bytes(range(32)))
    return TripSealer(hsm, hsm.generate_key("transit/tk", KeyUsage.EMV_OTHER))
