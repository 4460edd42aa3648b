"""Key injection of the demo: one terminal master key (TMK) put into the platform's HSM and the terminal's.

In a real deployment a TMK reaches a POS terminal's PIN entry device by a key-loading device in a secure
room (ANSI X9.24-1 §7, key injection facility; PCI PIN Security requirement 13), as components or under a
transport key, and the acquirer's HSM receives the same key as components from a key ceremony. The demo
has both HSMs in one process, so :func:`inject_terminal_master_key` does what such a ceremony does with a
single component: draws 16 random bytes once (``secrets``, odd parity set as for every DES key), imports
them as one clear component (:meth:`~citycard.hsm.api.Hsm.import_components`) into the terminal's HSM and
into the platform's, checks that both report the same key check value, and overwrites its buffer of the
bytes (Python cannot promise that no other copy stays in memory until it is reused; a key-loading device
can). The key is never written anywhere in clear: each HSM keeps it as a key block under its own master key.

The TMK is a double-length 3DES key-encryption key (usage ``K0``, mode ``B``): the acquirer encrypts the
working keys of a sign-on under it (:meth:`~citycard.hsm.api.Hsm.generate_working_key`) and the terminal
decrypts them (:meth:`~citycard.hsm.api.Hsm.import_working_key`).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from citycard.crypto import des

from .api import Algorithm, Hsm, KeyHandle, KeyNotFoundError, KeyStoreError, KeyUsage

__all__ = ["TMK_SIZE", "inject_terminal_master_key"]

TMK_SIZE = 16
"""Bytes of a terminal master key: double-length 3DES (ANSI X9.24-1, as UnionPay POS terminals use)."""


def _held(hsm: Hsm, label: str) -> KeyHandle | None:
    try:
        return hsm.get(label)
    except KeyNotFoundError:
        return None


def inject_terminal_master_key(
    platform: Hsm,
    terminal: Hsm,
    label: str,
    *,
    random: Callable[[int], bytes] = secrets.token_bytes,
) -> KeyHandle:
    """Put one fresh TMK under ``label`` into both ``terminal`` and ``platform``; return the platform's
    handle (its ``kcv`` is the check value to print).

    Run again after a crash between the two imports is refused with :class:`KeyStoreError` naming which HSM
    holds the key (it cannot be copied to the other: it never leaves an HSM in clear); a run after both
    imports returns the key both hold.
    """
    held_platform, held_terminal = _held(platform, label), _held(terminal, label)
    if held_platform is not None and held_terminal is not None:
        if held_platform.kcv != held_terminal.kcv or held_platform.usage is not KeyUsage.KEK:
            raise KeyStoreError(f"the two keys labelled {label!r} differ: the terminal cannot use them")
        return held_platform
    if held_platform is not None or held_terminal is not None:
        where = "platform" if held_platform is not None else "terminal"
        raise KeyStoreError(
            f"key {label!r} is only in the {where}'s HSM (an injection was cut short): remove it there "
            "and inject again"
        )
    secret = bytearray(des.adjust_parity(random(TMK_SIZE)))
    assert len(secret) == TMK_SIZE
    try:
        copy = terminal.import_components(label, KeyUsage.KEK, [bytes(secret)], algorithm=Algorithm.TDEA)
        handle = platform.import_components(label, KeyUsage.KEK, [bytes(secret)], algorithm=Algorithm.TDEA)
    finally:
        secret[:] = bytes(TMK_SIZE)
    assert copy.kcv == handle.kcv, "one key imported into two HSMs has one check value"
    return handle
