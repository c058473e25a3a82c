"""Intake's figures (issue 3), on PostgreSQL through the gateway, each beside raw asyncpg in the same run.

    .venv/bin/python -m bench.intake_throughput            # about two minutes
    .venv/bin/python -m bench.intake_throughput --seconds 5 --batches 4   # quicker

- cleaning + screening cost per message over the real data (../shared/data), target ≤ 1 ms;
- single-message POSTs per second (closed loop) and p99 at a steady 100 requests/s, targets ≥ 500/s and
  ≤ 100 ms;
- batch messages per second (1000 real messages per request), target ≥ 3,000/s;
- beside them, how fast asyncpg alone inserts the same rows (message, timeline step, outbox event) into a
  scratch copy of intake's schema: one transaction per message, and 1000 messages per transaction.

Only the gateway and intake run. Grading is replaced by a stand-in that acknowledges every event at
once (bench/intake_fake_grading.py), so intake's outbox relay works as against a healthy consumer
while grading's own work does not compete for the two cores; `--grading none` leaves grading down
(the events wait in the outbox, and the relay keeps retrying). The load comes from bench.loadgen's lean
client, which leaves the cores to the platform (httpx took ≈ 1.5 ms of CPU a call).
"""

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import mkdtemp

import asyncpg
import psutil

from bench.common import DATA, PG_URL, closed_loop, cpu_seconds, launch, open_loop, stop_platform
from bench.loadgen import LoadClient
from deploy.launcher import REPO, Platform, migrations_dir
from kit.migrate import upgrade
from services.intake.api.schemas import MessageIn
from services.intake.cleaning import normalize_text
from services.intake.config import IntakeSettings, load_config
from services.intake.pii import PiiVault
from services.intake.screening import Screener
from services.intake.service import prepare, received_event
from tests.support import free_ports

API_KEY = {"X-API-Key": "demo-portal-key"}


def real_rows() -> list[dict]:
    rows = []
    for name in ("messages_with_votes.jsonl", "messages_with_replies.jsonl"):
        with (DATA / name).open(encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def item(row: dict, prefix: str) -> dict:
    return {
        "channel": "portal",
        "external_id": f"{prefix}{row['id']}",
        "title": row["title"],
        "content": row["body"],
        "occurred_at": row["time"],
    }


def cleaning_cost(rows: list[dict], screener: Screener) -> tuple[float, float]:
    """Microseconds per message for normalising alone, and for normalising plus screening."""
    t0 = time.perf_counter()
    for r in rows:
        normalize_text(r["title"])
        normalize_text(r["body"])
    t1 = time.perf_counter()
    for r in rows:
        screener.screen(title=normalize_text(r["title"]), text=normalize_text(r["body"]))
    t2 = time.perf_counter()
    n = len(rows)
    return (t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6


# --- raw asyncpg ---------------------------------------------------------------------------------------

_JSON_COLUMNS = {
    "message": {
        "location",
        "metrics",
        "attachments",
        "superior",
        "reporter_flags",
        "screening",
        "handling_unit",
        "reply",
        "category",
    },
    "outbox": {"payload"},
}


def raw_rows(rows: list[dict], prefix: str) -> list[tuple[list, list, list]]:
    """The rows intake would insert for each message: (message, timeline step, outbox event)."""
    settings = IntakeSettings()
    config = load_config(settings)
    screener, vault = Screener(config.screening), PiiVault(settings.pii_keys)
    now = datetime.now(UTC)
    out = []
    for i, r in enumerate(rows):
        p = prepare(
            index=i,
            data=MessageIn.model_validate(item(r, prefix)),
            client_id="demo-portal",
            config=config,
            screener=screener,
            vault=vault,
            now=now,
        )
        row = p.row
        message = [
            json.dumps(v, ensure_ascii=False) if k in _JSON_COLUMNS["message"] else v for k, v in row.items()
        ]
        event = received_event(row)
        out.append(
            (
                message,
                [row["id"], now, "received", "已受理", True, None],
                [
                    event.id,
                    event.type,
                    "grading",
                    json.dumps(event.model_dump(mode="json"), ensure_ascii=False),
                    now,
                    now,
                    0,
                ],
            )
        )
    return out


def _sql(columns: list[str]) -> tuple[str, str, str]:
    cols = ", ".join(columns)
    marks = ", ".join(f"${i + 1}" for i in range(len(columns)))
    return (
        f"INSERT INTO message ({cols}) VALUES ({marks})",
        "INSERT INTO message_event (message_id, at, status, text, public, actor) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        "INSERT INTO outbox (event_id, event_type, destination, payload, created_at, next_attempt_at, "
        "attempts) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )


async def raw_single(dsn: str, data: list, columns: list[str], concurrency: int) -> float:
    """Messages per second, one transaction per message, `concurrency` connections."""
    sql = _sql(columns)
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    queue = iter(data)

    async def worker():
        async with pool.acquire() as conn:
            for m, e, o in queue:
                async with conn.transaction():
                    await conn.execute(sql[0], *m)
                    await conn.execute(sql[1], *e)
                    await conn.execute(sql[2], *o)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    await pool.close()
    return len(data) / elapsed


async def raw_bulk(dsn: str, data: list, columns: list[str], size: int = 1000) -> float:
    """Messages per second, `size` messages per transaction with executemany."""
    sql = _sql(columns)
    conn = await asyncpg.connect(dsn)
    t0 = time.perf_counter()
    for i in range(0, len(data), size):
        chunk = data[i : i + size]
        async with conn.transaction():
            await conn.executemany(sql[0], [m for m, _, _ in chunk])
            await conn.executemany(sql[1], [e for _, e, _ in chunk])
            await conn.executemany(sql[2], [o for _, _, o in chunk])
    elapsed = time.perf_counter() - t0
    await conn.close()
    return len(data) / elapsed


async def create_db(name: str) -> None:
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_db(name: str) -> None:
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def raw_figures(rows: list[dict], concurrency: int, prefix: str) -> tuple[float, float]:
    name = f"{prefix}_raw"
    await create_db(name)
    url = f"{PG_URL}/{name}"
    await asyncio.to_thread(upgrade, migrations_dir("intake"), url)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        single_rows = raw_rows(rows[:3000], "raw-single-")
        bulk_rows = raw_rows(rows, "raw-bulk-")
        columns = list(prepare_columns())
        single = await raw_single(dsn, single_rows, columns, concurrency)
        bulk = await raw_bulk(dsn, bulk_rows, columns)
    finally:
        await drop_db(name)
    return single, bulk


def prepare_columns() -> list[str]:
    settings = IntakeSettings()
    config = load_config(settings)
    p = prepare(
        index=0,
        data=MessageIn.model_validate({"channel": "other", "content": "x"}),
        client_id=None,
        config=config,
        screener=Screener(config.screening),
        vault=PiiVault(settings.pii_keys),
        now=datetime.now(UTC),
    )
    return list(p.row)


# --- through the gateway -------------------------------------------------------------------------------


def start(prefix: str, grading: str) -> Platform:
    var = Path(mkdtemp(prefix="minsheng-bench-intake-"))
    high = "100000000/minute"
    p = Platform(
        ports=free_ports(("intake", "grading", "notify", "archive", "gateway")),
        var_dir=var,
        pg_url=PG_URL,
        db_prefix=prefix,
        log_dir=var / "logs",
        extra_env={
            "MINSHENG_LOG_LEVEL": "WARNING",
            "GATEWAY_RATE_LIMIT_PER_CLIENT": high,
            "GATEWAY_RATE_LIMIT_PER_ADDRESS": high,
            "GATEWAY_SERVICES": '["intake"]',
        },
    )
    return launch(p, lambda: _start_intake_side(p, grading))


def _start_intake_side(p: Platform, grading: str) -> None:
    p.prepare(("intake", "gateway"))
    if grading == "fake":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.intake_fake_grading:app",
            "--port",
            str(p.ports["grading"]),
        ]
        cmd += ["--log-level", "warning", "--no-access-log"]
        p.procs["grading"] = subprocess.Popen(cmd, cwd=REPO, env=p.env())
        p.wait_ready(("grading",))
    p.start_all(("intake", "gateway"))


class CpuMeter:
    """CPU seconds used by the platform's processes (with their children), robust to a busy machine."""

    def __init__(self, platform: Platform):
        self.procs = {n: psutil.Process(p.pid) for n, p in platform.procs.items()}

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(proc.pid) for name, proc in self.procs.items()}

    def per(self, before: dict[str, float], count: int) -> dict[str, float]:
        """Milliseconds of CPU per unit of work since `before`."""
        after = self.read()
        return {n: (after[n] - before[n]) / max(1, count) * 1000 for n in after}


async def outbox_settled(to_intake: LoadClient, limit: float = 120.0) -> float | None:
    """Seconds until intake's outbox is empty (None if it was not within `limit`)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        resp = await to_intake.get("/readyz")
        if resp.status_code == 200 and resp.json()["checks"].get("outbox", {}).get("pending") == 0:
            return time.perf_counter() - t0
        await asyncio.sleep(0.2)
    return None


async def send_batches(http: LoadClient, batches: list, clients: int) -> int:
    """Send the batches from `clients` senders, each one batch at a time; the failed batches."""
    queue, failed = iter(batches), 0

    async def sender() -> None:
        nonlocal failed
        for b in queue:
            resp = await http.post("/api/v1/messages/batch", json={"items": b}, headers=API_KEY)
            if resp.status_code != 200 or resp.json()["created"] != len(b):
                failed += 1

    await asyncio.gather(*(sender() for _ in range(clients)))
    return failed


async def through_gateway(base: str, intake_url: str, rows: list[dict], args, meter: CpuMeter) -> dict:
    out = {}
    run_id = secrets.token_hex(3)
    async with LoadClient(base, timeout=120) as http, LoadClient(intake_url) as to_intake:

        async def post_one(i: int) -> bool:
            r = rows[i % len(rows)]
            resp = await http.post("/api/v1/messages", json=item(r, f"s{run_id}-{i}-"), headers=API_KEY)
            return resp.status_code == 201

        before = meter.read()
        out["single"] = await closed_loop(
            "single POST (closed loop)",
            post_one,
            concurrency=args.concurrency,
            seconds=args.seconds,
            warmup=0,
        )
        out["single_cpu"] = meter.per(before, out["single"].count + out["single"].errors)

        async def post_steady(i: int) -> bool:
            return await post_one(10**8 + i)

        # The steady figure is about a steady state: the closed loop's backlog of events for grading
        # is relayed first (with grading down there is nothing to wait for).
        settled = await outbox_settled(to_intake) if args.grading == "fake" else None
        out["settled_s"] = settled

        out["steady"] = await open_loop("single POST at 100/s", post_steady, rate=100, seconds=args.seconds)

        batches = [[item(r, f"b{run_id}-{k}-") for r in rows[:1000]] for k in range(2 * args.batches + 1)]
        # The first batch starts intake's preparation worker; it is not counted.
        await http.post("/api/v1/messages/batch", json={"items": batches.pop()}, headers=API_KEY)
        # One client sending batches one after another, then two clients each with one batch on its way
        # (an importer with two workers): the stages (gateway, intake's loop, its preparation workers,
        # PostgreSQL) overlap only in the second.
        half = args.batches
        for label, clients, part in (("batch", 1, batches[:half]), ("batch2", 2, batches[half:])):
            before = meter.read()
            t0 = time.perf_counter()
            errors = await send_batches(http, part, clients)
            elapsed = time.perf_counter() - t0
            n = sum(len(b) for b in part)
            out[f"{label}_cpu"] = meter.per(before, n)
            out[label] = (n / elapsed, errors, elapsed / len(part) * clients)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each HTTP load run")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients and raw connections")
    parser.add_argument("--batches", type=int, default=8, help="batches of 1000 messages")
    parser.add_argument(
        "--grading", choices=("fake", "none"), default="fake", help="an instant stand-in for grading, or none"
    )
    args = parser.parse_args()
    rows = real_rows()
    prefix = f"msbench_intake_{secrets.token_hex(3)}"
    config = load_config(IntakeSettings())

    normalise_us, clean_screen_us = cleaning_cost(rows, Screener(config.screening))
    raw_single_rate, raw_bulk_rate = asyncio.run(raw_figures(rows, args.concurrency, prefix))

    platform = start(prefix, args.grading)
    try:
        figures = asyncio.run(
            through_gateway(platform.url("gateway"), platform.url("intake"), rows, args, CpuMeter(platform))
        )
    finally:
        stop_platform(platform)

    single, steady = figures["single"], figures["steady"]
    batch_rate, batch_errors, per_batch = figures["batch"]
    raw_insert_us = 1e6 / raw_single_rate
    print(
        f"\nintake on PostgreSQL through the gateway — {os.cpu_count()} cores, {len(rows)} real messages,"
        f" grading: {args.grading}"
    )
    print(f"{'figure':<44}{'measured':>14}{'target':>12}{'raw asyncpg':>14}{'ratio':>8}")
    print(
        f"{'cleaning + screening per message':<44}{clean_screen_us:>11.0f} µs{'≤ 1000 µs':>12}"
        f"{raw_insert_us:>11.0f} µs{clean_screen_us / raw_insert_us:>8.2f}"
        f"   (normalising alone {normalise_us:.0f} µs; raw = one message's insert transaction)"
    )
    print(
        f"{'single POSTs (closed loop, ' + str(args.concurrency) + ' clients)':<44}{single.rate:>12.0f}/s"
        f"{'≥ 500/s':>12}{raw_single_rate:>12.0f}/s{single.rate / raw_single_rate:>8.2f}"
        f"   p50 {single.pct(0.5):.1f} ms, p99 {single.pct(0.99):.1f} ms, errors {single.errors}"
    )
    print(
        f"{'p99 at a steady 100 requests/s':<44}{steady.pct(0.99):>11.1f} ms{'≤ 100 ms':>12}{'':>14}{'':>8}"
        f"   p50 {steady.pct(0.5):.1f} ms, errors {steady.errors}; started after the outbox emptied"
        f" ({'n/a' if figures['settled_s'] is None else format(figures['settled_s'], '.1f') + ' s'})"
    )
    sc, bc = figures["single_cpu"], figures["batch_cpu"]
    print(
        f"{'batch messages (1000 per request)':<44}{batch_rate:>12.0f}/s{'≥ 3000/s':>12}"
        f"{raw_bulk_rate:>12.0f}/s{batch_rate / raw_bulk_rate:>8.2f}"
        f"   {per_batch * 1000:.0f} ms per batch, failed batches {batch_errors}; one batch at a time"
    )
    rate2, errors2, per2 = figures["batch2"]
    print(
        f"{'  the same, two batches on their way':<44}{rate2:>12.0f}/s{'≥ 3000/s':>12}"
        f"{raw_bulk_rate:>12.0f}/s{rate2 / raw_bulk_rate:>8.2f}"
        f"   {per2 * 1000:.0f} ms per batch, failed batches {errors2}; two clients"
    )
    load = os.getloadavg()[0]
    print(
        f"\nCPU per single POST: intake {sc['intake']:.2f} ms, gateway {sc['gateway']:.2f} ms"
        f" (one core each would carry {1000 / max(sc['intake'], sc['gateway']):.0f}/s);"
        f" per batch message: intake {bc['intake']:.3f} ms (with its preparation worker;"
        f" {figures['batch2_cpu']['intake']:.3f} ms two at a time),"
        f" gateway {bc['gateway']:.3f} ms. Load average during the run: {load:.1f} on {os.cpu_count()} cores."
    )


if __name__ == "__main__":
    main()
