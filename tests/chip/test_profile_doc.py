"""docs/card-profile.md stays true: the values it publishes are the ones the card uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from citycard.chip import pboc
from citycard.chip.image import CardImage
from citycard.chip.personalise import _CVM_LIST
from citycard.chip.sequence import COMMANDS, Phase

DOC = Path(__file__).resolve().parents[2] / "docs" / "card-profile.md"


def _squashed() -> str:
    text = DOC.read_text(encoding="utf-8")
    return re.sub(r"[`\s]", "", text).upper()


@pytest.mark.parametrize(
    "value",
    [
        pboc.ATR_CONTACT,
        pboc.ATR_CONTACTLESS,
        pboc.PDOL_CONTACT,
        pboc.PDOL_CONTACTLESS,
        pboc.CDOL1,
        pboc.CDOL2,
        pboc.DDOL,
        pboc.TXN_LOG_FORMAT,
        pboc.LOAD_LOG_FORMAT,
        pboc.afl(ec=False),
        pboc.afl(ec=True),
        pboc.AIP_CONTACT,
        pboc.AIP_CDA,
    ],
    ids=lambda v: v.hex().upper()[:16],
)
def test_published_values(value: bytes) -> None:
    assert value.hex().upper() in _squashed()


def test_cvm_list_rules_published() -> None:
    rules = _CVM_LIST[8:]
    text = _squashed()
    for i in range(0, len(rules), 2):
        assert rules[i : i + 2].hex().upper() in text


def test_personalised_values_published(image: CardImage) -> None:
    data = image.applications[0].data
    text = _squashed()
    for tag in ("9F0D", "9F0E", "9F0F", "9F07", "9F08", "5F30", "9F44", "9F4A", "82"):
        assert f"{tag}" in text and data[tag].hex().upper() in text, tag


def test_sequencing_table_published() -> None:
    """§15's table of where each command is taken is ``citycard.chip.sequence.COMMANDS``, row for row."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 15. Command sequencing") :]
    rows = re.findall(r"^\| `([0-9A-F]{2})` \| [A-Z ]+ \| ([A-Z_, a-z]+) \|$", section, re.MULTILINE)
    published = {
        int(ins, 16): frozenset(Phase)
        if taken == "every phase"
        else frozenset(Phase[n] for n in taken.split(", "))
        for ins, taken in rows
    }
    assert published == dict(COMMANDS)
