"""Issue 8 figures: a soak at a steady rate through the gateway on PostgreSQL.

    .venv/bin/python -m bench.soak [--seconds 600] [--rate 100] [--warmup 60] [--in-flight 64] [--sqlite]

Starts a throw-away platform (its own PostgreSQL databases, dropped afterwards), then posts real
citizens' messages through the gateway with an API key at a fixed rate (open loop: a slow answer
does not slow the sender), a few of them serious enough to alert leaders, while grading, notify and
the relays work in the background as in production (at most --in-flight calls open at once; a call
that waits for a slot is late, and its latency counts from when it was due). It reports, next to
the targets:

- errors: answers other than 201, and transport failures (target 0);
- memory growth of each process between the end of the warm-up and the end of the run (< 10 %);
- how long after the last answer every outbox is empty again (<= 5 s);
- the rate achieved and latency percentiles.

Exit code 0 when every target is met, 1 otherwise.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid

import httpx

from bench.common import DATA, Run, client, rss_mb, start_platform, stop_platform
from deploy.launcher import SERVICES
from tests.support import API_KEY

TARGET_GROWTH = 0.10
TARGET_DRAIN_SECONDS = 5.0


def load_texts(limit: int = 4000) -> list[dict]:
    """Real titles and bodies (read by path from the shared data folder)."""
    out = []
    with open(DATA / "messages_with_votes.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append({"title": d["title"][:200], "content": (d["body"] or d["title"])[:4000]})
            if len(out) >= limit:
                break
    return out


def serious(i: int) -> dict:
    """A post that grades I or II and alerts leaders."""
    return {
        "channel": "weibo",
        "title": "A5区某小学门口道路坍塌学生受伤",
        "content": f"A5区洞井街道某小学门口道路坍塌，一名学生受伤，家长聚集在校门口（{i}）。",
        "source_url": f"https://weibo.example/status/{uuid.uuid4().hex}",
        "source_name": "微博",
        "published_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "metrics": {"views": 500000, "reposts": 20000, "comments": 8000, "likes": 30000},
    }


async def outbox_pending(http: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, int | None]:
    """Undelivered outbox rows of each service (None when the service is not ready)."""
    out: dict[str, int | None] = {}
    for name, url in urls.items():
        try:
            checks = (await http.get(f"{url}/readyz", timeout=5)).json().get("checks", {})
            out[name] = checks.get("outbox", {}).get("pending")
        except (httpx.HTTPError, ValueError):
            out[name] = None
    return out


async def steady(call, *, rate: float, seconds: float, in_flight: int) -> Run:
    """Start calls at a fixed rate. At most `in_flight` are open at once (more would only queue inside
    the client); a call's latency counts from the moment it was due, so waiting for a free slot counts
    against the platform, as it would for a real sender."""
    latencies: list[float] = []
    stats = {"ok": 0, "errors": 0}
    slots = asyncio.Semaphore(in_flight)
    start = time.perf_counter()

    async def one(i: int, due: float):
        async with slots:
            try:
                ok = await call(i)
            except httpx.HTTPError:
                ok = False
        latencies.append(time.perf_counter() - due)
        stats["ok" if ok else "errors"] += 1

    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return Run("soak through the gateway", stats["ok"], stats["errors"], elapsed, latencies)


async def soak(p, seconds: float, rate: float, warmup: float, in_flight: int) -> dict:
    """Drive the load; sample memory after the warm-up and at the end; time the outbox drain."""
    texts = load_texts()
    tag = uuid.uuid4().hex[:8]
    statuses: dict[int, int] = {}
    samples: dict[str, dict[str, float]] = {}
    gateway = p.url("gateway")
    async with client(limit=in_flight) as http:

        async def post(i: int) -> bool:
            body = serious(i) if i % 50 == 0 else {"channel": "portal", **texts[i % len(texts)]}
            body["external_id"] = f"soak-{tag}-{i}"
            resp = await http.post(f"{gateway}/api/v1/messages", json=body, headers=API_KEY)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            return resp.status_code == 201

        async def sample_memory():
            await asyncio.sleep(warmup)
            samples["after_warmup"] = rss_mb(p)
            # Then every minute: a plateau (a burst's high-water mark) reads apart from steady growth.
            while True:
                await asyncio.sleep(60)
                samples[f"{warmup + 60 * (len(samples)):.0f} s"] = rss_mb(p)

        sampler = asyncio.create_task(sample_memory())
        run = await steady(post, rate=rate, seconds=seconds, in_flight=in_flight)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        ended = time.perf_counter()
        samples["end"] = rss_mb(p)
        urls = {n: p.url(n) for n in SERVICES}
        drained_after, pending = None, {}
        while time.perf_counter() - ended < 120:
            pending = await outbox_pending(http, urls)
            if all(v == 0 for v in pending.values()):
                drained_after = time.perf_counter() - ended
                break
            await asyncio.sleep(0.1)
    return {
        "run": run,
        "statuses": statuses,
        "memory": samples,
        "drained_after": drained_after,
        "pending": pending,
    }


def report(result: dict, seconds: float, rate: float, backend: str) -> bool:
    run = result["run"]
    mem = result["memory"]
    growth = {n: (mem["end"][n] - mem["after_warmup"][n]) / mem["after_warmup"][n] for n in mem["end"]}
    drained = result["drained_after"]
    checks = {
        "errors": (run.errors, 0, run.errors == 0),
        "worst memory growth": (max(growth.values()), TARGET_GROWTH, max(growth.values()) < TARGET_GROWTH),
        "outbox empty after (s)": (
            drained if drained is not None else float("inf"),
            TARGET_DRAIN_SECONDS,
            drained is not None and drained <= TARGET_DRAIN_SECONDS,
        ),
        "rate achieved (/s)": (run.rate, rate, run.rate >= 0.95 * rate),
    }
    print(f"\nSoak: {seconds:.0f} s at {rate:.0f} messages/s through the gateway on {backend}")
    print(run.line())
    print(f"p95 {run.pct(0.95):.1f} ms; answers by status: {dict(sorted(result['statuses'].items()))}")
    print(f"\n{'process':<10} {'after warm-up MB':>17} {'end MB':>8} {'growth':>8}")
    for n in mem["end"]:
        print(f"{n:<10} {mem['after_warmup'][n]:>17.1f} {mem['end'][n]:>8.1f} {growth[n] * 100:>7.1f}%")
    trace = [k for k in mem if k not in ("after_warmup", "end")]
    if trace:
        print(f"\nresident MB by minute: {'process':<10}" + "".join(f"{k:>8}" for k in trace))
        for n in mem["end"]:
            print(f"{'':<22}{n:<10}" + "".join(f"{mem[k][n]:>8.1f}" for k in trace))
    print(f"\n{'figure':<24} {'measured':>10} {'target':>10} {'ratio':>8}  ok")
    for name, (value, target, ok) in checks.items():
        ratio = value / target if target else (0.0 if value == 0 else float("inf"))
        shown = f"{value * 100:.1f}%" if "growth" in name else f"{value:.2f}"
        goal = f"<{target * 100:.0f}%" if "growth" in name else f"{target:g}"
        print(f"{name:<24} {shown:>10} {goal:>10} {ratio:>8.2f}  {'yes' if ok else 'NO'}")
    if drained is None:
        print(f"outboxes still pending after 120 s: {result['pending']}")
    summary = {
        "seconds": seconds,
        "rate_target": rate,
        "rate": round(run.rate, 1),
        "errors": run.errors,
        "p50_ms": round(run.pct(0.5), 1),
        "p99_ms": round(run.pct(0.99), 1),
        "memory_growth": {n: round(g, 4) for n, g in growth.items()},
        "outbox_empty_after_s": None if drained is None else round(drained, 2),
        "backend": backend,
    }
    print("\n" + json.dumps(summary, ensure_ascii=False))
    return all(ok for _, _, ok in checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="soak length (default 10 min)")
    parser.add_argument("--rate", type=float, default=100.0, help="messages per second")
    parser.add_argument("--warmup", type=float, default=None, help="baseline after (default 10 %%)")
    parser.add_argument("--in-flight", type=int, default=64, help="most calls open at once")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else max(10.0, args.seconds * 0.1)
    p = start_platform(postgres=not args.sqlite)
    try:
        time.sleep(2.0)
        result = asyncio.run(soak(p, args.seconds, args.rate, warmup, args.in_flight))
    finally:
        stop_platform(p)
    return 0 if report(result, args.seconds, args.rate, "SQLite" if args.sqlite else "PostgreSQL") else 1


if __name__ == "__main__":
    sys.exit(main())
