"""Grading's resident memory per message graded (issue 8's soak figure, taken apart), on PostgreSQL.

    .venv/bin/python -m bench.grading_memory                       # 30,000 messages after 6,000 of warm-up
    .venv/bin/python -m bench.grading_memory --messages 10000 --compare-threshold 0

A throw-away platform; relay-sized signed POSTs of 200 `message.received` events go straight to
grading's inbox, one at a time, as fast as it takes them, cycling through the soak's 4,000 real texts
(so most messages join an incident that is already there, as in the soak). Grading's resident memory is
read after the warm-up and then every 6,000 messages; the figure is the growth per message after the
warm-up. `--compare-threshold N` runs a second platform with MINSHENG_MALLOC_MMAP_THRESHOLD_BYTES=N
(0: glibc's sliding threshold) for the side-by-side ratio.
"""

import argparse
import asyncio
import json
import os
import time

import httpx
import psutil

from bench.common import start_platform, stop_platform
from bench.grading_latency import event
from bench.soak import load_texts
from kit.security import SIGNATURE_HEADER, sign_request
from tests.support import DEMO_SECRET

PER_POST = 200


def grading_rss_mb(p) -> float:
    """The grading process's resident memory (MB)."""
    return psutil.Process(p.procs["grading"].pid).memory_info().rss / 1e6


async def drive(p, texts: list[dict], warmup: int, messages: int, tag: str) -> dict:
    """Send warm-up + messages; sample grading's memory after the warm-up and every 6,000 after."""
    url = p.url("grading") + "/internal/events"
    samples: list[tuple[int, float]] = []
    sent = 0
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, trust_env=False) as http:
        while sent < warmup + messages:
            batch = [
                event(sent + i, {"title": r["title"], "body": r["content"]}, tag)
                for i, r in enumerate(texts[(sent + j) % len(texts)] for j in range(PER_POST))
            ]
            body = json.dumps({"events": batch}).encode()
            sig = sign_request(DEMO_SECRET, "POST", "/internal/events", body)
            resp = await http.post(
                url, content=body, headers={SIGNATURE_HEADER: sig, "content-type": "application/json"}
            )
            resp.raise_for_status()
            sent += PER_POST
            if sent == warmup or (sent > warmup and (sent - warmup) % 6000 == 0):
                samples.append((sent - warmup, grading_rss_mb(p)))
    base = samples[0][1]
    return {
        "samples": samples,
        "per_message_bytes": (samples[-1][1] - base) * 1e6 / max(1, samples[-1][0]),
        "growth": (samples[-1][1] - base) / base,
        "rate": sent / (time.perf_counter() - t0),
    }


def one_platform(texts: list[dict], warmup: int, messages: int, threshold: str | None) -> dict:
    env = {} if threshold is None else {"MINSHENG_MALLOC_MMAP_THRESHOLD_BYTES": threshold}
    p = start_platform(postgres=True, extra_env=env)
    try:
        return asyncio.run(drive(p, texts, warmup, messages, f"mem{os.getpid()}-"))
    finally:
        stop_platform(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--warmup", type=int, default=6000)
    parser.add_argument("--compare-threshold", default=None, help="a second run with this threshold")
    args = parser.parse_args()
    texts = load_texts()
    runs = {"as configured": one_platform(texts, args.warmup, args.messages, None)}
    if args.compare_threshold is not None:
        runs[f"threshold {args.compare_threshold}"] = one_platform(
            texts, args.warmup, args.messages, args.compare_threshold
        )
    for name, r in runs.items():
        trail = "  ".join(f"{n}: {mb:.1f}" for n, mb in r["samples"])
        print(f"{name:<16} {r['rate']:6.0f} msg/s  RSS after n messages (MB) {trail}")
        print(f"{'':<16} growth {r['growth'] * 100:5.1f} %  {r['per_message_bytes']:6.0f} bytes per message")
    if len(runs) == 2:
        a, b = (r["per_message_bytes"] for r in runs.values())
        print(f"ratio (configured / compared) {a / b:.2f}")


if __name__ == "__main__":
    main()
