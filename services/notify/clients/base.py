"""What every provider adapter shares: the message handed to it, the verdict it returns, scrubbing."""

import logging
from dataclasses import dataclass, field
from typing import Literal, Protocol

import httpx

from services.notify.policy import Template

log = logging.getLogger("minsheng.notify.providers")

# ok: accepted · retry: transient, try again (or another provider) · throttled: the provider limits us
# · permanent: this message cannot be delivered (bad number, unknown user) · provider_down: the provider
# refuses us (credentials, balance, unapproved template) · unknown: sent but no answer (timeout).
Verdict = Literal["ok", "retry", "throttled", "permanent", "provider_down", "unknown"]


@dataclass
class Message:
    """One delivery as a provider sees it."""

    delivery_id: str
    channel: str
    address: str
    text: str
    subject: str = ""
    template: Template | None = None
    params: dict[str, str] = field(default_factory=dict)
    sign: str = ""
    recipient_name: str = ""
    mention_phones: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What a provider answered."""

    verdict: Verdict
    code: str | None = None
    detail: str | None = None
    message_id: str | None = None
    delivered: bool = False  # the channel hands the message straight to the person (no receipt to wait for)
    pause_key: str | None = None  # what to leave alone when throttled or down (a provider, or one robot)


class Provider(Protocol):
    """A provider adapter."""

    name: str
    channel: str

    @property
    def configured(self) -> bool:
        """True when the credentials it needs are set."""

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """(rule, key) limits this message counts against, e.g. ("20/minute", "robot:duty")."""

    async def send(self, msg: Message) -> Outcome:
        """Send one message; never raises for what the provider or the network does."""


def provider_timeout(s) -> httpx.Timeout:
    """The timeouts of one provider call: connect, then read/write/pool."""
    return httpx.Timeout(s.provider_timeout_seconds, connect=s.provider_connect_timeout_seconds)


def transport_outcome(exc: Exception) -> Outcome:
    """The verdict for a network failure: never reached the provider → retry; reached, no answer → unknown."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Outcome("retry", code="connect_error", detail=type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        return Outcome(
            "unknown", code="timeout", detail=f"{type(exc).__name__}: no answer; the message may have gone"
        )
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return Outcome("unknown", code="connection_lost", detail=type(exc).__name__)
    return Outcome("retry", code="transport_error", detail=type(exc).__name__)


def http_status_outcome(resp: httpx.Response) -> Outcome | None:
    """A verdict for a non-200 answer that carries no provider error body (gateways, overload)."""
    if resp.status_code == 429:
        return Outcome("throttled", code="http_429")
    if resp.status_code >= 500:
        return Outcome("retry", code=f"http_{resp.status_code}")
    return None


def e164_cn(phone: str) -> str:
    """A mainland number as +86…; numbers already with a + stay as they are."""
    p = phone.strip().replace(" ", "").replace("-", "")
    return p if p.startswith("+") else f"+86{p}"


async def post_for_errcode(
    http: httpx.AsyncClient,
    url: str,
    *,
    body: dict,
    wait: httpx.Timeout,
    classify,
    pause_key: str,
    params=None,
) -> Outcome:
    """POST a JSON body to a robot webhook that answers {"errcode", "errmsg"} (WeCom, DingTalk)."""
    try:
        resp = await http.post(url, params=params, json=body, timeout=wait)
        data = resp.json()
    except httpx.HTTPError as exc:
        return transport_outcome(exc)
    except ValueError:
        return http_status_outcome(resp) or Outcome("retry", code=f"http_{resp.status_code}")
    errcode = int(data.get("errcode", -1))
    if errcode == 0:
        return Outcome("ok", code="0", delivered=True)
    detail = str(data.get("errmsg", ""))[:300]
    return Outcome(classify(errcode), code=str(errcode), detail=detail, pause_key=pause_key)
