"""Shared helpers for the kernel and pos tests: demo keys, personalised emulated cards, a terminal config
that trusts the demo CA, and a fake issuer (tests/kernel/fake_issuer.py: a test double for the kernel)."""

from __future__ import annotations

import datetime as dt
import functools
import random
from dataclasses import replace

from citycard.chip.card import Card
from citycard.chip.personalise import ProductProfile, personalise
from citycard.demokeys import DemoKeys
from citycard.kernel.config import CaPublicKey, TerminalConfig

NOW = dt.datetime(2026, 11, 25, 9, 30, 0)
PIN = "123456"
PIN_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def det_rng(seed: int = 1):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


@functools.cache
def demo_keys() -> DemoKeys:
    return DemoKeys.generate(det_rng(42))


def ca_key(keys: DemoKeys | None = None) -> CaPublicKey:
    rid, index, key = (keys or demo_keys()).ca_public_key()
    return CaPublicKey(bytes.fromhex(rid), index, key.modulus, key.exponent)


def terminal_config(**changes) -> TerminalConfig:
    cfg = TerminalConfig(capks=(ca_key(),), pin_key=PIN_KEY)
    return replace(cfg, **changes)


@functools.cache
def _image_json(serial: int, profile: ProductProfile) -> bytes:
    return personalise(profile, serial, demo_keys()).to_json()


def new_card(
    interface: str = "contact", *, serial: int = 1, balance_fen: int = 50_000, seed: int = 7, **profile
) -> Card:
    from citycard.chip.image import CardImage

    prof = ProductProfile(opening_balance_fen=balance_fen, **profile)
    card = Card(CardImage.from_json(_image_json(serial, prof)), det_rng(seed))
    card.power_on(interface)
    return card


def issuer_stub():
    from tests.kernel.fake_issuer import IssuerStub

    keys = demo_keys()
    return IssuerStub(keys.imk_ac, keys.imk_mac, pin_key=PIN_KEY, default_pin=PIN)


def transact(
    card, kind, amount_fen=0, *, interface="contact", cfg=None, online=None, pin=None, now=NOW, **kw
):
    from citycard.kernel.kernel import Kernel, Transaction
    from citycard.kernel.runner import run

    txn = Transaction(kind, now, amount_fen, interface=interface, **kw)
    kernel = Kernel(cfg or terminal_config(), txn, det_rng(3))
    apdus: list[tuple[str, bytes, bytes]] = []
    extra = {}
    if online is not None:
        extra["online"] = online
    if pin is not None:
        extra["pin"] = pin
    out = run(kernel, card.transmit, trace=lambda p, c, r: apdus.append((p, c, r)), **extra)
    return out, apdus


class TerminalClock:
    """A terminal's clock for tests: :data:`NOW` until :meth:`wait` moves it on."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
