"""The gateway: bad input, authentication, roles, limits, upstream faults and header hygiene."""

import asyncio
import gzip
import time
from types import SimpleNamespace

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request, Response

from kit.security import PRINCIPAL_HEADER, access, decode_principal
from tests.support import API_KEY, DEMO_SECRET, ServerThread, free_port, message


def error_code(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]["code"]


# --- through the running platform ------------------------------------------------------------------


def test_malformed_json_is_400(platform):
    resp = platform.http.post(
        "/api/v1/messages",
        content=b'{"channel": "portal",',
        headers={**API_KEY, "content-type": "application/json"},
    )
    assert resp.status_code == 400 and error_code(resp) == "malformed_json"


def test_wrong_content_type_is_415(platform):
    resp = platform.http.post(
        "/api/v1/messages", content=b"channel=portal", headers={**API_KEY, "content-type": "text/plain"}
    )
    assert resp.status_code == 415 and error_code(resp) == "unsupported_media_type"


def test_a_body_that_breaks_the_contract_is_422_with_details(platform):
    resp = platform.post_message({"channel": "fax", "content": ""})
    assert resp.status_code == 422 and error_code(resp) == "validation_error"
    locs = {tuple(d["loc"]) for d in resp.json()["error"]["details"]}
    assert ("body", "channel") in locs and ("body", "content") in locs


def test_body_over_the_limit_is_413_declared_or_streamed(platform):
    big = b"x" * (2 * 1024 * 1024 + 10)
    resp = platform.http.post(
        "/api/v1/messages", content=big, headers={**API_KEY, "content-type": "application/json"}
    )
    assert resp.status_code == 413 and error_code(resp) == "payload_too_large"

    def chunks():  # no Content-Length: the gateway counts while reading
        for _ in range(3):
            yield b"y" * (1024 * 1024)

    resp = platform.http.post(
        "/api/v1/messages", content=chunks(), headers={**API_KEY, "content-type": "application/json"}
    )
    assert resp.status_code == 413 and error_code(resp) == "payload_too_large"


def test_missing_or_wrong_api_key_is_401(platform):
    resp = platform.http.post("/api/v1/messages", json=message())
    assert resp.status_code == 401 and error_code(resp) == "unauthenticated"
    resp = platform.http.post("/api/v1/messages", json=message(), headers={"X-API-Key": "not-a-key"})
    assert resp.status_code == 401 and error_code(resp) == "invalid_api_key"


def test_wrong_password_is_401(platform):
    resp = platform.http.post("/api/v1/auth/token", data={"username": "analyst", "password": "wrong"})
    assert resp.status_code == 401 and error_code(resp) == "invalid_credentials"
    resp = platform.http.post("/api/v1/auth/token", data={"username": "nobody", "password": "demo"})
    assert resp.status_code == 401 and error_code(resp) == "invalid_credentials"


def _token(key: str, kid: str = "demo", **claims) -> str:
    now = int(time.time())
    base = {
        "sub": "analyst",
        "roles": ["analyst"],
        "iss": "minsheng",
        "aud": "minsheng-staff",
        "iat": now,
        "exp": now + 60,
    }
    base.update(claims)
    return jwt.encode(base, key, algorithm="HS256", headers={"kid": kid})


def test_expired_forged_and_malformed_tokens_are_401(platform):
    real_key = "demo-jwt-key-not-for-production-use"
    cases = {
        "token_expired": _token(real_key, exp=int(time.time()) - 10),
        "invalid_token": _token("someone-elses-key-of-enough-length-123"),
    }
    for code, token in cases.items():
        resp = platform.http.get("/api/v1/incidents", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401 and error_code(resp) == code
    for header in ("Bearer not.a.jwt", "Basic YWJjOmRlZg==", "Bearer"):
        resp = platform.http.get("/api/v1/incidents", headers={"Authorization": header})
        assert resp.status_code == 401 and error_code(resp) == "invalid_token", header
    # A token claiming a role it was not issued with still verifies only if signed with our key.
    resp = platform.http.get(
        "/api/v1/archive/verify", headers={"Authorization": f"Bearer {_token(real_key, roles=['archivist'])}"}
    )
    assert resp.status_code == 200


def test_roles_are_enforced_per_route(platform):
    clerk = platform.staff("clerk")
    resp = platform.http.get("/api/v1/archive/verify", headers=clerk)
    assert resp.status_code == 403 and error_code(resp) == "forbidden"
    # A channel client may submit but not read staff data.
    resp = platform.http.get("/api/v1/incidents", headers=API_KEY)
    assert resp.status_code == 403
    # Anonymous callers may read the citizen view only.
    assert platform.http.get("/api/v1/incidents").status_code == 401
    assert platform.http.get("/api/v1/public/messages/0000-0000-0000-0").status_code == 404


def test_unknown_routes_wrong_methods_and_internal_paths(platform):
    resp = platform.http.get("/api/v1/nothing-here")
    assert resp.status_code == 404 and error_code(resp) == "not_found"
    resp = platform.http.delete("/api/v1/messages", headers=API_KEY)
    assert resp.status_code == 405 and "POST" in resp.headers["allow"]
    resp = platform.http.post("/internal/events", json={"events": []})
    assert resp.status_code == 404
    # /readyz and /metrics at the gateway are its own, not a service's.
    assert platform.http.get("/readyz").json()["service"] == "gateway"


def test_a_unit_handler_sees_only_its_own_incidents(platform):
    accepted = platform.post_message(
        message(title="A3区学士街道垃圾清运不及时", content="A3区学士街道垃圾清运不及时，臭气熏天。")
    ).json()
    from tests.support import wait_until

    [incident] = wait_until(lambda: platform.incidents_of(accepted["id"]), what="incident")
    own = incident["lead_unit"]["code"]
    other = "a9-education" if own != "a9-education" else "a8-education"
    seen = platform.http.get("/api/v1/incidents", params={"limit": 500}, headers=platform.staff(own)).json()
    assert incident["id"] in [i["id"] for i in seen["items"]]
    assert all(
        i["lead_unit"]["code"] == own or own in [c["code"] for c in i["co_units"]] for i in seen["items"]
    )
    assert (
        platform.http.get(f"/api/v1/incidents/{incident['id']}", headers=platform.staff(other)).status_code
        == 404
    )


# --- an in-process gateway in front of fake upstreams -----------------------------------------------


def _echo_upstream(delay: float = 0.0) -> FastAPI:
    """A fake service: one public route that echoes what it received, optionally slowly."""
    app = FastAPI()
    app.state.settings = SimpleNamespace(service_secret=DEMO_SECRET)

    @app.post("/api/v1/notifications/{x}/ack", **access("public"))
    async def echo(x: str, request: Request):
        if delay:
            await asyncio.sleep(delay)
        return {"x": x, "headers": dict(request.headers), "body": (await request.body()).decode()}

    @app.get("/api/v1/notifications/{size}", **access("public"))
    async def sized(size: int, request: Request):
        # Gzip-encoded JSON (passed on as encoded), or `size` bytes of a pattern (large ones streamed).
        if size == 0:
            body = gzip.compress(b'{"packed": true}')
            return Response(body, media_type="application/json", headers={"Content-Encoding": "gzip"})
        return Response(bytes(range(256)) * (size // 256), media_type="application/octet-stream")

    return app


@pytest.fixture
def gateway_with(service_app):
    def make(**urls):
        dead = f"http://127.0.0.1:{free_port()}"
        settings = {f"{n}_url": urls.get(n, dead) for n in ("intake", "grading", "notify", "archive")}
        return service_app("gateway", spec_refresh_seconds=0.2, http_read_timeout=2.0, **settings)

    return make


def test_unreachable_service_is_502(gateway_with):
    gw = gateway_with()
    resp = gw.post("/api/v1/messages", json=message(), headers=API_KEY)
    assert resp.status_code == 502 and error_code(resp) == "upstream_unavailable"
    health = gw.get("/healthz")
    assert health.status_code == 503
    assert {s["status"] for s in health.json()["services"].values()} == {"unreachable"}


def test_slow_service_is_504(gateway_with):
    with ServerThread(_echo_upstream(delay=4.0)) as upstream:
        gw = gateway_with(notify=upstream.url)
        resp = gw.post("/api/v1/notifications/1/ack", json={})
        assert resp.status_code == 504 and error_code(resp) == "upstream_timeout"


def test_headers_are_cleaned_and_the_principal_is_signed(gateway_with):
    with ServerThread(_echo_upstream()) as upstream:
        gw = gateway_with(notify=upstream.url)
        resp = gw.post(
            "/api/v1/notifications/1/ack",
            content=b'{"a":1}',
            headers={
                "content-type": "application/json",
                "X-Request-ID": "rid-123",
                "X-API-Key": "demo-portal-key",
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "must not pass",
                "Keep-Alive": "timeout=5",
                PRINCIPAL_HEADER: "forged",
                "X-Custom": "kept",
            },
        )
        assert resp.status_code == 200, resp.text
        seen = resp.json()["headers"]
        assert seen["x-request-id"] == "rid-123"
        assert seen["x-custom"] == "kept" and resp.json()["body"] == '{"a":1}'
        for h in ("x-api-key", "x-secret-hop", "keep-alive", "authorization"):
            assert h not in seen, h
        principal = decode_principal(seen[PRINCIPAL_HEADER.lower()], DEMO_SECRET)
        assert principal.kind == "client" and principal.client_id == "demo-portal"
        assert seen["traceparent"].startswith("00-") and resp.headers["x-request-id"] == "rid-123"


def test_the_upstream_gets_what_the_caller_sent_and_the_caller_gets_what_it_answered(gateway_with):
    """The forwarding client adds no headers of its own, keeps the path as encoded, passes a compressed
    answer on compressed, and streams a large one whole."""
    with ServerThread(_echo_upstream()) as upstream:
        gw = gateway_with(notify=upstream.url)
        resp = gw.post(
            "/api/v1/notifications/%E4%B8%AD%20x/ack",
            content=b"{}",
            headers={"User-Agent": "portal/1.0", "Accept": "application/json", "Accept-Encoding": "identity"},
        )
        assert resp.status_code == 200, resp.text
        seen = resp.json()["headers"]
        assert resp.json()["x"] == "中 x" and resp.json()["body"] == "{}"
        assert seen["user-agent"] == "portal/1.0" and seen["accept"] == "application/json"
        assert seen["accept-encoding"] == "identity" and "content-type" not in seen
        assert seen["content-length"] == "2"
        packed = gw.get("/api/v1/notifications/0", headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip" and packed.json() == {"packed": True}
        for size in (256, 3 * 1024 * 1024):  # read whole, and streamed (over the 1 MiB buffer)
            big = gw.get(f"/api/v1/notifications/{size}")
            assert big.status_code == 200 and big.content == bytes(range(256)) * (size // 256)


def test_open311_clients_get_the_specs_error_list_from_the_gateway(platform):
    resp = platform.http.post("/open311/v2/requests.json", data={"service_code": "x", "description": "d"})
    assert resp.status_code == 401
    assert resp.json() == [{"code": 401, "description": "credentials are required for this call"}]
    resp = platform.http.post("/open311/v2/requests.xml", data={"api_key": "wrong", "description": "d"})
    assert resp.status_code == 401 and resp.headers["content-type"].startswith("text/xml")
    assert b"<errors><error><code>401</code>" in resp.content
