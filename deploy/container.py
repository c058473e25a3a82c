"""What a container runs: `python -m deploy.container serve|migrate|healthcheck <process>`.

serve        run one process (uvicorn, the app factory) on 0.0.0.0 and <PROCESS>_PORT
migrate      the release's migration step for one process (creates its PostgreSQL database when
             MINSHENG_PG_URL is set, then `alembic upgrade head`); safe to run again
healthcheck  exit 0 when the process in this container answers /readyz (or /livez with --live)
"""

import argparse
import os
import sys
import urllib.error
import urllib.request

from deploy.launcher import ALL, DEFAULT_PORTS, app_module
from kit.http import HTTP_PROTOCOL, SERVER_KEEPALIVE_SECONDS


def port_of(name: str) -> int:
    """The port a process listens on in its container."""
    return int(os.environ.get(f"{name.upper()}_PORT", DEFAULT_PORTS[name]))


def serve_command(name: str) -> list[str]:
    """The uvicorn command line of a process (one worker: scale with replicas)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{app_module(name)}:create_app",
        "--factory",
        "--host",
        os.environ.get("MINSHENG_BIND", "0.0.0.0"),
        "--port",
        str(port_of(name)),
        "--no-access-log",
        "--no-server-header",
        "--timeout-graceful-shutdown",
        os.environ.get("MINSHENG_GRACEFUL_SECONDS", "20"),
        "--timeout-keep-alive",  # longer than clients keep idle connections (kit.http)
        str(SERVER_KEEPALIVE_SECONDS),
        "--loop",
        "uvloop",
        "--http",
        HTTP_PROTOCOL,
    ]


def healthcheck(name: str, live: bool) -> int:
    """0 when the local process answers its probe with 200."""
    url = f"http://127.0.0.1:{port_of(name)}/{'livez' if live else 'readyz'}"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the container images."""
    parser = argparse.ArgumentParser(prog="deploy.container", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["serve", "migrate", "healthcheck"])
    parser.add_argument("process", nargs="?", default=os.environ.get("MINSHENG_PROCESS"), choices=ALL)
    parser.add_argument("--live", action="store_true", help="healthcheck: liveness instead of readiness")
    args = parser.parse_args(argv)
    if args.process is None:
        parser.error("name the process (or set MINSHENG_PROCESS)")
    if args.command == "serve":
        cmd = serve_command(args.process)
        os.execv(cmd[0], cmd)  # noqa: S606 — exec: uvicorn becomes PID 1 and gets SIGTERM itself
    if args.command == "migrate":
        from deploy.launcher import main as launcher

        return launcher(["migrate", args.process])
    return healthcheck(args.process, args.live)


if __name__ == "__main__":
    sys.exit(main())
