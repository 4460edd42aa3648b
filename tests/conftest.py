"""Shared test fixtures. Tests that need a service skip locally when it is absent, but fail in CI
(``.ci/run`` sets ``CITYCARD_REQUIRE_PCSC`` / ``CITYCARD_REQUIRE_POSTGRES`` / ``CITYCARD_REQUIRE_BROWSER``:
PC/SC, PostgreSQL, Debian's chromium for the web tests)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# No deadline on an example, anywhere: a test never asserts how long something took (speed is measured in
# benchmarks/), and on a loaded two-core machine one example of a Hypothesis test may take a second.
# CI (.ci/run sets CI=true): the same examples on every run, so a landing is never decided by chance,
# and no "too slow" health check either. Locally, Hypothesis explores afresh.
settings.register_profile("local", deadline=None)
settings.register_profile(
    "ci", deadline=None, derandomize=True, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "local")

POSTGRES_URL = os.environ.get(
    "CITYCARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def require_or_skip(env_flag: str, reason: str) -> None:
    """Skip with ``reason``, unless ``env_flag`` is set (CI), where a missing service is a failure."""
    if os.environ.get(env_flag):
        pytest.fail(f"{reason} (and {env_flag} is set, so this must run)")
    pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """All PC/SC tests share the one Virtual PCD slot: keep them on one xdist worker, in sequence."""
    for item in items:
        if item.get_closest_marker("pcsc"):
            item.add_marker(pytest.mark.xdist_group("vpcd"))
