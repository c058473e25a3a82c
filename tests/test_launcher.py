"""`make run`'s launcher: it brings the platform up on the embedded SQLite and Ctrl-C stops all of it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import free_ports

REPO = Path(__file__).resolve().parents[1]
NAMES = ("gateway", "intake", "grading", "notify", "archive")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.once
@pytest.mark.e2e
@pytest.mark.slow
def test_the_launcher_runs_the_platform_and_ctrl_c_stops_every_process(tmp_path):
    """Started as a background job is (SIGINT ignored, so no KeyboardInterrupt), the launcher still
    stops on the Ctrl-C its process group gets, and restarts none of the services that Ctrl-C ended."""
    ports = free_ports(NAMES)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINSHENG_", "GATEWAY_", "INTAKE_"))}
    env.update({f"{n.upper()}_PORT": str(p) for n, p in ports.items()})
    env.update(MINSHENG_VAR_DIR=str(tmp_path / "var"), MINSHENG_LOG_LEVEL="WARNING")
    log = tmp_path / "launcher.log"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "deploy.launcher", "run"],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as a terminal gives a command
        preexec_fn=_ignore_sigint,  # as a shell starts a background job
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert launcher.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{ports['gateway']}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the platform did not become healthy"
            time.sleep(0.5)
        services = psutil.Process(launcher.pid).children(recursive=True)
        assert len(services) >= len(NAMES)
        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
        assert launcher.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(services, timeout=15)
        assert alive == []
        output = log.read_text()
        assert "Press Ctrl-C to stop." in output and "restarting" not in output, output
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
