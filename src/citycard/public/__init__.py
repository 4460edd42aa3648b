"""Public services on the citizen card (issue 11): counters with the service's reference, the information
inquiry back end, the registry of industry applications (``docs/public-services.md``). Domain ring: no
storage, network, CLI or web here; :mod:`citycard.db.public_repositories` is the adapter."""
