"""Alerts end to end inside notify: signed events in, real provider protocols out (to the fakes), the record,
retry, failover, grouping, escalation with and without acknowledgement, 续报, the digest."""

import re
from datetime import timedelta

from services.notify.tests.conftest import T0, closed, dump, graded, incident, requested

LEADERS = {"张市长", "刘书记", "陈副市长"}  # main leaders, and the leader in charge of education


def sms_to(providers, phone: str) -> list:
    """SMS requests both fake SMS providers accepted for a number."""
    t = [r for r in providers.tencent.fake.of_kind("sms") if f"+86{phone}" in r.to]
    a = [r for r in providers.aliyun.fake.of_kind("sms") if phone in r.to]
    return t + a


def test_level_one_alert_reaches_leaders_by_sms_and_wecom_signed_and_recorded(notify, providers):
    inc = incident("I")
    assert notify.post_event(graded(inc))["status"] == "applied"
    notify.drain()
    items = notify.deliveries(incident_id=inc.id)
    chain = [d for d in items if d["recipient"] in LEADERS]
    assert {(d["recipient"], d["channel"]) for d in chain} == {
        (n, c) for n in LEADERS for c in ("sms", "wecom_app")
    }
    # The copy list (propaganda, cyberspace, the 7×24 desk) hears at once too.
    assert {"王部长", "孙主任", "网信办值班室"} <= {d["recipient"] for d in items}
    for d in items:
        assert d["status"] == ("sent" if d["channel"] == "sms" else "delivered"), dump(d)
        assert d["attempts"] == 1 and d["provider_message_id"], dump(d)
        assert inc.code in d["content"] and "/api/v1/notifications/ack/" in d["content"]
        if d["channel"] == "sms":
            assert re.fullmatch(r"1\d{2}\*{4}\d{4}", d["address"]), d["address"]
            assert d["provider"] == "tencent" and d["segments"] <= 2
    # The fakes checked every signature and token: nothing was refused at the door.
    assert not providers.tencent.fake.rejected and not providers.wecom.fake.rejected
    [mayor_sms] = sms_to(providers, "13800000001")
    assert mayor_sms.body["TemplateId"] == "2100001" and mayor_sms.body["SignName"] == "民声舆情"
    assert inc.code in mayor_sms.body["TemplateParamSet"]
    detail = notify.http.get(f"/api/v1/notifications/{chain[0]['id']}", headers=notify.headers()).json()
    assert detail["attempt_log"][0]["outcome"] == "ok"


def test_a_throttling_sms_provider_fails_over_to_the_other(notify, providers):
    providers.tencent.fake.default = "rate_limit"
    inc = incident("II")
    notify.post_event(graded(inc))
    notify.drain()
    sms = [d for d in notify.deliveries(incident_id=inc.id) if d["channel"] == "sms"]
    assert sms and all(d["status"] == "sent" and d["provider"] == "aliyun" for d in sms), dump(sms)
    log = notify.http.get(f"/api/v1/notifications/{sms[0]['id']}", headers=notify.headers()).json()[
        "attempt_log"
    ]
    assert [(a["provider"], a["outcome"]) for a in log] == [("tencent", "throttled"), ("aliyun", "ok")]
    # Tencent said LimitExceeded and is now left alone: the next alert goes straight to Alibaba.
    asked = len(providers.tencent.fake.of_kind("sms"))
    other = incident("II")
    notify.post_event(graded(other))
    notify.drain()
    sms = notify.deliveries(incident_id=other.id, channel="sms")
    assert sms and all(d["provider"] == "aliyun" and d["attempts"] == 1 for d in sms), dump(sms)
    assert len(providers.tencent.fake.of_kind("sms")) == asked
    assert not providers.aliyun.fake.rejected
    # Once the pause is over, Tencent is first again.
    notify.clock.advance(timedelta(seconds=61))
    providers.tencent.fake.default = "ok"
    third = incident("II")
    notify.post_event(graded(third))
    notify.drain()
    assert {d["provider"] for d in notify.deliveries(incident_id=third.id, channel="sms")} == {"tencent"}


def test_retryable_errors_are_retried_after_the_backoff_and_permanent_ones_are_not(notify, providers):
    providers.tencent.fake.default = "internal_error"
    providers.aliyun.fake.script(*["internal_error"] * 30)
    providers.tencent.fake.always_fail.add("13800000006")
    inc = incident("I")
    notify.post_event(graded(inc))
    notify.drain()
    sms = {d["recipient"]: d for d in notify.deliveries(incident_id=inc.id, channel="sms")}
    assert all(d["status"] == "queued" and d["attempts"] == 2 for d in sms.values()), dump(sms)
    assert "InternalError" in sms["张市长"]["last_error"] or "SYSTEM_ERROR" in sms["张市长"]["last_error"]
    providers.tencent.fake.default = "ok"
    providers.aliyun.fake.reset()
    notify.drain()  # not yet: the backoff has not passed
    assert notify.deliveries(incident_id=inc.id, channel="sms", status="queued")
    notify.advance(seconds=11)  # the backoff after two failed calls (notify.yaml: 2 s, then 10 s …)
    sms = {d["recipient"]: d for d in notify.deliveries(incident_id=inc.id, channel="sms")}
    assert sms["张市长"]["status"] == "sent" and sms["张市长"]["attempts"] == 3
    # A number the provider calls invalid fails for good, with no further attempt anywhere.
    assert sms["陈副市长"]["status"] == "failed" and "IncorrectPhoneNumber" in sms["陈副市长"]["last_error"]
    assert sms["陈副市长"]["attempts"] == 3
    notify.advance(minutes=1)
    assert notify.deliveries(incident_id=inc.id, channel="sms", status="failed")[0]["attempts"] == 3


def test_an_sms_provider_that_times_out_is_not_asked_again_the_other_one_sends(notify, providers):
    providers.tencent.fake.timeout_seconds = 3.0
    providers.tencent.fake.script("timeout")
    inc = incident("II")
    notify.post_event(graded(inc))
    notify.drain()
    sms = notify.deliveries(incident_id=inc.id, channel="sms")
    timed_out = [d for d in sms if d["attempts"] == 2]
    assert len(timed_out) == 1, dump(sms)
    assert timed_out[0]["provider"] == "aliyun" and timed_out[0]["status"] == "sent"
    assert all(d["status"] == "sent" for d in sms)


def test_wecom_token_is_cached_and_refreshed_once_when_it_expires(notify, providers):
    inc = incident("II")
    notify.post_event(graded(inc))
    notify.drain()
    assert len(providers.wecom.fake.of_kind("token")) == 1  # one token for every message
    providers.wecom.fake.script("expire_token")
    notify.post_event(graded(incident("II")))
    notify.drain()
    assert len(providers.wecom.fake.of_kind("token")) == 2
    assert not notify.deliveries(channel="wecom_app", status="queued")
    assert not notify.deliveries(channel="wecom_app", status="failed")


def housing_contact(notify, incident_id: str) -> tuple[dict, str]:
    """The SMS delivery to A3区住建局's contact about the incident, and that contact's phone."""
    [contact] = [
        d
        for d in notify.deliveries(incident_id=incident_id, channel="sms")
        if d["recipient"].startswith("A3区住房")
    ]
    return contact, notify.state.directory.find(contact["recipient_id"]).phone


def test_grouping_one_message_per_repeat_interval_then_a_summary(notify, providers):
    inc = incident("III", lead_unit={"code": "a3-housing", "name": "A3区住房和城乡建设局"})
    notify.post_event(graded(inc))
    notify.drain()
    contact, contact_phone = housing_contact(notify, inc.id)
    assert len(sms_to(providers, contact_phone)) == 1
    # Three more 催办 about the same incident within the interval: nothing more goes out now …
    for kind in ("reminder", "reminder", "reminder"):
        r = notify.post_event(requested(inc, kind, unit_codes=["a3-housing"], params={"fraction": 0.5}))
        assert r["status"] == "applied", r
    notify.drain()
    assert len(sms_to(providers, contact_phone)) == 1
    waiting = notify.deliveries(
        incident_id=inc.id, recipient_id=contact["recipient_id"], channel="sms", status="queued"
    )
    assert len(waiting) == 1 and waiting[0]["grouped"] == 3, dump(waiting)
    # … and one summary when the interval has passed.
    notify.advance(minutes=30)
    msgs = sms_to(providers, contact_phone)
    assert len(msgs) == 2
    summary = msgs[-1].body["TemplateParamSet"]
    assert msgs[-1].body["TemplateId"] == "2100008" and "3" in summary and any("催办×3" in p for p in summary)
    # A 督办 is urgent (`immediate` in notify.yaml): it does not wait for the interval.
    notify.post_event(requested(inc, "supervision", unit_codes=["a3-housing"], params={"overdue": True}))
    notify.drain()
    assert len(sms_to(providers, contact_phone)) == 3


def test_escalation_when_nobody_acknowledges_runs_the_chain_then_records_it(notify, providers):
    inc = incident("I")
    notify.post_event(graded(inc))
    notify.drain()
    alert = notify.http.get(
        "/api/v1/notifications/alerts", params={"incident_id": inc.id}, headers=notify.headers()
    ).json()
    [a] = [x for x in alert["items"] if x["kind"] == "graded"]
    assert a["status"] == "open" and a["steps"] == 6  # two steps, three rounds
    # 10 minutes, no acknowledgement: the secretary-general and the duty officer on shift are told.
    notify.advance(minutes=10)
    step1 = [d for d in notify.deliveries(incident_id=inc.id) if d["step"] == 1]
    assert {d["recipient"] for d in step1} == {"郑秘书长", "孙值班员"}, dump(step1)
    assert not [d for d in notify.deliveries(incident_id=inc.id) if d["step"] == 2]
    # Still nobody: the chain starts over with the leaders, and so on until it runs out.
    notify.advance(minutes=10)
    assert {d["recipient"] for d in notify.deliveries(incident_id=inc.id) if d["step"] == 2} == LEADERS
    for _ in range(4):
        notify.advance(minutes=10)
    a = notify.http.get(
        "/api/v1/notifications/alerts", params={"incident_id": inc.id}, headers=notify.headers()
    )
    [a] = [x for x in a.json()["items"] if x["kind"] == "graded"]
    assert a["status"] == "unacknowledged" and a["step"] == 5
    steps = {d["step"] for d in notify.deliveries(incident_id=inc.id)}
    assert steps == {0, 1, 2, 3, 4, 5}
    metrics = notify.http.get("/metrics").text
    assert (
        "minsheng_notify_unacknowledged_total" in metrics and "minsheng_notify_pending_escalations" in metrics
    )


def test_the_chain_stops_when_someone_acknowledges(notify, providers):
    inc = incident("II")
    notify.post_event(graded(inc))
    notify.drain()
    [mayor] = notify.deliveries(incident_id=inc.id, recipient_id="mayor", channel="wecom_app")
    resp = notify.http.post(
        f"/api/v1/notifications/{mayor['id']}/ack", headers=notify.headers("zhang", "leader")
    )
    assert resp.status_code == 200 and resp.json()["acked_by"] == "zhang"
    before = len(notify.deliveries(incident_id=inc.id))
    for _ in range(3):
        notify.advance(minutes=10)
    assert len(notify.deliveries(incident_id=inc.id)) == before
    alerts = notify.http.get(
        "/api/v1/notifications/alerts", params={"incident_id": inc.id}, headers=notify.headers()
    )
    [a] = alerts.json()["items"]
    assert a["status"] == "acked" and a["acked_by"] == "zhang" and a["next_step_at"] is None
    # The first acknowledgement stands.
    again = notify.http.post(
        f"/api/v1/notifications/{mayor['id']}/ack", headers=notify.headers("li", "leader")
    )
    assert again.json()["acked_by"] == "zhang"


def test_the_signed_link_in_the_sms_acknowledges_and_forged_or_expired_links_do_not(notify, providers):
    inc = incident("I")
    notify.post_event(graded(inc))
    notify.drain()
    [sms] = sms_to(providers, "13800000001")
    link = next(p for p in sms.body["TemplateParamSet"] if "/ack/" in p)
    path = link.split("127.0.0.1:8000", 1)[1]
    token = path.rsplit("/", 1)[1]
    page = notify.http.get(path, headers={"Accept": "text/html"})
    assert page.status_code == 200 and "确认收到" in page.text and inc.code in page.text
    assert notify.http.get(path).json()["acknowledged"] is False  # opening the link does not acknowledge
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert notify.http.post(path.replace(token, forged)).status_code == 404
    ok = notify.http.post(path)
    assert ok.status_code == 200 and ok.json()["acknowledged"] is True
    [a] = notify.http.get(
        "/api/v1/notifications/alerts", params={"incident_id": inc.id}, headers=notify.headers()
    ).json()["items"]
    assert a["status"] == "acked" and a["acked_by"] == "link:mayor"
    notify.clock.advance(timedelta(hours=73))
    expired = notify.http.post(path)
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "link_expired"


def test_follow_up_reports_while_open_stop_when_closed_and_do_not_burst_after_downtime(notify, providers):
    inc = incident("I")
    notify.post_event(graded(inc))
    notify.drain()
    notify.advance(minutes=10)  # the chain's second step, nothing else yet
    # Acknowledging stops the chain, not the 续报: they go on while the incident is open.
    first_delivery = notify.deliveries(incident_id=inc.id)[0]["id"]
    notify.http.post(f"/api/v1/notifications/{first_delivery}/ack", headers=notify.headers())
    assert not notify.deliveries(incident_id=inc.id, event="follow_up")
    notify.advance(minutes=50)  # an hour after grading: the first 续报
    first = notify.deliveries(incident_id=inc.id, event="follow_up")
    assert first and all("续报" in d["content"] for d in first)
    # 续报 also go to the duty group chat, by its WeCom robot.
    duty_key = providers.wecom.credentials["robot_keys"]["duty"]
    robot = [r for r in providers.wecom.fake.of_kind("robot") if r.to == [duty_key]]
    assert len(robot) == 1 and inc.code in robot[0].body["text"]["content"]
    # Notify is down for five hours: when it is back, one 续报 goes out, not five.
    notify.clock.advance(timedelta(hours=5))
    notify.tick()
    assert len({d["alert_id"] for d in notify.deliveries(incident_id=inc.id, event="follow_up")}) == 2
    notify.post_event(closed(inc))
    notify.advance(hours=3)
    assert len({d["alert_id"] for d in notify.deliveries(incident_id=inc.id, event="follow_up")}) == 2


def test_daily_digest_goes_to_the_leading_group_once_even_when_late(notify, providers):
    notify.post_event(graded(incident("I")))
    notify.post_event(graded(incident("III", lead_unit={"code": "a3-housing", "name": "A3区住建局"})))
    notify.drain()
    notify.tick()  # schedules the next digest (08:00 tomorrow)
    notify.clock.advance(timedelta(hours=30))  # past 08:00, then some: sent late, once
    notify.tick()
    notify.tick()
    digests = notify.deliveries(event="digest")
    assert {d["channel"] for d in digests} == {"wecom_app", "email", "wecom_robot", "dingtalk"}, dump(digests)
    assert len({d["alert_id"] for d in digests}) == 1
    mails = providers.smtp.fake.of_kind("mail")
    assert mails and "舆情日报" in mails[0].body["text"] and "I级1件" in mails[0].body["text"]
    assert providers.dingtalk.fake.of_kind("robot") and not providers.dingtalk.fake.rejected
    assert all(d["status"] == "delivered" for d in digests), dump(digests)


def test_only_one_replica_runs_the_scheduler_and_a_job_is_done_once(notify, providers):
    from services.notify.scheduler import Scheduler

    other = Scheduler(state=notify.state, ctx_factory=notify.state.notify_ctx, holder="replica-2")
    inc = incident("I")
    notify.post_event(graded(inc))
    notify.drain()
    assert notify.run(notify.state.scheduler.acquire(notify.clock.now()))
    assert not notify.run(other.acquire(notify.clock.now()))
    notify.clock.advance(timedelta(minutes=10))
    assert notify.run(notify.state.scheduler.tick()) == 1  # the holder renews its lease and runs the step
    assert notify.run(other.tick()) == 0  # not the holder: does nothing
    # The holder goes away: once its lease lapses the other takes over, and finds nothing left to do twice.
    notify.clock.advance(timedelta(seconds=31))
    assert notify.run(other.acquire(notify.clock.now()))
    assert not notify.run(notify.state.scheduler.acquire(notify.clock.now()))
    assert notify.run(other.tick()) == 0
    notify.drain()
    assert len([d for d in notify.deliveries(incident_id=inc.id) if d["step"] == 1]) == 4


def test_workflow_requests_of_every_kind_reach_their_recipients(notify, providers):
    inc = incident("III", lead_unit={"code": "a5-education", "name": "A5区教育局"})
    kinds = {
        "reminder": {"unit_codes": ["a5-education"], "params": {"fraction": 0.8}},
        "supervision": {"unit_codes": ["a5-education"], "params": {"overdue": True}},
        "follow_up": {"params": {"progress": "已完成现场处置"}},
        "reply_published": {},
        "challenge": {"params": {"note": "网民质疑答复避重就轻"}},
    }
    for kind, data in kinds.items():
        other = incident("III", lead_unit={"code": "a5-education", "name": "A5区教育局"})
        r = notify.post_event(requested(other, kind, dedupe_key=f"{kind}:{other.id}", **data))
        assert r["status"] == "applied", r
        notify.drain()
        items = notify.deliveries(incident_id=other.id)
        assert items, kind
        assert all(d["event"] == kind for d in items)
        if kind in ("reminder", "supervision"):
            assert "A5区教育局联络员" in {d["recipient"] for d in items}
        if kind == "supervision":
            assert "吴主任" in {d["recipient"] for d in items} and "已超期" in items[0]["content"]
        if kind == "challenge":
            assert any("避重就轻" in d["content"] for d in items)
    # The same dedupe key again changes nothing; an unknown kind is refused for good.
    again = requested(other, "challenge", dedupe_key=f"challenge:{other.id}")
    before = len(notify.deliveries(incident_id=other.id))
    assert notify.post_event(again)["status"] == "applied"
    assert len(notify.deliveries(incident_id=other.id)) == before
    assert notify.post_event(requested(inc, "horoscope"))["status"] == "rejected"


def test_a_batch_of_events_is_applied_together_and_a_bad_one_gets_its_own_verdict(notify, providers):
    # After an outage a relay sends what piled up in one request: two 催办 of one incident, the
    # incident's grading, and a request of a kind notify has no policy for.
    inc = incident("III", lead_unit={"code": "a5-education", "name": "A5区教育局"})
    other = incident("II")
    first = requested(inc, "reminder", unit_codes=["a5-education"], params={"fraction": 0.8})
    second = requested(inc, "supervision", unit_codes=["a5-education"], params={"overdue": True})
    events = [first, second, graded(other), requested(other, "reminder", unit_codes=["a5-education"])]
    assert [r["status"] for r in notify.post_events(events)] == ["applied"] * 4
    notify.drain()
    assert {d["event"] for d in notify.deliveries(incident_id=inc.id)} == {"reminder", "supervision"}
    assert notify.deliveries(incident_id=other.id, channel="sms")
    # Delivered again (the relay never heard back): nothing twice.
    before = len(notify.deliveries())
    assert [r["status"] for r in notify.post_events(events)] == ["duplicate"] * 4
    notify.drain()
    assert len(notify.deliveries()) == before
    # One bad event in a run does not sink the others: each gets its own verdict.
    third = requested(inc, "reminder", unit_codes=["a5-education"], params={"fraction": 0.9})
    verdicts = notify.post_events([requested(inc, "horoscope"), third, first])
    assert [r["status"] for r in verdicts] == ["rejected", "applied", "duplicate"], dump(verdicts)
    assert "unknown_kind" in verdicts[0]["detail"]


def test_a_unit_sees_only_its_own_notifications(notify, providers):
    inc = incident("III", lead_unit={"code": "a3-housing", "name": "A3区住建局"})
    notify.post_event(graded(inc))
    notify.drain()
    unit = notify.headers("a3-housing", "unit", unit_code="a3-housing")
    mine = notify.http.get("/api/v1/notifications", headers=unit).json()["items"]
    assert mine and all(d["recipient"].startswith("A3区住房") for d in mine)
    leader = [
        d
        for d in notify.deliveries(incident_id=inc.id)
        if d["recipient"] == "陈副市长" or d["recipient"] == "李副市长"
    ]
    assert leader
    assert notify.http.get(f"/api/v1/notifications/{leader[0]['id']}", headers=unit).status_code == 404
    assert notify.http.post(f"/api/v1/notifications/{leader[0]['id']}/ack", headers=unit).status_code == 404
    assert notify.http.get("/api/v1/notifications").status_code == 401


def test_archive_lookup_keeps_its_contract(notify, providers):
    from tests.support import signed

    inc = incident("II")
    notify.post_event(graded(inc))
    notify.drain()
    resp = signed("GET", f"{notify.url}/internal/notifications?incident_id={inc.id}")
    assert resp.status_code == 200
    records = resp.json()
    assert records and set(records[0]) >= {
        "id",
        "event",
        "recipient",
        "channel",
        "status",
        "attempts",
        "created_at",
    }
    assert T0.isoformat()[:10] in records[0]["created_at"]
    ready = notify.http.get("/readyz").json()
    assert ready["status"] == "ok" and "sms" in ready["checks"]["channels"]


def test_sms_receipts_from_both_providers_mark_deliveries_delivered_or_failed(notify, providers):
    inc = incident("II")
    notify.post_event(graded(inc))
    notify.drain()
    sms = {d["recipient_id"]: d for d in notify.deliveries(incident_id=inc.id, channel="sms")}
    mayor, secretary = sms["mayor"], sms["party-secretary"]
    assert mayor["status"] == "sent" and mayor["provider"] == "tencent"
    url = "/api/v1/notifications/receipts/tencent"
    body = [
        {
            "user_receive_time": "2026-11-23 10:00:05",
            "nationcode": "86",
            "mobile": "13800000001",
            "report_status": "SUCCESS",
            "errmsg": "DELIVRD",
            "description": "用户短信送达成功",
            "sid": mayor["provider_message_id"],
        },
        {
            "user_receive_time": "2026-11-23 10:00:09",
            "nationcode": "86",
            "mobile": "13800000010",
            "report_status": "FAIL",
            "errmsg": "MK:0001",
            "description": "关机",
            "sid": secretary["provider_message_id"],
        },
    ]
    assert notify.http.post(url, params={"token": "wrong"}, json=body).status_code == 401
    resp = notify.http.post(url, params={"token": "demo-receipt-token"}, json=body)
    assert resp.json() == {"result": 0, "errmsg": "OK"}
    after = {d["recipient_id"]: d for d in notify.deliveries(incident_id=inc.id, channel="sms")}
    assert after["mayor"]["status"] == "delivered" and after["mayor"]["delivered_at"].startswith(
        "2026-11-23T02:00:05"
    )
    assert (
        after["party-secretary"]["status"] == "failed" and "MK:0001" in after["party-secretary"]["last_error"]
    )
    # Alibaba reports by BizId (or our OutId, the delivery id).
    providers.tencent.fake.default = "rate_limit"
    other = incident("II")
    notify.post_event(graded(other))
    notify.drain()
    [d] = notify.deliveries(incident_id=other.id, channel="sms", recipient_id="mayor")
    assert d["provider"] == "aliyun"
    push = [
        {
            "phone_number": "13800000001",
            "report_time": "2026-11-23 10:00:07",
            "success": True,
            "err_code": "DELIVERED",
            "err_msg": "用户接收成功",
            "biz_id": None,
            "out_id": d["id"],
        }
    ]
    resp = notify.http.post(
        "/api/v1/notifications/receipts/aliyun", params={"token": "demo-receipt-token"}, json=push
    )
    assert resp.json()["code"] == 0
    [d] = notify.deliveries(incident_id=other.id, channel="sms", recipient_id="mayor")
    assert d["status"] == "delivered"


def test_a_robot_is_not_sent_more_than_its_rate_allows(notify_server, providers):
    from services.notify.tests.conftest import Notify

    providers.reset()
    server = notify_server(workers_enabled=False, wecom_robot_rate="2/minute", **providers.settings())
    n = Notify(server)
    n.clock.freeze(T0)
    try:
        for _ in range(3):
            n.post_event(graded(incident("I")))
        n.drain()
        n.advance(minutes=60)  # three 续报, each also to the duty group chat by its robot
        robot = n.deliveries(channel="wecom_robot")
        assert len(robot) == 3
        held = [d for d in robot if d["status"] == "queued"]
        assert (
            len(held) == 1
            and held[0]["attempts"] == 0
            and held[0]["next_attempt_at"] > n.clock.now().isoformat()
        )
        assert len(providers.wecom.fake.of_kind("robot")) == 2  # the third was never sent to be refused
    finally:
        n.http.close()


def test_a_run_of_gradings_is_looked_up_at_once_yet_sees_what_came_before(notify, providers):
    # One delivery with: a new incident, the same incident graded again (another event), an incident
    # whose unit was reached minutes ago (its grading waits for the repeat interval) and another new one.
    unit = {"code": "a3-housing", "name": "A3区住房和城乡建设局"}
    earlier, twice, fresh = incident("III", lead_unit=unit), incident("III", lead_unit=unit), incident("III")
    notify.post_event(requested(earlier, "reminder", unit_codes=["a3-housing"], params={"fraction": 0.5}))
    notify.drain()
    contact, phone = housing_contact(notify, earlier.id)
    assert len(sms_to(providers, phone)) == 1

    run = [graded(twice), graded(twice), graded(earlier), graded(fresh)]
    assert [r["status"] for r in notify.post_events(run)] == ["applied"] * 4
    notify.drain()
    alerts = notify.http.get(
        "/api/v1/notifications/alerts", params={"limit": 100}, headers=notify.headers()
    ).json()["items"]
    graded_alerts = [a for a in alerts if a["kind"] == "graded"]
    # Once per incident, even when one run carries the same incident twice.
    assert sorted(a["incident_id"] for a in graded_alerts) == sorted([twice.id, earlier.id, fresh.id])
    assert len(notify.deliveries(incident_id=twice.id)) == len(notify.deliveries(incident_id=fresh.id))
    # The unit reached minutes ago about `earlier` is not told again before the interval …
    held = notify.deliveries(
        incident_id=earlier.id, recipient_id=contact["recipient_id"], channel="sms", status="queued"
    )
    assert len(held) == 1 and held[0]["next_attempt_at"] > notify.clock.now().isoformat(), dump(held)
    # … while the same unit hears at once of `twice`, a matter it had not been told of.
    assert len(sms_to(providers, phone)) == 2
