"""The web application of the Citizen Card Service Center: ``create_app(ctx)`` (ctx from
``citycard.bootstrap.build_web_context``) → a FastAPI app with server-rendered pages (Jinja2, htmx served
from ``/static``) and a REST API under ``/api`` (OpenAPI at ``/openapi.json``, docs at ``/docs``).

One router module per area in ``citycard/web/routes/``, listed in :data:`ROUTERS` (another area adds one
line). Errors: a malformed value is 422 with the field and the reason, something that does not exist 404,
a state that refuses the operation 409, a missing or wrong role 401/403; pages show the same reason. A
domain error never becomes a 5xx.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from citycard.bootstrap import WebContext
from citycard.center.model import AlreadyExists as CenterExists
from citycard.center.model import CenterError, MalformedCommand
from citycard.center.model import NotFound as CenterNotFound
from citycard.issuer.commands import MalformedRequest
from citycard.issuer.model import AlreadyExists, InvalidIdNumber, IssuerError, NotFound
from citycard.public.model import NotFound as PublicNotFound
from citycard.public.model import PublicError

from .auth import NotSignedIn
from .store import Store
from .templating import page

__all__ = ["ROUTERS", "create_app"]

ROUTERS: list[str] = [
    "citycard.web.routes.auth",
    "citycard.web.routes.console",
    "citycard.web.routes.citizen",
    "citycard.web.routes.partners",
    "citycard.web.routes.public",
]
"""Modules with a ``router`` (``fastapi.APIRouter``), included in this order."""


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def _status(exc: Exception) -> int:
    if isinstance(exc, (MalformedRequest, MalformedCommand, InvalidIdNumber)):
        return 422
    if isinstance(exc, (NotFound, CenterNotFound, PublicNotFound)):
        return 404
    if isinstance(exc, (AlreadyExists, CenterExists)):
        return 409
    if isinstance(exc, ValueError) and not isinstance(exc, IssuerError):
        return 422
    return 409


def error_response(request: Request, status: int, reason: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": reason}, status_code=status)
    return page(request, "error.html", status_code=status, status=status, reason=reason)


def create_app(ctx: WebContext) -> FastAPI:
    """The application on ``ctx`` (the caller closes ``ctx`` after the server stopped)."""
    app = FastAPI(
        title="citycard service center",
        version="1",
        description="Citizen card service center: console, bank, merchant and citizen self-service.",
    )
    app.state.ctx = ctx
    app.state.store = Store(ctx.database)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "not signed in"}, status_code=401)
        return RedirectResponse("/signin", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if _wants_json(request) or (exc.status_code in (404, 405) and request.url.path.startswith("/static")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> Response:
        errors: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        if _wants_json(request):
            return JSONResponse({"detail": errors}, status_code=422)
        reason = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors)
        return error_response(request, 422, reason)

    for handled in (IssuerError, CenterError, PublicError, MalformedRequest, MalformedCommand, ValueError):

        @app.exception_handler(handled)
        async def domain_error(request: Request, exc: Exception) -> Response:
            return error_response(request, _status(exc), str(exc))

    @app.get("/healthz", include_in_schema=True, tags=["meta"])
    def healthz() -> dict[str, str]:
        """A trivial endpoint (the benchmark's baseline)."""
        return {"status": "ok"}

    for name in ROUTERS:
        app.include_router(importlib.import_module(name).router)
    return app
