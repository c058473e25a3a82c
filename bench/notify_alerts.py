"""Issue 6 figures: a level I message at the gateway → the first SMS request at the (fake) provider, p95;
deliveries per second to the fake providers.

    .venv/bin/python -m bench.notify_alerts [--messages 20] [--units 415] [--sqlite]

Starts the fake providers (tests/fakes: Tencent and Alibaba SMS, WeCom, DingTalk, SMTP; each checks
signatures and tokens as the real service does) and a throw-away platform whose notify points at
them (PostgreSQL by default). Then, in one run:

1. latency: posts level I messages at the gateway one after another (a weibo post with casualties,
   a crowd, a school and wide spread, as tests/test_end_to_end.py does) and times each from the POST
   to the first SMS request the fake Tencent receives for it, and to the first WeCom message;
2. throughput: hands notify batches of 催办 events (one per unit, signed, as grading's relay
   would) and counts the deliveries the fake providers accept per second: live (applying the events
   included) and draining a backlog (the dispatch rate), SMS and WeCom side by side, next to the
   fake Tencent's own capacity driven directly from another process (the ceiling on this machine).
"""

import argparse
import asyncio
import multiprocessing as mp
import os
import time
import uuid
from datetime import UTC, datetime

import httpx
import yaml

from bench.common import client, cpu_seconds, start_platform, stop_platform
from kit.security import ServiceAuth
from kit.settings import REPO_ROOT
from schema.dto import IncidentSummary, UnitRef
from schema.events import NotificationRequested
from services.notify.recipients import load_directory
from tests.fakes import Providers
from tests.support import DEMO_SECRET

TARGET_P95 = 2.0
TARGET_RATE = 200.0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


EVENTS = ["道路坍塌", "仓库火灾", "燃气爆炸", "化工厂泄漏", "山体塌方", "脚手架垮塌", "楼房起火", "管道爆炸"]
PLACES = ["小学门口", "中学操场", "幼儿园旁", "农贸市场", "地铁工地", "商场地下室", "医院门诊楼", "隧道入口"]


def places() -> list[tuple[str, str]]:
    """(district, street) pairs of the gazetteer: every message names a different street."""
    gaz = yaml.safe_load((REPO_ROOT / "deploy/bundles/a-city/gazetteer.yaml").read_text(encoding="utf-8"))
    return [(d["name"], s["name"]) for d in gaz["districts"] for s in d.get("streets", [])]


def level_one(marker: str, i: int, where: list[tuple[str, str]]) -> dict:
    """A distinct matter that grades I–II (risk words, spread, media), its title starting with a marker."""
    district, street = where[(i * 7) % len(where)]
    event, place = EVENTS[i % len(EVENTS)], PLACES[(i // len(EVENTS)) % len(PLACES)]
    return {
        "channel": "weibo",
        "external_id": f"bench-notify-{uuid.uuid4()}",
        "title": f"{marker}{district}{street}{place}{event}",
        "content": f"{district}{street}{place}发生{event}，{i % 5 + 2}人死亡，多名学生受伤，家属聚集现场。",
        "source_url": f"https://weibo.example/status/{uuid.uuid4().hex}",
        "source_name": "微博",
        "published_at": datetime.now(UTC).isoformat(),
        "metrics": {"views": 500000, "reposts": 20000, "comments": 8000, "likes": 30000},
    }


def first_at(fake, kind: str, marker: str, field) -> float | None:
    for r in fake.of_kind(kind):
        if marker in field(r):
            return r.at
    return None


async def why_no_sms(http, p, message_id: str) -> str:
    """What became of a message whose alert never came: its incident's level (or none)."""
    tok = await http.post(
        f"{p.url('gateway')}/api/v1/auth/token", data={"username": "analyst", "password": "demo"}
    )
    headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
    r = await http.get(
        f"{p.url('gateway')}/api/v1/incidents", params={"message_id": message_id}, headers=headers
    )
    items = r.json().get("items", [])
    if not items:
        return "no incident"
    return f"joined an incident of level {items[0]['level']} with {len(items[0]['message_ids'])} messages"


async def latency(p, fakes: Providers, n: int) -> dict:
    """POST → first SMS (and WeCom) request at the fakes, for n level I messages."""
    sms, wecom, misses = [], [], []
    where = places()
    async with client(16) as http:
        for i in range(n):
            marker = f"Q{i:03d}"  # 4 characters: a title shortened to fit the SMS keeps at least these
            t0 = time.time()
            r = await http.post(
                f"{p.url('gateway')}/api/v1/messages",
                json=level_one(marker, i, where),
                headers={"X-API-Key": "demo-portal-key"},
            )
            assert r.status_code == 201, r.text
            deadline = t0 + 15
            got_sms = got_wecom = None
            while time.time() < deadline and (got_sms is None or got_wecom is None):
                got_sms = got_sms or first_at(
                    fakes.tencent.fake, "sms", marker, lambda r: "".join(r.body.get("TemplateParamSet", []))
                )
                got_wecom = got_wecom or first_at(
                    fakes.wecom.fake, "message", marker, lambda r: r.body.get("text", {}).get("content", "")
                )
                await asyncio.sleep(0.005)
            if got_sms is None:
                misses.append(await why_no_sms(http, p, r.json()["id"]))
                continue
            sms.append(got_sms - t0)
            if got_wecom is not None:
                wecom.append(got_wecom - t0)
            await asyncio.sleep(0.3)  # one matter after another, not a flood
    return {"sms": sms, "wecom": wecom, "misses": misses}


def reminder(unit_code: str, unit_name: str) -> dict:
    inc = IncidentSummary(
        id=str(uuid.uuid4()),
        code="SJ" + uuid.uuid4().hex[:11].upper(),
        title=f"{unit_name}承办事项即将超期",
        status="assigned",
        level="IV",
        score=10,
        received_at="2026-11-23T02:00:00+00:00",
        lead_unit=UnitRef(code=unit_code, name=unit_name),
    )
    ev = NotificationRequested.build(
        source="grading",
        data={"kind": "reminder", "incident": inc, "unit_codes": [unit_code], "params": {"fraction": 0.8}},
    )
    return ev.model_dump(mode="json")


async def post_events(p, events: list[dict]) -> float:
    """Hand notify a batch of events as grading's relay would; returns when notify has applied them."""
    t0 = time.time()
    async with client(4) as http:
        for i in range(0, len(events), 500):
            r = await http.post(
                f"{p.url('notify')}/internal/events",
                json={"events": events[i : i + 500]},
                auth=ServiceAuth(DEMO_SECRET),
                timeout=300,
            )
            assert r.status_code == 200, r.text
    return time.time() - t0


async def wait_for(fakes: Providers, expected: int, seconds: float) -> list[float]:
    """Arrival times of the SMS and WeCom requests at the fakes, once `expected` came (or time ran out)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if len(fakes.tencent.fake.of_kind("sms")) + len(fakes.wecom.fake.of_kind("message")) >= expected:
            break
        await asyncio.sleep(0.05)
    return sorted(r.at for r in fakes.tencent.fake.of_kind("sms") + fakes.wecom.fake.of_kind("message"))


def _rate(ts: list[float]) -> float:
    return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else float("nan")


async def throughput(p, fakes: Providers, units: list[tuple[str, str]]) -> dict:
    """催办 to unit contacts (SMS + WeCom each), twice: live (notify applies the events as deliveries go
    out, so the rate includes applying them) and from a backlog (the providers throttle notify while the
    events are applied; when notify's pause ends every queued delivery is due at once: the dispatch rate)."""
    half = len(units) // 2
    live_events = [reminder(c, n) for c, n in units[:half]]
    fakes.reset()
    t0 = time.time()
    applied = await post_events(p, live_events)
    live = await wait_for(fakes, 2 * len(live_events), 120)
    end_to_end = len(live) / (live[-1] - t0) if live else float("nan")

    backlog_events = [reminder(c, n) for c, n in units[half:]]
    fakes.reset()
    for f in (fakes.tencent.fake, fakes.aliyun.fake, fakes.wecom.fake):
        f.default = "rate_limit"
    await post_events(p, backlog_events)
    fakes.reset()  # back to answering ok; notify leaves them alone until its throttle pause is over
    # The fakes run in this process; the platform's processes are its children, so they are left out.
    cpu0 = cpu_seconds(p.procs["notify"].pid), cpu_seconds(os.getpid(), children=False)
    drained = await wait_for(fakes, 2 * len(backlog_events), 240)
    cpu1 = cpu_seconds(p.procs["notify"].pid), cpu_seconds(os.getpid(), children=False)
    sms_t = sorted(r.at for r in fakes.tencent.fake.of_kind("sms"))
    wc_t = sorted(r.at for r in fakes.wecom.fake.of_kind("message"))
    return {
        "live_expected": 2 * len(live_events),
        "live_delivered": len(live),
        "events_per_s": len(live_events) / applied,
        "rate_end_to_end": end_to_end,
        "backlog_expected": 2 * len(backlog_events),
        "backlog_delivered": len(drained),
        "rate_backlog": _rate(drained),
        "rate_sms": _rate(sms_t),
        "rate_wecom": _rate(wc_t),
        "rejected": len(fakes.tencent.fake.rejected) + len(fakes.wecom.fake.rejected),
        "notify_cpu_ms": 1000 * (cpu1[0] - cpu0[0]) / max(1, len(drained)),
        "fakes_cpu_ms": 1000 * (cpu1[1] - cpu0[1]) / max(1, len(drained)),
    }


def _direct_load(settings: dict, n: int, concurrency: int, out) -> None:
    """In a child process: the Tencent adapter straight at the fake, n SMS, `concurrency` at a time."""
    from services.notify.clients.base import Message
    from services.notify.clients.tencent_sms import TencentSms
    from services.notify.config import NotifySettings
    from services.notify.policy import Template

    s = NotifySettings(**settings)
    tpl = Template(text="{code}", params=("code",), tencent_template_id="2100001")

    async def go():
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(trust_env=False, limits=limits) as http:
            sms, sem = TencentSms(s, http), asyncio.Semaphore(concurrency)

            async def one(i):
                async with sem:
                    m = Message(
                        f"d{i}", "sms", "13800000001", "x", template=tpl, params={"code": "X"}, sign="s"
                    )
                    return (await sms.send(m)).verdict == "ok"

            t0 = time.perf_counter()
            ok = sum(await asyncio.gather(*(one(i) for i in range(n))))
            out.put((ok, ok / (time.perf_counter() - t0)))

    asyncio.run(go())


def fake_capacity(fakes: Providers, n: int = 400, concurrency: int = 64) -> float:
    """How many SMS a second the fake Tencent takes when driven directly (the ceiling on this machine)."""
    q = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_direct_load, args=(fakes.settings(), n, concurrency, q))
    proc.start()
    _, rate = q.get(timeout=300)
    proc.join()
    fakes.reset()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20, help="level I messages for the latency figure")
    ap.add_argument(
        "--units", type=int, default=415, help="units to send a 催办 to for the throughput figure"
    )
    ap.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = ap.parse_args()
    directory = load_directory(REPO_ROOT / "deploy" / "bundles" / "a-city")
    units = [(c, u["name"]) for c, u in directory.units.items() if directory.unit_contacts.get(c)][
        : args.units
    ]
    with Providers() as fakes:
        ceiling = fake_capacity(fakes)
        env = {**fakes.env(), "NOTIFY_PROVIDER_TIMEOUT_SECONDS": "5"}
        p = start_platform(postgres=not args.sqlite, extra_env=env)
        try:
            lat = asyncio.run(latency(p, fakes, args.messages))
            thr = asyncio.run(throughput(p, fakes, units))
        finally:
            stop_platform(p)
    backend = "SQLite" if args.sqlite else "PostgreSQL"
    sms, wc = lat["sms"], lat["wecom"]
    print(
        f"notify alerts, {backend}, {len(sms)} level I–II messages alerted; "
        f"{len(lat['misses'])} not: {', '.join(lat['misses']) or '-'}"
    )
    print(
        f"  gateway POST → first SMS at fake Tencent  p50 {pct(sms, 0.5):6.3f} s  p95 {pct(sms, 0.95):6.3f} s"
        f"  max {max(sms, default=float('nan')):6.3f} s   p95/target {pct(sms, 0.95) / TARGET_P95:5.2f}"
    )
    print(
        f"  gateway POST → first WeCom message        p50 {pct(wc, 0.5):6.3f} s  p95 {pct(wc, 0.95):6.3f} s"
        f"   SMS/WeCom p95 {pct(sms, 0.95) / pct(wc, 0.95):5.2f}"
    )
    print(
        f"  live 催办: {thr['live_delivered']}/{thr['live_expected']} deliveries; notify applied "
        f"{thr['events_per_s']:.1f} events/s; deliveries/s from the POST {thr['rate_end_to_end']:7.1f}/s"
        f"   ratio to target {thr['rate_end_to_end'] / TARGET_RATE:5.2f}"
    )
    print(
        f"  backlog drain: {thr['backlog_delivered']}/{thr['backlog_expected']} deliveries at "
        f"{thr['rate_backlog']:7.1f}/s   target {TARGET_RATE:.0f}/s   "
        f"ratio {thr['rate_backlog'] / TARGET_RATE:5.2f}"
        f"   ({thr['rejected']} requests refused at the door)"
    )
    print(
        f"  SMS {thr['rate_sms']:7.1f}/s  vs  WeCom {thr['rate_wecom']:7.1f}/s   ratio "
        f"{thr['rate_sms'] / thr['rate_wecom']:5.2f};  the fake Tencent driven directly (no notify): "
        f"{ceiling:7.1f}/s, through notify / direct {thr['rate_sms'] / ceiling:5.2f}"
    )
    print(
        f"  CPU per delivery while draining: notify {thr['notify_cpu_ms']:.2f} ms "
        f"(≈ {1000 / thr['notify_cpu_ms']:.0f} deliveries/s per core), the fakes {thr['fakes_cpu_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
