"""Helpers for tests: waiting, message payloads, signed internal calls, free ports."""

import json
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from kit.security import SIGNATURE_HEADER, sign_request

DEMO_SECRET = "demo-service-secret-not-for-production"
API_KEY = {"X-API-Key": "demo-portal-key"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(names) -> dict[str, int]:
    """A free port for each name, all different: the sockets are held until every port is chosen (one
    port after another, the kernel may hand out a port it just released, and two processes collide)."""
    held = []
    try:
        for _ in names:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
        return {n: s.getsockname()[1] for n, s in zip(names, held, strict=True)}
    finally:
        for s in held:
            s.close()


def wait_until(
    check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.05, what: str = "condition"
):
    """Poll until check() returns something truthy; return it, or fail after the timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def message(**overrides) -> dict[str, Any]:
    """A valid portal message with a unique external id."""
    body = {
        "channel": "portal",
        "external_id": f"t-{uuid.uuid4()}",
        "title": "A5区洞井街道小区停水三天",
        "content": "A5区洞井街道某小区已经停水三天，物业不管，居民生活困难，请有关部门尽快处理。",
    }
    body.update(overrides)
    # Each channel's required fields (deploy/bundles/a-city/intake.yaml), unless the test gives its own.
    for key, value in _CHANNEL_FIELDS.get(body["channel"], {}).items():
        body.setdefault(key, value() if callable(value) else value)
    return body


_ONLINE_FIELDS = {
    "source_url": lambda: f"https://media.example/item/{uuid.uuid4()}",
    "published_at": lambda: time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    "source_name": "某网络媒体",
    "metrics": {"views": 100, "reposts": 1, "comments": 1, "likes": 1},
}
_CHANNEL_FIELDS: dict[str, dict[str, Any]] = {
    "hotline": {"request_type": "complaint"},
    "weibo": _ONLINE_FIELDS,
    "wechat": _ONLINE_FIELDS,
    "douyin": _ONLINE_FIELDS,
    "forum": _ONLINE_FIELDS,
    "news": _ONLINE_FIELDS,
    "superior": {"superior": {"issuer": "西地省人民政府办公厅", "doc_no": "西政办函〔2026〕1号"}},
    "grid": {"location": {"text": "A5区洞井街道"}},
}


def signed(method: str, url: str, *, body: Any = None, secret: str = DEMO_SECRET, **kw) -> httpx.Response:
    """An internal call signed with the service secret."""
    content = json.dumps(body).encode() if body is not None else b""
    path = httpx.URL(url).raw_path.decode()
    headers = {
        SIGNATURE_HEADER: sign_request(secret, method, path, content),
        "content-type": "application/json",
    }
    return httpx.request(method, url, content=content, headers=headers, trust_env=False, **kw)


class ServerThread:
    """Run an ASGI app with uvicorn in a background thread on a free loopback port (fakes, upstreams)."""

    def __init__(self, app, port: int | None = None, lifespan: str = "on"):
        import threading

        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from kit.httpserver import HttpToolsProtocol

        # The services' own HTTP protocol (kit.httpserver), so the suite runs through it as production does.
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan=lifespan,
            http=HttpToolsProtocol,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        wait_until(lambda: self.server.started, timeout=10, what="fake server start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
