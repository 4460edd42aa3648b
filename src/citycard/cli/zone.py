"""``citycard zone``: the zone keys of the host-to-host links (docs/network.md "Zone keys: exchange and
rotation").

- ``citycard zone show``: each link's zone MAC key (ZAK) versions and check values;
- ``citycard zone rotate LINK --to HOST:PORT``: a new ZAK for ``LINK`` (``acquirer`` for the acquirer ↔
  switch leg, a bank's code for the switch ↔ issuer front end leg) made in the platform HSM under the
  link's zone master key and sent in a key exchange 0800 (60.3 = ``101``) to the link's receiving end
  (the switch for ``acquirer``, the bank's issuer front end for a bank), MACed under the current ZAK; the
  hosts that send on the link take the new key up at their next answer, the old one is accepted for its
  grace time (300 s).
"""

from __future__ import annotations

from typing import Annotated

import typer

from citycard.config import parse_address, settings
from citycard.hsm.api import Hsm
from citycard.net.loop import run as run_loop

from .bank import fail

__all__ = ["app"]

app = typer.Typer(help="Zone keys of the host-to-host links: show, rotate.", no_args_is_help=True)


def _hsm() -> Hsm:
    from citycard import bootstrap
    from citycard.hsm.api import HsmError

    try:
        return bootstrap.build_hsm(settings())
    except (HsmError, OSError, ValueError) as exc:
        raise fail(f"cannot open the HSM: {exc}", 2) from None


@app.command("show")
def show() -> None:
    """Each link's ZAK versions in the platform HSM (the current one last) and their check values."""
    from citycard.hosts.zone import ZoneMac

    hsm = _hsm()
    links = sorted({label.split("/")[1] for label in hsm.labels() if label.startswith("zone/")})
    if not links:
        typer.echo("no zone keys yet (made by the hosts at their first start)")
    for link in links:
        zone = ZoneMac.open(hsm, link)
        typer.echo(f"{link}: version {zone.version} (KCV {zone.key.kcv})")


@app.command("rotate")
def rotate(
    link: Annotated[str, typer.Argument(help="acquirer, or a bank's code")],
    to: Annotated[str, typer.Option("--to", help="HOST:PORT of the link's receiving end")],
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the answer")] = 10.0,
) -> None:
    """Replace LINK's zone MAC key by a key exchange (0800, 60.3 = 101) sent to its receiving end."""
    from citycard.hosts.zone import rotate_zone_key
    from citycard.net.link import LinkError

    try:
        host, port = parse_address(to, "--to")
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--to") from None
    name = link if link == "acquirer" else link.upper()
    hsm = _hsm()
    try:
        version, code = run_loop(rotate_zone_key(hsm, name, host, port, timeout_s=timeout))
    except LinkError as exc:
        raise fail(f"no answer from {to}: {type(exc).__name__}", 1) from None
    if code != "00":
        raise fail(f"{name}: version {version} refused with {code}; the current key stays", 1)
    typer.echo(f"{name}: version {version} in use (the previous one accepted for its grace time)")
