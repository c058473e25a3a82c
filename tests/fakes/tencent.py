"""Fake Tencent Cloud SMS (SendSms 2021-01-11): checks TC3-HMAC-SHA256 the way the real API does.

It recomputes the signature from the exact bytes and headers received, refuses a timestamp more
than 5 minutes off (AuthFailure.SignatureExpire), an unknown SecretId, a wrong signature, and answers
as the real service does: HTTP 200 always, errors in Response.Error, per-number results in
Response.SendStatusSet (partial success possible).
"""

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.base import Fake, FakeServer

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<svc>[^/]+)/tc3_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]{64})$"
)


def _signature(secret_key: str, day: str, service: str, ts: str, canonical: str) -> str:
    to_sign = (
        f"TC3-HMAC-SHA256\n{ts}\n{day}/{service}/tc3_request\n"
        + hashlib.sha256(canonical.encode()).hexdigest()
    )
    k = hmac.new(("TC3" + secret_key).encode(), day.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    k = hmac.new(k, b"tc3_request", hashlib.sha256).digest()
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()


def _error(code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}}
    )


_ERRORS = {
    "rate_limit": ("LimitExceeded.AppDailyLimit", "the application's daily limit is reached"),
    "auth_failure": ("AuthFailure.SecretIdNotFound", "the SecretId is not found"),
    "internal_error": ("InternalError.Timeout", "internal timeout"),
    "balance": ("FailedOperation.InsufficientBalanceInSmsPackage", "the package is used up"),
}


def make_app(fake: Fake, *, secret_id: str, secret_key: str, sdk_app_id: str, window: int = 300) -> FastAPI:
    """The fake's app, knowing one credential pair and SDK app id."""
    app = FastAPI()

    @app.post("/")
    async def send(request: Request):
        body = await request.body()
        h = request.headers
        if h.get("x-tc-action") != "SendSms" or h.get("x-tc-version") != "2021-01-11":
            fake.reject("action")
            return _error("InvalidAction", "unknown action or version")
        m = _AUTH.match(h.get("authorization", ""))
        ts = h.get("x-tc-timestamp", "")
        if not m or not ts.isdigit():
            fake.reject("authorization")
            return _error("AuthFailure.InvalidAuthorization", "the Authorization header is malformed")
        if abs(time.time() - int(ts)) > window:
            fake.reject("expired", ts=ts)
            return _error("AuthFailure.SignatureExpire", "the signature expired")
        if m["id"] != secret_id:
            fake.reject("secret_id")
            return _error("AuthFailure.SecretIdNotFound", "the SecretId is not found")
        day = datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d")
        if m["date"] != day or m["svc"] != "sms" or m["signed"] != "content-type;host":
            fake.reject("scope")
            return _error("AuthFailure.SignatureFailure", "the credential scope does not match")
        canonical = (
            f"POST\n/\n\ncontent-type:{h.get('content-type', '')}\nhost:{h.get('host', '')}\n\n"
            "content-type;host\n" + hashlib.sha256(body).hexdigest()
        )
        if not hmac.compare_digest(_signature(secret_key, day, "sms", ts, canonical), m["sig"]):
            fake.reject("signature")
            return _error("AuthFailure.SignatureFailure", "the signature does not match")
        try:
            data = json.loads(body)
        except ValueError:
            return _error("InvalidParameter", "the body is not JSON")
        if data.get("SmsSdkAppId") != sdk_app_id:
            return _error("FailedOperation.SmsSdkAppIdVerifyFail", "the SmsSdkAppId is not yours")
        numbers = data.get("PhoneNumberSet") or []
        if not numbers or len(numbers) > 200 or not data.get("TemplateId") or not data.get("SignName"):
            return _error("InvalidParameter", "PhoneNumberSet, TemplateId and SignName are required")
        behaviour = fake.next_behaviour()
        fake.record("sms", numbers, data, behaviour)
        if behaviour == "timeout":
            await asyncio.sleep(fake.timeout_seconds)
            behaviour = "ok"
        if behaviour == "http_500":
            return JSONResponse({"message": "bad gateway"}, status_code=502)
        if behaviour in _ERRORS:
            return _error(*_ERRORS[behaviour])
        statuses = []
        for i, n in enumerate(numbers):
            bad = behaviour == "bad_number" or n.removeprefix("+86") in fake.always_fail
            bad = bad or (behaviour == "partial" and i % 2 == 1)
            statuses.append(
                {
                    "SerialNo": "" if bad else f"2019:{uuid.uuid4().int % 10**19}",
                    "PhoneNumber": n,
                    "Fee": 0 if bad else 1,
                    "SessionContext": data.get("SessionContext", ""),
                    "Code": "InvalidParameterValue.IncorrectPhoneNumber" if bad else "Ok",
                    "Message": "incorrect phone number" if bad else "send success",
                    "IsoCode": "CN",
                }
            )
        return JSONResponse({"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}})

    return app


def server(
    *,
    secret_id: str = "AKIDfake",
    secret_key: str = "tencent-fake-secret-key",
    sdk_app_id: str = "1400000000",
):
    """A fake Tencent SMS server (not yet started) and its control."""
    fake = Fake("tencent")
    s = FakeServer(make_app(fake, secret_id=secret_id, secret_key=secret_key, sdk_app_id=sdk_app_id), fake)
    s.credentials = {"secret_id": secret_id, "secret_key": secret_key, "sdk_app_id": sdk_app_id}
    return s
