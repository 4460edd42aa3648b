"""The Citizen Card Service Center: the registry of merchants and terminals (issue 8).

``model`` (values and rules), ``commands``, ``handlers`` (functions ``(command, uow, deps)``), ``views``
(queries: listings, the binding of fields 41 and 42 the hosts check), ``ports`` (what storage must offer).
The storage adapter is ``citycard.db.center_repositories``; the CLI ``citycard merchant`` / ``terminal``.
"""
