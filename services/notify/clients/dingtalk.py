"""DingTalk (钉钉) custom group robots, signed (加签): HMAC-SHA256 over "<timestamp ms>\\n<secret>"."""

import base64
import hashlib
import hmac
import time
from urllib.parse import quote_plus

import httpx

from services.notify.clients.base import Message, Outcome, post_for_errcode, provider_timeout

_THROTTLED = {130101, 410100}
_RETRY = {-1}
_PROVIDER_DOWN = {310000, 300001, 400102, 400101, 300005}


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query value (already URL-encoded, as DingTalk documents it)."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(mac).decode())


def classify(errcode: int) -> str:
    """The verdict for a DingTalk errcode."""
    if errcode in _THROTTLED:
        return "throttled"
    if errcode in _RETRY:
        return "retry"
    if errcode in _PROVIDER_DOWN:
        return "provider_down"
    return "permanent"


class DingTalkRobot:
    """A signed group robot per group; 20 messages a minute per robot."""

    name = "dingtalk"
    channel = "dingtalk"

    def __init__(self, settings, http: httpx.AsyncClient):
        self.s = settings
        self.http = http

    @property
    def configured(self) -> bool:
        """At least one robot is set."""
        return bool(self.s.dingtalk_robots)

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """Per robot."""
        return [(self.s.dingtalk_rate, f"dingtalk:{msg.address}")]

    async def send(self, msg: Message) -> Outcome:
        """robot/send with a text message, @-mentioning by phone."""
        robot = self.s.dingtalk_robots.get(msg.address)
        pause = f"dingtalk:{msg.address}"
        if robot is None:
            return Outcome(
                "provider_down", code="no_robot", detail=f"no robot {msg.address!r}", pause_key=pause
            )
        ts = int(time.time() * 1000)
        # The sign is URL-encoded already; build the query by hand so it is not encoded twice.
        token = quote_plus(robot.access_token)
        url = f"{self.s.dingtalk_url}?access_token={token}&timestamp={ts}&sign={sign(robot.secret, ts)}"
        body = {"msgtype": "text", "text": {"content": msg.text}}
        if msg.mention_phones:
            body["at"] = {"atMobiles": msg.mention_phones, "isAtAll": False}
        return await post_for_errcode(
            self.http,
            url,
            body=body,
            wait=provider_timeout(self.s),
            classify=classify,
            pause_key=pause,
        )
