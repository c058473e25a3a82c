"""Fake DingTalk custom robots (signed): checks access_token, the timestamp window and the sign.

sign = base64(HMAC-SHA256(secret, "<timestamp ms>\\n<secret>")), URL-encoded in the query; a
timestamp more than an hour off or a wrong sign is 310000, an unknown token 300001, more than
`per_minute` messages a minute 130101, as DingTalk answers (HTTP 200 with an errcode).
"""

import base64
import hashlib
import hmac
import threading
import time
from collections import deque

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.base import Fake, FakeServer


def make_app(fake: Fake, *, robots: dict[str, str], per_minute: int, window_ms: int = 3600_000) -> FastAPI:
    """The fake's app; robots maps access_token → secret."""
    app = FastAPI()
    hits = fake.windows
    lock = threading.Lock()

    def err(code: int, msg: str):
        return JSONResponse({"errcode": code, "errmsg": msg})

    @app.post("/robot/send")
    async def send(request: Request):
        q = request.query_params  # already URL-decoded, as DingTalk reads it
        token, ts, sign = q.get("access_token", ""), q.get("timestamp", ""), q.get("sign", "")
        secret = robots.get(token)
        if secret is None:
            fake.reject("token")
            return err(300001, "token is not exist")
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > window_ms:
            fake.reject("timestamp")
            return err(310000, "sign not match, more: [timestamp is invalid]")
        expected = base64.b64encode(
            hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
        )
        if not hmac.compare_digest(expected.decode(), sign):
            fake.reject("sign")
            return err(310000, "sign not match")
        data = await request.json()
        now = time.monotonic()
        with lock:
            h = hits.setdefault(token, deque())
            while h and now - h[0] > 60:
                h.popleft()
            over = len(h) >= per_minute
            if not over:
                h.append(now)
        behaviour = "rate_limit" if over else fake.next_behaviour()
        at = (data.get("at") or {}).get("atMobiles") or []
        fake.record("robot", at, data, behaviour)
        if behaviour == "rate_limit":
            return err(130101, "send too fast, exceed 20 times per minute")
        if behaviour == "internal_error":
            return err(-1, "system busy")
        if data.get("msgtype") not in ("text", "markdown", "link", "actionCard", "feedCard"):
            return err(40035, "invalid msgtype")
        return err(0, "ok")

    return app


def server(*, robots: dict[str, tuple[str, str]] | None = None, per_minute: int = 20):
    """A fake DingTalk server (not yet started); robots maps a name → (access_token, secret)."""
    fake = Fake("dingtalk")
    robots = (
        robots
        if robots is not None
        else {
            "leading-group": ("ding-token-leading", "SECding-secret-leading"),
            "duty": ("ding-token-duty", "SECding-secret-duty"),
        }
    )
    s = FakeServer(make_app(fake, robots=dict(robots.values()), per_minute=per_minute), fake)
    s.credentials = {"robots": robots}
    return s
