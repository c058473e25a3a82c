"""Notify through the gateway, as staff and a leader's phone reach it (demo platform: console channel)."""

from services.notify.tests.conftest import graded, incident
from tests.support import signed, wait_until


def test_alerts_listing_and_the_public_ack_link_through_the_gateway(platform):
    inc = incident("I")
    resp = signed(
        "POST",
        f"{platform.url('notify')}/internal/events",
        body={"events": [graded(inc).model_dump(mode="json")]},
    )
    assert resp.json()["results"][0]["status"] == "applied"
    leader = platform.staff("leader")
    items = wait_until(
        lambda: [
            d
            for d in platform.http.get(
                "/api/v1/notifications", params={"incident_id": inc.id}, headers=leader
            ).json()["items"]
            if d["status"] == "delivered"
        ],
        what="console deliveries",
    )
    assert {d["channel"] for d in items} == {"console"}  # no provider configured in the demo
    mayor = next(d for d in items if d["recipient"] == "张市长")
    assert mayor["address"] == "138****0001" and inc.code in mayor["content"]
    detail = platform.http.get(f"/api/v1/notifications/{mayor['id']}", headers=platform.staff("clerk")).json()
    assert detail["attempt_log"][0]["provider"] == "console"
    # The link in the alert works through the gateway without any credentials.
    path = "/api/v1/notifications/ack/" + mayor["content"].rsplit("/ack/", 1)[1]
    page = platform.http.get(path, headers={"Accept": "text/html"})
    assert (
        page.status_code == 200
        and page.headers["content-type"].startswith("text/html")
        and "确认收到" in page.text
    )
    done = platform.http.post(path)
    assert done.status_code == 200 and done.json()["acknowledged"] is True
    alerts = platform.http.get("/api/v1/notifications/alerts", params={"incident_id": inc.id}, headers=leader)
    assert alerts.status_code == 200
    [a] = alerts.json()["items"]
    assert a["status"] == "acked" and a["acked_by"] == "link:mayor"
    # Listing needs staff; the alerts view is for leaders, supervisors, analysts; the link is public.
    assert platform.http.get("/api/v1/notifications").status_code == 401
    assert (
        platform.http.get("/api/v1/notifications/alerts", headers=platform.staff("clerk")).status_code == 403
    )
    paths = platform.http.get("/openapi.json").json()["paths"]
    assert paths["/api/v1/notifications/ack/{token}"]["post"]["security"] == []
    assert platform.http.post(path[:-4] + "xxxx").status_code == 404
