"""The fixtures of a cleared day (``tests/clearing/test_day.py`` builds it on the issuers' fixtures), for
every test of this folder: the banks and their issuers, the HSM, the clock, the database and the day."""

from __future__ import annotations

from tests.clearing.test_day import (  # noqa: F401  (fixtures, found by name)
    banks,
    certify_issuer,
    clock,
    database,
    day,
    demo_ca,
    hsm,
    service,
    sink,
)
