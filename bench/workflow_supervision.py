"""One supervision sweep over 100,000 open incidents on PostgreSQL (issue 5; target ≤ 2 s).

    .venv/bin/python -m bench.workflow_supervision [--incidents 100000] [--due 0,1000,10000,100000]

Loads N open incidents (each with its reply clock, a 签收 clock for the ones not signed yet and a
公开回应 clock for the online ones: ~1.4 clocks per incident) into a fresh grading database, then runs
grading's own Supervisor.sweep with the clock frozen, each time after making a given number of clocks
due (their 50 % reminder passed). A sweep reads only due clocks through the partial index on
`next_at`; beside it, the same pass done the naive way (read every open incident's deadlines) shows
what the index saves. Every due clock yields one 催办 (notice row, notification event, timeline step).
"""

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.workflow_common import (
    Catalogue,
    copy_rows,
    drop_database,
    fresh_database,
    incident_row,
    raw,
    runtime_state,
)
from services.grading.models import WorkflowClock
from services.grading.supervision import Supervisor

DB = "msbench_workflow_supervision"
ONLINE = {"weibo", "wechat", "douyin", "forum", "news"}
CLOCK = WorkflowClock(
    incident_id="x", kind="reply", started_at=datetime.now(UTC), due_at=datetime.now(UTC)
).model_dump()


async def load(url: str, n: int, now: datetime, bundle) -> tuple[int, float]:
    """N open incidents and their clocks, by COPY; returns (clocks, seconds)."""
    rng = random.Random(5)
    catalogue = Catalogue(bundle, rng)
    conn = await raw(url)
    started = time.perf_counter()
    clocks = 0
    try:
        for a in range(0, n, 20_000):
            incidents, rows = [], []
            for i in range(a, min(n, a + 20_000)):
                received = now - timedelta(seconds=rng.randint(0, 50 * 60))
                status = "assigned" if rng.random() < 0.3 else "signed"
                inc = incident_row(
                    i,
                    rng=rng,
                    received_at=received,
                    catalogue=catalogue,
                    status=status,
                    reply_due=received + timedelta(days=3),
                )
                inc["response_due"] = received + timedelta(hours=48)
                incidents.append(inc)

                def clock(kind: str, due: datetime, inc=inc, received=received) -> dict:
                    return {
                        **CLOCK,
                        "incident_id": inc["id"],
                        "kind": kind,
                        "unit_code": inc["lead_unit_code"],
                        "started_at": received,
                        "due_at": due,
                        "next_at": received + (due - received) / 2,
                    }

                rows.append(clock("reply", inc["reply_due"]))
                if status == "assigned":
                    rows.append(clock("sign", received + timedelta(hours=2)))
                if inc["channels"][0] in ONLINE:
                    rows.append(clock("response", inc["response_due"]))
            await copy_rows(conn, "incident", incidents)
            await copy_rows(conn, "workflow_clock", rows)
            clocks += len(rows)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return clocks, time.perf_counter() - started


async def make_due(url: str, k: int, now: datetime, tag: int) -> None:
    """Make k reply clocks due now (their 50 % point passed; a new due time so their notices are new)."""
    conn = await raw(url)
    due = now + timedelta(days=1, seconds=tag)
    try:
        await conn.execute(
            """
            WITH picked AS (
              SELECT id, incident_id FROM workflow_clock WHERE kind = 'reply' ORDER BY id LIMIT $1)
            UPDATE workflow_clock c SET started_at = $2, due_at = $3, next_at = $4, stage = 0
            FROM picked WHERE c.id = picked.id
            """,
            k,
            now - timedelta(days=2),
            due,
            now - timedelta(seconds=1),
        )
        await conn.execute(
            """
            UPDATE incident SET reply_due = $2 WHERE id IN
              (SELECT incident_id FROM workflow_clock WHERE kind = 'reply' ORDER BY id LIMIT $1)
            """,
            k,
            due,
        )
    finally:
        await conn.close()


async def naive_pass(url: str, now: datetime) -> float:
    """What a sweep without clock rows would do: read every open incident's deadlines and check them."""
    conn = await raw(url)
    try:
        t0 = time.perf_counter()
        rows = await conn.fetch(
            "SELECT id, received_at, reply_due, response_due, status FROM incident "
            "WHERE status IN ('assigned','signed','replied','approved','returned','reopened','graded')"
        )
        due = [
            r
            for r in rows
            if r["reply_due"] and r["received_at"] + (r["reply_due"] - r["received_at"]) / 2 <= now
        ]
        _ = len(due)
        return time.perf_counter() - t0
    finally:
        await conn.close()


async def explain(url: str, now: datetime) -> str:
    """The claim query's plan."""
    conn = await raw(url)
    try:
        rows = await conn.fetch(
            "EXPLAIN SELECT * FROM workflow_clock WHERE next_at <= $1 ORDER BY next_at LIMIT 500 "
            "FOR UPDATE SKIP LOCKED",
            now,
        )
        return "\n".join("    " + r[0] for r in rows)
    finally:
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--due", default="0,1000,10000,100000", help="clocks made due before each sweep")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    url = await fresh_database(DB)
    var = Path(tempfile.mkdtemp(prefix="msbench-wf-"))
    state = runtime_state(url, var, batch=500)
    now = datetime.now(UTC).replace(microsecond=0)
    state.clock.freeze(now)
    try:
        clocks, seconds = await load(url, args.incidents, now, state.grading.bundle)
        print(f"loaded {args.incidents:,} open incidents with {clocks:,} clocks in {seconds:.1f} s")
        print("claim query plan:\n" + await explain(url, now))
        sup = Supervisor(state)
        head = f"{'due clocks':>12} {'sweep s':>9} {'clocks/s':>10} {'催办':>7} {'督办':>6}"
        print(f"\n{head}   naive pass s  ratio")
        for tag, k in enumerate(int(x) for x in args.due.split(",")):
            if k:
                await make_due(url, k, now, tag)
            t0 = time.perf_counter()
            out = await sup.sweep(now)
            dt = time.perf_counter() - t0
            naive = await naive_pass(url, now)
            rate = out.get("clocks", 0) / dt if dt else 0
            sent = f"{out.get('reminder', 0):>7,} {out.get('supervision', 0):>6,}"
            ratio = naive / dt if dt else 0
            print(f"{k:>12,} {dt:>9.3f} {rate:>10,.0f} {sent}   {naive:>12.3f}  {ratio:>5.1f}×")
    finally:
        await state.engine.dispose()
        if not args.keep:
            await drop_database(DB)


if __name__ == "__main__":
    asyncio.run(main())
