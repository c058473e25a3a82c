"""Issue 7 figures at scale: search p95 and chain verification over 100,000 sealed dossiers.

    .venv/bin/python -m bench.archive_scale [--dossiers 100000] [--queries 300] [--sqlite] [--reload]

Loads N synthetic dossiers built from the real messages in ../shared/data into a PostgreSQL database
kept between runs (`msbench_archive_<N>`; --reload rebuilds it), or with --sqlite into a file under
var/. Then, in one run: searches through the archive's HTTP API (a real uvicorn server on loopback,
an archivist's principal) with a mix of Chinese word queries and filters, reporting p50/p95/p99 per
kind and overall against the 100 ms target; and a full chain verification against the 10 s target.
"""

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path

import httpx

from bench.archive_common import bulk_load, categories, count, pg_database, settings_for, sqlite_database
from kit.db import make_engine, make_session_factory
from kit.security import PRINCIPAL_HEADER, encode_principal
from kit.settings import REPO_ROOT
from schema.dto import Principal
from schema.enums import PrincipalKind, Role
from services.archive import segment, service
from services.archive.main import create_app
from services.archive.tests import synth
from tests.support import DEMO_SECRET, ServerThread

SEARCH_TARGET_MS = 100.0
VERIFY_TARGET_S = 10.0


def query_mix(n: int, seed: int = 7) -> list[tuple[str, dict]]:
    """(kind, params) pairs: words from real titles and bodies, alone and with filters."""
    rng = random.Random(seed)
    msgs = synth.real_messages()
    units = synth.units()
    cats = categories()

    def word(text: str) -> str:
        words = [w for w in segment.tokens(text) if len(w) >= 2 and not w.isascii()]
        return rng.choice(words) if words else "小区"

    kinds = []
    for i in range(n):
        m = rng.choice(msgs)
        k = i % 7
        if k == 0:
            kinds.append(("word", {"q": word(m["title"])}))
        elif k == 1:
            kinds.append(("two words", {"q": f"{word(m['body'])} {word(m['body'])}"}))
        elif k == 2:
            kinds.append(
                ("word + level", {"q": word(m["title"]), "level": rng.choice(["I", "II", "III", "IV"])})
            )
        elif k == 3:
            kinds.append(("word + unit", {"q": word(m["body"]), "unit": rng.choice(units).code}))
        elif k == 4:
            y = rng.choice([2023, 2024, 2025])
            mo = rng.randint(1, 10)
            window = {"closed_from": f"{y}-{mo:02d}-01", "closed_to": f"{y}-{mo + 2:02d}-28"}
            kinds.append(("word + dates", {"q": word(m["title"]), **window}))
        elif k == 5:
            kinds.append(
                (
                    "filters only",
                    {"unit": rng.choice(units).code, "channel": "weibo", "category": rng.choice(cats)},
                )
            )
        else:
            kinds.append(("common word", {"q": rng.choice(["小区", "问题", "反映", "A市", "业主", "政府"])}))
    return kinds


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def searches(base: str, mix: list[tuple[str, dict]]) -> dict[str, list[float]]:
    """Run the queries one after another (as one archivist would); latencies in ms by kind."""
    principal = Principal(kind=PrincipalKind.staff, sub="bench-archivist", roles=[Role.archivist])
    out: dict[str, list[float]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=60, trust_env=False) as http:
        for warm in mix[:20]:
            headers = {PRINCIPAL_HEADER: encode_principal(principal, DEMO_SECRET)}
            await http.get("/api/v1/archive/dossiers", params=warm[1], headers=headers)
        for kind, params in mix:
            headers = {PRINCIPAL_HEADER: encode_principal(principal, DEMO_SECRET)}
            t = time.perf_counter()
            resp = await http.get("/api/v1/archive/dossiers", params={**params, "limit": 20}, headers=headers)
            ms = (time.perf_counter() - t) * 1000
            assert resp.status_code == 200, resp.text
            out.setdefault(kind, []).append(ms)
            out.setdefault("_hits", []).append(resp.json()["total"])
            out.setdefault("_slow", []).append((ms, kind, params, resp.json()["total"]))
    return out


async def verify(url: str, var: Path) -> dict:
    """A full chain verification with the service's own code."""
    engine = make_engine(url)
    try:
        async with make_session_factory(engine)() as session:
            t = time.perf_counter()
            result = await service.verify_chain(session=session, settings=settings_for(url, var))
            result["seconds"] = time.perf_counter() - t
            return result
    finally:
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dossiers", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=350)
    ap.add_argument("--sqlite", action="store_true", help="SQLite (FTS5) instead of PostgreSQL")
    ap.add_argument("--reload", action="store_true", help="rebuild the dataset")
    ap.add_argument("--no-verify", action="store_true", help="search only")
    args = ap.parse_args()
    var = REPO_ROOT / "var" / "bench"
    var.mkdir(parents=True, exist_ok=True)
    if args.sqlite:
        url = sqlite_database(var / f"archive_{args.dossiers}.db", fresh=args.reload)
    else:
        url = asyncio.run(pg_database(f"msbench_archive_{args.dossiers}", fresh=args.reload))
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    have = asyncio.run(count(url, var))
    if have > args.dossiers:
        raise SystemExit(f"the dataset holds {have} dossiers, more than {args.dossiers}: run with --reload")
    print(f"{have} dossiers in {backend}; sealing up to {args.dossiers} and indexing what is not indexed …")
    took = asyncio.run(bulk_load(url, var, args.dossiers))
    print(f"ready in {took:.0f} s (bulk path)", flush=True)
    mix = query_mix(args.queries)
    app = create_app(settings_for(url, var))
    with ServerThread(app) as server:
        lat = asyncio.run(searches(server.url, mix))
    hits = lat.pop("_hits")
    slowest = sorted(lat.pop("_slow"), key=lambda x: x[0], reverse=True)[:5]
    v = None if args.no_verify else asyncio.run(verify(url, var))

    every = [x for xs in lat.values() for x in xs]
    print(f"\n== archive at scale: {args.dossiers:,} dossiers on {backend} ==")
    print(f"search through the HTTP API, {len(every)} queries one at a time, 20 per page, highlights on")
    print(f"{'kind':<14}{'n':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for kind, xs in lat.items():
        print(f"{kind:<14}{len(xs):>5}{pct(xs, 0.5):>9.1f}{pct(xs, 0.95):>9.1f}{pct(xs, 0.99):>9.1f}")
    p95 = pct(every, 0.95)
    print(f"{'all':<14}{len(every):>5}{pct(every, 0.5):>9.1f}{p95:>9.1f}{pct(every, 0.99):>9.1f}")
    print(f"hits per query: median {statistics.median(hits):.0f}, max {max(hits)}")
    print("slowest:", "; ".join(f"{ms:.0f} ms {kind} {params} ({n} hits)" for ms, kind, params, n in slowest))
    print(f"search p95 {p95:.1f} ms vs target {SEARCH_TARGET_MS:.0f} ms: ratio {p95 / SEARCH_TARGET_MS:.2f}")
    if v is None:
        return
    print(
        f"verification: {v['checked']:,} dossiers in {v['seconds']:.2f} s, ok={v['ok']} "
        f"({v['checked'] / v['seconds']:.0f}/s) vs target {VERIFY_TARGET_S:.0f} s: "
        f"ratio {v['seconds'] / VERIFY_TARGET_S:.2f}"
    )


if __name__ == "__main__":
    main()
