"""Shared plumbing of the archive benchmarks: databases, settings, synthetic dossiers, bulk loading.

Synthetic dossiers are built from the real messages in ../shared/data (read by path) by
services/archive/tests/synth.py and sealed with the archive's own code (prepare_dossier, append_many),
so the chain they form verifies like any other.
"""

import asyncio
import csv
import multiprocessing
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import text

from bench.common import DATA, PG_URL
from kit.db import make_engine, make_session_factory
from kit.migrate import upgrade
from schema.enums import Channel, Level
from services.archive import indexer, service
from services.archive.config import ArchiveSettings
from services.archive.main import MIGRATIONS
from services.archive.tests import synth

POLICY = {"retention_years": {"I": None, "II": None, "III": 30, "IV": 10}, "retention_starts": "next_year"}
LEVEL_WEIGHTS = [(Level.I, 2), (Level.II, 8), (Level.III, 30), (Level.IV, 60)]
CHANNELS = [Channel.portal, Channel.hotline, Channel.weibo, Channel.wechat, Channel.forum, Channel.news]
START = datetime(2023, 1, 1, tzinfo=UTC)
SPAN_DAYS = 3 * 365


def categories() -> list[str]:
    """The taxonomy's first-level categories."""
    with open(DATA / "taxonomy.csv", encoding="utf-8") as f:
        return sorted({r["level1"] for r in csv.DictReader(f)})


def settings_for(url: str, var: Path) -> ArchiveSettings:
    """Archive settings on a given database (quiet logs)."""
    return ArchiveSettings(database_url=url, var_dir=var, log_json=False, log_level="WARNING")


async def pg_database(name: str, *, fresh: bool) -> str:
    """The URL of a PostgreSQL database for the benchmark (created, or dropped and created when fresh)."""
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and fresh:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = False
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{PG_URL}/{name}"


def sqlite_database(path: Path, *, fresh: bool) -> str:
    """The URL of a SQLite file for the benchmark."""
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


def synthetic(i: int, *, cats: list[str]):
    """The i-th synthetic closed incident (deterministic): level, unit, channel, category and date drawn."""
    rng = random.Random(i)
    level = rng.choices([lv for lv, _ in LEVEL_WEIGHTS], weights=[w for _, w in LEVEL_WEIGHTS])[0]
    closed = START + timedelta(seconds=rng.randint(0, SPAN_DAYS * 86400))
    return synth.build(
        i,
        rng=rng,
        level=level,
        channel=rng.choice(CHANNELS),
        category=rng.choice(cats),
        closed_at=closed,
        satisfaction=rng.choice([None, "satisfied", "basically_satisfied", "unsatisfied"]),
        attachments=rng.choice([0, 0, 1, 2]),
    )


def _prepare(args: tuple[int, int]) -> list:
    """Worker: prepare dossiers [a, b) (build, hash, segment)."""
    a, b = args
    cats = categories()
    now = datetime.now(UTC)
    out = []
    for i in range(a, b):
        incident, messages, notes = synthetic(i, cats=cats)
        out.append(
            service.prepare_dossier(
                incident=incident,
                messages=messages,
                notifications=notes,
                version=1,
                supersedes=None,
                policy=POLICY,
                tz="Asia/Shanghai",
                now=now,
            )
        )
    return out


async def count(url: str, var: Path) -> int:
    """Dossiers in the database (0 when it was never migrated)."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT seq FROM chain_head WHERE id = 1"))).scalar() or 0
    except Exception:
        return 0
    finally:
        await engine.dispose()


def _segment(contents: list[str]) -> list[tuple[str, list[str]]]:
    """Worker: the index texts of sealed contents."""
    return indexer.segment_contents(contents, 200_000)


async def bulk_load(url: str, var: Path, n: int, *, batch: int = 1000) -> float:
    """Seal synthetic dossiers up to n into the (migrated) database, then index whatever is not yet
    indexed; the CPU work (building, hashing, word segmentation) runs on every core."""
    upgrade(MIGRATIONS, url)
    settings = settings_for(url, var)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    started = time.perf_counter()
    have = await count(url, var)
    chunks = [(a, min(a + batch, n)) for a in range(have, n, batch)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(max(1, multiprocessing.cpu_count())) as pool:
        for k, prepared in enumerate(pool.imap(_prepare, chunks)):
            async with sessions() as session:
                await service.append_many(session=session, prepared=prepared, settings=settings)
                await session.commit()
            if k % 10 == 9:
                done = chunks[k][1] - have
                print(
                    f"  sealed {done:>7} dossiers ({done / (time.perf_counter() - started):.0f}/s)",
                    flush=True,
                )
        sealed = time.perf_counter()

        async def segmenter(contents: list[str]) -> list[tuple[str, list[str]]]:
            # Split the batch over the pool's processes (segmentation holds the GIL).
            half = (len(contents) + 1) // 2
            parts = await asyncio.get_running_loop().run_in_executor(
                None, lambda: pool.map(_segment, [contents[:half], contents[half:]])
            )
            return parts[0] + parts[1]

        done = 0
        while True:
            async with sessions() as session:
                m = await indexer.index_pending(
                    session=session, settings=settings, limit=2000, segmenter=segmenter
                )
            done += m
            if not m:
                break
            if done % 10_000 < 2000:
                print(
                    f"  indexed {done:>7} dossiers ({done / (time.perf_counter() - sealed):.0f}/s)",
                    flush=True,
                )
    await engine.dispose()
    if done and not url.startswith("sqlite"):  # as autovacuum would after a load: statistics, visibility map
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
    return time.perf_counter() - started
