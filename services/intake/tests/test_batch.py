"""POST /api/v1/messages/batch: a result per item, good items kept, duplicates answered, and the real data."""

import secrets
import time

import pytest

from services.intake.tests.helpers import portal_item, real_messages
from tests.support import API_KEY, message


def post_batch(stack, items, **headers):
    return stack.http.post("/api/v1/messages/batch", json={"items": items}, headers={**API_KEY, **headers})


def test_a_mixed_batch_keeps_the_good_items_and_says_why_the_others_failed(stack, staff_tokens):
    existing = message()
    assert stack.post(existing).status_code == 201
    good, twin = message(), message()
    twin["external_id"] = good["external_id"]
    weibo = message(channel="weibo")
    weibo.pop("source_url")
    items = [
        good,
        {"channel": "portal"},
        twin,
        existing,
        weibo,
        message(reporter={"id_number": "123"}),
        message(),
    ]
    resp = post_batch(stack, items)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    statuses = [(r["index"], r["status"]) for r in body["results"]]
    assert statuses == [
        (0, "created"),
        (1, "rejected"),
        (2, "duplicate"),
        (3, "duplicate"),
        (4, "rejected"),
        (5, "rejected"),
        (6, "created"),
    ]
    r = body["results"]
    assert r[2]["id"] == r[0]["id"] and r[2]["tracking_code"] == r[0]["tracking_code"]
    assert r[1]["error"]["code"] == "validation_error"
    assert r[4]["error"]["code"] == "missing_channel_fields"
    assert r[5]["error"]["code"] == "invalid_id_number"
    assert (body["created"], body["duplicate"], body["rejected"]) == (2, 2, 3)
    view = stack.http.get(f"/api/v1/public/messages/{r[6]['tracking_code']}", headers=stack.citizen())
    assert view.status_code == 200 and view.json()["status_text"] == "已受理"
    assert stack.received_events(r[0]["id"]) == 1 and stack.received_events(r[6]["id"]) == 1


def test_batch_limits(stack):
    resp = post_batch(stack, [message() for _ in range(1001)])
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "batch_too_large"
    resp = post_batch(stack, [])
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "validation_error"


def test_a_batch_honours_idempotency_key(stack):
    key = {"Idempotency-Key": secrets.token_hex(8)}
    items = [message(), message()]
    first = post_batch(stack, items, **key)
    again = post_batch(stack, items, **key)
    assert first.json() == again.json() and again.headers["idempotent-replayed"] == "true"
    assert [x["status"] for x in again.json()["results"]] == ["created", "created"]


@pytest.mark.slow
def test_every_real_message_loads_through_the_batch_endpoint_once(stack):
    rows = real_messages("messages_with_votes.jsonl", "messages_with_replies.jsonl")
    assert len(rows) == 6322
    prefix = f"bulk-{secrets.token_hex(3)}-"
    items = [portal_item(r, prefix) for r in rows]

    def load() -> dict[str, int]:
        totals = {"created": 0, "duplicate": 0, "rejected": 0, "screened": 0}
        for i in range(0, len(items), 1000):
            resp = post_batch(stack, items[i : i + 1000])
            assert resp.status_code == 200, resp.text[:500]
            body = resp.json()
            rejected = [x for x in body["results"] if x["status"] == "rejected"]
            assert not rejected, rejected[:3]
            totals["screened"] += sum(1 for x in body["results"] if x.get("message_status") == "screened_out")
            for k in ("created", "duplicate", "rejected"):
                totals[k] += body[k]
        return totals

    started = time.perf_counter()
    first = load()
    assert first == {"created": 6322, "duplicate": 0, "rejected": 0, "screened": 0}, first
    stored = stack.sql("SELECT count(*) FROM message WHERE external_id LIKE :p", p=f"{prefix}%")[0][0]
    assert stored == 6322
    again = load()
    assert again == {"created": 0, "duplicate": 6322, "rejected": 0, "screened": 0}, again
    assert stack.sql("SELECT count(*) FROM message WHERE external_id LIKE :p", p=f"{prefix}%")[0][0] == 6322
    sample = stack.sql(
        "SELECT content_original FROM message WHERE external_id = :e", e=f"{prefix}{rows[4000]['id']}"
    )
    assert sample[0][0] == rows[4000]["body"].strip()
    print(f"\nbulk load: 2 × 6322 messages in {time.perf_counter() - started:.1f} s")
