"""A private, throw-away PostgreSQL cluster (initdb into a temp dir, a free port) that a test may stop
and restart at will without disturbing the shared server everyone else's tests use."""

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support import free_port


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


class PrivateCluster:
    """initdb, start, restart and remove one cluster; as the `postgres` OS user when we are root."""

    def __init__(self):
        self.bin = _bin_dir()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="minsheng-pg-"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the cluster (no database)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout, cwd=self.dir)

    def init(self) -> "PrivateCluster":
        """Create the cluster (trust auth on loopback; durability traded for speed: it is thrown away)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        (self.dir / "opts").write_text(opts)
        return self

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        opts = (self.dir / "opts").read_text()
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop (fast: disconnect everyone; immediate: like a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop fast and start again."""
        self.stop("fast")
        self.start()

    def remove(self) -> None:
        """Stop if running and delete everything."""
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
