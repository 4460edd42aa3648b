"""The web console and self-service of the citizen card programme (issue 10): ``create_app(ctx)``."""

from .app import ROUTERS, create_app

__all__ = ["ROUTERS", "create_app"]
