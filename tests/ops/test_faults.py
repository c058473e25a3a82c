"""Faults: a steady stream of messages through the gateway while each process in turn is killed with
SIGKILL and restarted, and while PostgreSQL restarts. Afterwards every message was accepted once,
graded exactly once, every due notification went out exactly once, and no outbox holds anything.

The platform runs on a private PostgreSQL cluster the test creates (the shared server is never
touched), so the test runs once, in the PostgreSQL pass. Channel clients behave as real ones do:
a refused or unanswered submission is sent again with the same external id.
"""

import concurrent.futures
import json
import os
import secrets
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

from deploy.launcher import ALL, SERVICES, Platform
from kit.settings import REPO_ROOT
from tests.ops.pgcluster import PrivateCluster
from tests.support import API_KEY, free_ports, message, wait_until

pytestmark = pytest.mark.skipif(
    os.environ.get("MINSHENG_TEST_DB", "sqlite") != "postgres",
    reason="brings its own PostgreSQL cluster; runs in the PostgreSQL pass",
)

STREAM_SECONDS = 12.0
RATE_PER_SECOND = 8
DATA = REPO_ROOT.parent / "shared" / "data" / "messages_labeled_train.jsonl"


def _texts() -> list[tuple[str, str]]:
    """Real citizens' messages (title, body), or a few made-up ones when the data is not beside us."""
    if DATA.exists():
        rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(r["title"][:200], r["body"][:2000]) for r in rows if r.get("body")]
    return [
        (f"A{i % 6 + 1}区某小区路灯不亮", f"A{i % 6 + 1}区某小区第{i}栋路灯坏了一个月，请修理。")
        for i in range(50)
    ]


@pytest.fixture
def chaos_platform(tmp_path):
    try:
        cluster = PrivateCluster().init()
    except Exception as exc:  # no server binaries on this machine
        pytest.skip(f"cannot create a private PostgreSQL cluster: {exc}")
    cluster.start()
    relay = {}
    for name in SERVICES:  # recover quickly after an outage instead of backing off for a minute
        relay[f"{name.upper()}_RELAY_BACKOFF_BASE_SECONDS"] = "0.2"
        relay[f"{name.upper()}_RELAY_BACKOFF_MAX_SECONDS"] = "2"
    platform = Platform(
        ports=free_ports(ALL),
        var_dir=tmp_path,
        pg_url=cluster.url,
        db_prefix=f"msfault_{secrets.token_hex(3)}",
        log_dir=tmp_path / "logs",
        extra_env={
            "MINSHENG_MODE": "demo",
            **relay,
            **{f"GATEWAY_RATE_LIMIT_{s}": "1000000/minute" for s in ("PER_ADDRESS", "PER_STAFF", "SIGN_IN")},
        },
    )
    try:
        platform.prepare()
        platform.start_all()
        yield platform, cluster
    finally:
        platform.stop_all()
        cluster.remove()


class Portal:
    """A channel client that sends each message until it is accepted, keeping its external id."""

    def __init__(self, base: str):
        self.http = httpx.Client(base_url=base, timeout=10, trust_env=False, headers=API_KEY)
        self.accepted: dict[str, str] = {}  # external id -> message id
        self.refusals: Counter = Counter()
        self.lock = threading.Lock()

    def submit(self, body: dict) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                resp = self.http.post("/api/v1/messages", json=body)
            except httpx.TransportError as exc:
                with self.lock:
                    self.refusals[type(exc).__name__] += 1
                time.sleep(0.2)
                continue
            if resp.status_code in (200, 201):
                with self.lock:
                    first = self.accepted.setdefault(body["external_id"], resp.json()["id"])
                assert first == resp.json()["id"], "a resent message got a second id"
                return
            assert resp.status_code >= 500 or resp.status_code == 429, resp.text  # never refused for good
            with self.lock:
                self.refusals[resp.status_code] += 1
            time.sleep(0.2)
        raise AssertionError(f"message {body['external_id']} was never accepted (refusals: {self.refusals})")


def _kill_and_restart(platform: Platform, name: str) -> None:
    """SIGKILL (no shutdown, no flushing) and start again at once; the stream goes on meanwhile."""
    platform.procs[name].kill()
    platform.procs[name].wait()
    platform.start(name)


def test_killing_every_process_and_restarting_postgres_loses_and_duplicates_nothing(chaos_platform):
    platform, cluster = chaos_platform
    portal = Portal(platform.url("gateway"))
    texts = _texts()
    bodies = []
    for i in range(int(STREAM_SECONDS * RATE_PER_SECOND)):
        title, content = texts[i % len(texts)]
        if i % 10 == 0:  # now and then a matter serious enough that leaders must be told at once
            body = message(
                channel="weibo",
                title="A5区某小学门口道路坍塌学生受伤",
                content=f"A5区洞井街道某小学门口道路坍塌，一名学生受伤，家长聚集（第{i}条）。",
                metrics={"views": 500000, "reposts": 20000, "comments": 8000, "likes": 30000},
            )
        else:
            body = message(title=title, content=content)
        body["external_id"] = f"fault-{uuid.uuid4()}"
        bodies.append(body)

    faults = [*SERVICES, "gateway", "postgres"]
    t0 = time.monotonic()
    done_faults: list[str] = []

    def chaos():
        gap = STREAM_SECONDS / (len(faults) + 1)
        for fault in faults:
            time.sleep(gap)
            if fault == "postgres":
                cluster.restart()
            else:
                _kill_and_restart(platform, fault)
            done_faults.append(fault)
            print(f"{time.monotonic() - t0:6.1f}s {fault} killed, restarting", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        chaos_thread = pool.submit(chaos)
        futures = []
        started = time.monotonic()
        for i, body in enumerate(bodies):
            time.sleep(max(0.0, started + i / RATE_PER_SECOND - time.monotonic()))
            futures.append(pool.submit(portal.submit, body))
        chaos_thread.result()
        for f in futures:
            f.result()
    print(f"{time.monotonic() - t0:6.1f}s stream done", flush=True)
    assert done_faults == faults
    assert portal.refusals, "the faults never showed at the gateway: the test did not test anything"
    assert len(portal.accepted) == len(bodies)
    assert len(set(portal.accepted.values())) == len(bodies), "two messages share an id"

    platform.wait_ready(list(ALL), timeout=45)
    staff = httpx.Client(base_url=platform.url("gateway"), timeout=30, trust_env=False)
    token = staff.post("/api/v1/auth/token", data={"username": "leader", "password": "demo"}).json()
    staff.headers["Authorization"] = f"Bearer {token['access_token']}"

    def incidents_of(message_id: str) -> list[dict]:
        resp = staff.get("/api/v1/incidents", params={"message_id": message_id})
        assert resp.status_code == 200, resp.text
        return resp.json()["items"]

    # Graded exactly once: each message sits in exactly one incident, once.
    incidents: dict[str, dict] = {}
    for message_id in portal.accepted.values():
        found = wait_until(
            lambda m=message_id: incidents_of(m), timeout=30, what=f"message {message_id} graded"
        )
        assert len(found) == 1, f"message {message_id} is in {len(found)} incidents"
        assert found[0]["message_ids"].count(message_id) == 1
        incidents[found[0]["id"]] = found[0]

    print(f"{time.monotonic() - t0:6.1f}s grading checked", flush=True)
    # Every due notification went out exactly once (no step of a chain sent twice to anyone).
    serious = [i for i in incidents.values() if i["level"] in ("I", "II")]
    assert serious, "no incident was serious enough to notify leaders"

    def deliveries(incident_id: str) -> list[dict]:
        resp = staff.get("/api/v1/notifications", params={"incident_id": incident_id, "limit": 500})
        assert resp.status_code == 200, resp.text
        return resp.json()["items"]

    for incident in incidents.values():
        items = (
            wait_until(lambda i=incident: deliveries(i["id"]), timeout=30, what="leaders alerted")
            if incident in serious
            else deliveries(incident["id"])
        )
        keys = Counter((d["event"], d["step"], d["recipient_id"], d["channel"]) for d in items)
        assert all(n == 1 for n in keys.values()), f"sent twice for {incident['id']}: {keys.most_common(3)}"
        wait_until(
            lambda i=incident: all(d["status"] in ("sent", "delivered") for d in deliveries(i["id"])),
            timeout=30,
            what="deliveries sent",
        )

    # Nothing waits in any outbox, nothing was rejected for good.
    def outboxes_empty():
        states = {}
        for name in SERVICES:
            checks = httpx.get(platform.url(name) + "/readyz", timeout=5, trust_env=False).json()["checks"]
            states[name] = checks.get("outbox", {})
        return all(s.get("pending") == 0 and s.get("dead") == 0 for s in states.values()) and states

    print(f"{time.monotonic() - t0:6.1f}s notifications checked", flush=True)
    wait_until(outboxes_empty, timeout=30, what="every outbox empty")
    staff.close()
    portal.http.close()
