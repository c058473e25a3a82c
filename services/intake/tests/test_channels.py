"""Every channel with its own fields, and every kind of bad input, through the gateway."""

import uuid

import pytest

from tests.support import API_KEY, message


def error(resp) -> dict:
    body = resp.json()
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


CHANNELS = ["hotline", "portal", "weibo", "wechat", "douyin", "forum", "news", "superior", "grid", "other"]


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_channel_with_its_fields_is_received_and_kept(stack, staff_tokens, channel):
    body = message(
        channel=channel,
        occurred_at="2026-11-20T09:30:00+08:00",
        location={"text": "A5区洞井街道", "district_code": "A5", "lat": 28.1, "lng": 113.0},
        category_hint="城乡建设",
    )
    resp = stack.post(body)
    assert resp.status_code == 201, resp.text
    accepted = resp.json()
    assert accepted["status"] == "received" and accepted["status_text"] == "已受理"
    stored = stack.http.get(f"/api/v1/messages/{accepted['id']}", headers=staff_tokens("analyst")).json()
    assert stored["channel"] == channel and stored["content_original"] == body["content"]
    for field in ("source_url", "source_name", "request_type", "external_id"):
        if field in body:
            assert stored[field] == body[field], field
    if "superior" in body:
        assert stored["superior"]["doc_no"] == body["superior"]["doc_no"]
    if "metrics" in body:
        assert stored["metrics"]["views"] == body["metrics"]["views"]
    assert stored["location"]["district_code"] == "A5"


@pytest.mark.parametrize(
    ("channel", "drop", "loc"),
    [
        ("hotline", "request_type", ["body", "request_type"]),
        ("hotline", "external_id", ["body", "external_id"]),
        ("portal", "external_id", ["body", "external_id"]),
        ("weibo", "source_url", ["body", "source_url"]),
        ("wechat", "published_at", ["body", "published_at"]),
        ("douyin", "source_name", ["body", "source_name"]),
        ("news", "metrics", ["body", "metrics"]),
        ("superior", "superior.doc_no", ["body", "superior", "doc_no"]),
        ("grid", "location", ["body", "location"]),
    ],
)
def test_a_channel_without_its_required_field_is_422(stack, channel, drop, loc):
    body = message(channel=channel)
    if "." in drop:
        outer, inner = drop.split(".")
        body[outer] = {k: v for k, v in body[outer].items() if k != inner}
    else:
        body.pop(drop)
    resp = stack.post(body)
    assert resp.status_code == 422, resp.text
    err = error(resp)
    assert err["code"] == "missing_channel_fields"
    assert err["details"] == [
        {"loc": loc, "msg": err["details"][0]["msg"], "type": "missing_channel_fields"}
    ], err


VALID_ID = "11010519491231002X"  # the national standard's example, check digit X


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"reporter": {"phone": "12345678901"}}, 422, "invalid_phone"),
        ({"reporter": {"phone": "1381234567"}}, 422, "invalid_phone"),
        ({"reporter": {"id_number": "110105194912310021"}}, 422, "invalid_id_number"),  # wrong check digit
        ({"reporter": {"id_number": "110105194913310029"}}, 422, "invalid_id_number"),  # month 13
        ({"reporter": {"email": "not-an-address"}}, 422, "invalid_email"),
        ({"content": "长" * 20001}, 422, "content_too_long"),
        ({"title": "题" * 501}, 422, "title_too_long"),
        (
            {"attachments": [{"url": f"https://f.example/{i}.jpg"} for i in range(21)]},
            422,
            "too_many_attachments",
        ),
        ({"attachments": [{"upload_id": str(uuid.uuid4())}]}, 422, "unknown_upload"),
        ({"attachments": [{"url": "ftp://files.example/a.jpg"}]}, 422, "validation_error"),
        ({"attachments": [{"name": "neither url nor upload"}]}, 422, "validation_error"),
        ({"occurred_at": "2026-11-20T09:30:00"}, 422, "validation_error"),  # no zone
        ({"channel": "fax"}, 422, "validation_error"),
        ({"content": "   "}, 422, "validation_error"),
        ({"unknown_field": 1}, 422, "validation_error"),
        ({"request_type": "rant"}, 422, "validation_error"),
        ({"location": {"lat": 91}}, 422, "validation_error"),
        ({"metrics": {"views": -1}}, 422, "validation_error"),
    ],
)
def test_bad_input_has_its_own_status_and_code(stack, overrides, status, code):
    resp = stack.post(message(**overrides))
    assert resp.status_code == status, resp.text
    assert error(resp)["code"] == code


def test_transport_level_errors(stack):
    resp = stack.http.post(
        "/api/v1/messages", content=b'{"channel":', headers={**API_KEY, "content-type": "application/json"}
    )
    assert resp.status_code == 400 and error(resp)["code"] == "malformed_json"
    resp = stack.http.post(
        "/api/v1/messages", content=b"x", headers={**API_KEY, "content-type": "text/plain"}
    )
    assert resp.status_code == 415 and error(resp)["code"] == "unsupported_media_type"
    resp = stack.http.post("/api/v1/messages", json=message())
    assert resp.status_code == 401 and error(resp)["code"] == "unauthenticated"


def test_every_breach_is_listed_with_its_own_type(stack):
    body = message(channel="hotline", reporter={"phone": "123", "email": "x@"})
    body.pop("request_type")
    err = error(stack.post(body))
    assert err["code"] == "missing_channel_fields"
    assert [d["type"] for d in err["details"]] == ["missing_channel_fields", "invalid_phone", "invalid_email"]


def test_valid_identity_is_normalised_and_accepted(stack, staff_tokens):
    resp = stack.post(
        message(
            reporter={
                "name": "王小明",
                "phone": "+86 138-1234-5678",
                "id_number": VALID_ID.lower(),
                "email": "Wang@Example.COM",
            }
        )
    )
    assert resp.status_code == 201, resp.text
    stored = stack.http.get(f"/api/v1/messages/{resp.json()['id']}", headers=staff_tokens("clerk")).json()
    assert stored["reporter"]["phone"] == "13812345678"
    assert stored["reporter"]["id_number"] == VALID_ID
    assert stored["reporter"]["email"] == "Wang@example.com"
