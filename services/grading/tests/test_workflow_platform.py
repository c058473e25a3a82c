"""The handling workflow through the gateway, as the demo users work it across the real processes:
a portal message to a satisfied citizen and a closed, archived incident; a return, re-routing,
extension, rejection at 审定, publication, an unsatisfied citizen and 重办; and every role on every
workflow call."""

import uuid
from datetime import datetime, timedelta

import pytest

from tests.support import API_KEY, message, wait_until

STAFF = ("clerk", "analyst", "leader", "supervisor", "archivist", "admin")


def view(platform, code: str) -> dict:
    resp = platform.http.get(f"/api/v1/public/messages/{code}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def act(platform, user: str, method: str, path: str, json=None, expect: int = 200) -> dict:
    resp = platform.http.request(method, path, json=json, headers=platform.staff(user))
    assert resp.status_code == expect, f"{user} {method} {path}: {resp.status_code} {resp.text}"
    return resp.json()


def assignment_of(platform, unit: str, incident_id: str) -> dict:
    page = act(platform, unit, "GET", f"/api/v1/assignments?incident_id={incident_id}&status=active")
    [mine] = page["items"]  # a unit sees only its own
    return mine


def test_a_portal_message_is_handled_answered_rated_satisfied_closed_and_archived(platform):
    tag = uuid.uuid4().hex[:6]
    accepted = platform.post_message(
        message(
            title=f"A5区某中学乱收费（{tag}）",
            content=f"A5区某中学要求家长交资料费{tag}，属于乱收费，请教育部门查处。",
        )
    ).json()
    code = accepted["tracking_code"]
    assigned = wait_until(lambda: (v := view(platform, code))["status"] == "assigned" and v, what="已交办")
    assert assigned["handling_unit"]["code"] == "a5-education"
    [incident] = platform.incidents_of(accepted["id"])
    iid = incident["id"]

    lead = assignment_of(platform, "a5-education", iid)
    co = assignment_of(platform, "a5-market", iid)
    assert lead["role"] == "lead" and co["role"] == "co" and lead["allowed_actions"][0] == "sign"
    act(platform, "a5-education", "POST", f"/api/v1/assignments/{lead['id']}/sign")
    wait_until(lambda: view(platform, code)["status"] == "in_progress", what="办理中")
    act(platform, "a5-market", "POST", f"/api/v1/assignments/{co['id']}/sign")
    act(platform, "a5-market", "POST", f"/api/v1/assignments/{co['id']}/progress", {"note": "收费票据已核实"})
    act(
        platform, "a5-education", "POST", f"/api/v1/assignments/{lead['id']}/progress", {"note": "已约谈校方"}
    )
    reply_text = f"经核查，该校资料费系违规收取，已责令全额退还（{tag}）。"
    act(
        platform,
        "a5-education",
        "POST",
        f"/api/v1/assignments/{lead['id']}/reply",
        {"finding": "true", "reply_text": reply_text, "measures": "责令退费，通报批评"},
        expect=201,
    )
    assert view(platform, code)["status"] == "in_progress", "a draft never reaches the citizen"
    act(platform, "leader", "POST", f"/api/v1/incidents/{iid}/reply/decision", {"approve": True})
    act(platform, "clerk", "POST", f"/api/v1/incidents/{iid}/publish")
    replied = wait_until(lambda: (v := view(platform, code))["status"] == "replied" and v, what="已答复")
    assert replied["reply"]["text"] == reply_text and replied["reply"]["unit"]["code"] == "a5-education"
    assert replied["feedback_open"] is True
    # notify took the 答复已公开 request (its policy tells the leader in charge and the unit).
    wait_until(
        lambda: any(
            d["event"] == "reply_published"
            for d in platform.http.get(
                "/api/v1/notifications", params={"incident_id": iid}, headers=platform.staff("leader")
            ).json()["items"]
        ),
        what="the reply_published notification",
    )

    fb = platform.http.post(f"/api/v1/public/messages/{code}/feedback", json={"satisfaction": "satisfied"})
    assert fb.status_code == 201, fb.text
    closed = wait_until(lambda: (v := view(platform, code))["status"] == "closed" and v, what="已办结")
    assert closed["status_text"] == "已办结"
    detail = act(platform, "analyst", "GET", f"/api/v1/incidents/{iid}")
    assert detail["status"] == "closed" and detail["feedback"][0]["satisfaction"] == "satisfied"
    steps = [t["action"] for t in detail["timeline"]]
    for step in ("assigned", "signed", "progress", "replied", "approved", "published", "feedback", "closed"):
        assert step in steps, step

    archivist = platform.staff("archivist")
    dossiers = wait_until(
        lambda: platform.http.get(
            "/api/v1/archive/dossiers", params={"incident_id": iid}, headers=archivist
        ).json()["items"],
        what="the dossier",
    )
    sealed = platform.http.get(f"/api/v1/archive/dossiers/{dossiers[0]['id']}", headers=archivist).json()
    content = sealed["content"]
    incident_part = content.get("incident", content)
    assert [a["unit"]["code"] for a in incident_part["assignments"]] == ["a5-education", "a5-market"]
    assert incident_part["reply"]["reply_text"] == reply_text


def test_return_reroute_extension_rejection_publication_unsatisfied_and_reopen(platform):
    tag = uuid.uuid4().hex[:6]
    accepted = platform.post_message(
        message(
            title=f"A2区某工地夜间施工噪音扰民（{tag}）",
            content=f"A2区某工地{tag}每天夜里施工到凌晨两点，噪音严重扰民，请尽快处理。",
        )
    ).json()
    code = accepted["tracking_code"]
    wait_until(lambda: view(platform, code)["status"] == "assigned", what="已交办")
    [incident] = platform.incidents_of(accepted["id"])
    iid, first_unit = incident["id"], incident["lead_unit"]["code"]
    new_unit = "a2-urban_mgmt" if first_unit != "a2-urban_mgmt" else "a2-environment"

    # 退回: the first unit says the matter is not its own; the analyst re-routes it.
    first = assignment_of(platform, first_unit, iid)
    act(
        platform,
        first_unit,
        "POST",
        f"/api/v1/assignments/{first['id']}/return",
        {"reason": "overlap", "note": "夜间施工噪音属城管执法"},
    )
    back = act(platform, "analyst", "GET", f"/api/v1/incidents/{iid}")
    assert back["status"] == "returned" and "assign" in back["allowed_actions"]
    round2 = act(
        platform,
        "analyst",
        "POST",
        f"/api/v1/incidents/{iid}/assignments",
        {"lead_unit": new_unit, "instruction": "请依法查处夜间施工"},
        expect=201,
    )
    wait_until(
        lambda: (view(platform, code).get("handling_unit") or {}).get("code") == new_unit, what="new unit"
    )
    aid = round2["id"]
    act(platform, new_unit, "POST", f"/api/v1/assignments/{aid}/sign")

    # 延期: asked before the due time, approved by a leader; the citizen view shows the new date.
    due = datetime.fromisoformat(
        act(platform, "analyst", "GET", f"/api/v1/incidents/{iid}")["deadlines"]["reply_due"]
    )
    wanted = due + timedelta(days=1)
    ext = act(
        platform,
        new_unit,
        "POST",
        f"/api/v1/assignments/{aid}/extension",
        {"requested_due": wanted.isoformat(), "reason": "需夜间蹲守取证"},
        expect=201,
    )
    assert ext["status"] == "pending"
    act(
        platform,
        "leader",
        "POST",
        f"/api/v1/assignments/{aid}/extension/decision",
        {"approve": True, "comment": "同意"},
    )
    moved = wait_until(
        lambda: (
            (v := view(platform, code))["reply_due"]
            and datetime.fromisoformat(v["reply_due"]) == wanted
            and v
        ),
        what="the new reply date in the citizen view",
    )
    assert any("延至" in t["text"] for t in moved["timeline"])

    # 审定 rejects the first reply; the second is approved and published.
    act(
        platform,
        new_unit,
        "POST",
        f"/api/v1/assignments/{aid}/reply",
        {"finding": "true", "reply_text": "已处理。"},
        expect=201,
    )
    act(
        platform,
        "leader",
        "POST",
        f"/api/v1/incidents/{iid}/reply/decision",
        {"approve": False, "comment": "请写明处罚结果"},
    )
    again = assignment_of(platform, new_unit, iid)
    assert again["status"] == "signed" and "reply" in again["allowed_actions"]
    text = f"经查，该工地夜间违规施工属实，已责令停止夜间作业并处罚款（{tag}）。"
    act(
        platform,
        new_unit,
        "POST",
        f"/api/v1/assignments/{aid}/reply",
        {"finding": "true", "reply_text": text},
        expect=201,
    )
    act(platform, "leader", "POST", f"/api/v1/incidents/{iid}/reply/decision", {"approve": True})
    act(platform, "analyst", "POST", f"/api/v1/incidents/{iid}/publish")
    wait_until(lambda: view(platform, code)["status"] == "replied", what="已答复")

    # Unsatisfied: 重办 with a new deadline, back in the unit's hands.
    fb = platform.http.post(
        f"/api/v1/public/messages/{code}/feedback",
        json={"satisfaction": "unsatisfied", "comment": "仍在施工"},
    )
    assert fb.status_code == 201, fb.text
    reopened = wait_until(
        lambda: (
            (i := act(platform, "analyst", "GET", f"/api/v1/incidents/{iid}"))["status"] == "reopened" and i
        ),
        what="重办",
    )
    assert reopened["reopen_count"] == 1 and reopened["assignments"][0]["unit"]["code"] == new_unit
    redo = wait_until(
        lambda: (v := view(platform, code))["status"] == "in_progress" and v, what="办理中 again"
    )
    assert redo["reply_due"] and datetime.fromisoformat(redo["reply_due"]) > datetime.fromisoformat(
        moved["reply_due"]
    ) - timedelta(days=10)
    returns = act(platform, "supervisor", "GET", f"/api/v1/stats?unit={first_unit}&group_by=none")
    assert returns["totals"]["returned"] >= 1


# Every workflow call and who may make it (DESIGN §3), written out rather than read from x-access.
WORKFLOW_CALLS = [
    ("POST", "/api/v1/incidents/{id}/assignments", {"analyst", "leader"}),
    ("POST", "/api/v1/assignments/{id}/sign", {"unit"}),
    ("POST", "/api/v1/assignments/{id}/return", {"unit"}),
    ("POST", "/api/v1/assignments/{id}/extension", {"unit"}),
    ("POST", "/api/v1/assignments/{id}/extension/decision", {"leader"}),
    ("POST", "/api/v1/assignments/{id}/progress", {"unit"}),
    ("POST", "/api/v1/assignments/{id}/reply", {"unit"}),
    (
        "GET",
        "/api/v1/assignments",
        {"clerk", "analyst", "unit", "leader", "supervisor", "archivist", "admin"},
    ),
    (
        "GET",
        "/api/v1/assignments/{id}",
        {"clerk", "analyst", "unit", "leader", "supervisor", "archivist", "admin"},
    ),
    ("POST", "/api/v1/incidents/{id}/reply/decision", {"leader"}),
    ("POST", "/api/v1/incidents/{id}/publish", {"analyst", "clerk"}),
    ("POST", "/api/v1/incidents/{id}/public-response", {"analyst", "clerk", "leader"}),
    ("POST", "/api/v1/incidents/{id}/close", {"analyst", "clerk"}),
    ("POST", "/api/v1/incidents/{id}/reopen", {"analyst", "clerk"}),
    ("POST", "/api/v1/incidents/{id}/screen-out", {"analyst", "clerk"}),
    ("POST", "/api/v1/incidents/{id}/restore", {"analyst", "clerk"}),
    ("POST", "/api/v1/incidents/{id}/instructions", {"leader"}),
    ("GET", "/api/v1/supervision/overdue", {"supervisor", "leader", "admin"}),
    ("GET", "/api/v1/supervision/notices", {"supervisor", "leader", "admin"}),
    ("POST", "/api/v1/supervision/sweep", {"supervisor", "admin"}),
    ("GET", "/api/v1/stats", {"supervisor", "leader", "admin"}),
]


@pytest.fixture(scope="module")
def callers(platform) -> dict[str, dict[str, str]]:
    out = {role: platform.staff(role) for role in STAFF}
    out["unit"] = platform.staff("a5-education")
    out["client"] = dict(API_KEY)
    out["anonymous"] = {}
    return out


def test_every_role_on_every_workflow_call(platform, callers):
    doc = platform.http.get("/openapi.json").json()["paths"]
    wrong = []
    for method, template, allowed in WORKFLOW_CALLS:
        declared = set(doc[template.replace("{id}", _param(doc, template))][method.lower()]["x-access"])
        if declared != allowed:
            wrong.append(
                f"{method} {template} declares {sorted(declared)}, the design says {sorted(allowed)}"
            )
        path = template.replace("{id}", f"zz-{uuid.uuid4().hex[:8]}")
        for caller, headers in callers.items():
            kwargs = {"json": {}} if method == "POST" else {}
            resp = platform.http.request(method, path, headers=headers, **kwargs)
            if caller in allowed:
                ok = resp.status_code not in (401, 403) and resp.status_code < 500
            else:
                ok = resp.status_code == (401 if caller == "anonymous" else 403)
            if not ok:
                wrong.append(f"{caller} {method} {template}: {resp.status_code} {resp.text[:120]}")
    assert not wrong, "\n".join(wrong)


def _param(doc: dict, template: str) -> str:
    """The parameter name the service uses where the table says {id}."""
    prefix, _, rest = template.partition("{id}")
    for path in doc:
        if path.startswith(prefix) and path.endswith(rest) and path.count("{") == 1:
            return path[len(prefix) : len(path) - len(rest)]
    return "{id}"
