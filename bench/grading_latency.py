"""Grading's end-to-end figures (issue 4), side by side in one run on PostgreSQL:

1. grading's own apply rate straight to its inbox (signed POSTs of message.received, as intake's relay
   sends them): one event per POST (each its own transaction, the shape before batch handlers) beside
   relay-sized POSTs of 200 (one transaction per delivery); events/s and grading's CPU ms per message;
2. message posted → incident graded, p95, at 100 messages/s through the gateway (target ≤ 1 s), with
   grading's CPU ms per message and the delivery sizes it saw under that load.

    .venv/bin/python -m bench.grading_latency                # 30 s of load, about two minutes in all
    .venv/bin/python -m bench.grading_latency --seconds 10   # quicker

A throw-away platform (all five processes) takes real messages of ../shared/data. For the gateway run
the clock runs from just before the POST to the moment grading placed the message in its incident
(incident_message.graded_at, same machine clock), open loop at a fixed rate. CPU is the grading
process's user + system time over the phase divided by the messages it graded (steadier than wall
time on a shared machine). Grading uses the trained models of var/models/ when `make run` (or
`python -m services.grading.cli prepare`) built them, the cold start otherwise.
"""

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx

from bench.common import (
    DATA,
    REPO,
    client,
    cpu_seconds,
    open_loop,
    postgres_cpu_seconds,
    start_platform,
    stop_platform,
)
from kit.security import SIGNATURE_HEADER, sign_request
from schema.events import MessageReceived, MessageReceivedData
from tests.support import API_KEY, DEMO_SECRET


def rows(n: int) -> list[dict]:
    """Real titles and bodies, the votes file first (messages of one matter come in bursts there)."""
    out = []
    for name in ("messages_with_votes.jsonl", "messages_with_replies.jsonl"):
        path = DATA / name
        if path.exists():
            with path.open(encoding="utf-8") as f:
                out += [json.loads(line) for line in f if line.strip()]
    if not out:
        out = [
            {"title": f"A{i % 9 + 1}区某小区停水第{i}天", "body": "小区停水，请尽快处理。"} for i in range(n)
        ]
    return (out * (n // len(out) + 1))[:n]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def main_run(seconds: float, rate: float, single: int, batched: int) -> None:
    models = REPO / "var" / "models"
    env = {}
    for key, name in (
        ("GRADING_MODEL_PATH", "grading-category.pkl"),
        ("GRADING_ROUTE_MODEL_PATH", "grading-routing.pkl"),
    ):
        if (models / name).exists():
            env[key] = str(models / name)
    p = start_platform(postgres=True, extra_env=env)
    try:
        asyncio.run(run(p, seconds, rate, single, batched, trained=bool(env)))
    finally:
        stop_platform(p)


async def graded(p, ids: list[str], *, wait: float = 180) -> list:
    """incident_message rows of these messages, waiting until all are there (or the time is up)."""
    dsn = p.database_url("grading").replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + wait
        while True:
            got = await conn.fetch(
                "SELECT message_id, incident_id, graded_at, received_at FROM incident_message"
                " WHERE message_id = ANY($1::varchar[])",
                ids,
            )
            if len(got) >= len(ids) or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def event(i: int, row: dict, tag: str) -> dict:
    data = MessageReceivedData(
        message_id=str(uuid.uuid4()),
        tracking_code=f"{tag}{i}",
        channel="portal",
        title=(row.get("title") or "")[:200] or None,
        content=(row.get("body") or row.get("title") or "无内容")[:4000],
        received_at=datetime.now(UTC),
    )
    return MessageReceived.build(source="bench", data=data).model_dump(mode="json")


async def capacity(p, data: list[dict], per_post: int, tag: str) -> dict:
    """Send the rows straight to grading's inbox, `per_post` events per signed POST, one POST at a
    time (as one relay does), as fast as grading takes them."""
    url = p.url("grading") + "/internal/events"
    events = [event(i, r, tag) for i, r in enumerate(data)]
    cpu0, t0 = cpu_seconds(p.procs["grading"].pid), time.perf_counter()
    statuses: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=300, trust_env=False) as http:
        for i in range(0, len(events), per_post):
            body = json.dumps({"events": events[i : i + per_post]}).encode()
            sig = sign_request(DEMO_SECRET, "POST", "/internal/events", body)
            resp = await http.post(
                url, content=body, headers={SIGNATURE_HEADER: sig, "content-type": "application/json"}
            )
            resp.raise_for_status()
            for r in resp.json()["results"]:
                statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds(p.procs["grading"].pid) - cpu0
    got = await graded(p, [e["data"]["message_id"] for e in events], wait=5)
    n = len(events)
    return {
        "label": f"{per_post} event{'s' if per_post > 1 else ''} per POST",
        "events": n,
        "graded": len(got),
        "incidents": len({r["incident_id"] for r in got}),
        "rate": n / seconds,
        "cpu_ms": cpu / n * 1000,
        "statuses": statuses,
    }


def batch_sizes(metrics: str) -> str:
    """Mean delivery size from grading's batch histogram."""
    total = count = 0.0
    for line in metrics.splitlines():
        if line.startswith("minsheng_grading_ingest_batch_messages_sum"):
            total = float(line.split()[-1])
        if line.startswith("minsheng_grading_ingest_batch_messages_count"):
            count = float(line.split()[-1])
    return f"{total / count:.1f} messages per transaction ({count:.0f} transactions)" if count else "n/a"


async def run(p, seconds: float, rate: float, single: int, batched: int, *, trained: bool) -> None:
    n = int(seconds * rate)
    data = rows(single + batched + n + 20)
    tag = f"lat{int(time.time())}-"
    gateway = p.url("gateway")
    async with client() as http:
        # Warm up every process (first requests load models, open pools) before measuring.
        for i in range(20):
            r = data[-(i + 1)]
            await http.post(
                f"{gateway}/api/v1/messages",
                headers=API_KEY,
                json={
                    "channel": "portal",
                    "external_id": f"{tag}warm{i}",
                    "title": r["title"],
                    "content": r["body"],
                },
            )
    await asyncio.sleep(3)
    print(
        f"platform up (PostgreSQL, {'trained models' if trained else 'cold start'}); "
        f"straight to grading's inbox: {single} events one per POST, then {batched} in POSTs of 200 …",
        flush=True,
    )
    one = await capacity(p, data[:single], 1, "one")
    many = await capacity(p, data[single : single + batched], 200, "many")
    for c in (one, many):
        print(
            f"  {c['label']:<22} {c['rate']:7.1f} events/s   CPU {c['cpu_ms']:5.2f} ms per message   "
            f"graded {c['graded']}/{c['events']} into {c['incidents']} incidents  {c['statuses']}",
            flush=True,
        )

    gdata = data[single + batched :]
    posted: dict[str, float] = {}
    async with client() as http:

        async def post(i: int) -> bool:
            r = gdata[i]
            sent = datetime.now(UTC).timestamp()
            resp = await http.post(
                f"{gateway}/api/v1/messages",
                headers=API_KEY,
                json={
                    "channel": "portal",
                    "external_id": f"{tag}{i}",
                    "title": r["title"],
                    "content": r["body"],
                },
            )
            if resp.status_code != 201:
                return False
            posted[resp.json()["id"]] = sent
            return True

        print(f"posting {n} messages through the gateway at {rate:g}/s …", flush=True)
        cpu0 = {name: cpu_seconds(proc.pid) for name, proc in p.procs.items()}
        pg0, own0 = postgres_cpu_seconds(), cpu_seconds(os.getpid(), children=False)
        post_run = await open_loop("POST /api/v1/messages", post, rate=rate, seconds=seconds)
        got = await graded(p, list(posted))
        cpus = {name: cpu_seconds(p.procs[name].pid) - c for name, c in cpu0.items()}
        # PostgreSQL (backends that ended during the run are not counted) and this load generator
        # (including its polling for graded rows) share the two cores too.
        cpus["postgres"] = postgres_cpu_seconds() - pg0
        cpus["load generator"] = cpu_seconds(os.getpid(), children=False) - own0
        cpu = cpus["grading"]
        metrics = (await http.get(p.url("grading") + "/metrics")).text
    lat = [row["graded_at"].timestamp() - posted[row["message_id"]] for row in got]
    own = [(row["graded_at"] - row["received_at"]).total_seconds() for row in got]
    p95 = pct(lat, 0.95)
    print(f"{len(posted)} posted at {rate:g}/s for {seconds:g}s; {len(got)} graded")
    print(f"  {post_run.line()}")
    print(
        f"  posted → graded: p50 {pct(lat, 0.5) * 1000:.0f} ms  p95 {p95 * 1000:.0f} ms  "
        f"p99 {pct(lat, 0.99) * 1000:.0f} ms  max {max(lat, default=0) * 1000:.0f} ms"
    )
    print(
        f"  intake receipt → graded (event relay + grading): p50 {pct(own, 0.5) * 1000:.0f} ms"
        f"  p95 {pct(own, 0.95) * 1000:.0f} ms"
    )
    print(f"  grading CPU {cpu / max(1, len(got)) * 1000:.2f} ms per message; {batch_sizes(metrics)}")
    each = ", ".join(f"{name} {c / max(1, len(posted)) * 1000:.1f}" for name, c in cpus.items())
    total = sum(cpus.values()) / max(1, len(posted)) * 1000
    print(f"  CPU ms per posted message by process: {each}; total {total:.1f}")
    print("\nside by side")
    print(f"  {'figure':<54} {'measured':>14} {'target':>10}")
    print(f"  {'apply rate, one event per transaction (events/s)':<54} {one['rate']:>14.1f} {'':>10}")
    print(
        f"  {'apply rate, relay deliveries of 200 (events/s)':<54} {many['rate']:>14.1f} {'≥ 100':>10}"
        f"   ×{many['rate'] / one['rate']:.1f} the one-by-one rate"
    )
    print(
        f"  {'CPU ms per message, one per transaction → batched':<54} "
        f"{one['cpu_ms']:>6.2f} → {many['cpu_ms']:<5.2f} {'':>10}"
    )
    label = f"posted → graded p95 at {rate:g}/s via the gateway (ms)"
    print(f"  {label:<54} {p95 * 1000:>14.0f} {'≤ 1000':>10}")
    print(f"  target p95 ≤ 1 s: {'met' if p95 <= 1 else 'missed'} (×{1 / p95:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--single", type=int, default=300, help="events sent one per POST")
    parser.add_argument("--batched", type=int, default=2000, help="events sent in POSTs of 200")
    args = parser.parse_args()
    main_run(args.seconds, args.rate, args.single, args.batched)


if __name__ == "__main__":
    main()
