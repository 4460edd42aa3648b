"""Hostile input: whatever bytes a card or a network sends, the crypto recoverers and parsers either succeed
or raise their one typed error (CertificateError, PinBlockError, ScriptCommandError, CryptogramDataError)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citycard.crypto.cryptograms import (
    CryptogramDataError,
    ScriptCommandError,
    cvr_from_iad,
    parse_script_command,
    verify_script_mac,
)
from citycard.crypto.pin import (
    PinBlockError,
    decipher_offline_pin,
    decrypt_pin_change_data,
    pin_from_iso0,
    pin_from_offline_block,
)
from citycard.crypto.rsa_cert import (
    CertificateError,
    RsaKey,
    RsaPublicKey,
    recover_dynamic_data,
    recover_icc_certificate,
    recover_issuer_certificate,
    recover_static_data,
)

KEY = RsaKey.generate(1024, 3)
SK = bytes(range(16))


def _maybe(
    fn: Callable[..., object], *args: object, errors: tuple[type[Exception], ...], **kw: object
) -> None:
    with contextlib.suppress(*errors):
        fn(*args, **kw)


@settings(max_examples=150, deadline=None)
@given(
    st.binary(min_size=0, max_size=160), st.binary(max_size=40), st.binary(max_size=4), st.binary(max_size=64)
)
def test_recoverers_raise_only_certificate_error(signed: bytes, rem: bytes, exp: bytes, extra: bytes) -> None:
    for fn, args in (
        (recover_issuer_certificate, (KEY.public, signed, rem, exp)),
        (recover_icc_certificate, (KEY.public, signed, rem, exp, extra)),
        (recover_static_data, (KEY.public, signed, extra)),
        (recover_dynamic_data, (KEY.public, signed, extra)),
    ):
        _maybe(fn, *args, errors=(CertificateError,))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=128, max_size=128))
def test_full_length_garbage_is_rejected(signed: bytes) -> None:
    with pytest.raises(CertificateError):
        recover_dynamic_data(KEY.public, signed, b"")


@pytest.mark.parametrize("size", [1, 2, 20, 36])
def test_tiny_keys_are_rejected_not_crashing(size: int) -> None:
    key = RsaPublicKey((1 << (8 * size - 1)) + 1, 3)
    cases: tuple[tuple[Callable[..., object], tuple[object, ...]], ...] = (
        (recover_issuer_certificate, (key, bytes(size), b"", b"\x03")),
        (recover_icc_certificate, (key, bytes(size), b"", b"\x03", b"")),
        (recover_static_data, (key, bytes(size), b"")),
        (recover_dynamic_data, (key, bytes(size), b"")),
    )
    for fn, args in cases:
        with pytest.raises(CertificateError):
            fn(*args)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=140), st.binary(max_size=10))
def test_pin_parsers_raise_only_pin_block_error(data: bytes, challenge: bytes) -> None:
    _maybe(pin_from_iso0, data, "4012345678909", errors=(PinBlockError,))
    _maybe(pin_from_offline_block, data, errors=(PinBlockError,))
    _maybe(decipher_offline_pin, data, KEY, challenge, errors=(PinBlockError,))
    _maybe(decrypt_pin_change_data, SK, data, errors=(PinBlockError,))
    _maybe(decrypt_pin_change_data, SK, data, "1234", udk_ac=SK, errors=(PinBlockError,))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_script_and_iad_parsers_raise_only_their_errors(data: bytes) -> None:
    _maybe(parse_script_command, data, errors=(ScriptCommandError,))
    _maybe(verify_script_mac, SK, data, 1, bytes(8), errors=(ScriptCommandError,))
    _maybe(cvr_from_iad, data, errors=(CryptogramDataError,))
