from __future__ import annotations

from pathlib import Path

import pytest

from citycard.transit import Network, parse_network

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "fares.toml"


@pytest.fixture(scope="session")
def network() -> Network:
    return parse_network(EXAMPLE.read_text())
