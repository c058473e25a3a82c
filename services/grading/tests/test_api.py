"""Grading through HTTP: incidents of one matter, escalation, reviews, merge/split, bundle reload, metrics."""

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from services.grading.models import OutboxEvent
from services.grading.tests.helpers import bundle_copy, deliver, line_of, received, replace_in, staff
from tests.support import message, wait_until


def _incident_of(client, message_id: str) -> dict:
    resp = client.get("/api/v1/incidents", params={"message_id": message_id}, headers=staff("analyst"))
    assert resp.status_code == 200, resp.text
    [item] = resp.json()["items"]
    return client.get(f"/api/v1/incidents/{item['id']}", headers=staff("analyst")).json()


def _outbox(client, event_type: str) -> list[dict]:
    async def rows():
        async with client.app.state.sessions() as s:
            q = select(OutboxEvent).where(OutboxEvent.event_type == event_type)
            return [r.payload for r in (await s.exec(q)).all()]

    return client.portal.call(rows)


def test_messages_of_one_matter_from_any_channel_join_one_incident_and_the_citizen_view_follows(platform):
    first = platform.post_message(
        message(
            title="A4区捞刀河街道某厂夜间排放刺鼻废气",
            content="A4区捞刀河街道某化工厂每天夜里排放刺鼻废气，居民无法开窗。",
        )
    ).json()
    [incident] = wait_until(lambda: platform.incidents_of(first["id"]), what="incident")
    second = platform.post_message(
        message(
            channel="weibo",
            title="A4区捞刀河街道某厂夜间排放刺鼻废气！！",
            content="A4区捞刀河街道某化工厂每天夜里排放刺鼻废气，居民无法开窗。",
            source_url="https://weibo.example/status/2",
        )
    ).json()
    joined = wait_until(lambda: (i := platform.incidents_of(second["id"])) and i[0], what="joined incident")
    assert joined["id"] == incident["id"] and set(joined["message_ids"]) == {first["id"], second["id"]}
    assert set(joined["channels"]) == {"portal", "weibo"} and joined["message_count"] == 2
    # The joining message's citizen view shows the incident's handling unit too.
    view = wait_until(
        lambda: (
            (v := platform.http.get(f"/api/v1/public/messages/{second['tracking_code']}").json())["status"]
            == "assigned"
            and v
        ),
        what="已交办 for the joining message",
    )
    assert view["handling_unit"]["code"] == incident["lead_unit"]["code"]
    detail = platform.http.get(
        f"/api/v1/incidents/{incident['id']}", headers=platform.staff("analyst")
    ).json()
    assert "message_joined" in [t["action"] for t in detail["timeline"]]
    assert detail["policy_version"] and detail["route_reason"] and detail["original_grading"]["route_reason"]


def test_a_growing_incident_is_regraded_and_escalated(service_app):
    client = service_app("grading")
    t0 = datetime.now(UTC) - timedelta(hours=1)
    body = "A6区月亮岛街道某小区旁新建高压电线，业主担心辐射，强烈反对。"
    first = received(title="A6区月亮岛街道高压线离小区太近", content=body, at=t0)
    deliver(client, first)
    start = _incident_of(client, first["data"]["message_id"])
    events = [
        received(
            title=f"A6区月亮岛街道高压线离小区太近{i}",
            content=body,
            at=t0 + timedelta(minutes=i),
            channel="weibo",
            metrics={"views": 80000, "reposts": 3000, "comments": 2000, "likes": 5000},
        )
        for i in range(1, 12)
    ]
    assert {r["status"] for r in deliver(client, *events)} == {"applied"}
    grown = _incident_of(client, first["data"]["message_id"])
    assert grown["id"] == start["id"] and grown["message_count"] == 12
    assert grown["level"] < start["level"] or start["level"] == "I"  # "I" < "IV" as text: more serious
    names = {f["name"] for f in grown["factors"]}
    assert {"cluster_size", "growth", "spread", "channels", "media"} <= names
    assert "escalated" in [t["action"] for t in grown["timeline"]]
    escalated = _outbox(client, "incident.escalated")
    assert (
        escalated and escalated[-1]["data"]["id"] == grown["id"] and escalated[-1]["data"]["previous_level"]
    )
    # Every message, joined or not, got its own status change for the citizen view.
    told = {m for p in _outbox(client, "message.status_changed") for m in p["data"]["message_ids"]}
    assert told >= {e["data"]["message_id"] for e in [first, *events]}
    assert grown["stage"] in ("forming", "outbreak") and grown["heat"] > start["heat"]


def test_an_analyst_reviews_level_category_and_units_and_the_original_is_kept(service_app):
    client = service_app("grading")
    ev = received(title="A3区学士街道路灯不亮", content="A3区学士街道某路段路灯不亮，夜间出行不便。")
    deliver(client, ev)
    inc = _incident_of(client, ev["data"]["message_id"])
    url = f"/api/v1/incidents/{inc['id']}/review"
    change = {
        "level": "II",
        "lead_unit": "a3-urban_mgmt",
        "co_units": ["a3-xueshi"],
        "reason": "夜间多起摔伤，提级督办",
    }
    assert client.post(url, json=change, headers=staff("clerk")).status_code == 403
    bad = client.post(url, json={**change, "lead_unit": "nobody"}, headers=staff("analyst"))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_unit"
    assert client.post(url, json={"reason": "没有改动"}, headers=staff("analyst")).status_code == 422
    resp = client.post(url, json=change, headers=staff("analyst", sub="li-analyst"))
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["level"] == "II" and out["lead_unit"]["code"] == "a3-urban_mgmt"
    assert [u["code"] for u in out["co_units"]] == ["a3-xueshi"]
    [review] = out["reviews"]
    assert (
        review["actor"] == "li-analyst"
        and review["before"]["level"] == inc["level"]
        and review["after"]["level"] == "II"
    )
    assert out["original_grading"]["level"] == inc["level"] and set(out["review_pins"]) == {"level", "units"}
    cat = client.post(
        url,
        json={
            "category": {"level1": "城乡建设", "level2": "城市建设和市政管理", "level3": "城市公共设施"},
            "reason": "路灯属城市公共设施",
        },
        headers=staff("analyst"),
    )
    assert (
        cat.status_code == 200
        and cat.json()["category"]["level3"] == "城市公共设施"
        and len(cat.json()["reviews"]) == 2
    )
    unknown = client.post(
        url, json={"category": {"level1": "不存在"}, "reason": "试试"}, headers=staff("analyst")
    )
    assert unknown.status_code == 422
    assert _outbox(client, "incident.escalated"), "raising the level alerts as an escalation"


def test_staff_merge_and_split_incidents_with_reasons(service_app):
    client = service_app("grading")
    a = received(title="A5区洞井街道某工地夜间施工", content="A5区洞井街道某工地每天夜里施工到凌晨。")
    b = received(title="A9市集里街道菜市场占道经营", content="A9市集里街道菜市场门口占道经营严重。")
    deliver(client, a, b)
    ia, ib = _incident_of(client, a["data"]["message_id"]), _incident_of(client, b["data"]["message_id"])
    assert ia["id"] != ib["id"]
    merged = client.post(
        f"/api/v1/incidents/{ia['id']}/merge",
        json={"incident_ids": [ib["id"]], "reason": "同一业主群反映"},
        headers=staff("analyst"),
    )
    assert merged.status_code == 200, merged.text
    assert set(merged.json()["message_ids"]) == {a["data"]["message_id"], b["data"]["message_id"]}
    gone = client.get(f"/api/v1/incidents/{ib['id']}", headers=staff("analyst")).json()
    assert gone["status"] == "merged" and gone["merged_into"] == ia["id"] and gone["message_ids"] == []
    again = client.post(
        f"/api/v1/incidents/{ia['id']}/merge",
        json={"incident_ids": [ib["id"]], "reason": "再并"},
        headers=staff("analyst"),
    )
    assert again.status_code == 409
    split = client.post(
        f"/api/v1/incidents/{ia['id']}/split",
        json={"message_ids": [b["data"]["message_id"]], "reason": "并非同一事项"},
        headers=staff("analyst"),
    )
    assert split.status_code == 201, split.text
    new = split.json()
    assert new["message_ids"] == [b["data"]["message_id"]] and new["lead_unit"]["code"].startswith("a9-")
    assert "split_from" in [t["action"] for t in new["timeline"]]
    left = client.get(f"/api/v1/incidents/{ia['id']}", headers=staff("analyst")).json()
    assert left["message_ids"] == [a["data"]["message_id"]]
    assert {"merged", "split"} <= {t["action"] for t in left["timeline"]}
    all_out = client.post(
        f"/api/v1/incidents/{ia['id']}/split",
        json={"message_ids": [a["data"]["message_id"]], "reason": "全拆"},
        headers=staff("analyst"),
    )
    assert all_out.status_code == 422
    # The moved message's citizen view moved with it (a status change naming the new incident).
    moves = [
        p["data"] for p in _outbox(client, "message.status_changed") if p["data"]["incident_id"] == new["id"]
    ]
    assert moves and moves[-1]["message_ids"] == [b["data"]["message_id"]]


def test_the_bundle_reloads_by_admin_call_and_a_bad_one_is_refused_keeping_the_last_good(
    service_app, tmp_path
):
    d = bundle_copy(tmp_path)
    client = service_app("grading", bundle_dir=d)
    status = client.get("/api/v1/grading/bundle", headers=staff("analyst")).json()
    before = status["bundle"]["policy_version"]
    assert client.post("/api/v1/grading/bundle/reload", headers=staff("analyst")).status_code == 403
    replace_in(d / "policy.yaml", "level_thresholds: {I: 80, II: 55,", "level_thresholds: {I: 50, II: 55,")
    resp = client.post("/api/v1/grading/bundle/reload", headers=staff("admin"))
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "bundle_invalid"
    line = line_of(d / "policy.yaml", "level_thresholds")
    assert any(p["problem"].startswith(f"policy.yaml:{line}:") for p in resp.json()["error"]["details"])
    ev = received(title="A1区某小区停水", content="A1区某小区停水两天。")
    deliver(client, ev)
    assert _incident_of(client, ev["data"]["message_id"])["policy_version"] == before
    replace_in(d / "policy.yaml", "level_thresholds: {I: 50, II: 55,", "level_thresholds: {I: 90, II: 55,")
    replace_in(d / "policy.yaml", f'version: "{before}"', 'version: "test-2"')
    ok = client.post("/api/v1/grading/bundle/reload", headers=staff("admin"))
    assert ok.status_code == 200 and ok.json()["bundle"]["policy_version"] == "test-2"
    ev2 = received(title="A1区另一小区停电", content="A1区某小区停电一天。")
    deliver(client, ev2)
    assert _incident_of(client, ev2["data"]["message_id"])["policy_version"] == "test-2"
    dry = client.post(
        "/api/v1/grading/dry-run",
        json={"title": "A7县教育局", "content": "A7县某小学乱收费"},
        headers=staff("analyst"),
    )
    assert dry.status_code == 200 and dry.json()["lead_unit"]["code"] == "a7-education"
    metrics = client.get("/metrics").text
    assert "minsheng_grading_incidents{" in metrics and "minsheng_grading_low_confidence_total" in metrics
    assert "minsheng_grading_grade_seconds_bucket" in metrics
