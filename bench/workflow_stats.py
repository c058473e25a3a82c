"""The statistics query over 1,000,000 messages on PostgreSQL (issue 5; target ≤ 1 s).

    .venv/bin/python -m bench.workflow_stats [--messages 1000000] [--days 365]

Loads N messages in N/4 incidents spread over a year, across the bundle's units, the channels
(hotline- and portal-heavy), the taxonomy's categories and the levels (mostly IV), plus the counts
their handling produced (assigned, signed, replied, closed, returned, reopened, ratings: ~6 per
incident) as `stat_event` rows. Then it times the scheduler's roll-up into `stat_daily` and grading's
own statistics query (stats.query, what GET /api/v1/stats runs) for the views supervisors ask for;
beside it, counting received messages per unit straight from the messages shows what the
pre-aggregated days save.
"""

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.workflow_common import (
    CHANNELS,
    Catalogue,
    copy_rows,
    drop_database,
    fresh_database,
    incident_row,
    raw,
    runtime_state,
    weighted,
)
from services.grading import stats
from services.grading.supervision import Supervisor

DB = "msbench_workflow_stats"


async def load(url: str, n: int, days: int, end: datetime, bundle, tz) -> float:
    """N messages in N/4 incidents over `days` days, and their handling counts; returns seconds."""
    rng = random.Random(7)
    catalogue = Catalogue(bundle, rng)
    conn = await raw(url)
    started = time.perf_counter()
    per = 4
    try:
        for a in range(0, n // per, 10_000):
            incidents, messages, events = [], [], []
            for i in range(a, min(n // per, a + 10_000)):
                received = end - timedelta(seconds=rng.randint(0, days * 86400 - 1))
                inc = incident_row(
                    i, rng=rng, received_at=received, catalogue=catalogue, status="closed", reply_due=None
                )
                incidents.append(inc)
                for k in range(per):
                    at = received + timedelta(minutes=k * rng.randint(1, 600))
                    messages.append(
                        {
                            "message_id": str(uuid.UUID(int=rng.getrandbits(128))),
                            "incident_id": inc["id"],
                            "tracking_code": f"B{i:07d}{k}",
                            "channel": inc["channels"][0] if k == 0 else weighted(rng, CHANNELS),
                            "title": None,
                            "content": "基准留言",
                            "received_at": at,
                            "stat_counted": False,
                        }
                    )
                day = received.astimezone(tz).date()
                dims = {
                    "day": day,
                    "unit_code": inc["lead_unit_code"],
                    "channel": inc["channels"][0],
                    "category": inc["category"]["level1"],
                    "level": inc["level"],
                }
                counts = {"assigned": 1, "signed": 1, "signed_on_time": int(rng.random() < 0.9)}
                if rng.random() < 0.05:
                    counts["returned"] = 1
                if rng.random() < 0.85:
                    counts.update(replied=1, replied_on_time=int(rng.random() < 0.85), closed=1)
                    if rng.random() < 0.35:
                        counts[
                            rng.choice(["satisfied", "satisfied", "basically_satisfied", "unsatisfied"])
                        ] = 1
                    if rng.random() < 0.03:
                        counts["reopened"] = 1
                events += [{**dims, "counter": c, "n": v} for c, v in counts.items() if v]
            await copy_rows(conn, "incident", incidents)
            await copy_rows(conn, "incident_message", messages)
            await copy_rows(conn, "stat_event", events)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def direct_received_per_unit(url: str, start, end) -> float:
    """Received messages per unit counted straight from the messages (no pre-aggregation)."""
    conn = await raw(url)
    try:
        t0 = time.perf_counter()
        await conn.fetch(
            "SELECT i.lead_unit_code, count(*) FROM incident_message m "
            "JOIN incident i ON i.id = m.incident_id "
            "WHERE m.received_at >= $1 AND m.received_at < $2 GROUP BY i.lead_unit_code",
            start,
            end,
        )
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    url = await fresh_database(DB)
    state = runtime_state(url, Path(tempfile.mkdtemp(prefix="msbench-wf-")), batch=500)
    rt = state.grading
    tz = rt.engine.calendar.tz
    end = datetime.now(UTC).replace(microsecond=0)
    state.clock.freeze(end)
    try:
        seconds = await load(url, args.messages, args.days, end, rt.bundle, tz)
        print(f"loaded {args.messages:,} messages in {args.messages // 4:,} incidents in {seconds:.1f} s")
        sup = Supervisor(state)
        t0 = time.perf_counter()
        rolled = await sup.rollup(end)
        dt = time.perf_counter() - t0
        conn = await raw(url)
        days_rows = await conn.fetchval("SELECT count(*) FROM stat_daily")
        await conn.execute("ANALYZE stat_daily")
        await conn.close()
        print(f"roll-up: {rolled:,} rows (messages + counts) in {dt:.1f} s = {rolled / dt:,.0f}/s")
        print(f"stat_daily: {days_rows:,} rows (day × unit × channel × category × level)")
        today = end.astimezone(tz).date()
        year = today - timedelta(days=args.days - 1)
        some_unit = Catalogue(rt.bundle, random.Random(7)).codes[0]  # the busiest unit (as loaded)
        year_view = {"start": year, "end": today}
        views = [
            ("a year per unit, by month", {**year_view, "group_by": "unit", "period": "month"}),
            ("a year per channel, by day", {**year_view, "group_by": "channel", "period": "day"}),
            (
                "30 days per category",
                {"start": today - timedelta(days=29), "end": today, "group_by": "category"},
            ),
            (
                "one unit, a year, by week",
                {**year_view, "unit": some_unit, "group_by": None, "period": "week"},
            ),
            (
                "level I only, a quarter, per unit",
                {"start": today - timedelta(days=89), "end": today, "level": "I", "group_by": "unit"},
            ),
        ]
        print(f"\n{'statistics query':<36} {'median s':>9} {'max s':>7}  groups  series")
        for name, kw in views:
            times = []
            for _ in range(args.repeat):
                async with state.sessions() as s:
                    t0 = time.perf_counter()
                    out = await stats.query(s, tz=tz, **kw)
                    times.append(time.perf_counter() - t0)
            print(
                f"{name:<36} {statistics.median(times):>9.3f} {max(times):>7.3f}  {len(out['groups']):>6}"
                f"  {len(out['series']):>6}"
            )
        year_start = datetime.combine(year, datetime.min.time(), tz)
        direct = min([await direct_received_per_unit(url, year_start, end) for _ in range(3)])
        async with state.sessions() as s:
            t0 = time.perf_counter()
            await stats.query(s, tz=tz, start=year, end=today, group_by="unit", period="month")
            pre = time.perf_counter() - t0
        print(
            f"\nreceived per unit over the year straight from the messages: {direct:.3f} s "
            f"(one measure; the whole statistics query, every measure and rate, from the day rows:"
            f" {pre:.3f} s)"
        )
    finally:
        await state.engine.dispose()
        if not args.keep:
            await drop_database(DB)


if __name__ == "__main__":
    asyncio.run(main())
