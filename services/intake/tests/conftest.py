"""Intake's own test stack: intake and an API gateway served on loopback (no grading, so nothing else
competes), a fake portal that receives reply callbacks, and direct SQL for checks."""

import asyncio
import json
import secrets
import threading
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from deploy.launcher import migrations_dir
from gateway.config import GatewaySettings
from gateway.main import create_app as create_gateway
from kit.migrate import upgrade
from services.intake import callbacks
from services.intake.config import IntakeSettings
from services.intake.main import create_app as create_intake
from tests.fixtures import Databases
from tests.support import API_KEY, ServerThread, free_port, wait_until

PORTAL_SECRET = "portal-callback-secret-for-tests"

# Tight numbers so limits can be reached in a test; callbacks retried fast.
INTAKE_OVERRIDES = {
    "rate_limits": {"citizen_lookup": "10/minute", "feedback": "50/minute", "exempt_addresses": []},
    "uploads": {"max_bytes": 64 * 1024},
    "callbacks": {"backoff_base_seconds": 0.05, "backoff_max_seconds": 0.3, "poll_seconds": 0.1},
}


class FakePortal:
    """A channel client's callback endpoint: checks the signature, can fail on purpose, records deliveries."""

    def __init__(self):
        self.deliveries: list[dict] = []
        self.down = False  # answer 500 to everything
        self.fail_for: dict[str, int] = {}  # message id → how many more attempts to refuse
        self.lock = threading.Lock()
        app = FastAPI()

        @app.post("/callback")
        async def callback(request: Request):
            body = await request.body()
            ok = callbacks.verify(PORTAL_SECRET, request.headers.get("x-minsheng-signature", ""), body)
            message_id = json.loads(body)["message"]["id"] if ok else None
            with self.lock:
                failing = self.down or self.fail_for.get(message_id, 0) > 0
                if message_id in self.fail_for and self.fail_for[message_id] > 0:
                    self.fail_for[message_id] -= 1
                self.deliveries.append(
                    {
                        "signature_ok": ok,
                        "message_id": message_id,
                        "delivery": request.headers.get("x-minsheng-delivery"),
                        "event": request.headers.get("x-minsheng-event"),
                        "body": body,
                        "answered": 500 if failing or not ok else 200,
                    }
                )
            if not ok:
                return _status(401)
            if failing:
                return _status(500)
            return {"ok": True}

        self.server = ServerThread(app)

    def received(self, message_id: str) -> list[dict]:
        with self.lock:
            return [d for d in self.deliveries if d["message_id"] == message_id]


def _status(code: int) -> JSONResponse:
    return JSONResponse({"error": "no"}, status_code=code)


class Stack:
    """What the tests talk to."""

    def __init__(
        self, gateway: ServerThread, intake: ServerThread, intake_db: str, var: Path, portal: FakePortal
    ):
        self.gateway = gateway
        self.intake = intake
        self.intake_db = intake_db
        self.var = var
        self.portal = portal
        self.http = httpx.Client(base_url=gateway.url, timeout=60.0, trust_env=False)
        self._ip = 0

    def citizen(self) -> dict[str, str]:
        """Headers of a citizen at an address of its own (the gateway believes loopback's X-Forwarded-For)."""
        self._ip += 1
        return {"X-Forwarded-For": f"203.0.{113 + self._ip // 250}.{self._ip % 250 + 1}"}

    def post(self, body: dict, **headers) -> httpx.Response:
        return self.http.post("/api/v1/messages", json=body, headers={**API_KEY, **headers})

    def sql(self, query: str, **params) -> list:
        """Rows of a query on intake's database."""

        async def run():
            engine = create_async_engine(self.intake_db, poolclass=NullPool)
            try:
                async with engine.begin() as conn:
                    result = await conn.execute(text(query), params)
                    return list(result.all()) if result.returns_rows else []
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def ts(self, value):
        """A datetime as intake's columns hold it (SQLite keeps naive UTC)."""
        return value.replace(tzinfo=None) if self.intake_db.startswith("sqlite") else value

    def received_events(self, message_id: str, event_type: str = "message.received") -> int:
        """How many rows the outbox holds for an event about a message."""
        rows = self.sql("SELECT payload FROM outbox WHERE event_type = :t", t=event_type)

        return sum(
            1
            for (p,) in rows
            if (p if isinstance(p, dict) else json.loads(p))["data"]["message_id"] == message_id
        )


def intake_settings(db_url: str, var: Path, **extra) -> IntakeSettings:
    """Intake's settings for a test instance (the grading URL points nowhere: events wait in the outbox)."""
    return IntakeSettings(
        database_url=db_url,
        var_dir=var,
        log_json=False,
        grading_url=f"http://127.0.0.1:{free_port()}",
        config_overrides=INTAKE_OVERRIDES,
        callback_secrets={"demo-portal": PORTAL_SECRET},
        **extra,
    )


@pytest.fixture(scope="session")
def stack(backend, tmp_path_factory):
    """Intake and a gateway, served on loopback for the whole session, on the backend under test."""
    var = tmp_path_factory.mktemp("intake-stack")
    dbs = Databases(backend, var)
    dbs.prefix = f"mstest_intake_{secrets.token_hex(3)}"
    portal = FakePortal()
    portal.server.__enter__()
    intake_db = dbs.url("intake")
    upgrade(migrations_dir("intake"), intake_db)
    intake = ServerThread(
        create_intake(
            intake_settings(intake_db, var, callback_urls={"demo-portal": f"{portal.server.url}/callback"})
        )
    ).__enter__()
    gateway_db = dbs.url("gateway")
    upgrade(migrations_dir("gateway"), gateway_db)
    limits = {
        k: "1000000/minute"
        for k in (
            "rate_limit_per_client",
            "rate_limit_per_staff",
            "rate_limit_per_address",
            "rate_limit_sign_in",
        )
        if k in GatewaySettings.model_fields
    }
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = ServerThread(
        create_gateway(
            GatewaySettings(
                database_url=gateway_db,
                var_dir=var,
                log_json=False,
                intake_url=intake.url,
                grading_url=dead,
                notify_url=dead,
                archive_url=dead,
                services=["intake"],
                trusted_proxies=["127.0.0.1"],
                spec_refresh_seconds=0.5,
                **limits,
            )
        )
    ).__enter__()
    s = Stack(gateway, intake, intake_db, var, portal)
    wait_until(
        lambda: s.http.get("/open311/v2/services.json").status_code == 200, what="gateway routes to intake"
    )
    try:
        yield s
    finally:
        s.http.close()
        gateway.__exit__(None, None, None)
        intake.__exit__(None, None, None)
        portal.server.__exit__(None, None, None)
        dbs.drop_all()


@pytest.fixture(scope="session")
def staff_tokens(stack):
    """Bearer headers per demo staff user, from the stack's gateway."""
    cache: dict[str, dict[str, str]] = {}

    def get(user: str) -> dict[str, str]:
        if user not in cache:
            r = stack.http.post("/api/v1/auth/token", data={"username": user, "password": "demo"})
            assert r.status_code == 200, r.text
            cache[user] = {"Authorization": f"Bearer {r.json()['access_token']}"}
        return cache[user]

    return get
