"""The demo city of ``citycard up --demo``: its plan, its seeding counted in the database (SQLite through the
real command in a subprocess, PostgreSQL in a schema of its own), money moving through the real chain while
it runs, and a clean stop on SIGINT."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, and_, create_engine, func, select

from citycard import bootstrap
from citycard.center.model import Industry
from citycard.city.plan import (
    BANKS,
    BUS_LINES,
    DISTANCE_LINES,
    POS_TERMINALS,
    VALIDATORS_PER_LINE,
    merchants,
    terminals,
)
from citycard.city.runner import DEMO_CUTOVER_FILE
from citycard.city.seed import demo_users, seed_city
from citycard.clearing import business_window, clearing_date_of, parse_cutovers
from citycard.config import Settings
from citycard.db import Database, drop_schema, migrate
from citycard.db.acquirer_tables import acquirer_uploads
from citycard.db.center_tables import center_merchants, center_services, center_terminals
from citycard.db.clearing_tables import (
    clearing_items,
    clearing_outcomes,
    clearing_presentments,
    clearing_runs,
)
from citycard.db.issuer_tables import issuer_authorizations, issuer_cards, issuer_products
from citycard.db.tables import ledger_account_shards, ledger_accounts
from citycard.transit import parse_network

from tests.conftest import POSTGRES_URL
from tests.db.dbtargets import postgres_reachable

EXPECTED_INDUSTRIES = {
    Industry.TRANSPORT: 30,
    Industry.SUPERMARKET: 70,
    Industry.CATERING: 90,
    Industry.HOSPITAL: 20,
    Industry.PHARMACY: 45,
    Industry.GAS: 25,
    Industry.PUBLIC_UTILITY: 12,
    Industry.BOOKSTORE: 1,
    Industry.ENTERTAINMENT: 37,
    Industry.TOURISM: 30,
}


def test_the_plan_adds_up_to_the_programme() -> None:
    city = merchants()
    assert len(city) == 360 and len({m.merchant_id for m in city}) == 360
    assert Counter(m.industry for m in city) == EXPECTED_INDUSTRIES
    assert all(len(m.merchant_id) == 15 and m.merchant_id[7:11] == m.mcc for m in city)
    plan = terminals(city)
    assert Counter(t.kind.value for t in plan) == {"pos": POS_TERMINALS, "validator": BUS_LINES * 5}
    assert sum(b.registered + b.anonymous for b in BANKS) == 10_100


def _counts(engine: Engine) -> dict[str, object]:
    """What the database holds of the city, counted with SQL."""
    with engine.connect() as c:
        cards = Counter(
            {
                (bank, bool(registered)): n
                for bank, registered, n in c.execute(
                    select(issuer_cards.c.bank_code, issuer_products.c.registered, func.count())
                    .join(
                        issuer_products,
                        (issuer_products.c.bank_code == issuer_cards.c.bank_code)
                        & (issuer_products.c.code == issuer_cards.c.product_code),
                    )
                    .group_by(issuer_cards.c.bank_code, issuer_products.c.registered)
                )
            }
        )
        industries = dict(
            c.execute(
                select(center_merchants.c.industry, func.count()).group_by(center_merchants.c.industry)
            ).all()
        )
        kinds = dict(
            c.execute(select(center_terminals.c.kind, func.count()).group_by(center_terminals.c.kind)).all()
        )
        validators_per_line = set(
            c.execute(
                select(func.count())
                .select_from(center_terminals)
                .where(center_terminals.c.kind == "validator")
                .group_by(center_terminals.c.merchant_id)
            ).scalars()
        )
        bus_lines = c.execute(
            select(func.count()).select_from(center_merchants).where(center_merchants.c.mcc == "4131")
        ).scalar_one()
        statuses = dict(
            c.execute(select(issuer_cards.c.status, func.count()).group_by(issuer_cards.c.status)).all()
        )
    return {
        "cards": cards,
        "industries": industries,
        "kinds": kinds,
        "validators_per_line": validators_per_line,
        "bus_lines": bus_lines,
        "statuses": statuses,
    }


def _assert_city(engine: Engine) -> None:
    counts = _counts(engine)
    assert counts["cards"] == {
        ("ICBC", True): 3030,
        ("ICBC", False): 2020,
        ("CCB", True): 3030,
        ("CCB", False): 2020,
    }
    assert counts["industries"] == {industry.value: n for industry, n in EXPECTED_INDUSTRIES.items()}
    assert counts["kinds"] == {"pos": 477, "validator": 100}
    assert counts["bus_lines"] == BUS_LINES and counts["validators_per_line"] == {VALIDATORS_PER_LINE}
    statuses = counts["statuses"]
    assert isinstance(statuses, dict) and sum(statuses.values()) == 10_100
    assert statuses["active"] > 9_000 and statuses["issued"] > 0  # a few cards not yet collected


def _ledger_sums(engine: Engine) -> tuple[int, int]:
    """(debits posted, credits posted) over every account and account shard: equal in a balanced ledger."""
    with engine.connect() as c:
        plain = c.execute(
            select(func.sum(ledger_accounts.c.debits_posted), func.sum(ledger_accounts.c.credits_posted))
        ).one()
        shards = c.execute(
            select(
                func.coalesce(func.sum(ledger_account_shards.c.debits_posted), 0),
                func.coalesce(func.sum(ledger_account_shards.c.credits_posted), 0),
            )
        ).one()
    return int(plain[0]) + int(shards[0]), int(plain[1]) + int(shards[1])


def _up(home: Path, *argv: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "CITYCARD_DATABASE_URL"}
    env["CITYCARD_HOME"] = str(home)
    free = ("--acquirer", "127.0.0.1:0", "--switch", "127.0.0.1:0", "--web", "127.0.0.1:0")
    return subprocess.Popen(
        [sys.executable, "-c", "from citycard.cli import main; main()", "up", "--demo", *free, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _reports(engine: Engine, enough: Callable[[list[Any]], bool]) -> list[Any]:
    """The services' reports to the center (``center_services``) once ``enough`` of them came (30 s most)."""
    deadline = time.monotonic() + 30
    while True:
        with engine.connect() as c:
            rows = list(c.execute(select(center_services)).all())
        if enough(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _read_until(proc: subprocess.Popen[str], prefix: str, seen: list[str]) -> None:
    while not any(line.startswith(prefix) for line in seen):
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "".join(seen) + proc.stderr.read()  # type: ignore[union-attr]
        seen.append(line)


def _demo_day(home: Path, engine: Engine) -> tuple[str, int]:
    """The business day in progress when the session's first upload came (YYYYMMDD) and its end (ns), by the
    demo's cut-over kept in the home."""
    cut = parse_cutovers((home / DEMO_CUTOVER_FILE).read_text(encoding="ascii").strip()).default
    with engine.connect() as c:
        first = c.execute(select(func.min(acquirer_uploads.c.received_ns))).scalar_one()
    day = clearing_date_of(int(first), cut)
    return day.strftime("%Y%m%d"), business_window(day, cut)[1]


def _run_status(engine: Engine, day: str) -> str | None:
    with engine.connect() as c:
        return c.execute(select(clearing_runs.c.status).where(clearing_runs.c.clearing_date == day)).scalar()


def _assert_cleared(engine: Engine, day: str, end_ns: int) -> None:
    u, p, o, i = acquirer_uploads.c, clearing_presentments.c, clearing_outcomes.c, clearing_items.c
    with engine.connect() as c:
        uploaded = c.execute(select(u.terminal_id, u.batch, u.stan).where(u.received_ns <= end_ns)).all()
        decided = c.execute(  # a presentment with its outcome (0026: a row of clearing_outcomes)
            select(p.terminal_id, p.batch, p.stan)
            .select_from(
                clearing_presentments.join(
                    clearing_outcomes, and_(o.clearing_date == p.clearing_date, o.ref == p.ref)
                )
            )
            .where(p.clearing_date == day)
        ).all()
        paid = c.execute(
            select(func.count()).where(i.clearing_date == day, i.source == "offline", i.sign == 1)
        ).scalar_one()
        outcomes = dict(
            c.execute(select(o.outcome, func.count()).where(o.clearing_date == day).group_by(o.outcome)).all()
        )
    assert uploaded and {tuple(r) for r in uploaded} == {tuple(r) for r in decided}, (len(uploaded), outcomes)
    assert paid == outcomes.get("clear", 0) and paid > 0, (paid, outcomes)


def _assert_network_page(base: str) -> None:
    """The console's network page, signed in as the demo operator: the status lines of the services running
    in the same process, read from them (the switch's links to both banks up, the acquirer's up)."""
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    credentials = json.dumps({"username": "operator", "password": "citycard-demo"}).encode()
    signin = urllib.request.Request(
        base + "api/session", data=credentials, headers={"Content-Type": "application/json"}
    )
    with browser.open(signin, timeout=30) as signed:
        assert signed.status == 200
    with browser.open(base + "api/network/services", timeout=30) as answer:
        shown = json.load(answer)
    lines = shown["services"]
    assert shown["reported"] == []  # its own services' reports are these live lines, not listed again
    codes = sorted(bank.code for bank in BANKS)
    names = [line.split(":", 1)[0] for line in lines]
    assert sorted(names[:-2]) == [f"issuer {code}" for code in codes] and names[-2:] == ["switch", "acquirer"]
    links = ", ".join(f"{code} up" for code in codes)  # the switch's links to the banks' front ends
    assert lines[-2].endswith(f"; {links}") and lines[-1].endswith("; switch up"), lines
    with browser.open(base + "console/network", timeout=30) as page:
        html = page.read().decode()
    assert links in html and "waiting for the switch" in html


def test_up_demo_seeds_the_city_moves_money_through_the_chain_and_stops_on_sigint(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'citycard.db'}")
    proc = _up(tmp_path, "--for", "400", "--pace", "0.3", "--demo-closes-in", "45")
    try:
        seen: list[str] = []
        _read_until(proc, "database sqlite:", seen)
        text = "".join(seen)
        assert re.search(
            r"demo city seeded in [\d.]+ s: 2 bank\(s\), 360 merchants, 577 terminals, 10100 cards", text
        )
        assert "14 simulated terminals pay, load and ride" in text  # 10 POS, 4 validators
        fares = parse_network((tmp_path / "fares.toml").read_text(encoding="utf-8"))  # the city's, installed
        assert len(fares.lines) == BUS_LINES and {
            n for n, line in fares.lines.items() if line.distance
        } == set(DISTANCE_LINES)
        assert re.search(r"clearing: the demo's business days close at \d\d:\d\d Beijing time", text), text
        web = re.search(r"web console on (http://127\.0\.0\.1:\d+/)", text)
        assert web is not None, text
        assert "demo operator login: user operator, password citycard-demo" in text, text
        with urllib.request.urlopen(web.group(1), timeout=30) as page:  # the sign-in page, redirected to
            assert page.status == 200 and "/signin" in page.url
        _assert_network_page(web.group(1))
        reported = _reports(engine, lambda rows: len(rows) == len(BANKS) + 2)
        assert {(r.name, r.pid, r.stopped_ns) for r in reported} == {
            (name, proc.pid, None)
            for name in [f"issuer {bank.code}" for bank in BANKS] + ["switch", "acquirer"]
        }  # each service reports to the center, as `citycard serve` does
        _assert_city(engine)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the simulated terminals' money, approved by the issuers
            with engine.connect() as c:
                approved = c.execute(
                    select(func.count())
                    .select_from(issuer_authorizations)
                    .where(issuer_authorizations.c.response_code == "00")
                ).scalar_one()
                uploaded = c.execute(select(func.count()).select_from(acquirer_uploads)).scalar_one()
            if approved >= 5 and uploaded >= 5:
                break
            time.sleep(1)
        assert approved >= 5 and uploaded >= 5, (approved, uploaded)
        # the demo's first business day closes within minutes and is cleared and settled: every record
        # uploaded during the session before its cut-over is decided by clearing, the paid ones are items
        day, end = _demo_day(tmp_path, engine)
        deadline = time.monotonic() + max(0.0, (end - time.time_ns()) / 1e9) + 120
        while time.monotonic() < deadline and _run_status(engine, day) != "settled":
            time.sleep(1)
        assert _run_status(engine, day) == "settled", day
        _assert_cleared(engine, day, end)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "stopping: no new requests" in out and out.rstrip().endswith("stopped"), out
    assert "0 reversal(s) and advice(s) queued" in out, out
    stopped = _reports(engine, lambda rows: True)
    assert len(stopped) == len(BANKS) + 2 and all(r.stopped_ns is not None for r in stopped), stopped
    assert re.search(r"traffic: \d+ approved .* \d+ fares, \d+ free taps; .* 0 errors", out), out
    # the clearing schedule ran at start: the last closed business day cleared and settled
    assert re.search(r"clearing: \d{4}-\d{2}-\d{2} cleared: \d+ online and \d+ offline item\(s\)", out), out
    # and after the demo's cut-over, the session's day: its offline records cleared, then settled
    shown = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    assert re.search(
        rf"clearing: {shown} cleared: \d+ online and [1-9]\d* offline item\(s\).*settled now, files in "
        rf"\S*/settlement/{day}\n",
        out,
    ), out
    with engine.connect() as c:  # the validators' fares went up with their line and vehicle (field 63)
        u = acquirer_uploads.c
        rides = c.execute(select(u.terminal_id, u.bus_line, u.vehicle).where(u.terminal_id.like("V%"))).all()
    lines = {(tid, line, vehicle) for tid, line, vehicle in rides}
    planned = {(t.terminal_id, t.line, t.vehicle) for t in terminals(merchants()) if t.line is not None}
    assert rides and lines <= planned, lines
    debits, credits = _ledger_sums(engine)
    assert debits == credits and debits > 0
    # a second run finds the city and adds nothing; --for ends it by itself
    again = _up(tmp_path, "--for", "2", "--no-web")
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert "demo city found as seeded before" in out and out.rstrip().endswith("stopped"), out
    _assert_city(engine)
    assert _ledger_sums(engine)[0] == _ledger_sums(engine)[1]
    engine.dispose()


@pytest.mark.postgres
def test_the_seeding_on_postgresql_counts_and_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not postgres_reachable():
        pytest.fail(f"PostgreSQL not reachable at {POSTGRES_URL}")
    schema = f"demo_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CITYCARD_HOME", str(tmp_path))
    s = Settings()
    migrate(POSTGRES_URL, schema=schema)
    database = Database.open(POSTGRES_URL, schema=schema)
    try:
        hsm = bootstrap.build_hsm(s, create_key=True)
        issuer = bootstrap.Issuer(bootstrap.issuer_service(s, hsm, database), database, tmp_path)
        center = bootstrap.Center(s, database, hsm)
        first = seed_city(issuer, center)
        assert first.banks == 2 and first.merchants == 360 and first.terminals == 577
        assert sum(first.cards.values()) == 10_100
        _assert_city(database.engine)
        assert [name for name, _, _ in demo_users(database)] == ["operator", "icbc", "ccb", "supermarket1"]
        again = seed_city(issuer, center)
        assert again.added == 0 and again.activated == 0
        assert len(demo_users(database)) == 4  # found, kept
        _assert_city(database.engine)
        debits, credits = _ledger_sums(database.engine)
        assert debits == credits  # only the pool's counter deposits: cash -> deposit accounts
    finally:
        database.close()
        drop_schema(POSTGRES_URL, schema)
