"""The handling workflow in one process, with the clock frozen and moved (never slept): the state
machine and its 409s, the clocks and their 催办/督办 (with catch-up after downtime, never twice),
extensions and their cap, 审定/公开/回访/重办, the 总结报告, the dossier, statistics and paging bounds."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from schema.events import MessageFeedback, MessageFeedbackData
from services.grading.models import OutboxEvent
from services.grading.tests.helpers import deliver, received, staff

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # a Tuesday, 09:00 in A市
SCHOOL = ("A5区某中学乱收费", "A5区某中学要求家长交资料费，属于乱收费，请教育部门查处。")
LEAD, CO = "a5-education", "a5-market"


def outbox(client, event_type: str) -> list[dict]:
    async def rows():
        async with client.app.state.sessions() as s:
            q = select(OutboxEvent).where(OutboxEvent.event_type == event_type).order_by(OutboxEvent.id)
            return [r.payload for r in (await s.exec(q)).all()]

    seen, out = set(), []
    for p in client.portal.call(rows):
        if p["id"] not in seen:  # one row per destination; one event
            seen.add(p["id"])
            out.append(p)
    return out


def unit(code: str, sub: str | None = None) -> dict[str, str]:
    return staff("unit", sub=sub or f"{code}-handler", unit=code)


def call(client, method: str, path: str, headers: dict, json=None, expect: int = 200) -> dict:
    resp = client.request(method, path, headers=headers, json=json)
    assert resp.status_code == expect, f"{method} {path}: {resp.status_code} {resp.text}"
    return resp.json()


def incident_of(client, message_id: str) -> dict:
    [item] = call(client, "GET", f"/api/v1/incidents?message_id={message_id}", staff("analyst"))["items"]
    return call(client, "GET", f"/api/v1/incidents/{item['id']}", staff("analyst"))


def sweep(client) -> dict:
    return call(client, "POST", "/api/v1/supervision/sweep", staff("supervisor"))


@pytest.fixture
def grading(service_app):
    client = service_app("grading", supervision_poll_seconds=0)
    client.app.state.clock.freeze(T0)
    return client


def _school_incident(client, at=T0) -> dict:
    ev = received(title=SCHOOL[0], content=SCHOOL[1], at=at)
    deliver(client, ev)
    inc = incident_of(client, ev["data"]["message_id"])
    inc["_message_id"] = ev["data"]["message_id"]
    return inc


def _assignment(inc: dict, code: str) -> dict:
    return next(a for a in inc["assignments"] if a["unit"]["code"] == code)


def test_a_confident_route_is_assigned_at_once_and_units_work_it_through_approval_and_publication(grading):
    c = grading
    inc = _school_incident(c)
    assert inc["status"] == "assigned" and inc["lead_unit"]["code"] == LEAD
    lead, co = _assignment(inc, LEAD), _assignment(inc, CO)
    assert lead["role"] == "lead" and co["role"] == "co"
    assert (
        lead["sign_due"] == (T0 + timedelta(hours=2)).isoformat().replace("+00:00", "Z") or lead["sign_due"]
    )
    assert {k["kind"] for k in inc["clocks"]} == {"sign", "reply"}
    assert lead["allowed_actions"] == ["sign", "return", "extension"]
    iid = inc["id"]

    # A unit acts only on its own assignments; a reply before signing is refused with what is allowed.
    call(c, "POST", f"/api/v1/assignments/{lead['id']}/sign", unit(CO), expect=404)
    refused = call(
        c,
        "POST",
        f"/api/v1/assignments/{lead['id']}/reply",
        unit(LEAD),
        {"finding": "true", "reply_text": "已查处。"},
        expect=409,
    )
    assert refused["error"]["details"][0]["allowed"] == ["sign", "return", "extension"]
    mine = call(c, "GET", "/api/v1/assignments", unit(CO))
    assert [a["id"] for a in mine["items"]] == [co["id"]]
    call(c, "GET", f"/api/v1/assignments/{lead['id']}", unit(CO), expect=404)

    c.app.state.clock.advance(timedelta(minutes=30))
    signed = call(c, "POST", f"/api/v1/assignments/{lead['id']}/sign", unit(LEAD))
    assert signed["status"] == "signed" and "reply" in signed["allowed_actions"]
    assert call(c, "POST", f"/api/v1/assignments/{lead['id']}/sign", unit(LEAD))["status"] == "signed"
    call(c, "POST", f"/api/v1/assignments/{co['id']}/sign", unit(CO))
    # The co-unit gives its input; only the lead replies (统一口径).
    call(c, "POST", f"/api/v1/assignments/{co['id']}/progress", unit(CO), {"note": "已核实收费票据"})
    again = call(c, "POST", f"/api/v1/assignments/{co['id']}/progress", unit(CO), {"note": "已核实收费票据"})
    assert [n["kind"] for n in again["progress"]] == ["input"], "a retried note is added once"
    co_reply = call(
        c,
        "POST",
        f"/api/v1/assignments/{co['id']}/reply",
        unit(CO),
        {"finding": "true", "reply_text": "x"},
        expect=409,
    )
    assert "统一口径" in co_reply["error"]["message"]
    view = call(c, "GET", f"/api/v1/incidents/{iid}", staff("analyst"))
    assert view["status"] == "signed"

    body = {"finding": "partly", "reply_text": "经核查，资料费系自愿征订。", "measures": "责令学校退还费用。"}
    r1 = call(c, "POST", f"/api/v1/assignments/{lead['id']}/reply", unit(LEAD), body, expect=201)
    assert r1["status"] == "submitted" and r1["finding_text"] == "部分属实"
    call(c, "POST", f"/api/v1/incidents/{iid}/publish", staff("clerk"), expect=409)
    # 审定: a leader sends it back with a comment; the unit replies again; the leader approves an edit.
    assert (
        call(
            c,
            "POST",
            f"/api/v1/incidents/{iid}/reply/decision",
            staff("leader"),
            {"approve": False},
            expect=422,
        )["error"]["code"]
        == "comment_required"
    )
    back = call(
        c,
        "POST",
        f"/api/v1/incidents/{iid}/reply/decision",
        staff("leader"),
        {"approve": False, "comment": "请写明退费金额"},
    )
    assert back["status"] == "signed" and back["reply"] is None
    body2 = {**body, "reply_text": "经核查，资料费系自愿征订，已退还每生120元。"}
    call(c, "POST", f"/api/v1/assignments/{lead['id']}/reply", unit(LEAD), body2, expect=201)
    approved = call(
        c,
        "POST",
        f"/api/v1/incidents/{iid}/reply/decision",
        staff("leader"),
        {"approve": True, "edited_text": "经核查，该校资料费已全部退还（每生120元）。"},
    )
    assert approved["status"] == "approved" and approved["reply"]["edited_text"]
    published = call(c, "POST", f"/api/v1/incidents/{iid}/publish", staff("clerk"))
    assert published["status"] == "published"
    assert published["published_reply"]["text"] == "经核查，该校资料费已全部退还（每生120元）。"
    reply_clock = next(k for k in published["clocks"] if k["kind"] == "reply")
    assert reply_clock["outcome"] == "met"
    # The citizen view gets the reply and the category; notify hears the reply was published.
    change = outbox(c, "message.status_changed")[-1]["data"]
    assert change["citizen_status"] == "replied" and change["reply"]["unit"]["code"] == LEAD
    assert change["category"]["level1"]
    assert outbox(c, "notification.requested")[-1]["data"]["kind"] == "reply_published"
    actions = [t["action"] for t in published["timeline"]]
    for step in ("assigned", "signed", "progress", "replied", "sent_back", "approved", "published"):
        assert step in actions, step

    # 回访: satisfied closes a level IV matter by itself; the dossier holds the whole workflow.
    fb = MessageFeedback.build(
        source="intake",
        data=MessageFeedbackData(
            message_id=inc["_message_id"], tracking_code="x", satisfaction="satisfied", received_at=T0
        ),
    ).model_dump(mode="json")
    assert deliver(c, fb)[0]["status"] == "applied"
    closed = call(c, "GET", f"/api/v1/incidents/{iid}", staff("analyst"))
    assert closed["status"] == "closed" and closed["feedback"][0]["outcome"] == "closed"
    [dossier] = [p["data"] for p in outbox(c, "incident.closed")]
    assert [a["role"] for a in dossier["assignments"]] == ["lead", "co"]
    assert dossier["assignments"][1]["progress"][0]["note"] == "已核实收费票据"
    assert dossier["reply"]["edited_text"] and dossier["reply"]["sent_back"][0]["comment"] == "请写明退费金额"
    assert dossier["reply"]["approved_by"] == "leader" and dossier["reply"]["published_at"]
    assert dossier["feedback"][0]["satisfaction"] == "satisfied"
    assert dossier["close_summary"]["direct"] is False


def test_clocks_remind_at_their_fractions_supervise_at_breach_and_catch_up_once_after_downtime(grading):
    c = grading
    inc = _school_incident(c)
    lead = _assignment(inc, LEAD)
    assert sweep(c)["clocks"] == 0
    # 50 % of the 2-hour sign clock: a 催办 to each unit.
    c.app.state.clock.advance(timedelta(minutes=61))
    first = sweep(c)
    assert first["reminder"] == 2 and first["supervision"] == 0
    assert sweep(c)["reminder"] == 0, "a reminder goes out once"
    # Jump past the breach (the 80 % moment passes unswept): only the 督办, no stale reminder.
    c.app.state.clock.advance(timedelta(minutes=60))
    late = sweep(c)
    assert late["supervision"] == 2 and late["reminder"] == 0
    notes = [p["data"] for p in outbox(c, "notification.requested")]
    assert [n["kind"] for n in notes] == ["reminder", "reminder", "supervision", "supervision"]
    assert notes[0]["params"]["fraction"] == 0.5 and notes[0]["unit_codes"] in ([LEAD], [CO])
    assert notes[2]["params"]["overdue"] is True
    assert set(notes[2]["recipient_roles"]) == {"supervisor", "leader_in_charge"}
    assert len({n["dedupe_key"] for n in notes}) == 4
    over = call(c, "GET", "/api/v1/supervision/overdue?kind=sign", staff("supervisor"))
    assert over["total"] == 2 and all(i["supervised"] for i in over["items"])
    call(c, "GET", "/api/v1/supervision/overdue", staff("unit"), expect=403)
    # Signing late stops the unit's clock (and counts as not on time).
    call(c, "POST", f"/api/v1/assignments/{lead['id']}/sign", unit(LEAD))
    assert call(c, "GET", f"/api/v1/supervision/overdue?unit={LEAD}", staff("leader"))["total"] == 0

    # Downtime over the whole reply clock: one 督办 when the scheduler is back, however often it runs.
    c.app.state.clock.advance(timedelta(days=6))
    back = sweep(c)
    assert back["supervision"] == 1 and back["reminder"] == 0  # the reply clock's, nothing it missed
    assert sweep(c)["clocks"] == 0
    kinds = [(p["data"]["kind"], p["data"]["params"]["clock"]) for p in outbox(c, "notification.requested")]
    assert kinds.count(("supervision", "reply")) == 1
    # 通报: overdue with no explanation; an explanation (情况说明) takes the unit off the list.
    listed = call(c, "GET", "/api/v1/supervision/notices", staff("supervisor"))
    assert [u["unit"]["code"] for u in listed["items"]] == [LEAD]
    call(
        c,
        "POST",
        f"/api/v1/assignments/{lead['id']}/progress",
        unit(LEAD),
        {"note": "涉及多部门核实，正在协调", "kind": "explanation"},
    )
    assert call(c, "GET", "/api/v1/supervision/notices", staff("leader"))["items"] == []
    timeline = [
        t["action"] for t in call(c, "GET", f"/api/v1/incidents/{inc['id']}", staff("analyst"))["timeline"]
    ]
    assert timeline.count("reminded") == 2 and timeline.count("supervised") == 3


def test_extension_before_due_within_the_cap_moves_the_reply_due_and_the_citizen_hears(grading):
    c = grading
    inc = _school_incident(c)
    lead, co = _assignment(inc, LEAD), _assignment(inc, CO)
    call(c, "POST", f"/api/v1/assignments/{lead['id']}/sign", unit(LEAD))
    due = datetime.fromisoformat(inc["deadlines"]["reply_due"])
    url = f"/api/v1/assignments/{lead['id']}/extension"
    too_far = call(
        c,
        "POST",
        url,
        unit(LEAD),
        {"requested_due": (due + timedelta(days=9)).isoformat(), "reason": "需要检测"},
        expect=422,
    )
    assert too_far["error"]["code"] == "past_cap"
    cap = datetime.fromisoformat(too_far["error"]["details"][0]["cap"])
    assert cap > due
    co_ask = call(
        c,
        "POST",
        f"/api/v1/assignments/{co['id']}/extension",
        unit(CO),
        {"requested_due": cap.isoformat(), "reason": "x1"},
        expect=409,
    )
    assert "lead unit" in co_ask["error"]["message"]
    ask = {"requested_due": cap.isoformat(), "reason": "需第三方检测"}
    req = call(c, "POST", url, unit(LEAD), ask, expect=201)
    assert call(c, "POST", url, unit(LEAD), ask, expect=201)["id"] == req["id"]
    assert call(c, "GET", "/api/v1/assignments?extension_pending=true", staff("leader"))["total"] == 1
    call(
        c,
        "POST",
        f"/api/v1/assignments/{lead['id']}/extension/decision",
        unit(LEAD),
        {"approve": True},
        expect=403,
    )
    decided = call(
        c, "POST", f"/api/v1/assignments/{lead['id']}/extension/decision", staff("leader"), {"approve": True}
    )
    assert decided["status"] == "approved"
    view = call(c, "GET", f"/api/v1/incidents/{inc['id']}", staff("analyst"))
    assert datetime.fromisoformat(view["deadlines"]["reply_due"]) == cap
    reply_clock = next(k for k in view["clocks"] if k["kind"] == "reply")
    assert datetime.fromisoformat(reply_clock["due_at"]) == cap
    change = outbox(c, "message.status_changed")[-1]["data"]
    assert datetime.fromisoformat(change["reply_due"]) == cap and "延至" in change["public_note"]
    # No further extension past the cap, and none once the reply is due.
    call(
        c,
        "POST",
        url,
        unit(LEAD),
        {"requested_due": (cap + timedelta(hours=1)).isoformat(), "reason": "再延"},
        expect=422,
    )
    c.app.state.clock.freeze(cap + timedelta(minutes=1))
    late = call(
        c,
        "POST",
        url,
        unit(LEAD),
        {"requested_due": (cap + timedelta(hours=1)).isoformat(), "reason": "再延"},
        expect=409,
    )
    assert late["error"]["code"] == "past_due"


def test_return_reroute_unsatisfied_reopen_report_and_direct_close(grading, service_app):
    c = grading
    inc = _school_incident(c)
    lead = _assignment(inc, LEAD)
    bad = call(
        c, "POST", f"/api/v1/assignments/{lead['id']}/return", unit(LEAD), {"reason": "nonsense"}, expect=422
    )
    assert "territory" in bad["error"]["details"][0]["allowed"]
    call(
        c,
        "POST",
        f"/api/v1/assignments/{lead['id']}/return",
        unit(LEAD),
        {"reason": "territory", "note": "属A6区"},
    )
    returned = call(c, "GET", f"/api/v1/incidents/{inc['id']}", staff("analyst"))
    assert returned["status"] == "returned" and returned["assignments"] == []
    assert "assign" in returned["allowed_actions"]
    # Re-routing by a leader: the instruction is a 批示; the citizen is told of the new unit.
    round2 = call(
        c,
        "POST",
        f"/api/v1/incidents/{inc['id']}/assignments",
        staff("leader"),
        {"lead_unit": "a6-education", "co_units": [], "instruction": "请A6区教育局即查即办"},
        expect=201,
    )
    assert round2["round"] == 2 and round2["assignments"][0]["unit"]["code"] == "a6-education"
    same = call(
        c,
        "POST",
        f"/api/v1/incidents/{inc['id']}/assignments",
        staff("leader"),
        {"lead_unit": "a6-education", "co_units": [], "instruction": "请A6区教育局即查即办"},
        expect=201,
    )
    assert same["id"] == round2["id"], "a retried 批办 makes no second round"
    a6 = round2["id"]
    call(c, "POST", f"/api/v1/assignments/{a6}/sign", unit("a6-education"))
    call(
        c,
        "POST",
        f"/api/v1/assignments/{a6}/reply",
        unit("a6-education"),
        {"finding": "false", "reply_text": "经核查，反映不实。"},
        expect=201,
    )
    call(c, "POST", f"/api/v1/incidents/{inc['id']}/reply/decision", staff("leader"), {"approve": True})
    call(c, "POST", f"/api/v1/incidents/{inc['id']}/publish", staff("analyst"))
    c.app.state.clock.advance(timedelta(days=2))
    fb = MessageFeedback.build(
        source="intake",
        data=MessageFeedbackData(
            message_id=inc["_message_id"],
            tracking_code="x",
            satisfaction="unsatisfied",
            comment="没有解决",
            received_at=T0,
        ),
    ).model_dump(mode="json")
    deliver(c, fb)
    reopened = call(c, "GET", f"/api/v1/incidents/{inc['id']}", staff("analyst"))
    assert reopened["status"] == "reopened" and reopened["reopen_count"] == 1
    assert datetime.fromisoformat(reopened["deadlines"]["reply_due"]) > datetime.fromisoformat(
        inc["deadlines"]["reply_due"]
    )
    [again] = reopened["assignments"]
    assert again["unit"]["code"] == "a6-education" and again["status"] == "assigned" and again["round"] == 3
    assert outbox(c, "message.status_changed")[-1]["data"]["incident_status"] == "reopened"
    call(c, "POST", f"/api/v1/incidents/{inc['id']}/close", staff("clerk"), {"summary": "x"}, expect=409)

    # A level I matter closed after handling needs the 总结报告's fields.
    big = received(
        title="A5区洞井街道某小学门口道路坍塌",
        content="A5区洞井街道某小学门口道路坍塌，一名学生受伤，家长聚集在校门口，请有关部门立即处理。",
        channel="weibo",
        metrics={"views": 500000, "reposts": 20000, "comments": 8000, "likes": 30000},
        at=T0,
    )
    deliver(c, big)
    b = incident_of(c, big["data"]["message_id"])
    assert b["level"] in ("I", "II") and {k["kind"] for k in b["clocks"]} >= {"response", "reply"}
    blead = b["assignments"][0]
    call(c, "POST", f"/api/v1/assignments/{blead['id']}/sign", unit(blead["unit"]["code"]))
    call(
        c,
        "POST",
        f"/api/v1/assignments/{blead['id']}/progress",
        unit(blead["unit"]["code"]),
        {"note": "已封闭现场"},
    )
    follow = outbox(c, "notification.requested")[-1]["data"]
    assert follow["kind"] == "follow_up" and follow["params"]["progress"] == "已封闭现场"
    call(
        c,
        "POST",
        f"/api/v1/incidents/{b['id']}/instructions",
        staff("leader"),
        {"text": "全力救治，及时发布"},
        expect=201,
    )
    call(
        c,
        "POST",
        f"/api/v1/assignments/{blead['id']}/reply",
        unit(blead["unit"]["code"]),
        {"finding": "true", "reply_text": "路面已修复。"},
        expect=201,
    )
    call(c, "POST", f"/api/v1/incidents/{b['id']}/reply/decision", staff("leader"), {"approve": True})
    pub = call(
        c,
        "POST",
        f"/api/v1/incidents/{b['id']}/publish",
        staff("clerk"),
        {"public_response": {"channel": "weibo", "url": "https://weibo.example/gov/1", "text": "情况通报"}},
    )
    assert next(k for k in pub["clocks"] if k["kind"] == "response")["stopped_at"]
    short = call(
        c, "POST", f"/api/v1/incidents/{b['id']}/close", staff("analyst"), {"summary": "已处置"}, expect=422
    )
    assert short["error"]["code"] == "report_required" and len(short["error"]["details"][0]["missing"]) == 4
    report = {
        "summary": "已处置完毕",
        "origin_and_spread": "微博首发，2小时转发过万",
        "verification": "路面塌陷属实，一名学生轻伤",
        "measures": "封闭现场，修复路面，送医",
        "effect": "舆情平息",
    }
    done = call(c, "POST", f"/api/v1/incidents/{b['id']}/close", staff("analyst"), report)
    assert done["status"] == "closed" and done["close_summary"]["verification"]
    dossier = [p["data"] for p in outbox(c, "incident.closed") if p["data"]["id"] == b["id"]][-1]
    assert dossier["instructions"][0]["kind"] == "批示" and dossier["public_response"]["channel"] == "weibo"
    # 直接办结 of a junk matter needs no unit and no report.
    junk = received(title="测试", content="这是一条测试留言，内容不多。", at=T0)
    deliver(c, junk)
    j = incident_of(c, junk["data"]["message_id"])
    assert j["status"] == "graded" and j["assignments"] == []
    call(c, "POST", f"/api/v1/incidents/{j['id']}/screen-out", staff("clerk"), {"reason": "无实质内容"})
    direct = call(
        c, "POST", f"/api/v1/incidents/{j['id']}/close", staff("clerk"), {"summary": "无效留言，直接办结"}
    )
    assert direct["close_summary"]["direct"] is True


def test_statistics_count_what_happened_per_unit_and_rates_follow(grading):
    c = grading
    inc = _school_incident(c)
    lead, co = _assignment(inc, LEAD), _assignment(inc, CO)
    call(c, "POST", f"/api/v1/assignments/{lead['id']}/sign", unit(LEAD))
    call(c, "POST", f"/api/v1/assignments/{co['id']}/return", unit(CO), {"reason": "overlap"})
    # Before any roll-up the query adds what is pending itself.
    live = call(c, "GET", "/api/v1/stats?group_by=unit", staff("supervisor"))
    groups = {g["key"]: g for g in live["groups"]}
    assert groups[LEAD]["counts"]["received"] == 1 and groups[LEAD]["counts"]["signed_on_time"] == 1
    assert groups[CO]["counts"]["returned"] == 1 and groups[CO]["rates"]["response_rate"] == 0.0
    assert sweep(c)["rolled_up"] >= 5
    rolled = call(c, "GET", "/api/v1/stats?group_by=unit", staff("leader"))
    assert rolled["totals"] == live["totals"] and rolled["complete"] is True
    assert rolled["rates"]["response_rate"] == 0.5
    by_channel = call(c, "GET", "/api/v1/stats?group_by=channel&period=month", staff("supervisor"))
    assert by_channel["groups"][0]["key"] == "portal" and len(by_channel["series"]) == 1
    only = call(c, "GET", f"/api/v1/stats?unit={CO}&group_by=none", staff("supervisor"))
    assert only["totals"]["returned"] == 1 and only["totals"]["received"] == 0
    call(c, "GET", "/api/v1/stats", staff("analyst"), expect=403)
    assert call(c, "GET", "/api/v1/stats?from=2026-12-01&to=2026-11-01", staff("leader"), expect=422)


def test_paging_is_bounded_and_unknown_things_are_404(grading):
    c = grading
    for path in ("/api/v1/incidents", "/api/v1/assignments", "/api/v1/supervision/overdue"):
        resp = c.get(path, params={"offset": 10**20}, headers=staff("supervisor"))
        assert resp.status_code == 422, (path, resp.text)
    call(c, "POST", "/api/v1/assignments/nope/sign", unit(LEAD), expect=404)
    call(c, "POST", "/api/v1/incidents/nope/publish", staff("clerk"), expect=404)
