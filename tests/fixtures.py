"""Fixtures: the database backend under test, a whole platform of real processes, in-process apps."""

import asyncio
import os
import secrets
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from deploy.launcher import ALL, Platform, app_module, migrations_dir
from kit.migrate import upgrade
from tests.support import API_KEY, ServerThread, free_ports

PG_URL = os.environ.get("MINSHENG_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
_SETTINGS_CLASS = {
    "intake": ("services.intake.config", "IntakeSettings"),
    "grading": ("services.grading.config", "GradingSettings"),
    "notify": ("services.notify.config", "NotifySettings"),
    "archive": ("services.archive.config", "ArchiveSettings"),
    "gateway": ("gateway.config", "GatewaySettings"),
}
_failed = {"any": False}


def pytest_collection_modifyitems(config, items):
    """Tests marked `once` do not depend on the database: they run in the SQLite pass only."""
    if os.environ.get("MINSHENG_TEST_DB", "sqlite") == "postgres":
        skip = pytest.mark.skip(reason="backend-independent; runs in the SQLite pass")
        for item in items:
            if "once" in item.keywords:
                item.add_marker(skip)


def pytest_runtest_makereport(item, call):
    if call.excinfo is not None and call.when == "call":
        _failed["any"] = True


@pytest.fixture(scope="session")
def backend() -> str:
    """`sqlite` or `postgres`, from MINSHENG_TEST_DB."""
    value = os.environ.get("MINSHENG_TEST_DB", "sqlite")
    if value not in ("sqlite", "postgres"):
        raise pytest.UsageError(f"MINSHENG_TEST_DB must be sqlite or postgres, not {value!r}")
    return value


def _pg(sql_statements: list[str]) -> None:
    import asyncpg

    async def run():
        conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
        try:
            for sql in sql_statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


class Databases:
    """Throw-away databases of the backend under test, one per name."""

    def __init__(self, backend: str, tmp: Path):
        self.backend = backend
        self.tmp = tmp
        self.prefix = f"mstest_{os.getpid()}_{secrets.token_hex(3)}"
        self.created: list[str] = []

    def url(self, name: str) -> str:
        """A fresh, empty database for `name`."""
        if self.backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.tmp / (name + '.db')}"
        db = f"{self.prefix}_{name}"
        _pg([f'CREATE DATABASE "{db}"'])
        self.created.append(db)
        return f"{PG_URL}/{db}"

    def drop_all(self) -> None:
        """Drop what was created."""
        if self.created:
            _pg([f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)' for db in self.created])
            self.created.clear()


class RunningPlatform:
    """A started platform and ways to talk to it."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.gateway = platform.url("gateway")
        self.http = httpx.Client(base_url=self.gateway, timeout=30.0, trust_env=False)
        self._tokens: dict[str, str] = {}

    def url(self, name: str) -> str:
        """Base URL of one process."""
        return self.platform.url(name)

    def token(self, username: str, password: str = "demo") -> str:
        """A staff bearer token (cached per user)."""
        if username not in self._tokens:
            resp = self.http.post("/api/v1/auth/token", data={"username": username, "password": password})
            assert resp.status_code == 200, resp.text
            self._tokens[username] = resp.json()["access_token"]
        return self._tokens[username]

    def staff(self, username: str) -> dict[str, str]:
        """Authorization headers of a staff user."""
        return {"Authorization": f"Bearer {self.token(username)}"}

    def post_message(self, body: dict, **headers) -> httpx.Response:
        """POST /api/v1/messages as the demo portal."""
        return self.http.post("/api/v1/messages", json=body, headers={**API_KEY, **headers})

    def incidents_of(self, message_id: str, user: str = "analyst") -> list[dict]:
        """Incidents holding a message."""
        resp = self.http.get("/api/v1/incidents", params={"message_id": message_id}, headers=self.staff(user))
        assert resp.status_code == 200, resp.text
        return resp.json()["items"]

    def log_errors(self) -> str:
        """ERROR lines of every process's log (shown when a test failed)."""
        out = []
        for f in sorted((self.platform.log_dir or Path()).glob("*.log")):
            lines = [ln for ln in f.read_text(errors="replace").splitlines() if '"ERROR"' in ln]
            if lines:
                out.append(f"--- {f.name}\n" + "\n".join(lines[-20:]))
        return "\n".join(out)


@pytest.fixture(scope="session")
def platform(tmp_path_factory, backend) -> Iterator[RunningPlatform]:
    """The gateway and four services as separate processes on free ports, on the backend under test."""
    var = tmp_path_factory.mktemp("platform")
    p = Platform(
        ports=free_ports(ALL),
        var_dir=var,
        pg_url=PG_URL if backend == "postgres" else None,
        db_prefix=f"mstest_{os.getpid()}_{secrets.token_hex(3)}",
        log_dir=var / "logs",
        extra_env={
            "MINSHENG_MODE": "demo",
            "GATEWAY_MAX_BODY_BYTES": str(2 * 1024 * 1024),
            # Every test calls from 127.0.0.1 and polls: the limits are tested on their own gateways.
            **{f"GATEWAY_RATE_LIMIT_{s}": "1000000/minute" for s in ("PER_ADDRESS", "PER_STAFF", "SIGN_IN")},
        },
    )
    p.prepare()
    running = RunningPlatform(p)
    try:
        p.start_all()
        yield running
    finally:
        running.http.close()
        p.stop_all()
        if _failed["any"]:
            errors = running.log_errors()
            if errors:
                print(f"\nERROR lines from the platform's logs ({p.log_dir}):\n{errors}")
        p.drop_databases()


@pytest.fixture
def databases(tmp_path, backend) -> Iterator[Databases]:
    """Fresh databases on the backend under test, dropped afterwards."""
    dbs = Databases(backend, tmp_path)
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture
def service_app(databases, tmp_path):
    """Start one service (or the gateway) in-process on a fresh, migrated database: make(name, **settings)."""
    clients: list[TestClient] = []
    servers: list[ServerThread] = []

    def make(name: str, *, serve: bool = False, **overrides):
        """A TestClient, or with serve=True a started ServerThread (real HTTP, the app's own loop)."""
        url = databases.url(name)
        upgrade(migrations_dir(name), url)
        module, cls = _SETTINGS_CLASS[name]
        settings_cls = getattr(import_module(module), cls)
        settings = settings_cls(database_url=url, var_dir=tmp_path, log_json=False, **overrides)
        app = import_module(app_module(name)).create_app(settings)
        if serve:
            server = ServerThread(app).__enter__()
            servers.append(server)
            return server
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in reversed(clients):
        c.__exit__(None, None, None)
    for s in servers:
        s.__exit__(None, None, None)
