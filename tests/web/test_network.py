"""The network page of the console (``/console/network``): the acquirer's store-and-forward queue
(``/api/acquirer/queue``), what ``citycard acquirer queue`` and ``retry`` show and do, for an operator only,
audited, the card masked; the services' status lines when they run in the web's process (``citycard up``)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from citycard.acquirer import (
    BeginTransaction,
    GiveUp,
    SafFailed,
    SafPolicy,
    TransactionKey,
    TransactionKind,
    begin_transaction,
    due_entries,
    give_up,
    record_saf_results,
)
from citycard.center.services import ServiceReport
from citycard.center.views import save_report
from citycard.db.acquirer_repositories import AcquirerUnitOfWork, acquirer_unit_of_work
from citycard.hsm.protection import RecordProtection

from .conftest import City, sign_in
from tests.acquirer.support import stored_reversal

TERMINAL = "Q0000001"
MERCHANT = "850100082410002"
PAN = "6212260000000000018"
POLICY = SafPolicy(min_backoff_ns=60 * 10**9, max_backoff_ns=60 * 10**9, batch=10)


def _queue_reversals(city: City, stans: tuple[int, ...]) -> list[str]:
    """Reversals queued as the acquirer queues them (given up, the message sealed), each tried once and
    answered 91, so its next try is a minute away; their RRNs."""
    protection = RecordProtection.open(city.ctx.hsm)

    def uow() -> AcquirerUnitOfWork:
        return acquirer_unit_of_work(city.ctx.database, protection)

    clock = city.ctx.clock
    rrns = []
    for stan in stans:
        key = TransactionKey(TERMINAL, 1, stan)
        begin_transaction(
            BeginTransaction(key, MERCHANT, TransactionKind.PURCHASE, 1250, "621226*********0018"),
            uow(),
            clock,
        )
        stored = stored_reversal(PAN, TERMINAL, MERCHANT, stan, 1250 + stan)
        entry = give_up(GiveUp(key, stored, "98"), uow(), clock)
        assert entry is not None
        record_saf_results([SafFailed(entry.id, 1, "91")], uow(), clock, POLICY)
        rrns.append(entry.rrn)
    assert all(e.rrn not in rrns for e in due_entries(uow(), clock, POLICY))  # a minute away
    return rrns


def test_an_operator_sees_the_waiting_reversals_masked_and_sends_them_all_now(
    client: TestClient, city: City
) -> None:
    headers = sign_in(client, "op")
    before = client.get("/api/acquirer/queue").json()
    rrns = _queue_reversals(city, (41, 42))
    queue = client.get("/api/acquirer/queue").json()
    assert queue["pending"] == before["pending"] + 2 and queue["delivered"] == before["delivered"]
    listed = {e["rrn"]: e for e in queue["entries"]}
    first = listed[rrns[0]]
    assert (first["kind"], first["mti"], first["terminal_id"], first["stan"]) == (
        "reversal",
        "0400",
        TERMINAL,
        41,
    )
    assert (first["amount_fen"], first["card"], first["reason"]) == (1291, "621226*********0018", "98")
    assert (first["attempts"], first["last_code"]) == (1, "91")
    assert re.fullmatch(r"in 5\d s", first["next_try"]), first["next_try"]  # the backoff: a minute
    page = client.get("/console/network")
    assert page.status_code == 200 and "Send all now" in page.text and f'data-rrn="{rrns[1]}"' in page.text
    assert "621226*********0018" in page.text and PAN not in page.text and PAN not in str(queue)
    # the services run in other processes here (``citycard serve``): no status lines (``citycard up``'s are
    # read in tests/city/test_city.py); their reports are the test below's
    services = client.get("/api/network/services").json()
    assert services["services"] is None and set(services) == {"services", "reported"}
    assert ("none has reported yet" in page.text) is (services["reported"] == [])
    assert len(client.get("/api/acquirer/queue", params={"limit": 1}).json()["entries"]) == 1
    assert client.get("/api/acquirer/queue", params={"limit": 0}).status_code == 422
    assert client.get("/api/acquirer/queue", params={"limit": 1001}).status_code == 422

    assert client.post("/api/acquirer/queue/retry").status_code == 403  # no CSRF token
    done = client.post("/api/acquirer/queue/retry", headers=headers)
    assert done.status_code == 200 and done.json()["due_now"] >= 2
    after = {e["rrn"]: e for e in client.get("/api/acquirer/queue").json()["entries"]}
    assert [(after[r]["next_try"], after[r]["attempts"], after[r]["last_code"]) for r in rrns] == [
        ("due", 1, "91")
    ] * 2  # due now, its tries and last answer kept
    form = client.post("/console/network/retry", data={"csrf_token": headers["X-CSRF-Token"]})
    assert form.status_code == 200 and "due now" in form.text
    log = [(e["action"], e["target"]) for e in client.get("/api/audit").json()["entries"][:2]]
    assert log == [("saf_retry", "acquirer queue")] * 2

    client.cookies.clear()
    sign_in(client, "boc")  # a bank user: not the acquirer's operator
    assert client.get("/api/acquirer/queue").status_code == 403
    assert client.get("/console/network").status_code == 403
    assert client.get("/api/network/services").status_code == 403


def test_an_operator_sees_the_services_run_apart_and_which_one_stopped_reporting(
    client: TestClient, city: City
) -> None:
    sign_in(client, "op")
    now = city.ctx.clock()
    s = 10**9
    reports = [
        ServiceReport("acquirer", "acq-1", "0.0.0.0:9583", 11, now - 600 * s, now - 2 * s, 10.0,
                      "acquirer: 40 connections; 1200 requests; switch up"),
        ServiceReport("switch", "net-1", "0.0.0.0:9584", 12, now - 600 * s, now - 95 * s, 10.0,
                      "switch: 1 connection; ICBC up, CCB up"),  # last report 95 s ago: gone quiet
        ServiceReport("issuer CCB", "ccb-1", "10.0.0.6:9585", 13, now - 600 * s, now - 3 * s, 10.0,
                      "issuer CCB: 1 connection; 300 requests", stopped_ns=now - 3 * s),
    ]  # fmt: skip
    for report in reports:
        save_report(city.ctx.center.unit_of_work(), report, now)  # written by a writer whose clock says now
    shown = {r["name"]: r for r in client.get("/api/network/services").json()["reported"]}
    assert {name: (r["health"], r["attention"]) for name, r in shown.items()} == {
        "acquirer": ("running", False),
        "switch": ("not reporting", True),
        "issuer CCB": ("stopped", False),
    }
    assert (shown["switch"]["last_report"], shown["switch"]["address"], shown["switch"]["pid"]) == (
        "95 s",
        "0.0.0.0:9584",
        12,
    )
    html = client.get("/console/network").text
    rows = dict(re.findall(r'<tr data-service="([^"]+)"([^>]*)>', html))
    assert set(rows) == {"acquirer", "switch", "issuer CCB"}
    assert 'class="error"' in rows["switch"] and "no report for 95 s" in rows["switch"]
    assert "error" not in rows["acquirer"] and "error" not in rows["issuer CCB"]
    assert "acquirer: 40 connections; 1200 requests; switch up" in html
    assert html.count(">Forget</button>") == 2  # the switch gone quiet and the stopped front end
    dashboard = client.get("/console").text  # the first page an operator sees points at the quiet switch
    figure = r'<div class="figure( error)?"><a href="/console/network">Network services needing attention'
    attention = re.search(figure + r'</a><b data-figure="network_attention">(\d+)</b>', dashboard)
    assert attention is not None and attention.groups() == (" error", "1"), dashboard
    waiting = re.search(r'data-figure="saf_waiting">([\d,]+)<', dashboard)
    pending = client.get("/api/acquirer/queue").json()["pending"]
    assert waiting is not None and int(waiting.group(1).replace(",", "")) == pending

    headers = sign_in(client, "op")
    forget = "/api/network/services/forget"
    acquirer = {"name": "acquirer", "hostname": "acq-1", "address": "0.0.0.0:9583"}
    assert client.post(forget, json=acquirer).status_code == 403  # no CSRF token
    assert client.post(forget, json=acquirer, headers=headers).status_code == 409  # running: kept
    gone = {"name": "switch", "hostname": "net-1", "address": "0.0.0.0:9584"}
    assert client.post(forget, json=gone, headers=headers).json() == {"forgotten": True}
    assert client.post(forget, json=gone, headers=headers).status_code == 404
    assert client.post(forget, json=gone | {"name": "x" * 65}, headers=headers).status_code == 422
    form = client.post(
        "/console/network/forget",
        data={"csrf_token": headers["X-CSRF-Token"], "name": "issuer CCB", "hostname": "ccb-1",
              "address": "10.0.0.6:9585"},
    )  # fmt: skip
    assert form.status_code == 200 and "forgot issuer CCB at 10.0.0.6:9585 on ccb-1" in form.text
    assert [r["name"] for r in client.get("/api/network/services").json()["reported"]] == ["acquirer"]
    log = [(e["action"], e["target"], e["outcome"]) for e in client.get("/api/audit").json()["entries"][:4]]
    assert log == [
        ("service_forget", "issuer CCB at 10.0.0.6:9585 on ccb-1", "ok"),
        ("service_forget", "switch at 0.0.0.0:9584 on net-1", "refused"),
        ("service_forget", "switch at 0.0.0.0:9584 on net-1", "ok"),
        ("service_forget", "acquirer at 0.0.0.0:9583 on acq-1", "refused"),
    ]
