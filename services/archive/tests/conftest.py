"""Archive test fixtures: the archive in-process on a fresh database, with a fake intake and notify."""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.testclient import TestClient

from deploy.launcher import migrations_dir
from kit.migrate import upgrade
from kit.security import PRINCIPAL_HEADER, SIGNATURE_HEADER, encode_principal, sign_request, verify_signature
from schema.dto import IncidentDossier, MessageRecord, NotificationRecord, Principal
from schema.enums import PrincipalKind, Role
from schema.events import IncidentClosed
from services.archive.config import ArchiveSettings
from services.archive.main import create_app
from tests.fixtures import Databases
from tests.support import DEMO_SECRET, ServerThread, wait_until


@dataclass
class Upstream:
    """What the fake intake and notify answer, by message id and incident id."""

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    down: bool = False
    calls: int = 0
    failing: set[str] = field(default_factory=set)  # incident ids whose notifications look-up fails


def fake_platform(up: Upstream) -> FastAPI:
    """intake's GET /internal/messages and notify's GET /internal/notifications, signature checked."""
    app = FastAPI()

    def check(request: Request) -> None:
        up.calls += 1
        if up.down:
            raise HTTPException(503, "down")
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        verify_signature(DEMO_SECRET, request.headers.get(SIGNATURE_HEADER), "GET", path, b"")

    @app.get("/internal/messages")
    def messages(request: Request, ids: list[str] = Query()) -> list[dict[str, Any]]:
        check(request)
        return [up.messages[i] for i in ids if i in up.messages]

    @app.get("/internal/notifications")
    def notifications(request: Request, incident_id: str) -> list[dict[str, Any]]:
        check(request)
        if incident_id in up.failing:
            raise HTTPException(500, "notify failed on this incident")
        return up.notifications.get(incident_id, [])

    return app


def staff(*roles: Role) -> dict[str, str]:
    """The principal header the gateway would forward for a staff user with these roles."""
    p = Principal(kind=PrincipalKind.staff, sub="-".join(roles) or "nobody", roles=list(roles))
    return {PRINCIPAL_HEADER: encode_principal(p, DEMO_SECRET)}


def archivist() -> dict[str, str]:
    """An archivist's header, made when used (a forwarded identity expires after two minutes)."""
    return staff(Role.archivist)


class Archive:
    """The archive app under test, and ways to feed it closed incidents."""

    def __init__(self, client: TestClient, up: Upstream, url: str, backend: str):
        self.client = client
        self.up = up
        self.url = url
        self.backend = backend

    def get(self, path: str, **kw):
        """GET as an archivist."""
        return self.client.get(path, headers={**archivist(), **kw.pop("headers", {})}, **kw)

    def deliver(self, *events: IncidentClosed) -> list[dict[str, Any]]:
        """POST events to /internal/events the way the relay does (signed); the per-event results."""
        body = json.dumps({"events": [e.model_dump(mode="json") for e in events]}).encode()
        headers = {
            SIGNATURE_HEADER: sign_request(DEMO_SECRET, "POST", "/internal/events", body),
            "content-type": "application/json",
        }
        resp = self.client.post("/internal/events", content=body, headers=headers)
        assert resp.status_code == 200, resp.text
        return resp.json()["results"]

    def close(
        self,
        incident: IncidentDossier,
        messages: list[MessageRecord],
        notes: list[NotificationRecord],
    ) -> IncidentClosed:
        """Make intake and notify know the incident's records and deliver its incident.closed."""
        for m in messages:
            self.up.messages[m.id] = m.model_dump(mode="json")
        self.up.notifications[incident.id] = [n.model_dump(mode="json") for n in notes]
        event = IncidentClosed.build(source="grading", data=incident)
        [result] = self.deliver(event)
        assert result["status"] == "applied", result
        return event

    def searchable(self) -> None:
        """Wait until the full-text indexer has caught up with the chain."""
        wait_until(
            lambda: (
                self.get("/api/v1/archive/dossiers", params={"q": "索引", "limit": 1}).json()["index_pending"]
                == 0
            ),
            what="the search index to catch up",
        )

    def dossiers_of(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's dossier versions, newest first."""
        resp = self.get("/api/v1/archive/dossiers", params={"incident_id": incident_id})
        assert resp.status_code == 200, resp.text
        return resp.json()["items"]


def start_archive(url: str, backend: str, tmp, **overrides) -> Iterator[Archive]:
    """Migrate `url`, start a fake intake/notify and the archive app on it."""
    up = Upstream()
    with ServerThread(fake_platform(up)) as fake:
        upgrade(migrations_dir("archive"), url)
        settings = ArchiveSettings(
            database_url=url,
            var_dir=tmp,
            log_json=False,
            intake_url=fake.url,
            notify_url=fake.url,
            relay_poll_seconds=60,
            **overrides,
        )
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield Archive(client, up, url, backend)


@pytest.fixture(scope="module")
def archive(backend, tmp_path_factory) -> Iterator[Archive]:
    """One archive per test module (tests add their own incidents and never assume others' data)."""
    tmp = tmp_path_factory.mktemp("archive")
    dbs = Databases(backend, tmp)
    try:
        yield from start_archive(dbs.url("archive"), backend, tmp)
    finally:
        dbs.drop_all()


@pytest.fixture
def fresh_archive(backend, tmp_path) -> Iterator[Archive]:
    """An archive on an empty database of its own (for tests that alter rows or need a known chain)."""
    dbs = Databases(backend, tmp_path)
    try:
        yield from start_archive(dbs.url("archive"), backend, tmp_path)
    finally:
        dbs.drop_all()
