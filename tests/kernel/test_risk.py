"""Terminal risk management (EMV Book 3 §10.6): floor limit, random selection, velocity checking with
GET DATA 9F36/9F13, exception file freshness; and the TOML configuration."""

from __future__ import annotations

import datetime as dt
import importlib
import json
from dataclasses import replace

import pytest

from citycard.chip.card import Card
from citycard.chip.personalise import ProductProfile
from citycard.codec.emvbits import (
    TVR_FLOOR_LIMIT,
    TVR_LCOL_EXCEEDED,
    TVR_MERCHANT_FORCED_ONLINE,
    TVR_NEW_CARD,
    TVR_RANDOM_ONLINE,
    TVR_UCOL_EXCEEDED,
)
from citycard.kernel.config import ConfigError, ExceptionFile, parse_config
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import NOW, PIN, demo_keys, det_rng, issuer_stub, new_card, terminal_config, transact

chip_personalise = importlib.import_module("citycard.chip.personalise")


def _has(bits: bytes, flag) -> bool:
    return bool(bits[flag[0]] & flag[1])


def test_random_selection_below_floor_limit():
    always = terminal_config(floor_limit_fen=10_000, random_target_percent=99, random_max_target_percent=99)
    out, _ = transact(new_card(balance_fen=0), K.PURCHASE, 100, cfg=always, pin=lambda r: PIN)
    assert _has(out.tvr, TVR_RANDOM_ONLINE) and not _has(out.tvr, TVR_FLOOR_LIMIT)
    never = terminal_config(floor_limit_fen=10_000)
    out, _ = transact(new_card(balance_fen=0), K.PURCHASE, 100, cfg=never, pin=lambda r: PIN)
    assert not _has(out.tvr, TVR_RANDOM_ONLINE) and out.data["8A"] == b"Y3"  # our card always wants online


def test_stale_exception_file_forces_online():
    old = ExceptionFile(frozenset({"0"}), NOW - dt.timedelta(days=30), 86_400)
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=terminal_config(exception_file=old))
    assert _has(out.tvr, TVR_MERCHANT_FORCED_ONLINE)
    fresh = ExceptionFile(frozenset({"0"}), NOW - dt.timedelta(hours=1), 86_400)
    out, _ = transact(new_card(), K.PURCHASE, 100, cfg=terminal_config(exception_file=fresh))
    assert not _has(out.tvr, TVR_MERCHANT_FORCED_ONLINE) and out.approved


def test_stale_exception_file_refuses_qpboc_offline_approval():
    """A validator whose deny list is past its maximum age cannot clear a card offline (JR/T 0025.12)."""
    cfg = terminal_config(terminal_type=0x26)
    for age, approved in ((dt.timedelta(days=2), False), (dt.timedelta(hours=1), True)):
        ef = ExceptionFile(frozenset({"0"}), NOW - age, 86_400)
        card = new_card("contactless")
        out, _ = transact(card, K.PURCHASE, 200, interface="contactless", cfg=replace(cfg, exception_file=ef))
        assert out.approved is approved, out.reason
        assert _has(out.tvr, TVR_MERCHANT_FORCED_ONLINE) is not approved
        if not approved:
            assert out.kind is OutcomeKind.DECLINED_OFFLINE and "maximum age" in out.reason


def test_stale_exception_file_sends_a_qpboc_card_online_at_an_online_terminal():
    """Known before the GPO: the TTQ asks for an online cryptogram, so the card does not pay offline."""
    ef = ExceptionFile(frozenset({"0"}), NOW - dt.timedelta(days=2), 86_400)
    stub = issuer_stub()
    out, _ = transact(
        new_card("contactless"), K.PURCHASE, 200, interface="contactless",
        cfg=terminal_config(exception_file=ef), online=stub.authorize, pin=lambda r: PIN,
    )  # fmt: skip
    assert out.data["9F66"][1] & 0x80 and out.kind is OutcomeKind.APPROVED_ONLINE, out.reason
    assert len(stub.requests) == 1


def test_exception_file_time_with_an_offset_is_local_time():
    text = '[exception_file]\npans = ["6234560000000016"]\nupdated = 2026-11-25T08:00:00Z\nmax_age_s = 60\n'
    ef = parse_config(text).exception_file
    assert ef.updated is not None and ef.updated.tzinfo is None
    utc = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    assert ef.updated == utc.astimezone().replace(tzinfo=None)
    with pytest.raises(ConfigError, match="updated"):
        parse_config('[exception_file]\nupdated = "yesterday"\n')
    with pytest.raises(ConfigError, match="pans"):
        parse_config("[exception_file]\npans = [6234560000000016]\n")


def test_velocity_checking(monkeypatch):
    records = dict(chip_personalise._RECORDS)
    records[2] = (records[2][0], (*records[2][1], "9F14", "9F23"))
    monkeypatch.setattr(chip_personalise, "_RECORDS", records)
    original = chip_personalise._application_data
    monkeypatch.setattr(
        chip_personalise,
        "_application_data",
        lambda p, pan: {**original(p, pan), "9F14": b"\x02", "9F23": b"\x04"},
    )
    card = Card(
        chip_personalise.personalise(ProductProfile(opening_balance_fen=0), 31, demo_keys()), det_rng(2)
    )
    card.power_on("contact")
    seen = []
    for _ in range(5):
        out, apdus = transact(
            card, K.PURCHASE, 100, cfg=terminal_config(floor_limit_fen=10_000), pin=lambda r: PIN
        )
        seen.append((out.atc, _has(out.tvr, TVR_LCOL_EXCEEDED), _has(out.tvr, TVR_UCOL_EXCEEDED)))
        assert _has(out.tvr, TVR_NEW_CARD)  # never online: last online ATC is still 0
        assert "GET DATA 9F13" in [p for p, _, _ in apdus]
    assert seen == [(1, False, False), (2, False, False), (3, True, False), (4, True, False), (5, True, True)]


def test_parse_config_full():
    cfg = parse_config(
        """
[terminal]
type = "26"
floor_limit_fen = 5000
terminal_id = "BUS00042"
ec_support = false

[[aid]]
aid = "A000000333010106"
partial = false

[tac]
online = "0000000000"

[exception_file]
pans = ["6234560000000016"]
updated = 2026-11-25T08:00:00
max_age_s = 600
"""
    )
    assert cfg.terminal_type == 0x26 and cfg.offline_only and not cfg.online_capable
    assert cfg.floor_limit_fen == 5000 and cfg.terminal_id == b"BUS00042" and not cfg.ec_support
    assert [a.aid.hex().upper() for a in cfg.aids] == ["A000000333010106"] and not cfg.aids[0].partial
    assert cfg.tac_online == bytes(5) and cfg.tac_default == bytes.fromhex("DC4000A800")
    assert (
        cfg.exception_file.stale(dt.datetime(2026, 11, 25, 8, 11))
        and "6234560000000016" in cfg.exception_file.pans
    )


def test_config_errors_are_typed():
    import pytest
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from citycard.kernel.config import ConfigError

    for bad in ('[terminal]\ntype = ""', '[terminal]\ncountry = "01"', '[terminal]\nttq = "zz"',
                '[terminal]\nmerchant_name = "商户"', "[[aid]]\naid = \"A0\"", "not toml ["):  # fmt: skip
        with pytest.raises(ConfigError):
            parse_config(bad)

    @settings(max_examples=300, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from(KEYS), st.one_of(st.text(max_size=12), st.integers(-5, 10**7), st.booleans())
        )
    )
    def any_terminal_section(section):
        text = "[terminal]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in section.items())
        try:
            parse_config(text)
        except ConfigError:
            return

    any_terminal_section()


KEYS = (
    "country", "currency", "type", "capabilities", "additional_capabilities", "ttq", "pin_key", "terminal_id",
    "merchant_name", "floor_limit_fen", "ec_terminal_limit_fen", "ec_support", "random_target_percent",
)  # fmt: skip


def test_the_pin_key_is_not_in_the_configuration_repr():
    cfg = terminal_config()
    assert cfg.pin_key and cfg.pin_key.hex() not in repr(cfg).lower() and "pin_key" not in repr(cfg)
