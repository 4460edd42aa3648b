"""``citycard acquirer queue`` and ``retry`` over the whole chain (``tests/pos/chain.py``): with the bank's
issuer front end down, an online purchase is declined 91 and its reversal waits in the acquirer's queue;
the operator sees it (kind, RRN, terminal and STAN, amount, the card masked, tries, last answer, next try),
brings it forward once the bank is back, and it is delivered: the account nets to zero."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from citycard import bootstrap
from citycard.cli import run

from tests.pos.chain import PIN, TID, chain
from tests.pos.test_online import World


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with chain(tmp_path / "home", monkeypatch) as net:
        yield World(net, tmp_path)


def _eventually(check: Callable[[], bool], deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def _backed_off(world: World, *, minutes: int) -> None:
    from citycard.acquirer import SafStatus
    from citycard.db.acquirer_repositories import acquirer_unit_of_work
    from citycard.hsm.protection import RecordProtection

    protection = RecordProtection.open(world.net.issuer.hsm)
    later = time.time_ns() + minutes * 60 * 10**9
    for _ in range(20):  # a round of the running acquirer's queue under way may write its own next try
        with acquirer_unit_of_work(world.net.issuer.database, protection) as uow:
            (entry,) = uow.saf.pending(10)
            uow.saf.set_result(
                entry.id,
                status=SafStatus.PENDING,
                attempts=entry.attempts,
                next_attempt_ns=later,
                response_code=entry.response_code,
            )
            uow.commit()
        time.sleep(0.2)
        with acquirer_unit_of_work(world.net.issuer.database, protection, read_only=True) as uow:
            if uow.saf.pending(10)[0].next_attempt_ns == later:
                return
    raise AssertionError("the entry's next try could not be set")


def _queue(capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    assert run(["acquirer", "queue", "--json"]) == 0
    document: dict = json.loads(capsys.readouterr().out)  # type: ignore[type-arg]
    return document


def test_the_operator_sees_a_waiting_reversal_brings_it_forward_and_it_is_delivered(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table whole, as on an operator's wide terminal
    before = world.net.status()["deposit_available_fen"]
    port = world.net.servers["issuer"].port
    assert _queue(capsys) == {"pending": 0, "delivered": 0, "entries": []}
    world.net.stop("issuer")
    with world.client() as client:
        declined = world.pos(client).purchase(world.tap(), 12_000, pin=lambda _: PIN)
    assert not declined.approved and declined.entry is not None
    _eventually(lambda: _queue(capsys)["entries"] and _queue(capsys)["entries"][0]["attempts"] >= 1)
    document = _queue(capsys)
    assert document["pending"] == 1 and document["delivered"] == 0
    (entry,) = document["entries"]
    pan = world.net.pan
    assert entry["kind"] == "reversal" and entry["mti"] == "0400" and entry["terminal_id"] == TID
    assert entry["stan"] == declined.entry.stan and entry["amount_fen"] == 12_000
    assert entry["card"] == pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    assert entry["last_code"] == "91" and len(entry["rrn"]) == 12  # not sent on: the bank's link is down
    capsys.readouterr()
    assert run(["acquirer", "queue"]) == 0
    text = capsys.readouterr().out
    assert "1 waiting, 0 delivered" in text and "reversal 0400" in text and entry["rrn"] in text
    assert f"{TID} " in text and f"{declined.entry.stan:06d}" in text and " 120.00 " in text
    assert pan not in text  # masked, as in the JSON

    # as after a long outage, its next try a minute away: retry has the running acquirer send it at once
    _backed_off(world, minutes=1)
    waiting = _queue(capsys)["entries"][0]
    assert datetime.fromisoformat(waiting["next_attempt"]).timestamp() > time.time() + 50
    capsys.readouterr()
    assert run(["acquirer", "queue"]) == 0
    assert re.search(r" in 5\d s ", capsys.readouterr().out)
    assert run(["acquirer", "retry"]) == 0
    assert capsys.readouterr().out.startswith("1 waiting reversal(s) and advice(s) due now")
    _eventually(lambda: _queue(capsys)["entries"][0]["attempts"] > waiting["attempts"], deadline_s=20)
    assert _queue(capsys)["entries"][0]["last_code"] == "91"  # the bank still down: tried, not delivered

    # the bank's front end back (a new process on its port); one more retry and it is delivered
    front = world.net.servers["issuer"] = bootstrap.build_issuer_front_end(
        world.net.issuer, "ICBC", port=port
    )
    world.net.loop.run(front.start())
    _backed_off(world, minutes=1)
    assert run(["acquirer", "retry"]) == 0
    _eventually(lambda: _queue(capsys)["pending"] == 0, deadline_s=20)
    assert _queue(capsys) == {"pending": 0, "delivered": 1, "entries": []}
    assert world.net.status()["deposit_available_fen"] == before
