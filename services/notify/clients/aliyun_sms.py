"""Alibaba Cloud SMS: dysmsapi SendSms (version 2017-05-25), RPC signature v1 (HMAC-SHA1)."""

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from services.notify.clients.base import (
    Message,
    Outcome,
    http_status_outcome,
    provider_timeout,
    transport_outcome,
)

VERSION = "2017-05-25"

_THROTTLED = {
    "isv.BUSINESS_LIMIT_CONTROL",
    "isv.DAY_LIMIT_CONTROL",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
}
_RETRY = {
    "isp.SYSTEM_ERROR",
    "isp.GATEWAY_ERROR",
    "ServiceUnavailable",
    "InternalError",
    "isp.RAM_PERMISSION_DENY_TEMP",
}
_PERMANENT = {
    "isv.MOBILE_NUMBER_ILLEGAL",
    "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
    "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM",
}
# Anything else (credentials, signature, sign name, template, balance, service stopped) is ours to fix:
# the provider is down for us and the other one takes over.


def pe(value: str) -> str:
    """Percent-encoding of the RPC signature: RFC 3986 unreserved characters stay, the rest is encoded."""
    return quote(value, safe="~")


def canonical_query(params: dict[str, str]) -> str:
    """The sorted, encoded query string the signature covers."""
    return "&".join(f"{pe(k)}={pe(v)}" for k, v in sorted(params.items()))


def rpc_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """base64(HMAC-SHA1(secret + "&", METHOD&%2F&pe(canonical query)))."""
    to_sign = f"{method.upper()}&{pe('/')}&{pe(canonical_query(params))}"
    mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def classify(code: str) -> str:
    """The verdict for an Alibaba error code."""
    if code in _THROTTLED:
        return "throttled"
    if code in _RETRY:
        return "retry"
    if code in _PERMANENT:
        return "permanent"
    return "provider_down"


class AliyunSms:
    """SMS through Alibaba Cloud."""

    name = "aliyun"
    channel = "sms"

    def __init__(self, settings, http: httpx.AsyncClient):
        self.s = settings
        self.http = http

    @property
    def configured(self) -> bool:
        """The AccessKey pair is set."""
        return bool(self.s.aliyun_access_key_id and self.s.aliyun_access_key_secret)

    def rate_rules(self, msg: Message) -> list[tuple[str, str]]:
        """The account-wide request rate."""
        return [(self.s.aliyun_rate, "aliyun")]

    def params(
        self, msg: Message, *, now: datetime | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """Common and SendSms parameters, without the signature."""
        tpl = msg.template
        return {
            "AccessKeyId": self.s.aliyun_access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.s.aliyun_region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": VERSION,
            "PhoneNumbers": msg.address,
            "SignName": msg.sign,
            "TemplateCode": tpl.aliyun_template_code if tpl else "",
            "TemplateParam": json.dumps(
                {p: msg.params.get(p, "") for p in tpl.params} if tpl else {}, ensure_ascii=False
            ),
            # Alibaba's SendSms is not idempotent; OutId ties receipts back to the delivery.
            "OutId": msg.delivery_id,
        }

    async def send(self, msg: Message) -> Outcome:
        """SendSms for one number, as a signed form POST."""
        if msg.template is None or not msg.template.aliyun_template_code:
            return Outcome("provider_down", code="no_template", detail="no Alibaba template for this event")
        params = self.params(msg)
        params["Signature"] = rpc_signature(self.s.aliyun_access_key_secret, "POST", params)
        body = canonical_query(params).encode("ascii")
        try:
            resp = await self.http.post(
                self.s.aliyun_sms_url,
                content=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=provider_timeout(self.s),
            )
        except httpx.HTTPError as exc:
            return transport_outcome(exc)
        try:
            data = resp.json()
            code = str(data["Code"])
        except (ValueError, KeyError, TypeError):
            return http_status_outcome(resp) or Outcome(
                "retry", code=f"http_{resp.status_code}", detail="unreadable answer"
            )
        if code == "OK":
            return Outcome("ok", code="OK", message_id=data.get("BizId"))
        return Outcome(classify(code), code=code, detail=str(data.get("Message", ""))[:300])
