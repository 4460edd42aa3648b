"""The seeding reads what is already there a page at a time, with no bound that would lose rows
(REVIEW.md, TIGER_STYLE: "no silent truncation"; it read with ``limit=100_000`` before)."""

from __future__ import annotations

import pytest

from citycard.city import seed


@pytest.mark.parametrize("rows", [0, 1, seed._PAGE - 1, seed._PAGE, seed._PAGE + 1, 2 * seed._PAGE + 345])
def test_every_row_is_read_whatever_their_number(rows: int) -> None:
    table = list(range(rows))
    asked: list[tuple[int, int]] = []

    def page(*, limit: int, offset: int) -> list[int]:
        asked.append((limit, offset))
        return table[offset : offset + limit]

    assert list(seed._every(page)) == table
    assert [offset for _, offset in asked] == [seed._PAGE * i for i in range(rows // seed._PAGE + 1)]
    assert {limit for limit, _ in asked} == {seed._PAGE}
