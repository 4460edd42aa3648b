"""``citycard web``: the web console on its own (``web serve``; ``citycard up`` serves it with the platform)
and its staff users (``web user add``: an operator, a bank's user or a merchant's user; the password from
``--password-env VAR`` or asked twice on the terminal, never an argument)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from citycard.config import settings
from citycard.logs import UVICORN_LOGGERS, mask_handlers

from .bank import fail

app = typer.Typer(help="The web console: serve it alone, add its staff users.", no_args_is_help=True)
user_app = typer.Typer(help="Staff users of the web console.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="the user name to sign in with")],
    role: Annotated[str, typer.Option("--role", help="operator, bank or merchant")] = "operator",
    bank: Annotated[str, typer.Option("--bank", help="the bank code of a bank user")] = "",
    merchant: Annotated[str, typer.Option("--merchant", help="the merchant id of a merchant user")] = "",
    password_env: Annotated[
        str, typer.Option("--password-env", help="take the password from this environment variable")
    ] = "",
) -> None:
    """Add a staff user (password hashed with scrypt; the database never holds it)."""
    from citycard.bootstrap import build_database
    from citycard.web.store import Store, UserExists

    if role not in ("operator", "bank", "merchant"):
        raise fail(f"--role: {role!r} is not operator, bank or merchant", 2)
    scope = bank if role == "bank" else merchant if role == "merchant" else ""
    if password_env:
        password = os.environ.get(password_env, "")
        if not password:
            raise fail(f"--password-env: {password_env} is not set", 2)
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    database = build_database(settings())
    try:
        import time

        Store(database).add_user(username, password, role, scope, time.time_ns())
    except (UserExists, ValueError) as exc:
        raise fail(str(exc), 2) from None
    finally:
        database.close()
    typer.echo(f"user {username} ({role}{' ' + scope if scope else ''}) added")


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
) -> None:
    """Serve the web console alone with uvicorn (Ctrl-C stops it)."""
    import uvicorn

    from citycard.bootstrap import HomeFolderError, build_web_context
    from citycard.db import DatabaseUrlError, SchemaRevisionError
    from citycard.hsm.api import KeyStoreError
    from citycard.web import create_app

    try:
        ctx = build_web_context(settings())
    except (KeyStoreError, SchemaRevisionError, DatabaseUrlError, HomeFolderError) as exc:
        raise fail(str(exc), 2) from None
    try:
        typer.echo(f"web console on http://{host}:{port}")
        config = uvicorn.Config(create_app(ctx), host=host, port=port, log_level="info")
        mask_handlers("", *UVICORN_LOGGERS)  # configured by Config: PANs masked
        uvicorn.Server(config).run()
    finally:
        ctx.close()
