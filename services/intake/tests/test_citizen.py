"""The citizen view, satisfaction feedback, reply callbacks to the portal, and look-up limits."""

import json
from datetime import UTC, datetime

import httpx

from kit.migrate import upgrade
from services.intake.main import MIGRATIONS, create_app
from services.intake.tests.conftest import FakePortal, intake_settings
from services.intake.tests.helpers import as_client, status_event
from tests.support import ServerThread, message, signed, wait_until

UNIT = {"code": "a5-housing", "name": "A5区住房和城乡建设局"}


def deliver(intake_url: str, event: dict) -> dict:
    resp = signed("POST", f"{intake_url}/internal/events", body={"events": [event]})
    assert resp.status_code == 200, resp.text
    return resp.json()["results"][0]


def publish_reply(intake_url: str, message_id: str, text: str, *, sequence: int = 5) -> None:
    reply = {"text": text, "unit": UNIT, "finding": "true", "published_at": datetime.now(UTC).isoformat()}
    event = status_event(
        [message_id],
        sequence=sequence,
        citizen_status="replied",
        incident_status="published",
        handling_unit=UNIT,
        reply=reply,
        reply_due="2026-12-01T00:00:00+08:00",
        category={
            "level1": "城乡建设",
            "level2": "城市建设和市政管理",
            "level3": "自来水供应",
            "confidence": 0.9,
        },
    )
    assert deliver(intake_url, event)["status"] == "applied"


def test_the_citizen_follows_a_message_to_its_reply_and_rates_it_once(stack):
    accepted = stack.post(message()).json()
    code = accepted["tracking_code"]
    who = stack.citizen()
    view = stack.http.get(f"/api/v1/public/messages/{code.lower().replace('-', '')}", headers=who)
    assert view.status_code == 200 and view.json()["tracking_code"] == code
    assert view.json()["feedback_open"] is False
    early = stack.http.post(
        f"/api/v1/public/messages/{code}/feedback", json={"satisfaction": "satisfied"}, headers=who
    )
    assert early.status_code == 409 and early.json()["error"]["code"] == "no_reply_to_rate"

    assigned = status_event(
        [accepted["id"]],
        sequence=2,
        citizen_status="assigned",
        incident_status="assigned",
        handling_unit=UNIT,
    )
    assert deliver(stack.intake.url, assigned)["status"] == "applied"
    publish_reply(
        stack.intake.url,
        accepted["id"],
        "经核实已恢复供水。如有疑问请联系经办人13800001111或拨打0731-12345678。",
    )
    view = stack.http.get(f"/api/v1/public/messages/{code}", headers=who).json()
    assert view["status"] == "replied" and view["status_text"] == "已答复"
    assert view["handling_unit"] == UNIT
    assert view["reply"]["text"] == "经核实已恢复供水。如有疑问请联系经办人138****1111或拨打0731-12345678。"
    assert [t["text"] for t in view["timeline"]] == ["已受理", f"已交办：{UNIT['name']}", "已答复"]
    assert view["category"]["level3"] == "自来水供应" and view["feedback_open"] is True
    water = stack.http.get("/open311/v2/services.json").json()
    service = next(s["service_code"] for s in water if s["service_name"] == "自来水供应")
    listed = stack.http.get("/open311/v2/requests.json", params={"service_code": service}).json()
    assert accepted["id"] in {r["service_request_id"] for r in listed}  # grading's category gives the service
    assert not {"reporter", "content", "incident_id", "screening", "client_id"} & set(view)

    bad = stack.http.post(
        f"/api/v1/public/messages/{code}/feedback", json={"satisfaction": "meh"}, headers=who
    )
    assert bad.status_code == 422
    resp = stack.http.post(
        f"/api/v1/public/messages/{code}/feedback",
        json={"satisfaction": "unsatisfied", "comment": "水质仍浑浊"},
        headers=who,
    )
    assert resp.status_code == 201, resp.text
    assert stack.received_events(accepted["id"], "message.feedback") == 1
    again = stack.http.post(
        f"/api/v1/public/messages/{code}/feedback", json={"satisfaction": "satisfied"}, headers=who
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "feedback_already_given"
    assert stack.http.get(f"/api/v1/public/messages/{code}", headers=who).json()["feedback_open"] is False
    missing = stack.http.get("/api/v1/public/messages/0000-0000-0000-0", headers=who)
    assert missing.status_code == 404


def test_look_ups_are_limited_per_client_address(stack):
    code = stack.post(message()).json()["tracking_code"]
    who, other = stack.citizen(), stack.citizen()
    answers = [stack.http.get(f"/api/v1/public/messages/{code}", headers=who) for _ in range(11)]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    assert answers[10].status_code == 429 and answers[10].json()["error"]["code"] == "rate_limited"
    assert int(answers[10].headers["retry-after"]) >= 1
    # Guessing codes counts too, and another address is not affected.
    assert stack.http.get("/api/v1/public/messages/AAAA-AAAA-AAAA-A", headers=who).status_code == 429
    assert stack.http.get(f"/api/v1/public/messages/{code}", headers=other).status_code == 200


def test_a_published_reply_reaches_the_portal_signed_after_retries(stack):
    accepted = stack.post(message()).json()
    stack.portal.fail_for[accepted["id"]] = 2
    publish_reply(stack.intake.url, accepted["id"], "已处理完毕。")
    got = wait_until(
        lambda: [d for d in stack.portal.received(accepted["id"]) if d["answered"] == 200], what="callback"
    )
    attempts = stack.portal.received(accepted["id"])
    assert len(attempts) == 3 and all(d["signature_ok"] for d in attempts)
    assert len({d["delivery"] for d in attempts}) == 1  # one delivery id on every retry
    body = json.loads(got[0]["body"])
    assert got[0]["event"] == "message.replied"
    assert (
        body["message"]["tracking_code"] == accepted["tracking_code"]
        and body["reply"]["text"] == "已处理完毕。"
    )
    # The portal has answered; intake records the outcome a moment later, in its own transaction.
    [(attempts_db, delivered)] = wait_until(
        lambda: stack.sql(
            "SELECT attempts, delivered_at FROM callback WHERE message_id = :m AND delivered_at IS NOT NULL",
            m=accepted["id"],
        ),
        what="the delivery recorded",
    )
    assert attempts_db == 3 and delivered is not None
    metrics = httpx.get(f"{stack.intake.url}/metrics", trust_env=False).text
    assert (
        "minsheng_intake_callbacks_delivered_total" in metrics
        and "minsheng_intake_callbacks_pending" in metrics
    )


def test_a_callback_survives_an_intake_restart(databases, tmp_path):
    url = databases.url("intake")
    upgrade(MIGRATIONS, url)
    portal = FakePortal()
    portal.down = True  # the portal is down while the first intake runs
    with portal.server:
        settings = intake_settings(
            url, tmp_path, callback_urls={"demo-portal": f"{portal.server.url}/callback"}
        )
        with ServerThread(create_app(settings)) as server:
            resp = httpx.post(
                f"{server.url}/api/v1/messages", json=message(), headers=as_client(), trust_env=False
            )
            mid = resp.json()["id"]
            publish_reply(server.url, mid, "已答复。")
            wait_until(lambda: portal.received(mid), what="a first, failed attempt")
        assert not [d for d in portal.received(mid) if d["answered"] == 200]
        portal.down = False
        with ServerThread(create_app(settings)):
            wait_until(
                lambda: [d for d in portal.received(mid) if d["answered"] == 200],
                what="delivery after the restart",
            )
        assert sum(1 for d in portal.received(mid) if d["answered"] == 200) == 1


def test_a_delivery_of_status_changes_is_applied_in_order_with_stale_and_unknown_ones_ignored(stack):
    """A relay delivers many changes at once (intake applies them together): each message ends at its
    newest change, an older change delivered later is ignored, every change leaves its own step, a
    reply in the run is called back once, and ids intake never had change nothing."""
    one, two = (stack.post(message()).json()["id"] for _ in range(2))
    published = datetime.now(UTC).isoformat()
    reply = {"text": "已修复。", "unit": UNIT, "finding": "true", "published_at": published}
    still_assigned = {"citizen_status": "assigned", "incident_status": "assigned", "incident_id": "inc-run"}
    events = [
        status_event(
            [one, two],
            sequence=2,
            citizen_status="assigned",
            incident_status="assigned",
            handling_unit=UNIT,
            incident_id="inc-run",
        ),
        status_event(
            [one, one],
            sequence=3,
            citizen_status="in_progress",
            incident_status="signed",
            incident_id="inc-run",
            public_note="正在现场处置",
        ),
        status_event(
            [two, "no-such-message"],
            sequence=1,
            citizen_status="received",
            incident_status="received",
            incident_id="inc-run",
        ),  # older than what two has: ignored
        # the same status with a note for the public: a step of its own
        status_event([two], sequence=5, **still_assigned, public_note="已联系市民，约定上门时间"),
        # the same status again, nothing for the public: no step (it follows the changes before it)
        status_event([two], sequence=6, **still_assigned, handling_unit=UNIT),
        status_event(
            [one],
            sequence=4,
            citizen_status="replied",
            incident_status="published",
            handling_unit=UNIT,
            reply=reply,
            incident_id="inc-run",
        ),
    ]
    resp = signed("POST", f"{stack.intake.url}/internal/events", body={"events": events})
    assert resp.status_code == 200, resp.text
    assert [r["status"] for r in resp.json()["results"]] == ["applied"] * 6
    rows = dict(
        (m, (s, q))
        for m, s, q in stack.sql(
            "SELECT id, citizen_status, status_sequence FROM message WHERE id IN (:a, :b)", a=one, b=two
        )
    )
    assert rows == {one: ("replied", 4), two: ("assigned", 6)}
    steps = {
        m: [
            t
            for (t,) in stack.sql("SELECT text FROM message_event WHERE message_id = :m ORDER BY at, id", m=m)
        ]
        for m in (one, two)
    }
    assert steps[one] == ["已受理", f"已交办：{UNIT['name']}", "正在现场处置", "已答复"]
    assert steps[two] == ["已受理", f"已交办：{UNIT['name']}", "已联系市民，约定上门时间"]
    wait_until(lambda: stack.portal.received(one), what="the reply's callback")
    assert len(stack.portal.received(one)) == 1 and stack.portal.received(two) == []
    again = signed("POST", f"{stack.intake.url}/internal/events", body={"events": events})
    assert [r["status"] for r in again.json()["results"]] == ["duplicate"] * 6
    assert len(stack.sql("SELECT id FROM message_event WHERE message_id = :m", m=one)) == 4
