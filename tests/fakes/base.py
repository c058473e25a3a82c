"""What every fake provider shares: a script of answers to give, and a record of what it received."""

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.support import ServerThread


@dataclass
class Received:
    """One request the fake accepted as genuine (signature, token and timestamp checked)."""

    at: float  # time.time() when it arrived
    kind: str  # what it was: "sms", "token", "message", "robot", "mail" …
    to: list[str]
    body: dict[str, Any]
    answer: str  # the behaviour it answered with


@dataclass
class Fake:
    """Scripted behaviour and the log of a fake; thread-safe (the server runs in its own thread).

    Behaviours: "ok"; "rate_limit"; "auth_failure"; "internal_error"; "timeout" (answers after
    `timeout_seconds`, the message having gone through); "bad_number" (permanent for that number);
    "partial" (a multi-recipient request succeeds for some only); "expire_token" (WeCom: the next
    message finds its token expired); "http_500". `script` answers once each, in order; `default`
    answers after that; `always_fail` lists addresses that always fail permanently.
    """

    name: str
    default: str = "ok"
    timeout_seconds: float = 2.0
    always_fail: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    windows: dict[str, Any] = field(default_factory=dict)  # rate-limit windows, by robot
    _script: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *behaviours: str) -> "Fake":
        """Answer the next requests with these behaviours, once each."""
        with self._lock:
            self._script.extend(behaviours)
        return self

    def next_behaviour(self) -> str:
        """The behaviour for the request now arriving."""
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def record(self, kind: str, to: list[str], body: dict[str, Any], answer: str) -> None:
        """Log a genuine request."""
        with self._lock:
            self.received.append(Received(time.time(), kind, list(to), body, answer))

    def reject(self, reason: str, **info: Any) -> None:
        """Log a request refused at the door (bad signature, token, timestamp)."""
        with self._lock:
            self.rejected.append({"at": time.time(), "reason": reason, **info})

    def of_kind(self, kind: str) -> list[Received]:
        """Genuine requests of one kind."""
        with self._lock:
            return [r for r in self.received if r.kind == kind]

    def reset(self) -> None:
        """Forget what was received and scripted; back to answering ok."""
        with self._lock:
            self.received.clear()
            self.rejected.clear()
            self._script.clear()
            self.always_fail.clear()
            self.windows.clear()
            self.default = "ok"


class FakeServer:
    """A fake provider app on a loopback port (uvicorn in a thread, via tests.support.ServerThread)."""

    def __init__(self, app, fake: Fake):
        self.app = app
        self.fake = fake
        self._server: ServerThread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        assert self._server is not None, "start the fake first"
        return self._server.url

    def start(self) -> "FakeServer":
        """Listen."""
        self._server = ServerThread(self.app, lifespan="off").__enter__()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
