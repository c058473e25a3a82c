"""Fixtures of notify's tests: the fake providers (once per session) and a notify wired to them."""

import asyncio
import json
import os
import secrets
import shutil
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from kit.migrate import upgrade
from kit.security import PRINCIPAL_HEADER, encode_principal
from schema.dto import IncidentSummary, Principal, UnitRef
from schema.enums import PrincipalKind
from schema.events import IncidentClosed, IncidentGraded, NotificationRequested
from services.notify.config import NotifySettings
from services.notify.main import MIGRATIONS, create_app
from tests.fakes import Providers
from tests.fixtures import PG_URL
from tests.support import DEMO_SECRET, ServerThread, signed

# A Monday, 10:00 in A市 (the day shift is on duty).
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def providers():
    """Every fake provider, for the whole session (reset before each test that uses it)."""
    with Providers() as p:
        yield p


class Notify:
    """A notify service on a real HTTP port, its state, and ways to drive it."""

    def __init__(self, server):
        self.server = server
        self.url = server.url
        self.state = server.server.config.app.state
        self.http = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    @property
    def clock(self):
        """The service's clock (frozen at T0 by the fixture)."""
        return self.state.clock

    def run(self, coro):
        """Run a coroutine on the service's own loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.state.loop).result(timeout=30)

    def drain(self) -> int:
        """Send every delivery that is due now; returns how many were handled."""
        total = 0
        while n := self.run(self.state.dispatcher.drain_once()):
            total += n
        return total

    def tick(self) -> int:
        """One scheduler round (escalations, 续报, digest) and then the dispatcher."""
        ran = self.run(self.state.scheduler.tick())
        self.drain()
        return ran

    def advance(self, **delta) -> None:
        """Move time forward, run what fell due."""
        from datetime import timedelta

        self.clock.advance(timedelta(**delta))
        self.tick()

    def headers(self, user: str = "leader", *roles: str, unit_code: str | None = None) -> dict:
        """The principal header the gateway would forward for a staff user."""
        p = Principal(kind=PrincipalKind.staff, sub=user, roles=list(roles or [user]), unit_code=unit_code)
        return {PRINCIPAL_HEADER: encode_principal(p, DEMO_SECRET)}

    def post_event(self, event) -> dict:
        """Deliver one event as a relay would: signed, to /internal/events."""
        resp = signed("POST", f"{self.url}/internal/events", body={"events": [event.model_dump(mode="json")]})
        assert resp.status_code == 200, resp.text
        return resp.json()["results"][0]

    def post_events(self, events) -> list[dict]:
        """Deliver several events in one signed request, as a relay does with a batch."""
        body = {"events": [e.model_dump(mode="json") for e in events]}
        resp = signed("POST", f"{self.url}/internal/events", body=body)
        assert resp.status_code == 200, resp.text
        return resp.json()["results"]

    def deliveries(self, **params) -> list[dict]:
        """GET /api/v1/notifications as a leader."""
        resp = self.http.get("/api/v1/notifications", params={"limit": 500, **params}, headers=self.headers())
        assert resp.status_code == 200, resp.text
        return resp.json()["items"]


def incident(level: str = "I", **over) -> IncidentSummary:
    """An incident summary as grading sends it."""
    body = {
        "id": str(uuid.uuid4()),
        "code": "SJ261123-" + uuid.uuid4().hex[:5].upper(),
        "title": "A5区洞井街道某小学门口道路坍塌，一名学生受伤，家长聚集",
        "status": "assigned",
        "level": level,
        "score": 90.0,
        "received_at": T0.isoformat(),
        "lead_unit": UnitRef(code="a5-education", name="A5区教育局").model_dump(),
    }
    body.update(over)
    return IncidentSummary.model_validate(body)


def graded(inc: IncidentSummary) -> IncidentGraded:
    """incident.graded."""
    return IncidentGraded.build(source="grading", data=inc)


def closed(inc: IncidentSummary) -> IncidentClosed:
    """incident.closed."""
    return IncidentClosed.build(
        source="grading",
        data={**inc.model_dump(mode="json"), "status": "closed", "closed_at": T0.isoformat()},
    )


def requested(inc: IncidentSummary, kind: str, **data) -> NotificationRequested:
    """notification.requested, as the workflow sends it."""
    return NotificationRequested.build(source="grading", data={"kind": kind, "incident": inc, **data})


def _pg(*sql: str) -> None:
    import asyncpg

    async def go():
        conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
        try:
            for q in sql:
                await conn.execute(q)
        finally:
            await conn.close()

    asyncio.run(go())


@pytest.fixture(scope="session")
def notify_template(backend, tmp_path_factory):
    """notify's schema migrated once; each test gets a copy (migrating per test costs seconds)."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("notify-template") / "notify.db"
        upgrade(MIGRATIONS, f"sqlite+aiosqlite:///{path}")
        yield path
        return
    name = f"mstest_{os.getpid()}_{secrets.token_hex(3)}_notify_tmpl"
    _pg(f'CREATE DATABASE "{name}"')
    upgrade(MIGRATIONS, f"{PG_URL}/{name}")
    try:
        yield name
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def notify_server(notify_template, backend, tmp_path):
    """make(**settings): a notify on a fresh copy of the migrated database, served on a loopback port."""
    servers, dbs = [], []

    def make(**overrides):
        if backend == "sqlite":
            db = tmp_path / f"notify-{len(servers)}.db"
            shutil.copyfile(notify_template, db)
            url = f"sqlite+aiosqlite:///{db}"
        else:
            name = f"mstest_{os.getpid()}_{secrets.token_hex(4)}_notify"
            _pg(f'CREATE DATABASE "{name}" TEMPLATE "{notify_template}"')
            dbs.append(name)
            url = f"{PG_URL}/{name}"
        settings = NotifySettings(database_url=url, var_dir=tmp_path, log_json=False, **overrides)
        server = ServerThread(create_app(settings)).__enter__()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.__exit__(None, None, None)
    if dbs:
        _pg(*(f'DROP DATABASE IF EXISTS "{d}" WITH (FORCE)' for d in dbs))


@pytest.fixture
def notify(notify_server, providers):
    """A notify (real HTTP) wired to the fake providers, workers driven by the test, clock frozen at T0."""
    providers.reset()
    server = notify_server(workers_enabled=False, provider_timeout_seconds=2.0, **providers.settings())
    n = Notify(server)
    n.clock.freeze(T0)
    yield n
    n.http.close()


def dump(obj) -> str:
    """JSON for assertion messages."""
    return json.dumps(obj, ensure_ascii=False, default=str, indent=1)
