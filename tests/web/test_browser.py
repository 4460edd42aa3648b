"""The web pages in headless Chromium (Playwright driving Debian's ``/usr/bin/chromium``; Playwright's own
browser download cannot work here): sign in; every figure on the dashboard equals a query of the database
written here independently of ``citycard.web.figures``; report a card lost and see it on the deny list; a
clerk enables and disables a card's library application; a
citizen cannot reach another citizen's card; a merchant cannot reach another merchant's payouts.

The server is uvicorn on 127.0.0.1, a free port, in a thread, stopped at the end. Without chromium the tests
skip locally and fail in CI (``.ci/run`` installs it and sets ``CITYCARD_REQUIRE_BROWSER``)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from sqlalchemy import text

from citycard.web import create_app

from tests.conftest import require_or_skip
from tests.web.conftest import PASSWORD, PIN, City, ref_of

pytestmark = pytest.mark.parametrize("city", ["sqlite", "postgresql"], indirect=True)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def server(city: City) -> Iterator[str]:
    config = uvicorn.Config(
        create_app(city.ctx), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (srv.started and srv.servers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        require_or_skip("CITYCARD_REQUIRE_BROWSER", f"no {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    try:
        yield context.new_page()
    finally:
        context.close()


def staff_sign_in(page: Any, server: str, username: str) -> None:
    page.goto(f"{server}/signin")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#staff-signin")


def card_sign_in(page: Any, server: str, pan: str) -> None:
    page.goto(f"{server}/signin")
    page.fill("#pan", pan)
    page.fill("#pin", PIN)
    page.click("#card-signin")


def rows(page: Any, table: str) -> dict[str, tuple[int, ...]]:
    """``data-row`` → the integers of its ``data-value`` / ``data-fen`` cells."""
    out: dict[str, tuple[int, ...]] = {}
    for row in page.query_selector_all(f"#{table} tr[data-row]"):
        cells = row.query_selector_all("[data-value], [data-fen]")
        out[row.get_attribute("data-row")] = tuple(
            int(c.get_attribute("data-value") or c.get_attribute("data-fen")) for c in cells
        )
    return out


def q(city: City, sql: str, **params: Any) -> list[Any]:
    with city.ctx.database.engine.connect() as c:
        return list(c.execute(text(sql), params).all())


def test_dashboard_figures_match_the_database(page: Any, server: str, city: City) -> None:
    staff_sign_in(page, server, "op")
    page.wait_for_url(f"{server}/console")

    def figure(name: str) -> int:
        el = page.query_selector(f'[data-figure="{name}"]')
        return int(el.get_attribute("data-fen") or el.inner_text().replace(",", ""))

    assert figure("cards_total") == q(city, "SELECT count(*) FROM issuer_cards")[0][0]
    assert (
        figure("cards_active") == q(city, "SELECT count(*) FROM issuer_cards WHERE status = 'active'")[0][0]
    )
    assert (
        figure("cards_registered")
        == q(city, "SELECT count(*) FROM issuer_cards WHERE holder_id IS NOT NULL")[0][0]
    )
    assert (
        figure("merchants_total")
        == q(city, "SELECT count(*) FROM center_merchants WHERE status = 'active'")[0][0]
    )
    assert (
        figure("terminals_total")
        == q(city, "SELECT count(*) FROM center_terminals WHERE status = 'active'")[0][0]
    )
    assert (
        figure("saf_waiting") == q(city, "SELECT count(*) FROM acquirer_saf WHERE status = 'pending'")[0][0]
    )
    assert (
        figure("validators")
        == q(city, "SELECT count(*) FROM center_terminals WHERE status = 'active' AND kind = 'validator'")[0][
            0
        ]
    )
    bus_lines = q(
        city,
        "SELECT count(DISTINCT m.merchant_id) FROM center_merchants m JOIN center_terminals t"
        " ON t.merchant_id = m.merchant_id WHERE m.status = 'active' AND t.status = 'active'"
        " AND t.kind = 'validator' AND m.mcc = '4131'",
    )
    assert figure("bus_lines") == bus_lines[0][0] == 1
    ec = q(
        city, "SELECT coalesce(sum(credits_posted - debits_posted), 0) FROM ledger_accounts WHERE code = 11"
    )
    assert figure("ec_float_fen") == ec[0][0]

    issued = q(
        city, "SELECT bank_code, product_code, count(*) FROM issuer_cards GROUP BY bank_code, product_code"
    )
    assert rows(page, "cards-by-bank-product") == {f"{b}/{p}": (n,) for b, p, n in issued}
    m_ind = q(
        city,
        "SELECT coalesce(industry, 'unknown'), count(*) FROM center_merchants "
        "WHERE status = 'active' GROUP BY 1",
    )
    assert rows(page, "merchants-by-industry") == {k: (n,) for k, n in m_ind}
    m_dis = q(city, "SELECT district, count(*) FROM center_merchants WHERE status = 'active' GROUP BY 1")
    assert rows(page, "merchants-by-district") == {k: (n,) for k, n in m_dis}
    t_ind = q(
        city,
        "SELECT coalesce(m.industry, 'unknown'), count(*) FROM center_terminals t JOIN center_merchants m "
        "ON m.merchant_id = t.merchant_id WHERE t.status = 'active' GROUP BY 1",
    )
    assert rows(page, "terminals-by-industry") == {k: (n,) for k, n in t_ind}
    t_dis = q(
        city,
        "SELECT m.district, count(*) FROM center_terminals t JOIN center_merchants m "
        "ON m.merchant_id = t.merchant_id WHERE t.status = 'active' GROUP BY 1",
    )
    assert rows(page, "terminals-by-district") == {k: (n,) for k, n in t_dis}

    # purchases captured in the last 14 Beijing days, per day and per industry / district: online ones
    # approved and not reversed, offline ones uploaded (EC purchases, fares), offline ones cleared from a
    # journal export that no upload brought; a record uploaded and cleared counts once
    purchases = q(
        city,
        "SELECT x.at_ns, x.amount, m.industry, m.district FROM ("
        " SELECT created_ns AS at_ns, amount_fen AS amount, merchant_id FROM issuer_authorizations"
        "  WHERE kind = 'purchase' AND response_code = '00' AND reversed_by IS NULL"
        " UNION ALL SELECT received_ns, amount_fen, merchant_id FROM acquirer_uploads"
        " UNION ALL SELECT p.received_ns, i.amount_fen, i.merchant_id FROM clearing_items i"
        "  JOIN clearing_presentments p ON p.ref = i.source_ref"
        "  WHERE i.source = 'offline' AND i.sign = 1 AND NOT EXISTS (SELECT 1 FROM acquirer_uploads u"
        "   WHERE u.terminal_id = p.terminal_id AND u.batch = p.batch AND u.stan = p.stan)"
        ") x LEFT JOIN center_merchants m ON m.merchant_id = x.merchant_id",
    )
    today = (datetime.now(UTC) + timedelta(hours=8)).date()
    per_day: dict[str, list[int]] = {(today - timedelta(days=i)).isoformat(): [0, 0] for i in range(14)}
    per_industry: dict[str, list[int]] = {}
    per_district: dict[str, list[int]] = {}
    for created_ns, amount, industry, district in purchases:
        day = (datetime.fromtimestamp(created_ns / 1e9, UTC) + timedelta(hours=8)).date().isoformat()
        if day not in per_day:
            continue
        for bucket, key in (
            (per_day, day),
            (per_industry, industry or "unknown"),
            (per_district, district or "unknown"),
        ):
            totals = bucket.setdefault(key, [0, 0])
            totals[0] += 1
            totals[1] += amount
    # the seeded purchases, so the test means something: 3 approved online, 3 uploaded offline (one of them
    # also cleared), 1 fare cleared from a journal only
    assert sum(n for n, _ in per_day.values()) == 7
    assert per_industry["transport"] == [2, 400]
    assert rows(page, "txn-by-day") == {k: tuple(v) for k, v in per_day.items()}
    assert rows(page, "txn-by-industry") == {k: tuple(v) for k, v in per_industry.items()}
    assert rows(page, "txn-by-district") == {k: tuple(v) for k, v in per_district.items()}
    # the latest business day cleared and its paid items by source; the latest day settled
    latest = q(city, "SELECT max(clearing_date) FROM clearing_runs WHERE status IN ('cleared', 'settled')")[
        0
    ][0]
    assert latest is not None  # the test city's day with a cleared upload and a journal-only fare
    shown = page.inner_text('[data-figure="cleared_day"]')
    assert shown == f"{latest[:4]}-{latest[4:6]}-{latest[6:]}"
    cleared = q(
        city,
        "SELECT source, count(*), sum(amount_fen) FROM clearing_items WHERE clearing_date = :d AND sign = 1"
        " GROUP BY source",
        d=latest,
    )
    expected = {"online": (0, 0), "offline": (0, 0)} | {k: (n, fen) for k, n, fen in cleared}
    assert rows(page, "cleared") == expected and expected["offline"] == (2, 760)
    settled = q(city, "SELECT max(settlement_date) FROM settlement_days")[0][0]
    if settled is None:
        assert page.inner_text('[data-figure="settled_day"]') == "none yet"
    else:
        payouts = q(
            city, "SELECT sum(payout_fen) FROM settlement_merchants WHERE settlement_date = :d", d=settled
        )
        assert page.inner_text('[data-figure="settled_day"]') == f"{settled[:4]}-{settled[4:6]}-{settled[6:]}"
        assert figure("settled_payout_fen") == payouts[0][0]
    assert page.query_selector_all("svg.chart")  # the charts are drawn


def test_report_a_card_lost_and_see_it_on_the_deny_list(page: Any, server: str, city: City) -> None:
    staff_sign_in(page, server, "op")
    page.wait_for_url(f"{server}/console")
    page.goto(f"{server}/console/cards")
    page.fill("#pan_suffix", city.pans["zhang"][-8:])
    page.click("#lookup")
    page.click("#found a")
    assert page.inner_text("#card-status") == "active"
    page.click("#report_lost")
    assert page.inner_text("#card-status") == "lost"
    page.goto(f"{server}/console/denylist")
    row = page.query_selector(f'#denylist tr[data-ref="{ref_of(city, "zhang")}"]')
    assert row is not None and "lost" in row.inner_text()
    assert city.pans["zhang"] not in page.content()
    page.goto(f"{server}/console/audit")
    assert "report_lost" in page.inner_text("#audit")


def test_a_bank_reports_its_own_card_lost(page: Any, server: str, city: City) -> None:
    staff_sign_in(page, server, "icbc")
    page.wait_for_url(f"{server}/bank")
    page.goto(f"{server}/console/cards/{ref_of(city, 'wang')}")
    assert page.inner_text("#card-status") == "active"
    page.click("#report_lost")
    assert page.inner_text("#card-status") == "lost"
    assert "report lost: done" in page.inner_text("[role=status]")
    other = page.goto(f"{server}/console/cards/{ref_of(city, 'li')}")  # a BOC card: not to be seen
    assert other.status == 404


def test_a_clerk_enables_and_disables_a_library_application(page: Any, server: str, city: City) -> None:
    staff_sign_in(page, server, "op")
    page.wait_for_url(f"{server}/console")
    page.goto(f"{server}/console/cards/{ref_of(city, 'li')}")
    assert page.inner_text("#app-library .app-status") == "not enabled"
    page.fill('#app-library input[name="data.reader_number"]', "87654321")
    page.fill('#app-library input[name="data.deposit_fen"]', "5000")
    page.click("#enable-library")
    assert "library enabled (on the chip: pending)" in page.inner_text("[role=status]")
    assert page.inner_text("#app-library .app-status") == "enabled"
    assert page.inner_text("#app-library .app-data") == "deposit_fen=5000, reader_number=87654321"
    assert page.inner_text("#app-library .app-chip") == "pending"
    page.click("#disable-library")
    assert page.inner_text("#app-library .app-status") == "disabled"
    page.goto(f"{server}/console/audit")
    assert "app_disable" in page.inner_text("#audit") and "87654321" not in page.inner_text("#audit")


def test_a_citizen_cannot_reach_another_citizens_card(page: Any, server: str, city: City) -> None:
    card_sign_in(page, server, city.pans["li"])
    page.wait_for_url(f"{server}/me")
    own = page.goto(f"{server}/me/cards/{ref_of(city, 'li')}")
    assert own.status == 200
    other = page.goto(f"{server}/me/cards/{ref_of(city, 'wang')}")
    assert other.status == 404 and "no card" in page.inner_text("#reason")
    api = page.goto(f"{server}/api/cards/{ref_of(city, 'wang')}")
    assert api.status == 404


def test_a_merchant_cannot_reach_another_merchants_payouts(page: Any, server: str, city: City) -> None:
    staff_sign_in(page, server, "shop")
    page.wait_for_url(f"{server}/merchant")
    own = page.goto(f"{server}/merchant/MERCHANT0000001/payouts")
    assert (
        own.status == 200
        and page.query_selector_all("#sales tr[data-day]")
        and page.query_selector("#payouts")
    )
    other = page.goto(f"{server}/merchant/MERCHANT0000002/payouts")
    assert other.status == 404 and "no merchant" in page.inner_text("#reason")
    assert page.goto(f"{server}/api/merchants/MERCHANT0000002/payouts").status == 404


def test_a_citizen_tops_up_from_the_deposit_account_and_reports_the_card_lost(
    page: Any, server: str, city: City
) -> None:
    card_sign_in(page, server, city.pans["li"])
    page.wait_for_url(f"{server}/me")
    page.click(f'[data-ref="{ref_of(city, "li")}"] a')
    before = page.inner_text("#ec-balance")
    page.fill("#amount", "12.50")
    page.click("#top-up")
    assert "moved to the EC balance" in page.inner_text("[role=status]")
    assert page.inner_text("#ec-balance") != before
    assert "EC credit ¥12.50" in page.inner_text("#pending")
    page.click("#report-lost")
    assert page.inner_text("#card-status") == "lost"
    assert page.query_selector("#top-up") is None  # a lost card takes no more top-ups here
