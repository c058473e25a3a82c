"""WeCom (企业微信): application messages (with a cached access token) and group robots."""

import asyncio
import time

import httpx

from services.notify.clients.base import (
    Message,
    Outcome,
    http_status_outcome,
    post_for_errcode,
    provider_timeout,
    transport_outcome,
)

TOKEN_INVALID = {40014, 42001}  # invalid / expired access_token: fetch a new one and try once more
_THROTTLED = {45009, 45033, 45047}
_RETRY = {-1}
_PROVIDER_DOWN = {40001, 40013, 40056, 40082, 48002, 60020, 60011, 301002, 93000, 93004}
ROBOT_MAX_BYTES = 2048


def _clip_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"


def classify(errcode: int) -> str:
    """The verdict for a WeCom errcode."""
    if errcode in _THROTTLED:
        return "throttled"
    if errcode in _RETRY:
        return "retry"
    if errcode in _PROVIDER_DOWN:
        return "provider_down"
    return "permanent"


class WeComApp:
    """Application messages to members (touser), with the access token cached and refreshed early."""

    name = "wecom_app"
    channel = "wecom_app"

    def __init__(self, settings, http: httpx.AsyncClient):
        self.s = settings
        self.http = http
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.token_fetches = 0

    @property
    def configured(self) -> bool:
        """Corp id, application secret and agent id are set."""
        return bool(self.s.wecom_corp_id and self.s.wecom_corp_secret and self.s.wecom_agent_id is not None)

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """Per application, and per member (WeCom caps messages to one member per minute and hour)."""
        return [(self.s.wecom_rate, "wecom_app"), (self.s.wecom_user_rate, f"wecom_user:{msg.address}")]

    async def _get_token(self, *, stale: str | None = None) -> str | Outcome:
        async with self._lock:
            if self._token and self._token != stale and time.monotonic() < self._expires:
                return self._token
            try:
                resp = await self.http.get(
                    f"{self.s.wecom_api_url}/cgi-bin/gettoken",
                    params={"corpid": self.s.wecom_corp_id, "corpsecret": self.s.wecom_corp_secret},
                    timeout=provider_timeout(self.s),
                )
                data = resp.json()
            except httpx.HTTPError as exc:
                out = transport_outcome(exc)
                return Outcome("retry", code=out.code, detail=f"gettoken: {out.detail}")
            except ValueError:
                return Outcome("retry", code=f"http_{resp.status_code}", detail="gettoken: unreadable answer")
            self.token_fetches += 1
            errcode = int(data.get("errcode", 0))
            if errcode != 0 or not data.get("access_token"):
                verdict = classify(errcode)
                return Outcome(
                    verdict if verdict != "permanent" else "provider_down",
                    code=str(errcode),
                    detail=f"gettoken: {str(data.get('errmsg', ''))[:200]}",
                )
            self._token = str(data["access_token"])
            ttl = float(data.get("expires_in", 7200))
            self._expires = time.monotonic() + max(60.0, ttl - self.s.wecom_token_refresh_margin_seconds)
            return self._token

    async def send(self, msg: Message) -> Outcome:
        """message/send to one member; on an invalid or expired token, refresh and try once more."""
        body = {
            "touser": msg.address,
            "msgtype": "text",
            "agentid": self.s.wecom_agent_id,
            "text": {"content": _clip_bytes(msg.text, ROBOT_MAX_BYTES)},
            "safe": 0,
        }
        stale = None
        for _ in range(2):
            token = await self._get_token(stale=stale)
            if isinstance(token, Outcome):
                return token
            try:
                resp = await self.http.post(
                    f"{self.s.wecom_api_url}/cgi-bin/message/send",
                    params={"access_token": token},
                    json=body,
                    timeout=provider_timeout(self.s),
                )
                data = resp.json()
            except httpx.HTTPError as exc:
                return transport_outcome(exc)
            except ValueError:
                return http_status_outcome(resp) or Outcome("retry", code=f"http_{resp.status_code}")
            errcode = int(data.get("errcode", -1))
            if errcode in TOKEN_INVALID:
                stale = token
                continue
            if errcode == 0:
                invalid = [u for u in str(data.get("invaliduser") or "").split("|") if u]
                if msg.address in invalid:
                    return Outcome("permanent", code="invaliduser", detail="WeCom does not know this member")
                return Outcome("ok", code="0", message_id=data.get("msgid"), delivered=True)
            return Outcome(classify(errcode), code=str(errcode), detail=str(data.get("errmsg", ""))[:300])
        return Outcome("retry", code=str(errcode), detail="access token refused twice")


class WeComRobot:
    """A group robot (webhook key per group); 20 messages a minute per robot."""

    name = "wecom_robot"
    channel = "wecom_robot"

    def __init__(self, settings, http: httpx.AsyncClient):
        self.s = settings
        self.http = http

    @property
    def configured(self) -> bool:
        """At least one robot key is set."""
        return bool(self.s.wecom_robot_keys)

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """Per robot."""
        return [(self.s.wecom_robot_rate, f"wecom_robot:{msg.address}")]

    async def send(self, msg: Message) -> Outcome:
        """webhook/send with a text message, @-mentioning by phone."""
        key = self.s.wecom_robot_keys.get(msg.address)
        pause = f"wecom_robot:{msg.address}"
        if not key:
            return Outcome(
                "provider_down", code="no_robot", detail=f"no key for robot {msg.address!r}", pause_key=pause
            )
        text = {"content": _clip_bytes(msg.text, ROBOT_MAX_BYTES)}
        if msg.mention_phones:
            text["mentioned_mobile_list"] = msg.mention_phones
        return await post_for_errcode(
            self.http,
            f"{self.s.wecom_api_url}/cgi-bin/webhook/send",
            params={"key": key},
            body={"msgtype": "text", "text": text},
            wait=provider_timeout(self.s),
            classify=classify,
            pause_key=pause,
        )
