"""Shared benchmark plumbing: a throw-away platform, a closed-loop load generator, percentiles, memory."""

import asyncio
import os
import secrets
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import mkdtemp

import httpx
import psutil

from bench.loadgen import LoadError
from deploy.launcher import ALL, Platform
from kit.http import KEEPALIVE_SECONDS, PoolTransport
from tests.support import free_ports

PG_URL = os.environ.get("MINSHENG_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def start_platform(*, postgres: bool = True, extra_env: dict[str, str] | None = None) -> Platform:
    """A fresh platform on free ports with its own databases (dropped by stop_platform)."""
    var = Path(mkdtemp(prefix="minsheng-bench-"))
    models = REPO / "var" / "models"
    if models.is_dir():  # grading runs with the trained models `make run` prepares, when there are any
        shutil.copytree(models, var / "models")
    p = Platform(
        ports=free_ports(ALL),
        var_dir=var,
        pg_url=PG_URL if postgres else None,
        db_prefix=f"msbench_{secrets.token_hex(3)}",
        log_dir=var / "logs",
        extra_env={"MINSHENG_LOG_LEVEL": "WARNING", **(extra_env or {})},
    )

    def start() -> None:
        p.prepare()
        p.start_all()

    return launch(p, start)


def launch(p: Platform, start: Callable[[], None]) -> Platform:
    """Run `start`; a platform that never becomes ready is stopped and its databases dropped, so a
    failed start leaves no process, database or temporary directory behind."""
    try:
        start()
    except BaseException:
        stop_platform(p)
        raise
    return p


def stop_platform(p: Platform) -> None:
    """Stop the processes, drop the databases and remove the temporary directory (its logs are kept
    when MINSHENG_BENCH_KEEP_VAR=1, for a look at what the services said)."""
    p.stop_all()
    p.drop_databases()
    if os.environ.get("MINSHENG_BENCH_KEEP_VAR") == "1":
        print(f"platform files kept in {p.var_dir}")
    else:
        shutil.rmtree(p.var_dir, ignore_errors=True)


@dataclass
class Run:
    """What a load run measured."""

    name: str
    count: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.rate:8.1f}/s  p50 {self.pct(0.50):7.1f} ms  p99 {self.pct(0.99):7.1f} ms"
            f"  ok {self.count}  errors {self.errors}"
        )


async def closed_loop(
    name: str,
    call: Callable[[int], Awaitable[bool]],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
) -> Run:
    """Run `concurrency` workers calling `call(i)` back to back for `seconds` (after a warm-up)."""
    counter = iter(range(10**9))
    latencies: list[float] = []
    stats = {"ok": 0, "errors": 0}
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def worker():
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                ok = await call(next(counter))
            except (httpx.HTTPError, LoadError):
                ok = False
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
                stats["ok" if ok else "errors"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(name, stats["ok"], stats["errors"], seconds, latencies)


async def open_loop(name: str, call: Callable[[int], Awaitable[bool]], *, rate: float, seconds: float) -> Run:
    """Start calls at a fixed rate (requests per second) regardless of how fast they finish."""
    latencies: list[float] = []
    stats = {"ok": 0, "errors": 0}
    tasks = []

    async def one(i: int):
        t0 = time.perf_counter()
        try:
            ok = await call(i)
        except (httpx.HTTPError, LoadError):
            ok = False
        latencies.append(time.perf_counter() - t0)
        stats["ok" if ok else "errors"] += 1

    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return Run(name, stats["ok"], stats["errors"], time.perf_counter() - start, latencies)


def rss_mb(p: Platform) -> dict[str, float]:
    """Resident memory of each process (uvicorn and its children), in MB."""
    out = {}
    for name, proc in p.procs.items():
        ps = psutil.Process(proc.pid)
        total = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
        out[name] = total / 1e6
    return out


def _cpu_of(processes) -> float:
    """User + system CPU the processes have used so far (one that just ended counts nothing)."""
    total = 0.0
    for ps in processes:
        try:
            t = ps.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def postgres_cpu_seconds() -> float:
    """CPU so far of this host's PostgreSQL processes (the server and the backends alive now)."""
    return _cpu_of(
        ps for ps in psutil.process_iter(["name"]) if (ps.info["name"] or "").startswith("postgres")
    )


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU so far of a process and, unless told not to, its children; the benchmark's own process is
    `cpu_seconds(os.getpid(), children=False)` (the platform's processes are its children)."""
    proc = psutil.Process(pid)
    return _cpu_of((proc, *(proc.children(recursive=True) if children else ())))


def client(limit: int = 200) -> httpx.AsyncClient:
    """A load-generator client with enough connections, on the services' pool (kit.http): httpx's own
    pool spends CPU in proportion to queue × connections on every request once calls queue for a
    connection, which made the load generator take ≈ 15 ms of CPU per call from the cores it shares
    with the platform in an overloaded open-loop run."""
    limits = httpx.Limits(
        max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=KEEPALIVE_SECONDS
    )
    return httpx.AsyncClient(timeout=30.0, transport=PoolTransport(limits=limits), trust_env=False)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
