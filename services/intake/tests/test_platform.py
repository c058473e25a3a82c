"""Intake with the real grading service, on the session platform (five processes)."""

from services.intake.tests.test_screening import SPAM_LINE
from tests.support import message, wait_until


def test_a_released_message_is_graded_and_a_screened_one_is_not(platform):
    resp = platform.post_message(message(title=None, content=SPAM_LINE))
    assert resp.status_code == 201 and resp.json()["status"] == "screened_out", resp.text
    accepted = resp.json()
    # Nothing was sent to grading: no incident holds the message.
    assert platform.incidents_of(accepted["id"]) == []
    resp = platform.http.post(
        f"/api/v1/messages/{accepted['id']}/release",
        json={"reason": "复核：有效举报线索"},
        headers=platform.staff("analyst"),
    )
    assert resp.status_code == 200, resp.text
    [incident] = wait_until(
        lambda: platform.incidents_of(accepted["id"]), what="an incident after the release"
    )
    assert accepted["id"] in incident["message_ids"]


def test_a_portal_batch_reaches_grading(platform):
    items = [message(content=f"A3区西湖街道第{i}栋楼下水道堵塞，污水外溢，请尽快疏通。") for i in range(3)]
    resp = platform.http.post(
        "/api/v1/messages/batch", json={"items": items}, headers={"X-API-Key": "demo-portal-key"}
    )
    assert resp.status_code == 200 and resp.json()["created"] == 3, resp.text
    for r in resp.json()["results"]:
        wait_until(lambda r=r: platform.incidents_of(r["id"]), what="incident for a batch item")
