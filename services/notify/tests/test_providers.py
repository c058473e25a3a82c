"""Provider protocols, unit by unit: the signing test vectors, each adapter against its fake (which
verifies every request as the real service does), and how each answer is classified."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.notify import acklink
from services.notify.clients import aliyun_sms, dingtalk, tencent_sms
from services.notify.clients.base import Message
from services.notify.clients.email import Smtp
from services.notify.clients.wecom import WeComApp, WeComRobot
from services.notify.config import NotifySettings
from services.notify.policy import Template

pytestmark = pytest.mark.once

TPL = Template(
    text="{code}：{title}。请确认：{link}",
    params=("code", "title", "link"),
    tencent_template_id="2100001",
    aliyun_template_code="SMS_480000001",
)


def msg(address: str, channel: str = "sms", **kw) -> Message:
    return Message(
        delivery_id="d-1",
        channel=channel,
        address=address,
        text="SJ261123-AAAAA：测试告警。请确认：http://x/ack/t",
        template=TPL,
        params={"code": "SJ261123-AAAAA", "title": "测试告警", "link": "http://x/ack/t"},
        sign="民声舆情",
        **kw,
    )


def run(coro_fn, settings):
    """Run an adapter call with a fresh client."""

    async def go():
        async with httpx.AsyncClient(trust_env=False) as http:
            return await coro_fn(http)

    return asyncio.run(go())


# --- the vendors' signing test vectors ------------------------------------------------------------

TC_BODY = (
    '{"PhoneNumberSet":["+8613800000000"],"SmsSdkAppId":"1400000000","SignName":"测试",'
    '"TemplateId":"100000","TemplateParamSet":["1"]}'
).encode()


def test_tencent_tc3_vector():
    host = "sms.tencentcloudapi.com"
    assert (
        tencent_sms.canonical_request_hash(host, TC_BODY)
        == "364dd8821d6ed272605c748a1aff27bda396e311fb33b5b4f16fb839d6c242c5"
    )
    day, sig = tencent_sms.tc3_signature("SECRETKEYEXAMPLE", host, 1700000000, TC_BODY)
    assert day == "2023-11-14"
    assert sig == "2bd0fc58fd6c13d1fbf90e8e1dafb58b758b56782338d1ee03dc037d83958001"
    auth = tencent_sms.authorization("AKIDEXAMPLE", "SECRETKEYEXAMPLE", host, 1700000000, TC_BODY)
    assert auth == (
        "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE/2023-11-14/sms/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={sig}"
    )


def test_alibaba_rpc_signature_vector():
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert aliyun_sms.rpc_signature("testsecret", "GET", params) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
    assert aliyun_sms.pe("a b*~/") == "a%20b%2A~%2F"


def test_ack_token_round_trip_forgery_and_expiry():
    now = datetime(2026, 11, 23, tzinfo=UTC)
    ref = acklink.new_ref()
    token = acklink.make_token("k", ref, now + timedelta(hours=1))
    assert len(token) < 40
    assert acklink.read_token("k", token, now=now)[0] == ref
    with pytest.raises(acklink.InvalidToken) as e:
        acklink.read_token("other-key", token, now=now)
    assert e.value.reason == "forged"
    with pytest.raises(acklink.InvalidToken) as e:
        acklink.read_token("k", token, now=now + timedelta(hours=2))
    assert e.value.reason == "expired"
    tampered = token.replace(token.split(".")[1], "zzzzzz")
    with pytest.raises(acklink.InvalidToken):
        acklink.read_token("k", tampered, now=now)


# --- each adapter against its fake -------------------------------------------------------------------


@pytest.fixture
def fakes(providers):
    providers.reset()
    return providers


def settings_for(providers, **over) -> NotifySettings:
    return NotifySettings(**{**providers.settings(), "provider_timeout_seconds": 2.0, **over})


def test_tencent_adapter_and_its_fake(fakes):
    s = settings_for(fakes)
    ok = run(lambda h: tencent_sms.TencentSms(s, h).send(msg("13800000001")), s)
    assert ok.verdict == "ok" and ok.message_id
    [r] = fakes.tencent.fake.of_kind("sms")
    assert (
        r.body["PhoneNumberSet"] == ["+8613800000001"] and r.body["TemplateParamSet"][0] == "SJ261123-AAAAA"
    )
    # A wrong key: the fake recomputes the signature and refuses, as Tencent does.
    bad = settings_for(fakes, tencent_secret_key="not-the-key")
    out = run(lambda h: tencent_sms.TencentSms(bad, h).send(msg("13800000001")), bad)
    assert (out.verdict, out.code) == ("provider_down", "AuthFailure.SignatureFailure")
    assert fakes.tencent.fake.rejected[-1]["reason"] == "signature"
    for behaviour, verdict in (
        ("rate_limit", "throttled"),
        ("internal_error", "retry"),
        ("bad_number", "permanent"),
        ("balance", "provider_down"),
        ("http_500", "retry"),
    ):
        fakes.tencent.fake.script(behaviour)
        assert run(lambda h: tencent_sms.TencentSms(s, h).send(msg("13800000001")), s).verdict == verdict
    fakes.tencent.fake.timeout_seconds = 3.0
    fakes.tencent.fake.script("timeout")
    assert run(lambda h: tencent_sms.TencentSms(s, h).send(msg("13800000001")), s).verdict == "unknown"


def test_tencent_fake_refuses_a_stale_timestamp(fakes):
    s = settings_for(fakes)

    async def skewed(http):
        adapter = tencent_sms.TencentSms(s, http)
        adapter.now = lambda: time.time() - 600  # a clock ten minutes slow
        return await adapter.send(msg("13800000001"))

    out = run(skewed, s)
    assert out.code == "AuthFailure.SignatureExpire" and out.verdict == "provider_down"
    assert fakes.tencent.fake.rejected[-1]["reason"] == "expired"


def test_alibaba_adapter_and_its_fake(fakes):
    s = settings_for(fakes)
    ok = run(lambda h: aliyun_sms.AliyunSms(s, h).send(msg("13800000001")), s)
    assert ok.verdict == "ok" and ok.message_id
    [r] = fakes.aliyun.fake.of_kind("sms")
    assert r.body["TemplateParam"]["code"] == "SJ261123-AAAAA" and r.body["OutId"] == "d-1"
    bad = settings_for(fakes, aliyun_access_key_secret="wrong")
    out = run(lambda h: aliyun_sms.AliyunSms(bad, h).send(msg("13800000001")), bad)
    assert (out.verdict, out.code) == ("provider_down", "SignatureDoesNotMatch")
    for behaviour, verdict in (
        ("rate_limit", "throttled"),
        ("internal_error", "retry"),
        ("bad_number", "permanent"),
        ("auth_failure", "provider_down"),
    ):
        fakes.aliyun.fake.script(behaviour)
        assert run(lambda h: aliyun_sms.AliyunSms(s, h).send(msg("13800000001")), s).verdict == verdict


def test_wecom_app_adapter_caches_its_token_and_refreshes_it_on_42001(fakes):
    s = settings_for(fakes)

    async def three(http):
        app = WeComApp(s, http)
        outs = [await app.send(msg(u, "wecom_app")) for u in ("zhangshizhang", "lifushizhang", "wangbuzhang")]
        fakes.wecom.fake.script("expire_token")
        outs.append(await app.send(msg("zhangshizhang", "wecom_app")))
        fakes.wecom.fake.script("partial")
        outs.append(await app.send(msg("zhangshizhang", "wecom_app")))
        fakes.wecom.fake.always_fail.add("nobody")
        outs.append(await app.send(msg("nobody", "wecom_app")))
        fakes.wecom.fake.script("rate_limit")
        outs.append(await app.send(msg("zhangshizhang", "wecom_app")))
        return outs, app.token_fetches

    outs, fetches = run(three, s)
    assert [o.verdict for o in outs[:4]] == ["ok"] * 4
    assert fetches == 2  # one token for three messages, one more after it expired
    assert outs[4].verdict == "ok"  # the one member we sent to was not among the invalid ones
    assert (outs[5].verdict, outs[5].code) == ("permanent", "81013")
    assert (outs[6].verdict, outs[6].code) == ("throttled", "45009")
    bad = settings_for(fakes, wecom_corp_secret="wrong")
    out = run(lambda h: WeComApp(bad, h).send(msg("zhangshizhang", "wecom_app")), bad)
    assert (out.verdict, out.code) == ("provider_down", "40001")


def test_wecom_robot_adapter_and_the_20_a_minute_limit(fakes):
    s = settings_for(fakes)

    async def many(http):
        robot = WeComRobot(s, http)
        return [await robot.send(msg("duty", "wecom_robot")) for _ in range(21)]

    outs = run(many, s)
    assert [o.verdict for o in outs[:20]] == ["ok"] * 20
    assert (outs[20].verdict, outs[20].code) == ("throttled", "45009")
    bad = settings_for(fakes, wecom_robot_keys={"duty": "not-a-key"})
    out = run(lambda h: WeComRobot(bad, h).send(msg("duty", "wecom_robot")), bad)
    assert (out.verdict, out.code) == ("provider_down", "93000")


def test_dingtalk_adapter_and_its_fake(fakes):
    s = settings_for(fakes)
    out = run(lambda h: dingtalk.DingTalkRobot(s, h).send(msg("leading-group", "dingtalk")), s)
    assert out.verdict == "ok"
    assert not fakes.dingtalk.fake.rejected
    robots = {n: {"access_token": r.access_token, "secret": "SECwrong"} for n, r in s.dingtalk_robots.items()}
    bad = settings_for(fakes, dingtalk_robots=robots)
    out = run(lambda h: dingtalk.DingTalkRobot(bad, h).send(msg("leading-group", "dingtalk")), bad)
    assert (out.verdict, out.code) == ("provider_down", "310000")
    assert fakes.dingtalk.fake.rejected[-1]["reason"] == "sign"


def test_smtp_adapter_against_a_local_smtp_server(fakes):
    s = settings_for(fakes)
    out = asyncio.run(
        Smtp(s).send(msg("zhang.shizhang@a-city.gov.example", "email", subject="【民声舆情】日报"))
    )
    assert out.verdict == "ok" and out.delivered
    [mail] = fakes.smtp.fake.of_kind("mail")
    assert mail.to == ["zhang.shizhang@a-city.gov.example"] and mail.body["subject"] == "【民声舆情】日报"
    fakes.smtp.fake.always_fail.add("gone@a-city.gov.example")
    assert asyncio.run(Smtp(s).send(msg("gone@a-city.gov.example", "email"))).verdict == "permanent"
    bad = settings_for(fakes, smtp_password="wrong")
    assert asyncio.run(Smtp(bad).send(msg("x@a-city.gov.example", "email"))).verdict == "provider_down"
    unreachable = settings_for(fakes, smtp_port=1)
    assert asyncio.run(Smtp(unreachable).send(msg("x@a-city.gov.example", "email"))).verdict == "retry"
