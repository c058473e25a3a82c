"""Fake WeCom (企业微信): gettoken, message/send (application messages) and webhook/send (group robots).

Tokens are issued for the known corp id and secret and expire after `expires_in`; a message with an
unknown token is refused with 40014, an expired one with 42001. Members not in `members` come back
in `invaliduser` (81013 when none is valid). Each robot key may send `robot_per_minute` messages a
minute, then 45009; an unknown key is 93000. Errors are HTTP 200 with an errcode, as WeCom does.
"""

import asyncio
import secrets
import threading
import time
from collections import deque

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.base import Fake, FakeServer


def make_app(
    fake: Fake,
    *,
    corp_id: str,
    corp_secret: str,
    agent_id: int,
    robot_keys: set[str],
    members: set[str] | None,
    expires_in: int,
    robot_per_minute: int,
) -> FastAPI:
    """The fake's app."""
    app = FastAPI()
    tokens: dict[str, float] = {}
    robot_hits = fake.windows
    lock = threading.Lock()
    app.state.tokens = tokens
    app.state.token_calls = 0

    def err(code: int, msg: str, **extra):
        return JSONResponse({"errcode": code, "errmsg": msg, **extra})

    @app.get("/cgi-bin/gettoken")
    async def gettoken(corpid: str = "", corpsecret: str = ""):
        app.state.token_calls += 1
        if corpid != corp_id:
            fake.reject("corpid")
            return err(40013, "invalid corpid")
        if corpsecret != corp_secret:
            fake.reject("corpsecret")
            return err(40001, "invalid credential")
        token = secrets.token_urlsafe(24)
        with lock:
            tokens[token] = time.monotonic() + expires_in
        fake.record("token", [], {}, "ok")
        return JSONResponse({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in})

    @app.post("/cgi-bin/message/send")
    async def message_send(request: Request, access_token: str = ""):
        with lock:
            expiry = tokens.get(access_token)
        if expiry is None:
            fake.reject("token")
            return err(40014, "invalid access_token")
        if time.monotonic() >= expiry:
            fake.reject("token_expired")
            return err(42001, "access_token expired")
        data = await request.json()
        if data.get("agentid") != agent_id:
            return err(40056, "invalid agentid")
        users = [u for u in str(data.get("touser", "")).split("|") if u]
        behaviour = fake.next_behaviour()
        if behaviour == "expire_token":
            with lock:
                tokens[access_token] = 0.0
            fake.reject("token_expired")
            return err(42001, "access_token expired")
        fake.record("message", users, data, behaviour)
        if behaviour == "timeout":
            await asyncio.sleep(fake.timeout_seconds)
            behaviour = "ok"
        if behaviour == "rate_limit":
            return err(45009, "api freq out of limit")
        if behaviour == "internal_error":
            return err(-1, "system busy")
        if behaviour == "auth_failure":
            return err(60020, "not allow to access from your ip")
        invalid = [u for u in users if (members is not None and u not in members) or u in fake.always_fail]
        if behaviour == "partial":
            invalid += [u for u in users[1::2] if u not in invalid]
        if behaviour == "bad_number":
            invalid = users
        if users and len(invalid) == len(users):
            return err(81013, "user & party & tag all invalid", invaliduser="|".join(invalid))
        return JSONResponse(
            {"errcode": 0, "errmsg": "ok", "invaliduser": "|".join(invalid), "msgid": secrets.token_hex(12)}
        )

    @app.post("/cgi-bin/webhook/send")
    async def webhook(request: Request, key: str = ""):
        if key not in robot_keys:
            fake.reject("robot_key")
            return err(93000, "invalid webhook url")
        data = await request.json()
        now = time.monotonic()
        with lock:
            hits = robot_hits.setdefault(key, deque())
            while hits and now - hits[0] > 60:
                hits.popleft()
            over = len(hits) >= robot_per_minute
            if not over:
                hits.append(now)
        behaviour = "rate_limit" if over else fake.next_behaviour()
        fake.record("robot", [key], data, behaviour)
        if behaviour == "rate_limit":
            return err(45009, "api freq out of limit")
        if behaviour == "internal_error":
            return err(-1, "system busy")
        content = (data.get("text") or data.get("markdown") or {}).get("content", "")
        if len(content.encode()) > 4096:
            return err(40058, "content exceeds max length")
        return err(0, "ok")

    return app


def server(
    *,
    corp_id: str = "wwfakecorp",
    corp_secret: str = "wecom-fake-corp-secret",
    agent_id: int = 1000002,
    robot_keys: dict[str, str] | None = None,
    members: set[str] | None = None,
    expires_in: int = 7200,
    robot_per_minute: int = 20,
):
    """A fake WeCom server (not yet started) and its control."""
    fake = Fake("wecom")
    robot_keys = (
        robot_keys
        if robot_keys is not None
        else {"leading-group": "robot-key-leading", "duty": "robot-key-duty"}
    )
    app = make_app(
        fake,
        corp_id=corp_id,
        corp_secret=corp_secret,
        agent_id=agent_id,
        robot_keys=set(robot_keys.values()),
        members=members,
        expires_in=expires_in,
        robot_per_minute=robot_per_minute,
    )
    s = FakeServer(app, fake)
    s.credentials = {
        "corp_id": corp_id,
        "corp_secret": corp_secret,
        "agent_id": agent_id,
        "robot_keys": robot_keys,
    }
    return s
