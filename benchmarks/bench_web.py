"""The web console under a loopback load generator: response times (p50, p99) and requests per second of the
dashboard page, the figures API, a card lookup and a card's detail, beside a trivial endpoint (``/healthz``)
of the same server in the same run.

The server is uvicorn (one worker, as ``citycard up`` serves it) in a child process on 127.0.0.1, a free
port, over a demo-sized city seeded here in a temporary home on SQLite: two banks, :data:`CARDS` cards, 360
merchants of the ten industries in eight districts, 477 terminals. The load generator is httpx with
:data:`CONCURRENCY` keep-alive connections in this process, signed in as an operator with a bearer token.
Endpoints are measured in alternating slices of :data:`SLICE_S` seconds, :data:`ROUNDS` rounds; the
latencies of all slices of an endpoint are pooled. Run: ``python -m benchmarks web``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from rich.progress import Progress

CARDS = 2_000
MERCHANTS = 360
TERMINALS = 477
CONCURRENCY = 8
SLICE_S = 2.0
ROUNDS = 3
INDUSTRIES = [
    ("transport", "4131"),
    ("supermarket", "5411"),
    ("catering", "5812"),
    ("hospital", "8062"),
    ("pharmacy", "5912"),
    ("gas", "5541"),
    ("public_utility", "4900"),
    ("bookstore", "5942"),
    ("entertainment", "7832"),
    ("tourism", "7991"),
]
DISTRICTS = ["Xinhua", "Qiaoxi", "Yuhua", "Chang'an", "Luquan", "Gaocheng", "Zhengding", "Pingshan"]


def seed(home: Path) -> tuple[str, str]:
    """A city in ``home``; returns (a bearer token of an operator, the last four digits of a card's PAN)."""
    from citycard.bootstrap import build_hsm, build_web_context
    from citycard.center.commands import AddMerchant, AddTerminal
    from citycard.center.model import Industry, TerminalKind
    from citycard.config import Settings
    from citycard.issuer.commands import AddBank, AddBinRange, AddProduct, IssueCards
    from citycard.web.store import Store

    s = Settings(home=home, database_url="")
    build_hsm(s, create_key=True)
    ctx = build_web_context(s)
    try:
        svc = ctx.issuer.service
        with Progress(transient=True) as progress:
            task = progress.add_task("seeding the city", total=CARDS + MERCHANTS + TERMINALS)
            for code, bin_ in (("ICBC", "621226"), ("BOC", "621661")):
                svc.add_bank(AddBank(code, f"{code} city branch"))
                svc.add_bin_range(AddBinRange(code, bin_))
                svc.add_product(AddProduct(code, "anon-ec", "Anonymous EC card", bin_, registered=False))
                issued = svc.issue_cards(
                    IssueCards(code, "anon-ec", count=CARDS // 2), lambda n: progress.advance(task, 1)
                )
            for i in range(MERCHANTS):
                industry, mcc = INDUSTRIES[i % len(INDUSTRIES)]
                ctx.center.handle(
                    AddMerchant(
                        f"M{i:014d}",
                        f"Merchant {i}",
                        mcc,
                        DISTRICTS[i % len(DISTRICTS)],
                        "ICBC" if i % 2 else "BOC",
                        Industry(industry),
                    )
                )
                progress.advance(task)
            for i in range(TERMINALS):
                kind = TerminalKind.VALIDATOR if i % 5 == 0 else TerminalKind.POS
                ctx.center.handle(AddTerminal(f"T{i:07d}", f"M{i % MERCHANTS:014d}", kind))
                progress.advance(task)
        token, _ = Store(ctx.database).open_session("operator", "bench", {}, ctx.clock())
        return token, issued[-1].pan[-4:]
    finally:
        ctx.close()


def serve(home: str, port_out: multiprocessing.Queue[int]) -> None:
    """The child: uvicorn on the seeded city until terminated."""
    import socket

    import uvicorn

    from citycard.bootstrap import build_web_context
    from citycard.config import Settings
    from citycard.web import create_app

    ctx = build_web_context(Settings(home=Path(home), database_url=""))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port_out.put(sock.getsockname()[1])
    config = uvicorn.Config(create_app(ctx), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


async def _slice(client: httpx.AsyncClient, path: str, seconds: float, out: list[float]) -> int:
    deadline = time.perf_counter() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            r = await client.get(path)
            out.append(time.perf_counter() - start)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
            count += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return count


async def measure(base: str, token: str, paths: dict[str, str]) -> dict[str, tuple[list[float], int, float]]:
    results: dict[str, tuple[list[float], int, float]] = {name: ([], 0, 0.0) for name in paths}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:
        for path in paths.values():  # warm up
            (await client.get(path)).raise_for_status()
        for _ in range(ROUNDS):
            for name, path in paths.items():
                latencies, count, spent = results[name]
                start = time.perf_counter()
                count += await _slice(client, path, SLICE_S, latencies)
                results[name] = (latencies, count, spent + time.perf_counter() - start)
    return results


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="citycard-bench-web-") as home:
        start = time.perf_counter()
        token, suffix = seed(Path(home))
        print(
            f"seeded {CARDS} cards, {MERCHANTS} merchants, {TERMINALS} terminals "
            f"in {time.perf_counter() - start:.1f} s"
        )
        ports: multiprocessing.Queue[int] = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(target=serve, args=(home, ports), daemon=True)
        child.start()
        try:
            port = ports.get(timeout=60)
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            detail = httpx.get(
                f"{base}/api/cards",
                params={"pan_suffix": suffix},
                headers={"Authorization": f"Bearer {token}"},
            ).json()
            ref = detail["cards"][0]["ref"]
            paths = {
                "baseline: GET /healthz": "/healthz",
                "dashboard page GET /console": "/console",
                "figures API GET /api/figures": "/api/figures",
                "card lookup GET /api/cards?pan_suffix=": f"/api/cards?pan_suffix={suffix}",
                "card detail GET /api/cards/{ref}": f"/api/cards/{ref}",
            }
            results = asyncio.run(measure(base, token, paths))
        finally:
            child.terminate()
            child.join(10)
    base_rate = None
    print(f"\n{CONCURRENCY} connections, {ROUNDS} x {SLICE_S:g} s slices per endpoint, cpus={os.cpu_count()}")
    print("| endpoint | requests/s | p50 ms | p99 ms | x baseline p50 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (latencies, count, spent) in results.items():
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        if base_rate is None:
            base_rate = p50
        print(f"| {name} | {count / spent:,.0f} | {p50:.1f} | {p99:.1f} | {p50 / base_rate:.1f} |")


if __name__ == "__main__":
    main()
