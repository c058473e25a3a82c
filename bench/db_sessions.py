"""PostgreSQL sessions each process opens under load: the pools as configured beside 10 + 10 overflow.

    .venv/bin/python -m bench.db_sessions                  # 20 s at 100 messages/s through the gateway
    .venv/bin/python -m bench.db_sessions --seconds 60 --rate 80

Two throw-away platforms in turn, the same open-loop load (real messages of ../shared/data, at most 64
calls open at once) through the gateway with the demo API key: the first with the pools as configured
(20 connections, no overflow), the second with every process at `DB_POOL_SIZE=10, DB_MAX_OVERFLOW=10`
(the earlier default). PostgreSQL counts the sessions established per database
(`pg_stat_database.sessions`). What one session costs is measured too: asyncpg connecting, running
`SELECT 1` and closing 100 times, this process's CPU and PostgreSQL's (a backend started each time).
"""

import argparse
import asyncio
import time

import asyncpg
import psutil

from bench.common import PG_URL, client, start_platform, stop_platform
from bench.soak import load_texts
from deploy.launcher import ALL
from tests.support import API_KEY


async def sessions(admin, prefix: str) -> dict[str, int]:
    rows = await admin.fetch(
        "SELECT datname, sessions FROM pg_stat_database WHERE datname LIKE $1", prefix + "%"
    )
    return {r["datname"].rsplit("_", 1)[-1]: r["sessions"] for r in rows}


async def drive(p, seconds: float, rate: float) -> tuple[dict[str, int], int]:
    """The load; sessions opened per process while it ran (and 5 s after), and the 201 answers."""
    texts = load_texts(2000)
    admin = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        before = await sessions(admin, p.db_prefix)
        slots = asyncio.Semaphore(64)
        gateway = p.url("gateway")
        async with client() as http:

            async def one(i: int) -> int:
                t = texts[i % len(texts)]
                body = {"channel": "portal", "external_id": f"s{i}-{time.time()}", **t}
                async with slots:
                    return (
                        await http.post(f"{gateway}/api/v1/messages", headers=API_KEY, json=body)
                    ).status_code

            start, tasks = time.perf_counter(), []
            for i in range(int(seconds * rate)):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(one(i)))
            codes = await asyncio.gather(*tasks)
        await asyncio.sleep(5)
        after = await sessions(admin, p.db_prefix)
        return {n: after.get(n, 0) - before.get(n, 0) for n in after}, codes.count(201)
    finally:
        await admin.close()


def postmaster_cpu_seconds() -> float:
    """CPU of PostgreSQL's postmaster with the backends it has reaped (a backend that ended counts)."""
    for ps in psutil.process_iter(["name"]):
        if (ps.info["name"] or "").startswith("postgres") and not ps.parent().name().startswith("postgres"):
            t = ps.cpu_times()
            return t.user + t.system + t.children_user + t.children_system
    return 0.0


async def connect_cost(times: int = 100) -> tuple[float, float]:
    """CPU ms per session opened and closed: (client, PostgreSQL)."""
    dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    client0, server0 = time.process_time(), postmaster_cpu_seconds()
    for _ in range(times):
        conn = await asyncpg.connect(dsn)
        await conn.execute("SELECT 1")
        await conn.close()
    await asyncio.sleep(0.5)  # the backends end
    return (time.process_time() - client0) * 1000 / times, (postmaster_cpu_seconds() - server0) * 1000 / times


def one_platform(seconds: float, rate: float, env: dict[str, str]) -> tuple[dict[str, int], int]:
    p = start_platform(postgres=True, extra_env=env)
    try:
        return asyncio.run(drive(p, seconds, rate))
    finally:
        stop_platform(p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=100)
    args = parser.parse_args()
    overflow = {}
    for name in ALL:
        overflow[f"{name.upper()}_DB_POOL_SIZE"] = "10"
        overflow[f"{name.upper()}_DB_MAX_OVERFLOW"] = "10"
    runs = {
        "as configured": one_platform(args.seconds, args.rate, {}),
        "10 + 10 overflow": one_platform(args.seconds, args.rate, overflow),
    }
    n = int(args.seconds * args.rate)
    print(
        f"PostgreSQL sessions opened during {n} POSTs at {args.rate:g}/s through the gateway (and 5 s after)"
    )
    for label, (opened, ok) in runs.items():
        shown = ", ".join(f"{k} {v}" for k, v in sorted(opened.items()))
        print(f"  {label:<17} {shown}   ({ok} of {n} answered 201)")
    a, b = (sum(r[0].values()) for r in runs.values())
    print(f"ratio (configured / overflow) {a / max(1, b):.2f}")
    own, server = asyncio.run(connect_cost())
    saved = (b - a) * (own + server) / n
    print(f"one session opened and closed: {own:.1f} ms of client CPU, {server:.1f} ms of PostgreSQL's")
    print(f"{b - a} sessions fewer ≈ {saved:.2f} ms of CPU per message")


if __name__ == "__main__":
    main()
