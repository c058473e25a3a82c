"""Issue 7 figure: dossiers sealed per second (target ≥ 500/s), on SQLite and PostgreSQL side by side.

    .venv/bin/python -m bench.archive_seal [--dossiers 1000] [--no-events]

For each backend, on a fresh database, with dossiers built from distinct real messages in
../shared/data:
- seal: the archive's seal path as the event handler runs it — build the content, canonical JSON,
  SHA-256, lock the chain head, append with its header hash, HMAC seal and filter tags, commit — one
  transaction per dossier, one after another (word segmentation for search happens behind, in the
  indexer, and is not part of sealing);
- seal ×4: the same with four deliveries at once (they queue on the chain head);
- batch: 100 closings per transaction (`service.seal_many`), as the event consumer seals a relay
  delivery of incident.closed events;
- events: incident.closed events POSTed to a running archive's /internal/events in batches of 100
  (as the relay sends them): each batch fetches its messages and notifications from a fake intake
  and notify over loopback and seals in one transaction, with the search indexer segmenting in the
  same process.
It also prints the CPU time the archive process spends per sealed dossier, which a busy machine
disturbs much less than the wall-clock rate.
"""

import argparse
import asyncio
import json
import secrets
import time
from pathlib import Path
from tempfile import mkdtemp

import httpx

from bench.archive_common import POLICY, categories, pg_database, settings_for, sqlite_database, synthetic
from kit.db import make_engine, make_session_factory
from kit.migrate import upgrade
from kit.security import SIGNATURE_HEADER, sign_request
from schema.events import IncidentClosed
from services.archive import segment, service
from services.archive.main import MIGRATIONS, create_app
from services.archive.tests.conftest import Upstream, fake_platform
from tests.support import DEMO_SECRET, ServerThread

TARGET = 500.0
BATCH = 100  # closings per relay delivery (the outbox relay's batch)
CPU_MS: dict[str, float] = {}  # CPU time of this process per dossier, by database URL


async def seal_run(url: str, var: Path, items: list, concurrency: int) -> float:
    """Seal every item, `concurrency` at a time, one transaction each (0: batches of BATCH in one
    transaction each, as the consumer seals a relay delivery); dossiers per second."""
    settings = settings_for(url, var)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    segment.clear_cache()
    queue = list(items)

    async def worker() -> None:
        while queue:
            incident, messages, notes = queue.pop()
            async with sessions() as session:
                await service.seal_dossier(
                    session=session,
                    incident=incident,
                    messages=messages,
                    notifications=notes,
                    policy=POLICY,
                    settings=settings,
                    now=incident.closed_at,
                )
                await session.commit()

    async def batches() -> None:
        # What the event consumer does with a relay batch: one transaction for BATCH closings.
        for k in range(0, len(items), BATCH):
            async with sessions() as session:
                await service.seal_many(
                    session=session,
                    items=items[k : k + BATCH],
                    policy=POLICY,
                    settings=settings,
                    now=items[k][0].closed_at,
                )
                await session.commit()

    t, cpu = time.perf_counter(), time.process_time()
    if concurrency == 0:
        await batches()
    else:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    await engine.dispose()
    CPU_MS[url] = 1000 * cpu / len(items)
    return len(items) / took


async def events_run(url: str, var: Path, items: list) -> float:
    """incident.closed events through /internal/events (batches of 100) with look-ups; per second."""
    up = Upstream()
    for incident, messages, notes in items:
        for m in messages:
            up.messages[m.id] = m.model_dump(mode="json")
        up.notifications[incident.id] = [n.model_dump(mode="json") for n in notes]
    events = [IncidentClosed.build(source="grading", data=i).model_dump(mode="json") for i, _, _ in items]
    segment.clear_cache()
    with ServerThread(fake_platform(up)) as fake:
        settings = settings_for(url, var).model_copy(update={"intake_url": fake.url, "notify_url": fake.url})
        with ServerThread(create_app(settings)) as archive:
            async with httpx.AsyncClient(base_url=archive.url, timeout=120, trust_env=False) as http:
                t = time.perf_counter()
                for k in range(0, len(events), 100):
                    body = json.dumps({"events": events[k : k + 100]}).encode()
                    headers = {
                        SIGNATURE_HEADER: sign_request(DEMO_SECRET, "POST", "/internal/events", body),
                        "content-type": "application/json",
                    }
                    resp = await http.post("/internal/events", content=body, headers=headers)
                    statuses = {r["status"] for r in resp.json()["results"]}
                    assert statuses == {"applied"}, resp.text[:500]
                took = time.perf_counter() - t
    return len(events) / took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dossiers", type=int, default=1000)
    ap.add_argument("--no-events", action="store_true", help="skip the run through /internal/events")
    args = ap.parse_args()
    n = min(args.dossiers, 2000)  # distinct real messages (the data holds about 2,200)
    cats = categories()
    var = Path(mkdtemp(prefix="msbench-seal-"))
    results: dict[str, dict[str, float]] = {}
    for backend in ("SQLite", "PostgreSQL"):
        row = results.setdefault(backend, {})
        for name, conc in (("seal", 1), ("seal x4", 4), ("batch", 0), ("events", None)):
            if name == "events" and args.no_events:
                continue
            offset = {"seal": 0, "seal x4": 10_000, "batch": 30_000, "events": 20_000}[name]
            items = [synthetic(offset + i, cats=cats) for i in range(n)]
            if backend == "SQLite":
                url = sqlite_database(var / f"seal-{name.replace(' ', '')}.db", fresh=True)
            else:
                db = f"msbench_seal_{secrets.token_hex(3)}"
                url = asyncio.run(pg_database(db, fresh=True))
            upgrade(MIGRATIONS, url)
            if name == "events":
                row[name] = asyncio.run(events_run(url, var, items))
            else:
                row[name] = asyncio.run(seal_run(url, var, items, conc))
                row[f"{name} cpu"] = CPU_MS[url]
            print(f"  {backend:<11} {name:<8} {row[name]:8.0f} dossiers/s", flush=True)
            if backend == "PostgreSQL":
                asyncio.run(_drop(url))
    print(f"\n== dossiers sealed per second ({n} per run, distinct messages) ==")
    names = [k for k in ("seal", "seal x4", "batch", "events") if k in results["SQLite"]]
    print(f"{'':<12}" + "".join(f"{k:>12}" for k in names) + f"{'seal/target':>14}{'batch/target':>14}")
    for backend, row in results.items():
        print(
            f"{backend:<12}"
            + "".join(f"{row[k]:>12.0f}" for k in names)
            + f"{row['seal'] / TARGET:>14.2f}{row['batch'] / TARGET:>14.2f}"
        )
    pg, lite = results["PostgreSQL"], results["SQLite"]
    print(f"PostgreSQL/SQLite seal ratio {pg['seal'] / lite['seal']:.2f}; target {TARGET:.0f}/s")
    # On a shared machine the wall-clock rate says more about the neighbours than about sealing; the
    # CPU the archive process spends per dossier does not (the database server's share is not in it).
    for backend, row in results.items():
        for name in ("seal", "batch"):
            ms = row[f"{name} cpu"]
            print(
                f"{backend} {name}: {ms:.2f} ms CPU per dossier in the archive process,"
                f" {1000 / ms:.0f}/s per core"
            )


async def _drop(url: str) -> None:
    import asyncpg

    from bench.common import PG_URL

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
