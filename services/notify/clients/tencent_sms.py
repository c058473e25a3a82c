"""Tencent Cloud SMS: SendSms, API 3.0 (version 2021-01-11), signed with TC3-HMAC-SHA256."""

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from services.notify.clients.base import (
    Message,
    Outcome,
    e164_cn,
    http_status_outcome,
    provider_timeout,
    transport_outcome,
)

ACTION = "SendSms"
VERSION = "2021-01-11"
SERVICE = "sms"
CONTENT_TYPE = "application/json; charset=utf-8"

_PROVIDER_DOWN = (
    "AuthFailure",
    "UnauthorizedOperation",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "UnsupportedOperation",
)
_PERMANENT = (
    "InvalidParameterValue.IncorrectPhoneNumber",
    "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberOnBlacklist",
    "InvalidParameterValue.ContentLengthLimit",
    "FailedOperation.ContainSensitiveWord",
)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def canonical_request_hash(host: str, body: bytes, content_type: str = CONTENT_TYPE) -> str:
    """hex(sha256(CanonicalRequest)) of a POST to / with the signed headers content-type and host."""
    canonical = (
        "POST\n/\n\n"
        f"content-type:{content_type}\nhost:{host}\n\n"
        "content-type;host\n" + hashlib.sha256(body).hexdigest()
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def tc3_signature(
    secret_key: str,
    host: str,
    timestamp: int,
    body: bytes,
    *,
    service: str = SERVICE,
    content_type: str = CONTENT_TYPE,
) -> tuple[str, str]:
    """(date, hex signature) of a request, as TC3-HMAC-SHA256 computes it."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{day}/{service}/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{canonical_request_hash(host, body, content_type)}"
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), day)
    k_service = hmac.new(k_date, service.encode(), hashlib.sha256).digest()
    k_signing = hmac.new(k_service, b"tc3_request", hashlib.sha256).digest()
    return day, hmac.new(k_signing, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str, secret_key: str, host: str, timestamp: int, body: bytes, service: str = SERVICE
) -> str:
    """The Authorization header of a request."""
    day, sig = tc3_signature(secret_key, host, timestamp, body, service=service)
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{day}/{service}/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={sig}"
    )


def classify(code: str) -> str:
    """The verdict for a Tencent error code."""
    if code == "RequestLimitExceeded" or code.startswith("InternalError"):
        return "retry"
    if code.startswith("LimitExceeded"):
        return "throttled"
    if any(code == p or code.startswith(p + ".") for p in _PROVIDER_DOWN):
        return "provider_down"
    if code in _PERMANENT:
        return "permanent"
    return "permanent"


class TencentSms:
    """SMS through Tencent Cloud."""

    name = "tencent"
    channel = "sms"

    def __init__(self, settings, http: httpx.AsyncClient):
        self.s = settings
        self.http = http
        self.now = time.time  # the signature's timestamp (wall clock; a test may skew it)

    @property
    def configured(self) -> bool:
        """Secret id, key and SDK app id are set."""
        return bool(self.s.tencent_secret_id and self.s.tencent_secret_key and self.s.tencent_sms_app_id)

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """The account-wide request rate."""
        return [(self.s.tencent_rate, "tencent")]

    def body(self, msg: Message) -> bytes:
        """The exact bytes sent (and signed)."""
        tpl = msg.template
        payload = {
            "PhoneNumberSet": [e164_cn(msg.address)],
            "SmsSdkAppId": self.s.tencent_sms_app_id,
            "SignName": msg.sign,
            "TemplateId": tpl.tencent_template_id if tpl else "",
            "TemplateParamSet": [msg.params.get(p, "") for p in (tpl.params if tpl else ())],
            "SessionContext": msg.delivery_id,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    async def send(self, msg: Message) -> Outcome:
        """SendSms for one number."""
        if msg.template is None or not msg.template.tencent_template_id:
            return Outcome("provider_down", code="no_template", detail="no Tencent template for this event")
        url = self.s.tencent_sms_url
        host = urlsplit(url).netloc
        body = self.body(msg)
        ts = int(self.now())
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": host,
            "X-TC-Action": ACTION,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(ts),
            "X-TC-Region": self.s.tencent_region,
            "Authorization": authorization(
                self.s.tencent_secret_id, self.s.tencent_secret_key, host, ts, body
            ),
        }
        try:
            resp = await self.http.post(url, content=body, headers=headers, timeout=provider_timeout(self.s))
        except httpx.HTTPError as exc:
            return transport_outcome(exc)
        try:
            data = resp.json()["Response"]
        except (ValueError, KeyError, TypeError):
            return http_status_outcome(resp) or Outcome(
                "retry", code=f"http_{resp.status_code}", detail="unreadable answer"
            )
        if "Error" in data:
            code = str(data["Error"].get("Code", "Unknown"))
            return Outcome(classify(code), code=code, detail=str(data["Error"].get("Message", ""))[:300])
        status = (data.get("SendStatusSet") or [{}])[0]
        code = str(status.get("Code", "Unknown"))
        if code == "Ok":
            return Outcome("ok", code="Ok", message_id=status.get("SerialNo"))
        return Outcome(classify(code), code=code, detail=str(status.get("Message", ""))[:300])
