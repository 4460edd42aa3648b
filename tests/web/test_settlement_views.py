"""Settlement in the web views over a settled day (settlement's own test day, ``tests.settlement.day``,
settled by ``citycard.settlement.settle_day``): the operator sees every position and payout, a bank user its
own position and merchants, a merchant only its own payouts (another merchant's are 404)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from citycard.center.commands import AddMerchant
from citycard.db.settlement_repositories import SettlementUnitOfWork
from citycard.settlement import settle_day
from citycard.web import create_app
from citycard.web.store import Store

from tests.settlement.day import BUS, DAY, HOSPITAL, ITEMS, SUPERMARKET, prepare
from tests.web.conftest import PASSWORD, City, _build

LINES = {6: 5, 7: 12, 8: 5}  # the bus company's three fares (items 6, 7, 8): two on line 5, one on 12
ITEMS_WITH_LINES = [replace(i, bus_line=LINES[i.id]) if i.id in LINES else i for i in ITEMS]


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[City, dict[str, int]]]:
    city = _build(tmp_path_factory.mktemp("settled"), offline=False)  # the settlement day's own items
    try:
        db = city.ctx.database
        city.ctx.center.handle(AddMerchant(SUPERMARKET, "Supermarket", "5411", "Xinhua District", "ICBC"))
        city.ctx.center.handle(AddMerchant(HOSPITAL, "Hospital", "8062", "Luquan County", "BOC"))
        city.ctx.center.handle(AddMerchant(BUS, "City Bus", "4131", "Xinhua District", "ICBC"))
        prepare(db, ITEMS_WITH_LINES)
        result = settle_day(lambda: db.unit_of_work(SettlementUnitOfWork), DAY, clock=city.ctx.clock)
        payouts = {m.merchant_id: m.payout_fen for m in result.record.merchants}
        store = Store(db)
        store.add_user("super", PASSWORD, "merchant", SUPERMARKET, city.ctx.clock())
        store.add_user("hosp", PASSWORD, "merchant", HOSPITAL, city.ctx.clock())
        store.add_user("bus", PASSWORD, "merchant", BUS, city.ctx.clock())
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


def _fares(line: int) -> list[int]:
    return [i.amount_fen for i in ITEMS_WITH_LINES if i.bus_line == line]


def test_a_bus_company_sees_its_fares_by_line_and_no_one_elses(web: TestClient) -> None:
    expected = [{"line": n, "fares": len(_fares(n)), "gross_fen": sum(_fares(n))} for n in (5, 12)]
    assert expected == [{"line": 5, "fares": 2, "gross_fen": 350}, {"line": 12, "fares": 1, "gross_fen": 200}]
    signed_in(web, "bus")
    assert web.get(f"/api/merchants/{BUS}/settlement/{DAY}/lines").json() == expected
    page = web.get(f"/merchant/{BUS}/settlement/{DAY}").text
    assert '<tr data-line="5">' in page and 'data-fen="350"' in page and 'data-line="12"' in page
    assert '<svg class="chart"' in page and "line 12" in page
    assert f'href="/merchant/{BUS}/settlement/{DAY}"' in web.get("/merchant").text  # linked from its payouts
    assert web.get(f"/api/merchants/{BUS}/settlement/20261124/lines").status_code == 404  # not settled
    assert web.get(f"/merchant/{BUS}/settlement/20261124").status_code == 404
    assert web.get(f"/api/merchants/{SUPERMARKET}/settlement/{DAY}/lines").status_code == 404
    assert web.get(f"/merchant/{HOSPITAL}/settlement/{DAY}").status_code == 404
    web.cookies.clear()
    signed_in(web, "super")  # a merchant that is no bus company: no lines, and the bus company's are 404
    assert web.get(f"/api/merchants/{SUPERMARKET}/settlement/{DAY}/lines").json() == []
    assert "no fares by bus line" in web.get(f"/merchant/{SUPERMARKET}/settlement/{DAY}").text
    assert web.get(f"/api/merchants/{BUS}/settlement/{DAY}/lines").status_code == 404


def test_the_operator_and_the_acquiring_bank_see_the_fares_by_line(web: TestClient) -> None:
    expected = [
        {"merchant_id": BUS, "line": 5, "fares": 2, "gross_fen": 350},
        {"merchant_id": BUS, "line": 12, "fares": 1, "gross_fen": 200},
    ]
    signed_in(web, "op")
    assert web.get(f"/api/settlement/{DAY}").json()["fares_by_line"] == expected
    page = web.get(f"/console/settlement?day={DAY}").text
    assert 'id="fares-by-line"' in page and 'data-fen="350"' in page
    assert f'href="/merchant/{BUS}/settlement/{DAY}"' in page
    assert web.get(f"/api/merchants/{BUS}/settlement/{DAY}/lines").status_code == 200
    dashboard = web.get("/console").text  # the latest settled day's fare revenue by line
    assert f'<tr data-row="{BUS}/5">' in dashboard and f'<tr data-row="{BUS}/12">' in dashboard
    assert 'data-fen="350"' in dashboard and f"settled day {DAY}" in dashboard
    web.cookies.clear()
    signed_in(web, "icbc")  # ICBC acquires for the bus company
    assert web.get(f"/api/settlement/{DAY}").json()["fares_by_line"] == expected
    assert len(web.get(f"/api/merchants/{BUS}/settlement/{DAY}/lines").json()) == 2
    web.cookies.clear()
    signed_in(web, "boc")  # BOC does not: no lines, and the bus company's page is 404
    assert web.get(f"/api/settlement/{DAY}").json()["fares_by_line"] == []
    assert 'id="fares-by-line"' not in web.get(f"/console/settlement?day={DAY}").text
    assert web.get(f"/api/merchants/{BUS}/settlement/{DAY}/lines").status_code == 404
    assert web.get(f"/merchant/{BUS}/settlement/{DAY}").status_code == 404
