"""The Open311 GeoReport v2 facade, driven by a third-party client (georeport) and by the spec's examples."""

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from georeport import GeoReport

from services.intake.open311 import service_code_for
from services.intake.tests.helpers import status_event
from services.intake.tests.test_citizen import UNIT, deliver
from tests.support import message

WATER = service_code_for("城乡建设", "城市建设和市政管理", "自来水供应")
JURISDICTION = "a-city.xidi.gov.cn"


@pytest.fixture(scope="module")
def client(stack):
    return GeoReport(f"{stack.gateway.url}/open311/v2", jurisdiction=JURISDICTION, api_key="demo-portal-key")


@pytest.fixture(scope="module")
def xml_client(stack):
    return GeoReport(f"{stack.gateway.url}/open311/v2", api_key="demo-portal-key", output_format="xml")


def spec_post(stack, fmt="json", **fields):
    """POST requests as the spec shows it: form-encoded, api_key among the fields."""
    data = {
        "api_key": "demo-portal-key",
        "jurisdiction_id": JURISDICTION,
        "service_code": WATER,
        "lat": "28.1128",
        "long": "112.9834",
        "address_string": "A5区洞井街道某小区",
        "email": "citizen@example.com",
        "first_name": "小明",
        "last_name": "王",
        "phone": "13812345678",
        "description": "小区已停水三天，物业不管，我的电话13812345678。",
        "media_url": "https://img.example/water.jpg",
        "attribute[request_type]": "complaint",
    }
    data.update(fields)
    return stack.http.post(
        f"/open311/v2/requests.{fmt}", data={k: v for k, v in data.items() if v is not None}
    )


def test_services_and_definitions_through_a_third_party_client(client, xml_client):
    services = client.get_service_list()
    water = next(s for s in services if s["service_code"] == WATER)
    assert (
        water["service_name"] == "自来水供应" and water["group"] == "城乡建设" and water["metadata"] is True
    )
    assert len(services) > 400 and len({s["service_code"] for s in services}) == len(services)
    xml_services = xml_client.get_service_list()
    assert {s["service_code"] for s in xml_services} == {s["service_code"] for s in services}
    definition = client.get_service_definition(WATER)
    assert definition["service_code"] == WATER
    [request_type] = [a for a in definition["attributes"] if a["code"] == "request_type"]
    assert (
        request_type["datatype"] == "singlevaluelist"
        and {"key": "complaint", "name": "投诉"} in request_type["values"]
    )
    xml_def = xml_client.get_service_definition(WATER)
    assert (
        xml_def["service_code"] == WATER and xml_def["attributes"]["attribute"][0]["code"] == "request_type"
    )


def test_a_request_posted_as_the_spec_shows_is_followed_to_closed(stack, client, xml_client):
    resp = spec_post(stack)
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    [created] = resp.json()
    rid = created["service_request_id"]
    assert created["service_notice"].startswith("已受理。查询码：")

    req = client.get_service_request(rid)
    assert req["status"] == "open" and req["service_code"] == WATER and req["service_name"] == "自来水供应"
    assert req["lat"] == pytest.approx(28.1128) and req["long"] == pytest.approx(112.9834)
    assert req["address"] == "A5区洞井街道某小区" and req["media_url"] == "https://img.example/water.jpg"
    assert "13812345678" not in req["description"] and "138****5678" in req["description"]
    assert req["requested_datetime"].endswith("+08:00")

    closed = status_event(
        [rid],
        sequence=9,
        citizen_status="closed",
        incident_status="closed",
        handling_unit=UNIT,
        reply_due="2026-12-01T18:00:00+08:00",
        public_note="已办结：已恢复供水",
    )
    assert deliver(stack.intake.url, closed)["status"] == "applied"
    req = xml_client.get_service_request(rid)
    assert req["status"] == "closed" and req["status_notes"] == "已办结：已恢复供水"
    assert (
        req["agency_responsible"] == UNIT["name"] and req["expected_datetime"] == "2026-12-01T18:00:00+08:00"
    )

    listed = client.get_service_requests(service_code=WATER, status="closed")
    assert rid in {r["service_request_id"] for r in listed}
    assert rid not in {r["service_request_id"] for r in client.get_service_requests(status="open")}
    both = client.get_service_requests(service_request_id=f"{rid},no-such-id")
    assert [r["service_request_id"] for r in both] == [rid]


def test_json_body_and_xml_answers_for_post(stack):
    resp = stack.http.post(
        "/open311/v2/requests.xml",
        params={"api_key": "demo-portal-key"},
        json={
            "service_code": WATER,
            "address_string": "A1区某路口",
            "description": "路口自来水管爆裂",
            "attribute": {"request_type": "help"},
        },
    )
    assert resp.status_code == 201 and resp.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(resp.content)
    assert root.tag == "service_requests" and root.find("request/service_request_id").text


def _error(resp, fmt="json"):
    if fmt == "xml":
        root = ET.fromstring(resp.content)
        assert root.tag == "errors"
        return int(root.find("error/code").text), root.find("error/description").text
    [err] = resp.json()
    assert set(err) == {"code", "description"}
    return err["code"], err["description"]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"service_code": None}, 400),
        ({"service_code": "nope0000"}, 404),
        ({"lat": None, "long": None, "address_string": None}, 400),
        ({"lat": None}, 400),
        ({"description": None}, 400),
        ({"phone": "12345"}, 400),
        ({"attribute[request_type]": "rant"}, 400),
        ({"jurisdiction_id": "elsewhere.example"}, 404),
    ],
)
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_errors_are_the_specs_list(stack, fields, status, fmt):
    resp = spec_post(stack, fmt, **fields)
    assert resp.status_code == status, resp.text
    code, description = _error(resp, fmt)
    assert code == status and description


def test_get_requests_date_window_rules(stack):
    old = stack.post(message(title="九十天内外")).json()["id"]
    now = datetime.now(UTC)

    def get(fmt="json", **params):
        return stack.http.get(f"/open311/v2/requests.{fmt}", params=params)

    ids = {r["service_request_id"] for r in get().json()}
    assert old in ids  # default: the last 90 days
    window = {
        "start_date": (now - timedelta(days=1)).isoformat(),
        "end_date": (now + timedelta(minutes=1)).isoformat(),
    }
    assert old in {r["service_request_id"] for r in get(**window).json()}
    past = {"start_date": "2019-01-01T00:00:00Z", "end_date": "2019-03-01T00:00:00Z"}
    assert get(**past).json() == []
    assert get(start_date="2019-01-01T00:00:00Z").json() == []  # start only: 90 days from it
    too_wide = get("xml", start_date="2019-01-01T00:00:00Z", end_date="2019-06-01T00:00:00Z")
    assert too_wide.status_code == 400 and "90 days" in _error(too_wide, "xml")[1]
    assert _error(get(start_date="yesterday"))[0] == 400
    assert _error(get(start_date="2019-01-01T00:00:00"))[0] == 400  # no zone
    assert _error(get(start_date="2019-03-01T00:00:00Z", end_date="2019-01-01T00:00:00Z"))[0] == 400
    assert _error(get(status="pending"))[0] == 400
    assert _error(get(service_code="nope0000"))[0] == 400
    missing = stack.http.get("/open311/v2/requests/no-such-id.xml")
    assert missing.status_code == 404 and _error(missing, "xml")[0] == 404


def test_hotline_superior_and_confidential_requests_are_not_public(stack):
    hidden = [
        stack.post(message(channel="hotline")).json()["id"],
        stack.post(message(channel="superior")).json()["id"],
        stack.post(message(reporter={"confidential": True})).json()["id"],
    ]
    for rid in hidden:
        assert stack.http.get(f"/open311/v2/requests/{rid}.json").status_code == 404
    listed = {r["service_request_id"] for r in stack.http.get("/open311/v2/requests.json").json()}
    assert not listed & set(hidden)


def test_post_needs_an_api_key(stack):
    resp = spec_post(stack, api_key=None)
    assert resp.status_code == 401
    resp = httpx.post(
        f"{stack.gateway.url}/open311/v2/requests.json", data={"api_key": "wrong", "service_code": WATER}
    )
    assert resp.status_code == 401
