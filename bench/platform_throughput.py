"""Issue 2 figures: messages/s through the gateway vs directly to intake, p50/p99, ratio; idle memory.

    .venv/bin/python -m bench.platform_throughput [--seconds 20] [--concurrency 32] [--sqlite]

Starts a throw-away platform (PostgreSQL by default), measures resident memory of every process at
idle, then runs the same closed-loop load of single-message POSTs twice in one run: through the
gateway (API key) and straight to intake (a signed principal, as the gateway would forward it).
Grading, notify and the relays work in the background during both runs, as in production. The load
comes from bench.loadgen's lean client (≈ 0.15 ms of CPU a call, where httpx took ≈ 1.5 ms from the
cores the platform runs on).
"""

import argparse
import asyncio
import json
import os
import time
import uuid
from collections import Counter

from bench.common import DATA, closed_loop, cpu_seconds, rss_mb, start_platform, stop_platform
from bench.loadgen import LoadClient
from kit.security import PRINCIPAL_HEADER, encode_principal
from schema.dto import Principal
from tests.support import DEMO_SECRET


def load_texts(limit: int = 2000) -> list[dict]:
    """Real titles and bodies to post (read by path from the shared data folder)."""
    out = []
    with open(DATA / "messages_with_votes.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append({"title": d["title"][:200], "content": d["body"][:4000] or d["title"]})
            if len(out) >= limit:
                break
    return out


def run(seconds: float, concurrency: int, postgres: bool) -> dict:
    p = start_platform(postgres=postgres)
    try:
        time.sleep(3.0)  # let start-up settle before reading idle memory
        idle = rss_mb(p)
        runs = asyncio.run(load(p, seconds, concurrency))
        loaded = rss_mb(p)
    finally:
        stop_platform(p)
    return report(runs, idle, loaded, postgres, concurrency)


async def load(p, seconds: float, concurrency: int) -> list:
    """The alternating runs through the gateway and straight to intake."""
    texts = load_texts()
    gw, intake = p.url("gateway"), p.url("intake")
    principal = Principal(kind="client", sub="demo-portal", client_id="demo-portal", client_ip="127.0.0.1")
    tag = uuid.uuid4().hex[:8]
    failures: Counter = Counter()

    def ok(route: str, r) -> bool:
        if r.status_code != 201:
            failures[f"{route} {r.status_code} {r.text[:120]}"] += 1
        return r.status_code == 201

    serial = iter(range(10**9))  # every POST a new message (a repeated external_id is answered 200)

    def body(i: int, route: str) -> dict:
        t = texts[i % len(texts)]
        return {"channel": "portal", "external_id": f"bench-{tag}-{route}-{next(serial)}", **t}

    async with LoadClient(gw) as to_gateway, LoadClient(intake) as to_intake:

        async def via_gateway(i: int) -> bool:
            r = await to_gateway.post(
                "/api/v1/messages", json=body(i, "gw"), headers={"X-API-Key": "demo-portal-key"}
            )
            return ok("gateway", r)

        async def direct(i: int) -> bool:
            # A fresh principal token per call, as the gateway mints one per request.
            token = encode_principal(principal, DEMO_SECRET)
            headers = {PRINCIPAL_HEADER: token}
            r = await to_intake.post("/api/v1/messages", json=body(i, "direct"), headers=headers)
            return ok("direct", r)

        runs = []
        cpu0 = cpu_seconds(os.getpid(), children=False)
        # Alternate so that background work (grading catching up) weighs on both routes alike.
        for call in (via_gateway, direct, via_gateway, direct):
            name = "through gateway" if call is via_gateway else "direct to intake"
            runs.append(await closed_loop(name, call, concurrency=concurrency, seconds=seconds / 2))
        calls = sum(r.count + r.errors for r in runs)  # and the warm-ups', which the runs do not count
        own = (cpu_seconds(os.getpid(), children=False) - cpu0) / max(1, calls) * 1000
    print(f"load generator: {own:.2f} ms of CPU per call (taken from the cores the platform runs on)")
    for what, n in failures.most_common(5):
        print(f"  failed {n}×: {what}")
    return runs


def report(runs, idle, loaded, postgres: bool, concurrency: int) -> dict:
    """Merge the halves of each route and print the comparison."""

    def merge(name):
        rs = [r for r in runs if r.name == name]
        from bench.common import Run

        return Run(
            name,
            sum(r.count for r in rs),
            sum(r.errors for r in rs),
            sum(r.seconds for r in rs),
            [x for r in rs for x in r.latencies],
        )

    g, d = merge("through gateway"), merge("direct to intake")
    result = {
        "backend": "postgresql" if postgres else "sqlite",
        "concurrency": concurrency,
        "gateway": {"rate": g.rate, "p50_ms": g.pct(0.5), "p99_ms": g.pct(0.99), "errors": g.errors},
        "direct": {"rate": d.rate, "p50_ms": d.pct(0.5), "p99_ms": d.pct(0.99), "errors": d.errors},
        "ratio_gateway_over_direct": g.rate / d.rate if d.rate else 0.0,
        "idle_rss_mb": idle,
        "after_load_rss_mb": loaded,
    }
    print(g.line())
    print(d.line())
    ratio = result["ratio_gateway_over_direct"]
    print(f"gateway/direct ratio: {ratio:.2f}  (target ≥ 0.6; gateway target ≥ 300/s)")
    print("idle RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items()) + "  (target ≤ 150 each)")
    print("after load RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in loaded.items()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per route")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sqlite", action="store_true", help="embedded SQLite instead of PostgreSQL")
    parser.add_argument("--json", help="write the result as JSON to this file")
    args = parser.parse_args()
    result = run(args.seconds, args.concurrency, postgres=not args.sqlite)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
