"""Processing restrictions (EMV 4.3 Book 3 §10.4): application version, application usage control against
the terminal (ATM or not) and domestic/international use, cashback, effective and expiry dates — each
sets its TVR bit, against cards personalised with those values (their ODA signatures stay valid)."""

from __future__ import annotations

import importlib
from dataclasses import replace

from citycard.chip.card import Card
from citycard.chip.personalise import ProductProfile
from citycard.codec.emvbits import (
    TVR_DIFFERENT_VERSIONS,
    TVR_EXPIRED,
    TVR_NOT_YET_EFFECTIVE,
    TVR_SERVICE_NOT_ALLOWED,
)
from citycard.kernel.events import OutcomeKind
from citycard.kernel.kernel import TransactionKind as K

from .cardlab import demo_keys, det_rng, terminal_config, transact

chip_personalise = importlib.import_module("citycard.chip.personalise")
RESTRICTION_BITS = (TVR_DIFFERENT_VERSIONS, TVR_EXPIRED, TVR_NOT_YET_EFFECTIVE, TVR_SERVICE_NOT_ALLOWED)


def _set(tvr: bytes) -> set[tuple[int, int]]:
    return {flag for flag in RESTRICTION_BITS if tvr[flag[0]] & flag[1]}


def _card(monkeypatch, serial: int, extra: dict[str, bytes] | None = None, **profile) -> Card:
    original = chip_personalise._application_data
    monkeypatch.setattr(
        chip_personalise, "_application_data", lambda p, pan: {**original(p, pan), **(extra or {})}
    )
    image = chip_personalise.personalise(
        ProductProfile(opening_balance_fen=10_000, **profile), serial, demo_keys()
    )
    card = Card(image, det_rng(serial))
    card.power_on("contact")
    return card


def test_a_plain_card_passes_every_restriction(monkeypatch):
    out, _ = transact(_card(monkeypatch, 40), K.PURCHASE, 100)
    assert _set(out.tvr) == set() and out.kind is OutcomeKind.APPROVED_OFFLINE, out.reason


def test_application_version_differs(monkeypatch):
    aids = tuple(replace(a, app_version=bytes.fromhex("0030")) for a in terminal_config().aids)
    out, _ = transact(_card(monkeypatch, 41), K.PURCHASE, 100, cfg=terminal_config(aids=aids))
    assert _set(out.tvr) == {TVR_DIFFERENT_VERSIONS}
    assert out.kind is OutcomeKind.APPROVED_OFFLINE  # informative: the default TACs do not decline on it


def test_not_yet_effective_and_expired(monkeypatch):
    out, _ = transact(_card(monkeypatch, 42, effective="261201"), K.PURCHASE, 100)
    assert _set(out.tvr) == {TVR_NOT_YET_EFFECTIVE}
    out, _ = transact(_card(monkeypatch, 43, expiry="261124"), K.PURCHASE, 100)
    assert _set(out.tvr) == {TVR_EXPIRED} and out.kind is OutcomeKind.DECLINED_OFFLINE  # TAC default
    out, _ = transact(_card(monkeypatch, 44, expiry="261125"), K.PURCHASE, 100)  # valid through today
    assert _set(out.tvr) == set()


def test_usage_control_domestic_and_international(monkeypatch):
    domestic_only = {
        "9F07": bytes.fromhex("A900")
    }  # domestic cash, goods, services; terminals other than ATMs
    out, _ = transact(_card(monkeypatch, 45, domestic_only), K.PURCHASE, 100)
    assert _set(out.tvr) == set()
    foreign = _card(monkeypatch, 46, domestic_only, country="0344")  # issued in Hong Kong
    out, _ = transact(foreign, K.PURCHASE, 100)
    assert _set(out.tvr) == {TVR_SERVICE_NOT_ALLOWED}
    international = {"9F07": bytes.fromhex("5500")}
    out, _ = transact(_card(monkeypatch, 47, international, country="0344"), K.PURCHASE, 100)
    assert _set(out.tvr) == set()


def test_usage_control_against_the_terminal_type(monkeypatch):
    pos_only = {"9F07": bytes.fromhex("FD00")}  # not valid at ATMs, valid at other terminals
    atm = terminal_config(terminal_type=0x14, additional_capabilities=bytes.fromhex("E000F0A001"))
    out, _ = transact(_card(monkeypatch, 48, pos_only), K.PURCHASE, 100)
    assert _set(out.tvr) == set()
    out, _ = transact(_card(monkeypatch, 49, pos_only), K.PURCHASE, 100, cfg=atm)
    assert _set(out.tvr) == {TVR_SERVICE_NOT_ALLOWED}
    atm_only = {"9F07": bytes.fromhex("FE00")}
    out, _ = transact(_card(monkeypatch, 50, atm_only), K.PURCHASE, 100)
    assert _set(out.tvr) == {TVR_SERVICE_NOT_ALLOWED}
    out, _ = transact(_card(monkeypatch, 51, atm_only), K.PURCHASE, 100, cfg=atm)
    assert _set(out.tvr) == set()


def test_cashback_needs_its_usage_bit(monkeypatch):
    out, _ = transact(_card(monkeypatch, 52), K.PURCHASE, 5_000, other_amount_fen=1_000)
    assert TVR_SERVICE_NOT_ALLOWED in _set(out.tvr)  # AUC FF00: no cashback bits
    card = _card(monkeypatch, 53, {"9F07": bytes.fromhex("FF80")})
    out, _ = transact(card, K.PURCHASE, 5_000, other_amount_fen=1_000)
    assert TVR_SERVICE_NOT_ALLOWED not in _set(out.tvr)
