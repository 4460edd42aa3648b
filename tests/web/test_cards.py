"""Card lookup, card services, the deny list, self-service and the bank and merchant views over the API and
the pages: roles and isolation (a citizen sees only their cards, a merchant only its own data), CSRF, bad
input as 4xx with the reason, and the operator's audit log."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from citycard.codec.pan import mask_pan
from citycard.db.issuer_tables import issuer_cards
from citycard.issuer.commands import ActivateCard, IssueCards
from citycard.issuer.model import CardStatus

from tests.web.conftest import City, id_number, ref_of, sign_in, sign_in_card

pytestmark = pytest.mark.parametrize("city", ["sqlite", "postgresql"], indirect=True)


def test_lookup_by_pan_suffix_id_number_and_phone(client: TestClient, city: City) -> None:
    headers = sign_in(client, "op")
    pan = city.pans["zhang"]
    by_suffix = client.get("/api/cards", params={"pan_suffix": pan[-4:]}).json()
    assert mask_pan(pan) in [c["pan"] for c in by_suffix["cards"]]
    longer = client.post("/api/cards/search", json={"pan_suffix": pan[-6:]}, headers=headers).json()
    assert [c["pan"] for c in longer["cards"]] == [mask_pan(pan)]
    by_id = client.post("/api/cards/search", json={"id_number": city.ids["zhang"]}, headers=headers).json()
    assert {c["bank"] for c in by_id["cards"]} == {"ICBC", "BOC"} and by_id["total"] == 2
    by_phone = client.post("/api/cards/search", json={"phone": "13800000002"}, headers=headers).json()
    assert [c["pan"] for c in by_phone["cards"]] == [mask_pan(city.pans["li"])]
    form = client.post("/console/cards", data={"pan_suffix": pan[-6:], "csrf_token": headers["X-CSRF-Token"]})
    assert form.status_code == 200 and mask_pan(pan) in form.text and pan not in form.text


def test_card_detail_shows_the_books_and_never_the_pan(client: TestClient, city: City) -> None:
    sign_in(client, "op")
    d = client.get(f"/api/cards/{ref_of(city, 'zhang')}").json()
    assert d["card"]["pan"] == mask_pan(city.pans["zhang"])
    assert d["card"]["deposit_available_fen"] == 50_000 - 1_250 - 3_000
    assert [a["amount_fen"] for a in d["authorizations"]] == [3_000, 1_250]
    page = client.get(f"/console/cards/{ref_of(city, 'zhang')}").text
    assert city.pans["zhang"] not in page and "ec-balance" in page


def test_lookup_input_errors_are_422_with_the_reason(client: TestClient) -> None:
    headers = sign_in(client, "op")
    assert client.get("/api/cards", params={"pan_suffix": "12"}).status_code == 422
    r = client.get("/api/cards", params={"pan_suffix": "00018"})  # more than a URL may carry
    assert r.status_code == 422 and "at most the last 4 digits in a URL" in r.json()["detail"]
    r = client.post("/api/cards/search", json={"id_number": "110105199001010012"}, headers=headers)
    assert r.status_code == 422 and "check character" in r.json()["detail"]
    r = client.post("/api/cards/search", json={}, headers=headers)
    assert r.status_code == 422 and "give a PAN suffix" in r.json()["detail"]
    assert client.post("/api/cards/search", json={"phone": "1"}, headers=headers).status_code == 422
    assert client.get("/api/cards/0").status_code == 422
    assert client.get("/api/cards/999999").status_code == 404


def test_bank_user_sees_only_its_banks_cards(client: TestClient, city: City) -> None:
    headers = sign_in(client, "boc")
    found = client.post("/api/cards/search", json={"id_number": city.ids["zhang"]}, headers=headers).json()
    assert [c["bank"] for c in found["cards"]] == ["BOC"]
    assert client.get(f"/api/cards/{ref_of(city, 'zhang')}").status_code == 404  # the ICBC card
    assert client.get(f"/api/cards/{ref_of(city, 'li')}").status_code == 200
    auths = client.get("/api/bank/authorizations").json()
    assert [a["amount_fen"] for a in auths] == [8_800]
    mine = client.get("/api/bank/figures").json()
    assert mine["cards_total"] == 2
    # its cards' purchases: li's online one, li's uploaded fare and the fare cleared from a journal only
    by_day = [(d["count"], d["amount_fen"]) for d in mine["purchases_by_day"] if d["count"]]
    assert by_day == [(3, 8_800 + 200 + 200)]


def test_citizen_sees_only_their_own_cards(client: TestClient, city: City) -> None:
    sign_in_card(client, city.pans["zhang"])
    mine = client.get("/api/me/cards").json()
    # the holder's cards at the card's bank (another bank's record of the same person is not linked: only
    # the ID number links them, and the banks keep it only as their own keyed hashes)
    assert [c["bank"] for c in mine] == ["ICBC"]
    assert client.get(f"/api/cards/{ref_of(city, 'li')}").status_code == 404
    assert client.get(f"/me/cards/{ref_of(city, 'li')}").status_code == 404
    assert client.get("/api/cards", params={"pan_suffix": city.pans["li"][-4:]}).status_code == 403
    assert client.get("/api/merchants/MERCHANT0000001/transactions").status_code == 403


def test_merchant_sees_only_its_own_transactions_and_payouts(client: TestClient, city: City) -> None:
    sign_in(client, "shop")
    own = client.get("/api/merchants/MERCHANT0000001/sales").json()
    assert sum(d["amount_fen"] for d in own) == 1_250 + 3_000
    assert client.get("/api/merchants/MERCHANT0000001/payouts").json() == []  # no day settled here
    assert client.get("/api/merchants/MERCHANT0000002/sales").status_code == 404
    txns = client.get("/api/merchants/MERCHANT0000001/transactions").json()
    assert {t["response_code"] for t in txns} == {"00", "51"} and all("*" in t["pan"] for t in txns)
    assert client.get("/api/merchants/MERCHANT0000002/payouts").status_code == 404
    assert client.get("/api/merchants/MERCHANT0000002/transactions").status_code == 404
    assert client.get("/merchant/MERCHANT0000002/payouts").status_code == 404
    assert client.get(f"/api/cards/{ref_of(city, 'zhang')}").status_code == 404


def test_top_up_moves_deposit_to_ec_for_the_next_online_contact(client: TestClient, city: City) -> None:
    headers = sign_in_card(client, city.pans["li"])
    ref = ref_of(city, "li")
    before = client.get(f"/api/cards/{ref}").json()["card"]
    r = client.post(
        f"/api/cards/{ref}/top-up", json={"amount_fen": 2_000, "request_id": "t-1"}, headers=headers
    )
    assert r.status_code == 200, r.text
    again = client.post(
        f"/api/cards/{ref}/top-up", json={"amount_fen": 2_000, "request_id": "t-1"}, headers=headers
    )
    assert again.status_code == 200  # the same request: nothing more moved
    after = client.get(f"/api/cards/{ref}").json()["card"]
    assert after["ec_balance_fen"] == before["ec_balance_fen"] + 2_000
    assert after["pending_ec_credit_fen"] == before["pending_ec_credit_fen"] + 2_000
    assert after["deposit_available_fen"] == before["deposit_available_fen"] - 2_000
    too_much = client.post(f"/api/cards/{ref}/top-up", json={"amount_fen": 10**9}, headers=headers)
    assert too_much.status_code == 409 and "deposit account" in too_much.json()["detail"]
    assert (
        client.post(f"/api/cards/{ref}/top-up", json={"amount_fen": -1}, headers=headers).status_code == 422
    )
    assert client.post(f"/api/cards/{ref}/top-up", json={"amount_fen": 5}).status_code == 403  # no CSRF token


def test_operator_reports_a_card_lost_it_is_on_the_deny_list_and_in_the_audit_log(
    client: TestClient, city: City
) -> None:
    headers = sign_in(client, "op")
    ref = ref_of(city, "wang")
    r = client.post(f"/api/cards/{ref}/report-lost", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == CardStatus.LOST
    entries = client.get("/api/denylist").json()
    assert any(e["ref"] == ref and e["reason"] == "lost" for e in entries)
    again = client.post(f"/api/cards/{ref}/report-lost", headers=headers)
    assert again.status_code == 409 and "lost" in again.json()["detail"]
    log = client.get("/api/audit").json()["entries"]
    assert [(e["action"], e["outcome"]) for e in log[:2]] == [
        ("report_lost", "refused"),
        ("report_lost", "ok"),
    ]
    assert city.pans["wang"] not in str(log)
    r = client.post(f"/api/cards/{ref}/refund", json={"to": "account"}, headers=headers)
    assert r.status_code == 409 and "cooling period" in r.json()["detail"]


def test_citizen_cannot_close_or_replace(client: TestClient, city: City) -> None:
    headers = sign_in_card(client, city.pans["li"])
    ref = ref_of(city, "li")
    assert client.post(f"/api/cards/{ref}/close", headers=headers).status_code == 403
    assert client.post(f"/api/cards/{ref}/replace", headers=headers).status_code == 403


def test_unregistered_card_cannot_be_reported_lost(client: TestClient, city: City) -> None:
    headers = sign_in(client, "op")
    r = client.post(f"/api/cards/{ref_of(city, 'anon')}/report-lost", headers=headers)
    assert r.status_code == 409 and "unregistered" in r.json()["detail"]


def test_merchant_onboarding_is_audited_and_bad_values_are_422(client: TestClient, city: City) -> None:
    headers = sign_in(client, "op")
    body = {
        "merchant_id": "MERCHANT0000009",
        "name": "Book Town",
        "mcc": "5942",
        "district": "Xinhua District",
        "bank_code": "BOC",
    }
    assert client.post("/api/merchants", json=body, headers=headers).status_code == 201
    assert client.post("/api/merchants", json=body, headers=headers).status_code == 409
    bad = client.post("/api/merchants", json={**body, "merchant_id": "x"}, headers=headers)
    assert bad.status_code == 422
    unknown_bank = client.post(
        "/api/merchants", json={**body, "merchant_id": "MERCHANT0000010", "bank_code": "XX"}, headers=headers
    )
    assert unknown_bank.status_code == 404
    t = client.post(
        "/api/terminals", json={"terminal_id": "POS00009", "merchant_id": "MERCHANT0000009"}, headers=headers
    )
    assert t.status_code == 201 and t.json()["tmk_kcv"]
    actions = [(e["action"], e["target"], e["outcome"]) for e in client.get("/api/audit").json()["entries"]]
    assert ("add_merchant", "MERCHANT0000009", "ok") in actions and (
        "add_terminal",
        "POS00009",
        "ok",
    ) in actions


def test_citizen_signs_in_with_id_number_and_one_time_code(client: TestClient, city: City, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("WARNING", logger="citycard.web")
    r = client.post("/api/session/code-request", json={"id_number": city.ids["li"]})
    assert r.status_code == 202
    code = caplog.records[-1].getMessage().rsplit(": ", 1)[1].split()[0]
    assert city.ids["li"] not in caplog.text
    assert (
        client.post(
            "/api/session/code",
            json={"id_number": city.ids["li"], "code": "000000" if code != "000000" else "111111"},
        ).status_code
        == 401
    )
    assert (
        client.post("/api/session/code", json={"id_number": city.ids["li"], "code": code}).status_code == 200
    )
    assert [c["bank"] for c in client.get("/api/me/cards").json()] == ["BOC"]
    client.cookies.clear()
    client.post("/api/session/code-request", json={"id_number": city.ids["zhang"]})
    code = caplog.records[-1].getMessage().rsplit(": ", 1)[1].split()[0]
    assert (
        client.post("/api/session/code", json={"id_number": city.ids["zhang"], "code": code}).status_code
        == 200
    )
    assert sorted(c["bank"] for c in client.get("/api/me/cards").json()) == ["BOC", "ICBC"]  # both banks
    client.cookies.clear()
    assert (
        client.post("/api/session/code", json={"id_number": city.ids["li"], "code": code}).status_code == 401
    )  # used up


def test_pages_of_every_role_render(client: TestClient, city: City) -> None:
    sign_in(client, "op")
    for path in (
        "/console",
        "/console/cards",
        "/console/denylist",
        "/console/merchants",
        "/console/audit",
        "/console/exceptions",
        "/console/exceptions?status=accepted",
        "/console/settlement",
    ):
        assert client.get(path).status_code == 200, path
    client.cookies.clear()
    sign_in(client, "icbc")
    assert client.get("/bank").status_code == 200
    assert client.get("/console/settlement").status_code == 200
    assert client.get("/api/settlement").json() == []
    assert client.get("/api/settlement/20261203").status_code == 404
    assert client.get("/api/bank/settlement").json() == []
    assert client.get("/console/merchants").status_code == 403
    client.cookies.clear()
    sign_in(client, "hospital")
    assert "MERCHANT0000002" in client.get("/merchant").text
    client.cookies.clear()
    sign_in_card(client, city.pans["zhang"])
    assert mask_pan(city.pans["zhang"]) in client.get("/me").text


def test_wrong_pins_are_counted_like_online_ones(client: TestClient, city: City) -> None:
    pan = city.pans["zhang_boc"]
    for _ in range(3):
        assert client.post("/api/session/card", json={"pan": pan, "pin": "999999"}).status_code == 401
    r = client.post("/api/session/card", json={"pan": pan, "pin": "123456"})
    assert r.status_code == 403 and "PIN tries exceeded" in r.json()["detail"]
    with city.ctx.issuer.unit_of_work(read_only=True) as uow:
        card = uow.cards.get(pan)
    assert card is not None and card.online_pin_failures == 3


def _exception(city: City, n: int, reason: str, issuer: str, acquirer: str) -> None:
    """A row of clearing's queue as clearing leaves it (an offline record it could not pay)."""
    from sqlalchemy import insert

    from citycard.db.clearing_tables import clearing_exceptions

    with city.ctx.database.engine.begin() as c:
        c.execute(
            insert(clearing_exceptions).values(
                ref=f"POS00001/1/{n}",
                opened_date="20261203",
                reason=reason,
                status="open",
                detail="test",
                pan_masked="621226*********0017",
                atc=n,
                amount_fen=1_000 + n,
                terminal_id="POS00001",
                merchant_id="MERCHANT0000001",
                issuer_bank=issuer,
                acquirer_bank=acquirer,
                cleared=0,
                opened_ns=city.ctx.clock(),
            )
        )


def test_the_exception_queue_is_clearings(client: TestClient, city: City) -> None:
    headers = sign_in(client, "op")
    before = client.get("/api/clearing/exceptions").json()
    _exception(city, 901, "late", "ICBC", "ICBC")
    _exception(city, 902, "unknown_terminal", "ICBC", "ICBC")
    queue = client.get("/api/clearing/exceptions").json()
    assert len(queue) == len(before) + 2
    assert client.get("/api/figures").json()["exceptions_open"] == len(queue)
    first, second = queue[-2]["id"], queue[-1]["id"]
    assert queue[-2]["actions"] == ["accept", "reject"]  # late: it may still be paid
    assert queue[-1]["actions"] == ["reject"]  # an unknown terminal: never paid
    ok = client.post(f"/api/clearing/exceptions/{first}/resolve", json={"action": "accept"}, headers=headers)
    assert ok.status_code == 200 and ok.json()["status"] == "accepted"
    again = client.post(
        f"/api/clearing/exceptions/{first}/resolve", json={"action": "reject"}, headers=headers
    )
    assert again.status_code == 409 and "not open" in again.json()["detail"]
    form = client.post(
        f"/console/exceptions/{second}", data={"action": "reject", "csrf_token": headers["X-CSRF-Token"]}
    )
    assert form.status_code == 200 and "rejected" in form.text
    assert [
        e["id"] for e in client.get("/api/clearing/exceptions", params={"status": "accepted"}).json()
    ] == [first]
    accepted = client.get("/api/clearing/exceptions", params={"status": "accepted"}).json()[0]
    assert accepted["actions"] == []  # its item is pending, nothing paid yet: no chargeback offered
    page = client.get("/console/exceptions", params={"status": "accepted"}).text
    assert f'action="/console/exceptions/{first}"' not in page
    log = [(e["action"], e["outcome"]) for e in client.get("/api/audit").json()["entries"][:3]]
    assert log == [("exception_reject", "ok"), ("exception_reject", "refused"), ("exception_accept", "ok")]
    assert client.get("/api/clearing/exceptions", params={"status": "nonsense"}).status_code == 422
    r = client.post("/api/clearing/exceptions/999999/resolve", json={"action": "accept"}, headers=headers)
    assert r.status_code == 404 and "no clearing exception 999999" in r.json()["detail"]
    bad = client.post("/api/clearing/exceptions/999999/resolve", json={"action": "pay"}, headers=headers)
    assert bad.status_code == 422
    client.cookies.clear()
    sign_in(client, "boc")
    assert client.get("/api/clearing/exceptions", params={"status": "accepted"}).json() == []  # ICBC's


def _new_card(city: City, bank: str, seq: int) -> str:
    """A registered, active card of ``bank`` with some EC-free deposit, issued for one test."""
    svc = city.ctx.issuer.service
    (card,) = svc.issue_cards(
        IssueCards(bank, "debit-ec", holder_name="Zhao", id_number=id_number(seq), phone=f"13900000{seq:03d}")
    )
    svc.activate(ActivateCard(card.pan))
    return card.pan


def _ref(city: City, pan: str) -> int:
    with city.ctx.database.engine.connect() as c:
        return int(
            c.execute(
                select(issuer_cards.c.ec_float_account_id).where(issuer_cards.c.pan == pan)
            ).scalar_one()
        )


def test_a_bank_serves_its_own_cards_and_is_refused_anothers_with_the_reason(
    client: TestClient, city: City
) -> None:
    own = _ref(city, _new_card(city, "ICBC", 20))
    other = _ref(city, _new_card(city, "BOC", 21))
    headers = sign_in(client, "icbc")
    for action, body in (
        ("report-lost", None),
        ("replace", None),
        ("close", None),
        ("refund", {"to": "cash"}),
    ):
        r = client.post(f"/api/cards/{other}/{action}", json=body, headers=headers)
        assert r.status_code == 403, (action, r.text)
        assert "not a card of ICBC" in r.json()["detail"], r.text
    assert client.get(f"/api/cards/{other}").status_code == 404  # seeing it stays "no such card"
    with city.ctx.issuer.unit_of_work(read_only=True) as uow:
        untouched = uow.cards.get(_pan_of(city, other))
    assert untouched is not None and untouched.status is CardStatus.ACTIVE
    # its own card: the issuer's use cases, as at the counter
    r = client.post(f"/api/cards/{own}/report-lost", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == CardStatus.LOST
    r = client.post(f"/api/cards/{own}/replace", headers=headers)
    assert r.status_code == 200 and r.json()["replacement"]["bank"] == "ICBC"
    new_ref = r.json()["replacement"]["ref"]
    r = client.post(f"/api/cards/{own}/refund", json={"to": "replacement"}, headers=headers)
    assert r.status_code == 409 and "cooling period" in r.json()["detail"]
    r = client.post(f"/api/cards/{new_ref}/close", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == CardStatus.CLOSED
    assert client.post("/api/cards/999999999/close", headers=headers).status_code == 404
    client.cookies.clear()
    sign_in(client, "op")
    log = client.get("/api/audit").json()["entries"]
    mine = [(e["action"], e["outcome"]) for e in log if e["actor"] == "icbc"][:8]
    assert mine == [
        ("close", "ok"),
        ("refund", "refused"),
        ("replace", "ok"),
        ("report_lost", "ok"),
        ("refund", "refused"),
        ("close", "refused"),
        ("replace", "refused"),
        ("report_lost", "refused"),
    ]
    assert all(str(p) not in str(log) for p in (_pan_of(city, own), _pan_of(city, other)))


def _pan_of(city: City, ref: int) -> str:
    with city.ctx.database.engine.connect() as c:
        return str(
            c.execute(
                select(issuer_cards.c.pan).where(issuer_cards.c.ec_float_account_id == ref)
            ).scalar_one()
        )


def test_operator_grants_and_revokes_a_transit_concession_audited(client: TestClient, city: City) -> None:
    """The console's card services queue the holder's concession for the card's next online contact
    (docs/transit.md "Concessions from the issuer"); refusals say why; both are in the audit log."""
    import datetime as dt

    headers = sign_in(client, "op")
    ref = ref_of(city, "zhang")
    until = (dt.date.today() + dt.timedelta(days=365)).isoformat()
    r = client.post(
        f"/api/cards/{ref}/concession", json={"category": "student", "until": until}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"concession": "student", "valid_until": until, "on_chip": "pending"}
    assert client.get(f"/api/cards/{ref}", headers=headers).json()["card"]["transit"] == {
        "concession": "student",
        "valid_until": until,
        "on_chip": "pending",
    }
    past = client.post(f"/api/cards/{ref}/concession", json={"category": "elderly", "until": "2001-01-01"},
                       headers=headers)  # fmt: skip
    assert past.status_code in (400, 422) and "past" in past.text
    bad = client.post(
        f"/api/cards/{ref}/concession", json={"category": "pilot", "until": until}, headers=headers
    )
    assert bad.status_code == 422
    r = client.post(f"/api/cards/{ref}/concession/revoke", headers=headers)
    assert r.status_code == 200 and r.json()["concession"] == "none"
    log = client.get("/api/audit").json()["entries"]
    assert [(e["action"], e["outcome"]) for e in log[:3]] == [
        ("revoke_concession", "ok"),
        ("concession", "refused"),
        ("concession", "ok"),
    ]
    # the card page: the concession's row and the clerk's form (the form posts the same service)
    page = client.get(f"/console/cards/{ref}").text
    assert 'id="concession"' in page and "none (on the chip: pending)" in page and "concession_grant" in page
    form = {
        "csrf_token": headers["X-CSRF-Token"],
        "action": "concession",
        "category": "elderly",
        "until": until,
    }
    r = client.post(f"/console/cards/{ref}/service", data=form)
    assert r.status_code == 200 and f"elderly until {until} (on the chip: pending)" in r.text
    r = client.post(f"/console/cards/{ref}/service", data={**form, "until": "2001-01-01"})
    assert r.status_code == 409 and "is past" in r.text
    citizen = sign_in_card(client, city.pans["li"])
    mine = ref_of(city, "li")
    r = client.post(
        f"/api/cards/{mine}/concession", json={"category": "student", "until": until}, headers=citizen
    )
    assert r.status_code == 403
