"""Settlement in the web views over a settled day (settlement's own test day, ``tests.settlement.day``,
settled by ``citycard.settlement.settle_day``): the operator sees every position and payout, a bank user its
own position and merchants, a merchant only its own payouts (another merchant's are 404)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from citycard.center.commands import AddMerchant
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.settlement import settle_day
from citycard.web import create_app
from citycard.web.store import Store

from tests.settlement.day import DAY, HOSPITAL, SUPERMARKET, prepare
from tests.web.conftest import PASSWORD, City, _build


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[City, dict[str, int]]]:
    city = _build(tmp_path_factory.mktemp("settled"), offline=False)  # the settlement day's own items
    try:
        db = city.ctx.database
        city.ctx.center.handle(AddMerchant(SUPERMARKET, "Supermarket", "5411", "Xinhua District", "ICBC"))
        city.ctx.center.handle(AddMerchant(HOSPITAL, "Hospital", "8062", "Luquan County", "BOC"))
        prepare(db)
        result = settle_day(lambda: db.unit_of_work(SettlementUnitOfWork), DAY, clock=city.ctx.clock)
        payouts = {m.merchant_id: m.payout_fen for m in result.record.merchants}
        store = Store(db)
        store.add_user("super", PASSWORD, "merchant", SUPERMARKET, city.ctx.clock())
        store.add_user("hosp", PASSWORD, "merchant", HOSPITAL, city.ctx.clock())
        yield city, payouts
    finally:
        city.ctx.close()


@pytest.fixture
def web(settled: tuple[City, dict[str, int]]) -> Iterator[TestClient]:
    with TestClient(create_app(settled[0].ctx)) as c:
        yield c


def signed_in(client: TestClient, username: str) -> TestClient:
    r = client.post("/api/session", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client


def test_a_merchant_sees_its_payouts_and_not_another_merchants(
    web: TestClient, settled: tuple[City, dict[str, int]]
) -> None:
    payouts = settled[1]
    signed_in(web, "super")
    own = web.get(f"/api/merchants/{SUPERMARKET}/payouts").json()
    assert [(p["settlement_date"], p["payout_fen"]) for p in own] == [(DAY, payouts[SUPERMARKET])]
    assert own[0]["payout_fen"] > 0 and own[0]["payout_date"] > DAY
    assert web.get(f"/api/merchants/{HOSPITAL}/payouts").status_code == 404
    assert web.get(f"/merchant/{HOSPITAL}/payouts").status_code == 404
    assert f'data-fen="{payouts[SUPERMARKET]}"' in web.get("/merchant").text
    assert web.get("/api/settlement").status_code == 403


def test_the_operator_sees_the_day_and_a_bank_its_own_part(web: TestClient) -> None:
    signed_in(web, "op")
    assert web.get("/api/settlement").json() == [DAY]
    day = web.get(f"/api/settlement/{DAY}").json()
    assert sum(p["net_fen"] for p in day["positions"]) == 0  # the banks' and the center's positions net out
    assert {p["participant"] for p in day["positions"]} >= {"ICBC", "BOC"}
    assert day["industries"] and "Hospital" not in str(day)  # merchant ids, not names
    assert DAY in web.get("/console/settlement").text
    # the dashboard's latest settled day and its payouts, as settlement recorded them
    f = web.get("/api/figures").json()
    assert f["settled_day"] == f"{DAY[:4]}-{DAY[4:6]}-{DAY[6:]}"
    assert f["settled_payout_fen"] == sum(m["payout_fen"] for m in day["merchants"]) > 0
    assert f["cleared_day"] == f["settled_day"]
    web.cookies.clear()
    signed_in(web, "boc")
    boc = web.get("/api/bank/figures").json()
    assert boc["settled_payout_fen"] == sum(m["payout_fen"] for m in day["merchants"] if m["bank"] == "BOC")
    mine = web.get(f"/api/settlement/{DAY}").json()
    assert [p["participant"] for p in mine["positions"]] == ["BOC"]
    assert {m["bank"] for m in mine["merchants"]} == {"BOC"}
    # its merchants' industries only, summed again (the filter of 'settlement report --bank')
    assert sum(t["gross_fen"] for t in mine["industries"]) == sum(m["gross_fen"] for m in mine["merchants"])
    assert mine["items"] == sum(m["items"] for m in mine["merchants"]) < day["items"]
    assert mine["payout_total_fen"] == sum(m["payout_fen"] for m in mine["merchants"])
    assert [p["participant"] for p in web.get("/api/bank/settlement").json()] == ["BOC"]
    assert web.get(f"/api/merchants/{SUPERMARKET}/payouts").status_code == 404  # ICBC acquires it
    assert web.get(f"/api/merchants/{HOSPITAL}/payouts").status_code == 200
