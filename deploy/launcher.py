"""Local launcher: prepare databases, migrate, and run the gateway and the four services.

    python -m deploy.launcher run        # what `make run` does
    python -m deploy.launcher migrate    # the pre-start migration step alone

Ports come from GATEWAY_PORT, INTAKE_PORT, GRADING_PORT, NOTIFY_PORT, ARCHIVE_PORT (defaults 8000–8004).
Databases: SQLite files under var/ by default; set MINSHENG_PG_URL (e.g.
postgresql+asyncpg://postgres@127.0.0.1:5432) for one PostgreSQL database per service
(MINSHENG_DB_PREFIX, default `minsheng`, names them), or a service's own <SERVICE>_DATABASE_URL.
The same `Platform` class starts throw-away platforms for the end-to-end tests and benchmarks.
"""

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

import httpx

from kit.http import HTTP_PROTOCOL, SERVER_KEEPALIVE_SECONDS

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("intake", "grading", "notify", "archive")
ALL = (*SERVICES, "gateway")
DEFAULT_PORTS = {"gateway": 8000, "intake": 8001, "grading": 8002, "notify": 8003, "archive": 8004}


def app_module(name: str) -> str:
    """The module holding a process's create_app."""
    return "gateway.main" if name == "gateway" else f"services.{name}.main"


def migrations_dir(name: str) -> Path:
    """A process's Alembic folder."""
    return REPO / ("gateway" if name == "gateway" else f"services/{name}") / "migrations"


@dataclass
class Platform:
    """A set of Minsheng processes sharing one environment."""

    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    var_dir: Path = REPO / "var"
    pg_url: str | None = None
    db_prefix: str = "minsheng"
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None  # None: children write to this terminal
    host: str = "127.0.0.1"
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, name: str) -> str:
        """Base URL of a process."""
        return f"http://{self.host}:{self.ports[name]}"

    def database_url(self, name: str) -> str:
        """The database a process uses."""
        explicit = os.environ.get(f"{name.upper()}_DATABASE_URL") or self.extra_env.get(
            f"{name.upper()}_DATABASE_URL"
        )
        if explicit:
            return explicit
        if self.pg_url:
            return f"{self.pg_url.rstrip('/')}/{self.db_prefix}_{name}"
        return f"sqlite+aiosqlite:///{self.var_dir / (name + '.db')}"

    def env(self) -> dict[str, str]:
        """The environment every child gets."""
        env = dict(os.environ)
        env.update(
            {
                "MINSHENG_VAR_DIR": str(self.var_dir),
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name in SERVICES:
            env[f"MINSHENG_{name.upper()}_URL"] = self.url(name)
        for name in ALL:
            env[f"{name.upper()}_PORT"] = str(self.ports[name])
            env[f"{name.upper()}_DATABASE_URL"] = self.database_url(name)
        env.update(self.extra_env)
        return env

    def prepare(self, names=ALL) -> None:
        """Create the PostgreSQL databases if needed and migrate every process's database to head."""
        from kit.migrate import upgrade

        if self.pg_url:
            asyncio.run(self._create_databases(names))
        self.var_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            upgrade(migrations_dir(name), self.database_url(name))

    async def _create_databases(self, names) -> None:
        import asyncpg

        dsn = self.pg_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn + "/postgres")
        try:
            for name in names:
                db = f"{self.db_prefix}_{name}"
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db)
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{db}"')
        finally:
            await conn.close()

    async def _drop_databases(self) -> None:
        import asyncpg

        dsn = self.pg_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn + "/postgres")
        try:
            for name in ALL:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.db_prefix}_{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def drop_databases(self) -> None:
        """Drop this platform's PostgreSQL databases (test platforms clean up after themselves)."""
        if self.pg_url:
            asyncio.run(self._drop_databases())

    def start(self, name: str) -> subprocess.Popen:
        """Start one process (uvicorn with the app factory)."""
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            f"{app_module(name)}:create_app",
            "--factory",
            "--host",
            self.host,
            "--port",
            str(self.ports[name]),
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
            "--timeout-keep-alive",  # longer than clients keep idle connections (kit.http)
            str(SERVER_KEEPALIVE_SECONDS),
            "--loop",
            "uvloop",
            "--http",
            HTTP_PROTOCOL,
        ]
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 — lives as long as the child
        proc = subprocess.Popen(  # noqa: S603 — our own interpreter and module
            cmd, cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT if out else None
        )
        self.procs[name] = proc
        return proc

    def wait_ready(self, names=ALL, timeout: float = 60.0) -> None:
        """Block until each process answers its readiness probe."""
        deadline = time.monotonic() + timeout
        pending = list(names)
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while pending:
                name = pending[0]
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
                # The gateway's /readyz also waits until it has asked every service for its routes.
                probe = "/readyz"
                try:
                    resp = client.get(self.url(name) + probe)
                    if resp.status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not become ready within {timeout:.0f}s")
                time.sleep(0.1)

    def start_all(self, names=ALL) -> None:
        """Start every process and wait until all are ready."""
        for name in names:
            self.start(name)
        self.wait_ready(names)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop one process (SIGKILL when it does not go in time)."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        """Stop every process, gateway first."""
        for name in reversed(list(self.procs)):
            self.stop(name)

    def __enter__(self) -> "Platform":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def _ports_from_env() -> dict[str, int]:
    return {n: int(os.environ.get(f"{n.upper()}_PORT", p)) for n, p in DEFAULT_PORTS.items()}


def _platform_from_env() -> Platform:
    return Platform(
        ports=_ports_from_env(),
        var_dir=Path(os.environ.get("MINSHENG_VAR_DIR", REPO / "var")),
        pg_url=os.environ.get("MINSHENG_PG_URL"),
        db_prefix=os.environ.get("MINSHENG_DB_PREFIX", "minsheng"),
    )


BANNER = """
民声 Minsheng is running (mode: {mode}).
  gateway   {gateway}      (API docs: {gateway}/docs, health: {gateway}/healthz)
  intake    {intake}
  grading   {grading}
  notify    {notify}
  archive   {archive}
Demo credentials: API key `demo-portal-key`; staff clerk / analyst / leader / supervisor / archivist / admin
and one user per unit (e.g. a5-education), all with password `demo`.
Press Ctrl-C to stop.
"""


# --- grading's prepare hook (issue 4) -----------------------------------------------------------------
def prepare_grading_models(platform: Platform) -> None:
    """Train grading's category and routing models into var/models/ when missing and ../shared/data is
    there (they embed that data, so they are built here, never committed); otherwise grading starts cold."""
    subprocess.run(
        [sys.executable, "-m", "services.grading.cli", "prepare"], cwd=REPO, env=platform.env(), check=False
    )


# --- end of grading's hook ----------------------------------------------------------------------------


def cmd_run(_args) -> int:
    """Migrate, start everything, keep it running, restart what crashes; Ctrl-C stops all."""
    platform = _platform_from_env()
    for name in ALL:
        import_module(app_module(name))  # fail fast on an import error, before anything starts
    platform.prepare()
    prepare_grading_models(platform)
    stopping = False

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    # Ctrl-C too, by a handler: a launcher started in the background inherits SIGINT ignored (so no
    # KeyboardInterrupt), and the services, which Ctrl-C stops as well, must not be restarted.
    signal.signal(signal.SIGINT, _stop)
    try:
        platform.start_all()
        print(
            BANNER.format(mode=os.environ.get("MINSHENG_MODE", "demo"), **{n: platform.url(n) for n in ALL}),
            flush=True,
        )
        restarts: dict[str, list[float]] = {}
        while not stopping:
            time.sleep(0.5)
            if stopping:  # the signal came during the sleep: what exited was told to
                break
            for name, proc in list(platform.procs.items()):
                if proc.poll() is None:
                    continue
                recent = [t for t in restarts.get(name, []) if time.monotonic() - t < 60]
                if len(recent) >= 5:
                    print(f"{name} keeps crashing (exit {proc.returncode}); stopping", file=sys.stderr)
                    return 1
                print(f"{name} exited with {proc.returncode}; restarting", file=sys.stderr)
                restarts[name] = [*recent, time.monotonic()]
                platform.start(name)
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            platform.stop_all()
    return 0


def cmd_migrate(args) -> int:
    """Run the migration step for the named processes (all by default)."""
    unknown = set(args.names) - set(ALL)
    if unknown:
        print(f"unknown: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    _platform_from_env().prepare(tuple(args.names) or ALL)
    print("migrated:", ", ".join(args.names or ALL))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m deploy.launcher` and the `minsheng` command."""
    parser = argparse.ArgumentParser(prog="minsheng", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="migrate and run the whole platform").set_defaults(fn=cmd_run)
    mig = sub.add_parser("migrate", help="run migrations only")
    mig.add_argument("names", nargs="*", help=f"any of {', '.join(ALL)}; all when none")
    mig.set_defaults(fn=cmd_migrate)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
