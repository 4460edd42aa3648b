"""Sign-in, roles and the dashboard over the API and the pages (FastAPI's TestClient)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import PASSWORD, City, sign_in, sign_in_card

pytestmark = pytest.mark.parametrize("city", ["sqlite", "postgresql"], indirect=True)


def test_operator_signs_in_and_sees_the_dashboard(client: TestClient, city: City) -> None:
    sign_in(client, "op")
    r = client.get("/api/figures")
    assert r.status_code == 200
    f = r.json()
    assert f["cards_total"] == 5 and f["cards_active"] == 4 and f["cards_registered"] == 4
    assert {(c["bank"], c["product"], c["count"]) for c in f["cards_by_bank_product"]} == {
        ("BOC", "debit-ec", 2),
        ("ICBC", "anon-ec", 1),
        ("ICBC", "debit-ec", 2),
    }
    assert f["merchants_total"] == 3 and f["terminals_total"] == 4 and f["validators"] == 2
    assert f["bus_lines"] == 1  # the bus company with a validator; the hospital's validator is no bus line
    page = client.get("/console")
    assert page.status_code == 200 and 'data-figure="cards_total">5<' in page.text


def test_no_session_is_401_for_the_api_and_a_redirect_for_pages(client: TestClient) -> None:
    assert client.get("/api/figures").status_code == 401
    r = client.get("/console", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"


def test_other_roles_cannot_see_the_console(client: TestClient, city: City) -> None:
    sign_in(client, "shop")
    assert client.get("/api/figures").status_code == 403
    client.cookies.clear()
    sign_in_card(client, city.pans["zhang"])
    assert client.get("/api/figures").status_code == 403


def test_wrong_password_is_401_and_too_many_is_429(client: TestClient) -> None:
    for _ in range(5):
        r = client.post("/api/session", json={"username": "boc", "password": "wrong password"})
        assert r.status_code == 401
    r = client.post("/api/session", json={"username": "boc", "password": PASSWORD})
    assert r.status_code == 429


def test_citizen_signs_in_with_card_and_pin_and_a_wrong_pin_is_refused(
    client: TestClient, city: City
) -> None:
    r = client.post("/api/session/card", json={"pan": city.pans["li"], "pin": "000000"})
    assert r.status_code == 401
    sign_in_card(client, city.pans["li"])
    assert client.get("/api/me").json()["role"] == "citizen"


def test_bad_input_is_422(client: TestClient) -> None:
    r = client.post("/api/session/card", json={"pan": "12ab", "pin": "1"})
    assert r.status_code == 422
    assert {tuple(e["loc"]) for e in r.json()["detail"]} == {("body", "pan"), ("body", "pin")}


def test_a_form_without_the_csrf_token_is_refused(client: TestClient) -> None:
    sign_in(client, "op")
    r = client.post("/signout", data={})
    assert r.status_code == 403
    page = client.get("/console")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post("/signout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/figures").status_code == 401


def test_the_operator_sign_in_is_in_the_audit_log(client: TestClient) -> None:
    sign_in(client, "op")
    entries = client.get("/api/audit").json()["entries"]
    assert any(e["action"] == "signin" and e["actor"] == "op" for e in entries)
    assert "signin" in client.get("/console/audit").text
