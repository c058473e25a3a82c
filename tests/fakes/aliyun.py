"""Fake Alibaba Cloud SMS (dysmsapi SendSms 2017-05-25): checks the RPC v1 signature as the real API does.

It rebuilds the canonical query from the parameters received, recomputes HMAC-SHA1 with the
AccessKey secret, refuses an unknown AccessKeyId (404 InvalidAccessKeyId.NotFound), a wrong
signature (400 SignatureDoesNotMatch), a timestamp more than 15 minutes off (400
InvalidTimeStamp.Expired) and a reused nonce (400 SignatureNonceUsed). Business errors come as
HTTP 200 with a Code other than OK.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes.base import Fake, FakeServer


def _pe(s: str) -> str:
    return quote(s, safe="~")


def _sign(secret: str, method: str, params: dict[str, str]) -> str:
    cqs = "&".join(f"{_pe(k)}={_pe(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&%2F&{_pe(cqs)}"
    return base64.b64encode(
        hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    ).decode()


def _answer(code: str, message: str, status: int = 200, **extra) -> JSONResponse:
    return JSONResponse(
        {"Code": code, "Message": message, "RequestId": str(uuid.uuid4()), **extra}, status_code=status
    )


_ERRORS = {
    "rate_limit": ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1"),
    "auth_failure": ("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"),
    "internal_error": ("isp.SYSTEM_ERROR", "系统错误"),
    "bad_number": ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号"),
}


def make_app(fake: Fake, *, access_key_id: str, secret: str, window: int = 900) -> FastAPI:
    """The fake's app, knowing one AccessKey pair."""
    app = FastAPI()
    nonces: set[str] = set()

    @app.api_route("/", methods=["GET", "POST"])
    async def rpc(request: Request):
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        given = params.pop("Signature", "")
        if params.get("AccessKeyId") != access_key_id:
            fake.reject("access_key")
            return _answer("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        try:
            ts = datetime.strptime(params.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            fake.reject("timestamp")
            return _answer("InvalidTimeStamp.Format", "Specified time stamp is not valid.", 400)
        if abs(time.time() - ts.timestamp()) > window:
            fake.reject("expired")
            return _answer("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400)
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            fake.reject("method")
            return _answer("InvalidParameter", "unsupported signature method", 400)
        if not hmac.compare_digest(_sign(secret, request.method, params), given):
            fake.reject("signature")
            return _answer(
                "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.", 400
            )
        nonce = params.get("SignatureNonce", "")
        if not nonce or nonce in nonces:
            fake.reject("nonce")
            return _answer("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        nonces.add(nonce)
        if params.get("Action") != "SendSms" or params.get("Version") != "2017-05-25":
            return _answer("InvalidAction.NotFound", "Specified api is not found.", 404)
        numbers = [n for n in params.get("PhoneNumbers", "").split(",") if n]
        try:
            template_param = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return _answer("isv.INVALID_JSON_PARAM", "JSON参数不合法")
        if not numbers or not params.get("SignName") or not params.get("TemplateCode"):
            return _answer("isv.INVALID_PARAMETERS", "参数异常")
        behaviour = fake.next_behaviour()
        fake.record("sms", numbers, {**params, "TemplateParam": template_param}, behaviour)
        if behaviour == "timeout":
            await asyncio.sleep(fake.timeout_seconds)
            behaviour = "ok"
        if behaviour == "http_500":
            return JSONResponse({"message": "bad gateway"}, status_code=502)
        if any(n in fake.always_fail for n in numbers):
            behaviour = "bad_number"
        if behaviour in _ERRORS:
            return _answer(*_ERRORS[behaviour])
        return _answer("OK", "OK", BizId=f"{uuid.uuid4().int % 10**18}^0")

    return app


def server(*, access_key_id: str = "LTAIfakeid", secret: str = "aliyun-fake-secret"):
    """A fake Alibaba SMS server (not yet started) and its control."""
    fake = Fake("aliyun")
    s = FakeServer(make_app(fake, access_key_id=access_key_id, secret=secret), fake)
    s.credentials = {"access_key_id": access_key_id, "secret": secret}
    return s
