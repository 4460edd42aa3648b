"""The issuer's fixtures (a migrated database on SQLite and PostgreSQL, the HSM, the service with its banks)
for the terminal's online tests, which go to the real ``IssuerService``."""

from tests.issuer.conftest import (  # noqa: F401  (fixtures)
    banks,
    certify_issuer,
    clock,
    database,
    demo_ca,
    hsm,
    service,
    sink,
)
