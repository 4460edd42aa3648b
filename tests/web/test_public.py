"""The citizen portal's public services (``/api/me/public``, ``/me/public``): a citizen sees their own
records and applications only; other roles and anonymous requests are refused."""

from __future__ import annotations

from fastapi.testclient import TestClient

from citycard.bootstrap import PublicServices
from citycard.public.commands import EnableApplication, SeedRecords
from citycard.public.handlers import enable_application, records_of, seed_records

from tests.web.conftest import City, sign_in, sign_in_card


def _public(city: City) -> PublicServices:
    return PublicServices(city.settings, city.ctx.database, city.ctx.clock)


def _key(city: City, name: str) -> str:
    with city.ctx.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(city.pans[name])
        assert card is not None and card.holder_id is not None
        holder = uow.cardholders.get(card.holder_id)
        assert holder is not None
        return holder.citizen_key


def test_a_citizen_sees_their_own_records_and_applications(client: TestClient, city: City) -> None:
    public = _public(city)
    seed_records(SeedRecords(5, "20261203"), public.unit_of_work(), city.ctx.clock)
    data = {"reader_number": "20261203", "deposit_fen": "5000"}
    enable_application(
        EnableApplication(city.pans["zhang"], "library", data), public.unit_of_work(), city.ctx.clock
    )
    sign_in_card(client, city.pans["zhang"])
    mine = client.get("/api/me/public").json()
    expected = records_of(_key(city, "zhang"), public.unit_of_work(read_only=True))
    assert expected.social_security is not None
    (records,) = mine["records"]
    assert records["bank"] == "ICBC"  # the session's holder: zhang at ICBC
    assert records["social_security"]["contribution_months"] == expected.social_security.contribution_months
    assert [(a["app"], a["status"]) for a in mine["applications"]] == [("library", "enabled")]
    page = client.get("/me/public")
    assert (
        page.status_code == 200 and "Contribution months" in page.text and "city library reader" in page.text
    )

    client.cookies.clear()
    sign_in_card(client, city.pans["wang"])
    theirs = client.get("/api/me/public").json()
    other = records_of(_key(city, "wang"), public.unit_of_work(read_only=True))
    assert other.social_security is not None
    assert (
        theirs["records"][0]["social_security"]["contribution_months"]
        == other.social_security.contribution_months
    )
    assert theirs["applications"] == []  # zhang's library card is not wang's


def test_a_citizens_cards_of_two_banks_show_the_same_records(client: TestClient, city: City, caplog) -> None:  # type: ignore[no-untyped-def]
    """Zhang holds an ICBC and a BOC card (two holders, one per bank, one citizen key): signed in by
    either card, or by ID number (both holders), the portal shows the same records, once; Li (BOC) sees
    other records."""
    public = _public(city)
    seed_records(SeedRecords(5, "20261203"), public.unit_of_work(), city.ctx.clock)
    assert _key(city, "zhang") == _key(city, "zhang_boc") != _key(city, "li")
    seen = []
    for name in ("zhang", "zhang_boc"):
        client.cookies.clear()
        sign_in_card(client, city.pans[name])
        (records,) = client.get("/api/me/public").json()["records"]
        seen.append(records)
    assert seen[0]["bank"] == "ICBC" and seen[1]["bank"] == "BOC"
    assert seen[0]["social_security"] == seen[1]["social_security"] is not None
    assert seen[0]["medical_insurance"] == seen[1]["medical_insurance"]
    assert seen[0]["library_loans"] == seen[1]["library_loans"]
    expected = records_of(_key(city, "zhang"), public.unit_of_work(read_only=True))
    assert expected.social_security is not None
    assert seen[0]["social_security"]["contribution_months"] == expected.social_security.contribution_months

    client.cookies.clear()  # by ID number and one-time code: both holders, the records once
    caplog.set_level("WARNING", logger="citycard.web")
    assert client.post("/api/session/code-request", json={"id_number": city.ids["zhang"]}).status_code == 202
    code = caplog.records[-1].getMessage().rsplit(": ", 1)[1].split()[0]
    r = client.post("/api/session/code", json={"id_number": city.ids["zhang"], "code": code})
    assert r.status_code == 200
    (both,) = client.get("/api/me/public").json()["records"]
    assert both["bank"] == "BOC, ICBC" and both["social_security"] == seen[0]["social_security"]

    client.cookies.clear()
    sign_in_card(client, city.pans["li"])
    (theirs,) = client.get("/api/me/public").json()["records"]
    li = records_of(_key(city, "li"), public.unit_of_work(read_only=True))
    assert li.social_security is not None and theirs["bank"] == "BOC"
    assert theirs["social_security"]["contribution_months"] == li.social_security.contribution_months
    assert theirs["social_security"] != seen[0]["social_security"]


def test_only_a_citizen_session_reaches_it(client: TestClient) -> None:
    assert client.get("/api/me/public").status_code == 401
    sign_in(client, "op")
    assert client.get("/api/me/public").status_code == 403
