"""The issuer's signed deny-list file as a terminal reads it (``citycard.kernel.denylist``), and its merge
into the terminal exception file (``citycard.kernel.config``). Documents are built with the issuer's own
writer (``citycard.issuer.views``) so the format tested is the one exported."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from citycard.issuer.model import DenyListEntry
from citycard.issuer.views import deny_list_body
from citycard.kernel.config import ConfigError, DenyListSource, ExceptionFile, parse_config
from citycard.kernel.denylist import (
    DenyListError,
    encode_document,
    load_deny_list,
    parse_trusted_kcv,
    rsa_kcv,
)

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
PAN = "6212260000000000018"


@functools.cache
def _key(n: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def _ns(t: dt.datetime) -> int:
    return int(t.timestamp()) * 10**9


def _file(
    issuer: str = "ICBC",
    version: int = 3,
    generated: dt.datetime = T0,
    pans: tuple[str, ...] = (PAN,),
    key: int = 0,
    body: bytes | None = None,
) -> bytes:
    entries = [DenyListEntry(issuer, p, "01", "lost", _ns(T0)) for p in pans]
    body = body or deny_list_body(issuer, version, _ns(T0), _ns(generated), entries)
    private = _key(key)
    signature = private.sign(body, padding.PKCS1v15(), hashes.SHA256())
    n, e = private.public_key().public_numbers().n, private.public_key().public_numbers().e
    doc = encode_document(body, signature, f"{issuer.lower()}-deny-list", rsa_kcv(n), n, e)
    return json.dumps(doc).encode()


def _kcv(key: int = 0) -> str:
    return rsa_kcv(_key(key).public_key().public_numbers().n)


def test_a_signed_file_from_a_trusted_key_loads() -> None:
    dl = load_deny_list(_file(), {"icbc": {_kcv().lower()}})  # issuers and KCVs compare in any case
    assert (dl.issuer, dl.version, dl.generated, dl.key_kcv) == ("ICBC", 3, T0, _kcv())
    assert dl.pans == {PAN} and dl.entries[0].psn == "01" and dl.entries[0].reason == "lost"
    assert load_deny_list(_file(), None).pans == {PAN}  # integrity only: the key in the file


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (b"\xff not json", "format", "not JSON"),
        (b'{"format": "something-else"}', "format", "not a citycard deny list"),
        (b"[1, 2]", "format", "not a citycard deny list"),
        (_file().replace(b"RSASSA-PKCS1-v1_5-SHA256", b"RSASSA-PSS-SHA256"), "format", "algorithm"),
    ],
)
def test_not_a_deny_list(data: bytes, reason: str, words: str) -> None:
    with pytest.raises(DenyListError) as err:
        load_deny_list(data, {"ICBC": {_kcv()}})
    assert err.value.reason == reason and words in str(err.value)


def test_unknown_signing_key_is_refused() -> None:
    with pytest.raises(DenyListError) as err:
        load_deny_list(_file(key=1), {"ICBC": {_kcv(0)}})
    assert err.value.reason == "untrusted-key" and _kcv(1) in str(err.value) and _kcv(0) in str(err.value)
    with pytest.raises(DenyListError, match="not the trusted none"):
        load_deny_list(_file(), {})


def test_altered_body_or_swapped_key_fails_the_signature() -> None:
    doc = json.loads(_file())
    body = base64.b64decode(doc["body"]).replace(PAN.encode(), PAN[:-1].encode() + b"9")
    altered = dict(doc, body=base64.b64encode(body).decode())
    with pytest.raises(DenyListError) as err:
        load_deny_list(json.dumps(altered).encode(), {"ICBC": {_kcv()}})
    assert err.value.reason == "signature" and "does not verify" in str(err.value)
    # another key's signature under this key (the attacker keeps the trusted key in the file)
    other = json.loads(_file(key=1))
    forged = dict(doc, signature=other["signature"])
    with pytest.raises(DenyListError) as err:
        load_deny_list(json.dumps(forged).encode(), {"ICBC": {_kcv()}})
    assert err.value.reason == "signature"
    lying = dict(doc, key=dict(doc["key"], kcv="000000"))
    with pytest.raises(DenyListError, match=r"not the KCV of key\.modulus"):
        load_deny_list(json.dumps(lying).encode(), {"ICBC": {"000000"}})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda b: b.replace(PAN.encode(), b"62122600000000000XX"), "entries[0].pan"),
        (lambda b: b.replace(b'"psn":"01"', b'"psn":1'), "entries[0].psn"),
        (
            lambda b: b.replace(b'"entries":[', b'"entries":{"x":[').replace(b"]", b"]}"),
            "entries: not a list",
        ),
        (lambda b: b.replace(b'"format_version":1', b'"format_version":2'), "format_version"),
        (lambda b: b.replace(b'"generated":"2026-11-25T08:00:00Z"', b'"generated":"today"'), "generated"),
    ],
)
def test_malformed_entries_are_refused_even_when_signed(change, words: str) -> None:
    body = deny_list_body("ICBC", 3, _ns(T0), _ns(T0), [DenyListEntry("ICBC", PAN, "01", "lost", _ns(T0))])
    with pytest.raises(DenyListError) as err:
        load_deny_list(_file(body=change(body)), {"ICBC": {_kcv()}})
    assert err.value.reason == "entries" and words in str(err.value)


def _local(t: dt.datetime) -> dt.datetime:
    return t.astimezone().replace(tzinfo=None)


def test_merge_keeps_each_issuers_newest_list_and_the_oldest_age() -> None:
    icbc_old = load_deny_list(_file(version=3, pans=(PAN,)), None)
    icbc_new = load_deny_list(_file(version=4, pans=(), generated=T0 + dt.timedelta(hours=2)), None)
    boc = load_deny_list(_file("BOC", 9, T0 + dt.timedelta(hours=1), ("6216610000000000016",), key=1), None)
    ef = ExceptionFile(frozenset({"6234560000000016"}), _local(T0 + dt.timedelta(hours=5)), 3600)
    merged = ef.with_deny_lists([icbc_new, boc, icbc_old])  # ICBC v4 unlisted PAN: it is not denied
    assert merged.pans == {"6234560000000016", "6216610000000000016"}
    assert merged.lists == (("BOC", 9), ("ICBC", 4))
    assert merged.updated == _local(T0 + dt.timedelta(hours=1))  # BOC's file is the oldest part
    assert not merged.stale(_local(T0 + dt.timedelta(hours=1, minutes=59)))
    assert merged.stale(_local(T0 + dt.timedelta(hours=2, minutes=1)))
    # a TOML list with PANs but no date is of unknown age: merging a fresh file does not make it fresh
    unknown = ExceptionFile(frozenset({"6234560000000016"})).with_deny_lists([boc])
    assert unknown.updated is None and unknown.stale(_local(T0))
    assert ExceptionFile().with_deny_lists([icbc_old]).updated == _local(T0)


def test_config_names_files_which_stay_stale_until_loaded() -> None:
    cfg = parse_config(
        '[exception_file]\nmax_age_s = 600\n[[deny_list_file]]\npath = "icbc.json"\nissuer = "icbc"\n'
        'trusted_kcv = "a1b2c3"\n'
        '[[deny_list_file]]\npath = "/lists/boc.json"\nissuer = "BOC"\ntrusted_kcv = ["0A0B0C", "D1D2D3"]\n'
    )
    ef = cfg.exception_file
    assert ef.pending == (
        DenyListSource("icbc.json", "ICBC", frozenset({"A1B2C3"})),
        DenyListSource("/lists/boc.json", "BOC", frozenset({"0A0B0C", "D1D2D3"})),
    )
    assert ef.max_age_s == 600 and ef.stale(_local(T0))  # named, not loaded: cannot clear a card
    loaded = cfg.with_deny_lists([load_deny_list(_file(), None)])
    assert loaded.exception_file.pending == () and loaded.exception_file.pans == {PAN}
    assert not loaded.exception_file.stale(_local(T0 + dt.timedelta(minutes=5)))
    assert replace(ef, pending=()).stale(_local(T0)) is False  # empty, undated and nothing pending


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[deny_list_file]]\nissuer = "ICBC"\ntrusted_kcv = "A1B2C3"\n', "deny_list_file[0].path"),
        ('[[deny_list_file]]\npath = "x.json"\nissuer = "ICBC"\n', "deny_list_file[0].trusted_kcv"),
        ('[[deny_list_file]]\npath = "x.json"\ntrusted_kcv = "A1B2C3"\n', "deny_list_file[0].issuer"),
        ('[[deny_list_file]]\npath = "x.json"\nissuer = ""\ntrusted_kcv = "A1B2C3"\n', "[0].issuer"),
        ('[[deny_list_file]]\npath = "x.json"\nissuer = "ICBC"\ntrusted_kcv = "A1B2"\n', "6 hex digits"),
        ('[[deny_list_file]]\npath = "x.json"\nissuer = "ICBC"\ntrusted_kcv = "GGGGGG"\n', "6 hex digits"),
        ('deny_list_file = "x.json"\n', "[[deny_list_file]]"),
    ],
)
def test_bad_deny_list_file_entries_are_config_errors(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert words in str(err.value)


def test_the_example_configurations_deny_list_table_parses_when_uncommented() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "docs" / "terminal.example.toml"
    text = example.read_text(encoding="utf-8")
    block = text[text.index("# [[deny_list_file]]") :]
    uncommented = text.replace(block, "\n".join(line.removeprefix("# ") for line in block.splitlines()))
    (source,) = parse_config(uncommented).exception_file.pending
    assert source == DenyListSource("denylist-ICBC.json", "ICBC", frozenset({"A1B2C3"}))


def test_a_list_signed_by_bank_as_key_naming_bank_b_is_refused_and_cannot_replace_bs_list() -> None:
    trusted = {"ICBC": {_kcv(0)}, "BOC": {_kcv(1)}}
    boc = load_deny_list(_file("BOC", 5, pans=("6216610000000000016",), key=1), trusted)
    assert boc.issuer == "BOC" and boc.pans == {"6216610000000000016"}
    # ICBC's trusted key signs a "BOC" list of a higher version that lists nobody
    forged = _file("BOC", 99, pans=(), key=0)
    with pytest.raises(DenyListError) as err:
        load_deny_list(forged, trusted)
    assert err.value.reason == "wrong-issuer"
    assert "'BOC'" in str(err.value) and _kcv(0) in str(err.value) and "only for ICBC" in str(err.value)
    # without the binding the forged list would have replaced BOC's: the newest version per issuer wins
    unbound = ExceptionFile().with_deny_lists([boc, load_deny_list(forged, None)])
    assert unbound.lists == (("BOC", 99),) and unbound.pans == frozenset()
    assert ExceptionFile().with_deny_lists([boc]).pans == {"6216610000000000016"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ICBC=A1B2C3", ("ICBC", "A1B2C3")), (" boc = d4e5f6 ", ("BOC", "D4E5F6"))],
)
def test_trusted_kcv_names_its_bank(text: str, expected: tuple[str, str]) -> None:
    assert parse_trusted_kcv(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [("A1B2C3", "name the bank"), ("ICBC=A1B2", "6 hex digits"), ("=A1B2C3", "BANK=KCV")],
)
def test_a_bare_or_malformed_trusted_kcv_is_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_trusted_kcv(text)
