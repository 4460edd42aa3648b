"""Clearing verifies a batch's TCs in one HSM call per bank (``Hsm.verify_cards_acs``: the UDKs of all its
cards derived in one pass), split when a call would hold more than ``MAX_CARDS_ACS`` cryptograms, and opens
the batch's sealed PANs in one call (``Hsm.unseal_many``); the day clears the same either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from citycard.codec.pan import mask_pan
from citycard.db import Database, clearing_repositories
from citycard.issuer.handlers import IssuerService
from citycard.issuer.model import bank_key_labels

from tests.clearing.test_day import DAY, Day, engine, items
from tests.issuer.conftest import Clock


def _offline(database: Database) -> list[tuple[str, int, str, str]]:
    return sorted(
        (i["pan_masked"], i["amount_fen"], i["kind"], i["issuer_bank"])
        for i in items(database, "20261125")
        if i["source"] == "offline"
    )


def _count_calls(banks: IssuerService, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[int]]]:
    """The HSM's ``verify_cards_acs`` calls (the IMK's label, each card's count of cryptograms), and a
    failure if the one-card ``verify_card_acs`` is called."""
    calls: list[tuple[str, list[int]]] = []
    real = banks.hsm.verify_cards_acs

    def counted(imk: Any, cards: Any) -> list[list[bool]]:
        calls.append((imk.label, [len(checks) for _, _, checks in cards]))
        return real(imk, cards)

    def refused(*args: Any) -> list[bool]:
        raise AssertionError("clearing verifies a batch's cards in one call per bank")

    monkeypatch.setattr(banks.hsm, "verify_cards_acs", counted)
    monkeypatch.setattr(banks.hsm, "verify_card_acs", refused)
    return calls


def test_one_call_per_bank_of_a_batch(
    banks: IssuerService,
    database: Database,
    clock: Clock,
    day: Day,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _count_calls(banks, monkeypatch)
    unsealed: list[int] = []
    real_unseal_many, real_unseal = banks.hsm.unseal_many, banks.hsm.unseal

    def unseal_many(dek: Any, items: Any) -> list[bytes | None]:
        unsealed.append(len(items))
        return real_unseal_many(dek, items)

    def unseal(dek: Any, sealed: bytes, record: bytes) -> bytes:
        assert not record.startswith(b"citycard/pan/"), "a batch's PANs are opened in one call"
        return real_unseal(dek, sealed, record)

    monkeypatch.setattr(banks.hsm, "unseal_many", unseal_many)
    monkeypatch.setattr(banks.hsm, "unseal", unseal)
    clearing = engine(database, banks, clock, batch_size=1_000)  # the whole day in one batch
    clearing.import_journal(tmp_path / "exports", DAY)
    summary = clearing.run(DAY)
    assert unsealed and unsealed[0] >= 10  # the day's uploads' PANs: one call
    imks = {bank_key_labels(bank)["imk_ac"]: bank for bank in ("ICBC", "BOC")}
    assert sorted(imks[label] for label, _ in calls) == ["BOC", "ICBC"]
    assert all(len(cards) == 2 for _, cards in calls)  # a, lost at ICBC; b, k at BOC
    assert summary.offline_count == 7 and summary.offline_fen == 1_250 + 300 + 200 + 800 + 200 + 900 + 1_000


def test_a_bank_s_cards_split_into_calls_under_the_limit_clear_the_same(
    banks: IssuerService,
    database: Database,
    clock: Clock,
    day: Day,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clearing_repositories, "MAX_CARDS_ACS", 2)
    calls = _count_calls(banks, monkeypatch)
    clearing = engine(database, banks, clock, batch_size=1_000)
    clearing.import_journal(tmp_path / "exports", DAY)
    summary = clearing.run(DAY)
    assert len(calls) > 2
    assert all(sum(cards) <= 2 or len(cards) == 1 for _, cards in calls)  # a card with more: alone
    assert any(len(cards) == 1 and cards[0] > 2 for _, cards in calls)
    assert summary.offline_count == 7 and summary.offline_fen == 1_250 + 300 + 200 + 800 + 200 + 900 + 1_000
    names = {mask_pan(h.pan): name for name, h in day.cards.items()}
    assert sorted((names[p], a, k, b) for p, a, k, b in _offline(database)) == [
        ("a", 200, "fare", "ICBC"),
        ("a", 300, "purchase", "ICBC"),
        ("a", 1_250, "purchase", "ICBC"),
        ("b", 200, "fare", "BOC"),
        ("b", 800, "purchase", "BOC"),
        ("k", 900, "purchase", "BOC"),
        ("lost", 1_000, "purchase", "ICBC"),
    ]
