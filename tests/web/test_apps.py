"""The card page's industry applications (issue 11, docs/web.md "Industry applications"): the registry's
applications with their state on the card, the operator's enable and disable through the public use cases
(the CLI's), audited; refusals as 4xx with the reason and nothing changed; a bank reads its own cards'
applications and may not change them (403, audited); merchants and citizens get 404."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from citycard.codec.pan import mask_pan
from citycard.db.issuer_tables import issuer_cards

from tests.web.conftest import City, ref_of, sign_in, sign_in_card

pytestmark = pytest.mark.parametrize("city", ["sqlite", "postgresql"], indirect=True)

LIBRARY = {"reader_number": "12345678", "deposit_fen": "10000"}


def _states(client: TestClient, ref: int) -> dict[str, dict[str, Any]]:
    r = client.get(f"/api/cards/{ref}/applications")
    assert r.status_code == 200, r.text
    return {a["app"]: a for a in r.json()}


def _marked(city: City, name: str) -> bool:
    with city.ctx.database.engine.connect() as c:
        return bool(
            c.execute(
                select(issuer_cards.c.records_pending).where(issuer_cards.c.pan == city.pans[name])
            ).scalar_one()
        )


def test_operator_enables_and_disables_an_application_audited(client: TestClient, city: City) -> None:
    headers = sign_in(client, "op")
    ref = ref_of(city, "wang")
    before = _states(client, ref)
    assert list(before) == ["transit", "library", "health"]  # the registry, in its order
    assert {a["status"] for a in before.values()} == {"not enabled"}
    assert before["library"]["fields"][0]["name"] == "reader_number" and before["library"]["on_chip"] is None
    assert not _marked(city, "wang")

    r = client.post(f"/api/cards/{ref}/applications/library/enable", json={"data": LIBRARY}, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["data"], r.json()["on_chip"]) == ("enabled", LIBRARY, "pending")
    assert _states(client, ref)["library"]["status"] == "enabled"
    assert _marked(city, "wang")  # the issuer writes the record by script at the next online contact

    new = {**LIBRARY, "deposit_fen": "20000"}
    r = client.post(f"/api/cards/{ref}/applications/library/enable", json={"data": new}, headers=headers)
    assert r.status_code == 200 and r.json()["data"] == new
    r = client.post(f"/api/cards/{ref}/applications/library/disable", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "disabled" and r.json()["data"] == new
    after = _states(client, ref)
    assert (after["library"]["status"], after["health"]["status"]) == ("disabled", "not enabled")

    log = client.get("/api/audit").json()["entries"][:3]
    assert [(e["action"], e["outcome"]) for e in log] == [
        ("app_disable", "ok"),
        ("app_enable", "ok"),
        ("app_enable", "ok"),
    ]
    assert {e["target"] for e in log} == {mask_pan(city.pans["wang"])}
    assert "library disabled (on the chip: pending)" in log[0]["detail"]
    assert not any("12345678" in e["detail"] for e in log)  # the application's data stays out of the log


def test_the_transit_application_is_the_cards_concession(client: TestClient, city: City) -> None:
    """Enabling transit goes through the same use case as the CLI: the card's transit file follows."""
    headers = sign_in(client, "op")
    ref = ref_of(city, "zhang")
    data = {"category": "elderly", "valid_until": "20301231"}
    r = client.post(f"/api/cards/{ref}/applications/transit/enable", json={"data": data}, headers=headers)
    assert r.status_code == 200, r.text
    transit = client.get(f"/api/cards/{ref}").json()["card"]["transit"]
    assert (transit["concession"], transit["on_chip"]) == ("elderly", "pending")
    assert transit["valid_until"].replace("-", "") == "20301231"


def test_refusals_are_4xx_with_the_reason_and_change_nothing(client: TestClient, city: City) -> None:
    headers = sign_in(client, "op")
    ref = ref_of(city, "li")
    before = _states(client, ref)
    enable = f"/api/cards/{ref}/applications/%s/enable"
    cases = [
        (enable % "parking", {"data": {}}, 422, "is not an application"),
        (enable % "library", {"data": {"reader_number": "12"}}, 422, "reader_number"),
        (enable % "library", {"data": {"reader_number": "12345678"}}, 422, "deposit_fen: required"),
        (enable % "library", {"data": {**LIBRARY, "pin": "1"}}, 422, "library keeps no pin"),
        (
            enable % "health",
            {"data": {"insurance_number": "1234567890", "blood_type": "Z"}},
            422,
            "blood_type",
        ),
        (f"/api/cards/{ref}/applications/health/disable", None, 409, "health is not on the card"),
    ]
    for url, body, status, reason in cases:
        r = client.post(url, json=body, headers=headers)
        assert r.status_code == status and reason in r.text, (url, r.status_code, r.text)
    assert _states(client, ref) == before
    assert not _marked(city, "li")
    refused = client.get("/api/audit").json()["entries"][: len(cases)]
    assert {(e["action"], e["outcome"]) for e in refused} == {
        ("app_enable", "refused"),
        ("app_disable", "refused"),
    }
    assert len(refused) == len(cases)

    anon = ref_of(city, "anon")  # an anonymous card keeps no application (the public use case says so)
    r = client.post(f"/api/cards/{anon}/applications/library/enable", json={"data": LIBRARY}, headers=headers)
    assert r.status_code == 409 and "is not registered" in r.json()["detail"]
    assert _states(client, anon)["library"]["status"] == "not enabled"
    assert client.post("/api/cards/999999/applications/library/disable", headers=headers).status_code == 404
    assert client.post(f"/api/cards/{ref}/applications/library/disable").status_code == 403  # no CSRF token


def test_a_bank_reads_its_own_cards_applications_and_may_not_change_them(
    client: TestClient, city: City
) -> None:
    op = sign_in(client, "op")
    ref, other = ref_of(city, "zhang"), ref_of(city, "li")  # ICBC's card, BOC's card
    client.post(f"/api/cards/{ref}/applications/library/enable", json={"data": LIBRARY}, headers=op)
    headers = sign_in(client, "icbc")
    assert _states(client, ref)["library"]["data"] == LIBRARY
    page = client.get(f"/console/cards/{ref}").text
    assert 'id="applications"' in page and "12345678" in page and "enable-library" not in page
    assert client.get(f"/api/cards/{other}/applications").status_code == 404  # another bank's card
    for url, body in (
        (f"/api/cards/{ref}/applications/health/enable", {"data": {"insurance_number": "1234567890",
                                                                  "blood_type": "O"}}),
        (f"/api/cards/{ref}/applications/library/disable", None),
        (f"/api/cards/{other}/applications/library/disable", None),
    ):  # fmt: skip
        r = client.post(url, json=body, headers=headers)
        assert r.status_code == 403 and "by the service center" in r.json()["detail"], r.text
    sign_in(client, "op")
    states = _states(client, ref)
    assert (states["library"]["status"], states["health"]["status"]) == ("enabled", "not enabled")
    log = [e for e in client.get("/api/audit").json()["entries"] if e["action"].startswith("app_")][:3]
    assert [(e["role"], e["action"], e["outcome"]) for e in log] == [
        ("bank", "app_disable", "refused"),
        ("bank", "app_disable", "refused"),
        ("bank", "app_enable", "refused"),
    ]
    assert log[0]["target"] == f"card {other}" and log[1]["target"] == mask_pan(city.pans["zhang"])


def test_merchants_and_citizens_get_404(client: TestClient, city: City) -> None:
    ref = ref_of(city, "li")
    for signed_in in (lambda: sign_in(client, "hospital"), lambda: sign_in_card(client, city.pans["li"])):
        headers = signed_in()
        assert client.get(f"/api/cards/{ref}/applications").status_code == 404
        r = client.post(
            f"/api/cards/{ref}/applications/library/enable", json={"data": LIBRARY}, headers=headers
        )
        assert r.status_code == 404
        form = {"csrf_token": headers["X-CSRF-Token"], "action": "disable", "app": "library"}
        assert client.post(f"/console/cards/{ref}/applications", data=form).status_code == 404
    sign_in(client, "op")
    assert _states(client, ref)["library"]["status"] == "not enabled"


def test_the_card_page_lists_them_and_its_forms_enable_and_disable(client: TestClient, city: City) -> None:
    headers = sign_in(client, "op")
    ref = ref_of(city, "wang")
    page = client.get(f"/console/cards/{ref}").text
    assert "Industry applications" in page and 'id="app-health"' in page and "enable-library" in page
    assert "disable-library" not in page  # nothing enabled yet
    url = f"/console/cards/{ref}/applications"
    form = {"csrf_token": headers["X-CSRF-Token"], "action": "enable", "app": "health",
            "data.insurance_number": "330100199001010", "data.blood_type": "AB"}  # fmt: skip
    r = client.post(url, data=form)
    assert r.status_code == 200 and "health enabled (on the chip: pending)" in r.text, r.text
    assert "insurance_number=330100199001010" in r.text and "disable-health" in r.text
    bad = client.post(url, data={**form, "data.blood_type": "C"})
    assert bad.status_code == 422 and "blood_type" in bad.text
    assert _states(client, ref)["health"]["data"]["blood_type"] == "AB"
    r = client.post(url, data={"csrf_token": headers["X-CSRF-Token"], "action": "disable", "app": "health"})
    assert r.status_code == 200 and "health disabled (on the chip: pending)" in r.text
    again = client.post(
        url, data={"csrf_token": headers["X-CSRF-Token"], "action": "disable", "app": "health"}
    )
    assert again.status_code == 409 and "health is disabled: cannot disable it" in again.text
    assert client.post(url, data={"action": "disable", "app": "health"}).status_code == 403  # no CSRF token
