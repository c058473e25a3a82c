"""Grading's resident memory per message graded (issue 8's soak figure, taken apart), on PostgreSQL.

    .venv/bin/python -m bench.grading_memory                       # 30,000 messages after 6,000 of warm-up
    .venv/bin/python -m bench.grading_memory --messages 10000 --compare-env MALLOC_ARENA_MAX=2
    .venv/bin/python -m bench.grading_memory --index-only          # the same-matter index alone, in-process

A throw-away platform; relay-sized signed POSTs of 200 `message.received` events go straight to
grading's inbox, one at a time, as fast as it takes them, cycling through the soak's 4,000 real texts
(so most messages join an incident that is already there, as in the soak). Grading's resident memory is
read after the warm-up and then every 6,000 messages; the figure is the growth per message after the
warm-up. `--compare-env NAME=VALUE` runs a second platform with that environment variable set (e.g.
MINSHENG_MALLOC_MMAP_THRESHOLD_BYTES=0, glibc's sliding threshold) for the side-by-side ratio.

`--index-only` measures just the same-matter index (`MatterIndex.add`, no database, no HTTP) in two
fresh processes, glibc's mmap threshold pinned as the services pin it and left sliding: resident and
traced (tracemalloc) bytes per message, 60,000 messages of the soak's 4,000 texts, each joining the
incident of its text's first message, measured after the first 6,000.
"""

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

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


def one_platform(texts: list[dict], warmup: int, messages: int, env: dict[str, str]) -> dict:
    p = start_platform(postgres=True, extra_env=env)
    try:
        return asyncio.run(drive(p, texts, warmup, messages, f"mem{os.getpid()}-"))
    finally:
        stop_platform(p)


def index_only(messages: int, warmup: int, threshold: int, traced: bool) -> dict:
    """Bytes per message the index alone keeps (resident, or traced), in this process."""
    from kit.app import pin_malloc_mmap_threshold
    from services.grading.bundle import load_bundle
    from services.grading.clustering import Features, MatterIndex
    from services.grading.tests.helpers import BUNDLE

    pin_malloc_mmap_threshold(threshold)
    index = MatterIndex(load_bundle(BUNDLE).policy.clustering)
    texts = load_texts()
    features = [index.features(t["title"], t["content"]) for t in texts]
    incident: dict[int, str] = {}
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    if traced:
        tracemalloc.start()
    base_rss = base_traced = 0.0
    for i in range(warmup + messages):
        if i == warmup:
            gc.collect()
            base_rss = psutil.Process().memory_info().rss
            base_traced = tracemalloc.get_traced_memory()[0] if traced else 0
        k = i % len(texts)
        f = features[k]
        inc = incident.setdefault(k, str(uuid.uuid4()))
        index.add(
            str(uuid.uuid4()),
            inc,
            Features(f.hashvalues, f.title_words, f.tf),
            t0 + timedelta(seconds=i / 100),
        )
    gc.collect()
    return {
        "rss": (psutil.Process().memory_info().rss - base_rss) / messages,
        "traced": (tracemalloc.get_traced_memory()[0] - base_traced) / messages if traced else None,
    }


def index_only_side_by_side(messages: int, warmup: int) -> None:
    """The index alone, in fresh processes: threshold pinned (as the services run) and sliding."""
    out = {}
    for label, threshold, traced in (
        ("pinned 128 KiB", 128 * 1024, False),
        ("glibc sliding", 0, False),
        ("traced", 128 * 1024, True),
    ):
        cmd = [sys.executable, "-m", "bench.grading_memory", "--index-child", f"{threshold},{int(traced)}"]
        cmd += ["--messages", str(messages), "--warmup", str(warmup)]
        out[label] = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    print(f"same-matter index alone, {messages} messages after {warmup} (the soak's 4,000 texts over again)")
    print(f"  resident bytes per message, threshold pinned: {out['pinned 128 KiB']['rss']:6.0f}")
    print(f"  resident bytes per message, glibc sliding:    {out['glibc sliding']['rss']:6.0f}")
    print(f"  traced (Python allocations) per message:      {out['traced']['traced']:6.0f}")
    print(f"ratio (pinned / sliding) {out['pinned 128 KiB']['rss'] / out['glibc sliding']['rss']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30000)
    parser.add_argument("--warmup", type=int, default=6000)
    parser.add_argument("--compare-env", default=None, help="NAME=VALUE: a second run with it set")
    parser.add_argument("--index-only", action="store_true", help="the same-matter index alone")
    parser.add_argument("--index-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.index_child:
        threshold, traced = args.index_child.split(",")
        print(json.dumps(index_only(args.messages, args.warmup, int(threshold), traced == "1")))
        return
    if args.index_only:
        index_only_side_by_side(args.messages, args.warmup)
        return
    texts = load_texts()
    runs = {"as configured": one_platform(texts, args.warmup, args.messages, {})}
    if args.compare_env is not None:
        name, _, value = args.compare_env.partition("=")
        runs[args.compare_env] = one_platform(texts, args.warmup, args.messages, {name: value})
    for name, r in runs.items():
        trail = "  ".join(f"{n}: {mb:.1f}" for n, mb in r["samples"])
        print(f"{name}\n  {r['rate']:6.0f} msg/s  RSS after n messages (MB) {trail}")
        print(f"  growth {r['growth'] * 100:5.1f} %  {r['per_message_bytes']:6.0f} bytes per message")
    if len(runs) == 2:
        a, b = (r["per_message_bytes"] for r in runs.values())
        print(f"ratio (configured / compared) {a / b:.2f}")


if __name__ == "__main__":
    main()
