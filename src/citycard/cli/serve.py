"""``citycard card serve CARD --vpcd [HOST:]PORT``: put an emulated card into every PC/SC reader list.

The card connects to vsmartcard's ``vpcd`` driver (Debian ``pcscd`` + ``vsmartcard-vpcd``; port 35963 is
the first "Virtual PCD" slot) and answers power on/off, reset, ATR and APDUs. The card image is saved
atomically after every command that changed it. Ctrl-C stops it cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from citycard.chip.image import ImageError
from citycard.config import settings
from citycard.files import BusyError
from citycard.logs import configure as configure_logging
from citycard.pcsc.vpcd import VpcdError, parse_address, serve_card_file

__all__ = ["serve"]

console = Console(stderr=True)

CardArg = typer.Argument(..., help="card image (JSON) to serve; saved after every command", exists=True)
VpcdOpt = typer.Option(None, "--vpcd", help="vpcd address [HOST:]PORT (default $CITYCARD_VPCD_PORT or 35963)")
ContactlessOpt = typer.Option(
    False, "--contactless/--contact", help="present the card as contactless (PPSE, qPBOC) or contact (PSE)"
)
VerboseOpt = typer.Option(False, "--verbose", "-v", help="log every connection event")


def serve(
    card: Path = CardArg,
    vpcd: str | None = VpcdOpt,
    contactless: bool = ContactlessOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Serve CARD into the vpcd virtual reader until Ctrl-C."""
    configure_logging(verbose=verbose, fmt="%(message)s")
    config = settings()
    try:
        host, port = parse_address(vpcd) if vpcd else (config.vpcd_host, config.vpcd_port)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--vpcd") from None
    interface: Literal["contact", "contactless"] = "contactless" if contactless else "contact"
    console.print(f"serving {card} ({interface}) into vpcd at {host}:{port}; Ctrl-C to stop")
    try:
        stats = serve_card_file(card, host, port, interface=interface, lock_timeout_s=config.lock_timeout_s)
    except (VpcdError, BusyError) as exc:
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    except (OSError, ImageError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        console.print(f"[red]error:[/red] cannot read card image {card}: {reason}", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("stopped; card image saved")
        return
    console.print(f"vpcd closed the connection after {stats.apdus} APDUs; card image saved")
