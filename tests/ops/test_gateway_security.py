"""Gateway security: rate limits, security headers, CORS, JWT key rotation and the staff audit log.

Each test runs its own gateway in-process in front of a fake service, with the limits it needs.
"""

import os
import time
import uuid

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.config import GatewaySettings
from gateway.models import StaffUser
from gateway.service import issue_token, principal_from_token
from kit.errors import AppError
from tests.ops.support import fake_notify
from tests.support import API_KEY, ServerThread, free_port, wait_until

DEAD = f"http://127.0.0.1:{free_port()}"
REDIS_URL = os.environ.get("MINSHENG_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def error_code(resp: httpx.Response) -> str:
    body = resp.json()
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]["code"]


@pytest.fixture
def upstream():
    with ServerThread(fake_notify()) as server:
        yield server


@pytest.fixture
def gateway(service_app, upstream):
    """make(**settings): a gateway whose notify is the fake service (other services are down)."""

    def make(**overrides):
        urls = {f"{n}_url": DEAD for n in ("intake", "grading", "archive")}
        gw = service_app("gateway", notify_url=upstream.url, spec_refresh_seconds=0.2, **urls, **overrides)
        wait_until(lambda: gw.get("/api/v1/notifications/open").status_code == 200, what="routes")
        return gw

    return make


def sign_in(gw, username: str, password: str = "demo", **headers) -> httpx.Response:
    return gw.post("/api/v1/auth/token", data={"username": username, "password": password}, headers=headers)


def bearer(gw, username: str) -> dict[str, str]:
    resp = sign_in(gw, username)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


# --- rate limits -----------------------------------------------------------------------------------


# Limits are per hour in these tests: a sliding window that turns over between two hits would make
# a per-minute test flaky.
def test_anonymous_callers_are_limited_per_address_with_429_and_retry_after(gateway):
    gw = gateway(rate_limit_per_address="3/hour", trusted_proxies=["testclient"])
    one = {"X-Forwarded-For": "198.51.100.7"}
    for _ in range(3):
        assert gw.get("/api/v1/notifications/open", headers=one).status_code == 200
    refused = gw.get("/api/v1/notifications/open", headers=one)
    assert refused.status_code == 429 and error_code(refused) == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    # Another address has its own allowance.
    assert (
        gw.get("/api/v1/notifications/open", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 200
    )


def test_channel_clients_are_limited_per_api_key_not_per_address(gateway):
    gw = gateway(rate_limit_per_client="2/hour", rate_limit_per_address="100/minute")
    for _ in range(2):
        assert gw.get("/api/v1/notifications/feed", headers=API_KEY).status_code == 200
    refused = gw.get("/api/v1/notifications/feed", headers=API_KEY)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    # The same address without the key is still served (a portal's users share its address).
    assert gw.get("/api/v1/notifications/open").status_code == 200


def test_failed_authentication_counts_against_the_address(gateway):
    gw = gateway(rate_limit_per_address="3/hour", trusted_proxies=["testclient"])
    guesser = {"X-Forwarded-For": "192.0.2.77"}
    codes = [
        gw.get("/api/v1/notifications/feed", headers={**guesser, "X-API-Key": f"guess-{i}"}).status_code
        for i in range(5)
    ]
    assert codes[:3] == [401, 401, 401] and codes[3:] == [429, 429]


def test_sign_in_is_limited_per_username_across_addresses(gateway):
    gw = gateway(rate_limit_sign_in="2/hour", trusted_proxies=["testclient"])
    for i in range(2):
        resp = sign_in(gw, "leader", "wrong", **{"X-Forwarded-For": f"203.0.113.{i}"})
        assert resp.status_code == 401
    resp = sign_in(gw, "leader", "demo", **{"X-Forwarded-For": "203.0.113.99"})
    assert resp.status_code == 429 and error_code(resp) == "rate_limited"
    assert sign_in(gw, "analyst", **{"X-Forwarded-For": "203.0.113.100"}).status_code == 200


def _redis_up() -> bool:
    import socket

    url = httpx.URL(REDIS_URL)
    try:
        with socket.create_connection((url.host, url.port or 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.once
def test_limits_are_shared_between_replicas_through_redis(upstream, tmp_path):
    if not _redis_up():
        pytest.skip(f"no Redis at {REDIS_URL}")
    from fastapi.testclient import TestClient

    from deploy.launcher import migrations_dir
    from gateway.main import create_app
    from kit.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}"
    upgrade(migrations_dir("gateway"), url)
    namespace = f"mstest-{uuid.uuid4().hex[:8]}"
    settings = dict(
        database_url=url,
        var_dir=tmp_path,
        log_json=False,
        notify_url=upstream.url,
        intake_url=DEAD,
        grading_url=DEAD,
        archive_url=DEAD,
        redis_url=REDIS_URL,
        rate_limit_namespace=namespace,
        rate_limit_per_client="3/hour",
    )
    with (
        TestClient(create_app(GatewaySettings(**settings))) as a,
        TestClient(create_app(GatewaySettings(**settings))) as b,
    ):
        codes = [c.get("/api/v1/notifications/feed", headers=API_KEY).status_code for c in (a, b, a, b)]
    assert codes == [200, 200, 200, 429]


# --- headers and CORS ------------------------------------------------------------------------------


SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


def test_every_answer_carries_the_security_headers(gateway):
    gw = gateway()
    answers = [
        gw.get("/api/v1/notifications/open"),  # forwarded
        gw.get("/api/v1/notifications/feed"),  # refused by the gateway
        gw.get("/api/v1/nothing"),  # 404
        sign_in(gw, "nobody", "x"),  # the gateway's own route
    ]
    for resp in answers:
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers.get(name) == value, (resp.request.url, name)
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        assert resp.headers["strict-transport-security"].startswith("max-age=")
        assert resp.headers["cache-control"] == "no-store"
    docs_csp = gw.get("/docs").headers["content-security-policy"]
    assert "script-src" in docs_csp and "frame-ancestors 'none'" in docs_csp


def test_cors_admits_only_the_configured_origins(gateway):
    allowed = "https://portal.a-city.example"
    gw = gateway(cors_origins=[allowed])
    pre = gw.options(
        "/api/v1/notifications/feed",
        headers={
            "Origin": allowed,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == allowed
    assert "x-api-key" in pre.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in pre.headers
    for origin, method, hdrs in (
        ("https://evil.example", "GET", ""),
        (allowed, "TRACE", ""),
        (allowed, "GET", "X-Something-Else"),
    ):
        refused = gw.options(
            "/api/v1/notifications/feed",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": hdrs,
            },
        )
        assert refused.status_code == 403 and error_code(refused) == "cors_refused"
        assert "access-control-allow-origin" not in refused.headers
    simple = gw.get("/api/v1/notifications/open", headers={"Origin": allowed})
    assert simple.headers["access-control-allow-origin"] == allowed
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    other = gw.get("/api/v1/notifications/open", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


@pytest.mark.once
def test_settings_refuse_a_wildcard_origin_and_weak_production_keys():
    with pytest.raises(ValueError, match="no '\\*'"):
        GatewaySettings(cors_origins=["*"])
    with pytest.raises(ValueError, match="32 characters"):
        GatewaySettings(
            mode="production",
            service_secret="a-real-service-secret-of-some-length",
            jwt_keys={"k1": "short"},
            jwt_active_kid="k1",
        )
    with pytest.raises(ValueError, match="one hour"):
        GatewaySettings(
            mode="production",
            service_secret="a-real-service-secret-of-some-length",
            jwt_keys={"k1": "k" * 40},
            jwt_active_kid="k1",
            token_ttl_seconds=86400,
        )


# --- JWT key rotation ------------------------------------------------------------------------------


@pytest.mark.once
def test_jwt_key_rotation_keeps_old_tokens_valid_until_the_old_key_is_removed():
    old_key, new_key = "o" * 40, "n" * 40
    user = StaffUser(
        username="wang", display_name="王", password_hash="x", roles=["analyst"], created_at=None
    )
    before = GatewaySettings(jwt_keys={"k1": old_key}, jwt_active_kid="k1", token_ttl_seconds=900)
    old_token, ttl = issue_token(settings=before, user=user)
    assert ttl == 900 and jwt.get_unverified_header(old_token)["kid"] == "k1"
    claims = jwt.decode(old_token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900

    # Step 1: add the new key and make it active; tokens already out still verify.
    during = GatewaySettings(jwt_keys={"k1": old_key, "k2": new_key}, jwt_active_kid="k2")
    assert principal_from_token(settings=during, token=old_token, client_ip=None).sub == "wang"
    new_token, _ = issue_token(settings=during, user=user)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"

    # Step 2 (after one token lifetime): drop the old key; old tokens are refused, new ones pass.
    after = GatewaySettings(jwt_keys={"k2": new_key}, jwt_active_kid="k2")
    assert principal_from_token(settings=after, token=new_token, client_ip=None).roles == ["analyst"]
    with pytest.raises(AppError) as refused:
        principal_from_token(settings=after, token=old_token, client_ip=None)
    assert refused.value.status == 401 and refused.value.code == "invalid_token"
    # An expired token is refused even with a known key.
    stale, _ = issue_token(settings=after, user=user, now=int(time.time()) - 7200)
    with pytest.raises(AppError, match="expired"):
        principal_from_token(settings=after, token=stale, client_ip=None)


def test_a_gateway_with_a_rotated_key_set_accepts_tokens_of_both_keys(gateway):
    gw = gateway(jwt_keys={"k1": "o" * 40, "k2": "n" * 40}, jwt_active_kid="k2")
    token = sign_in(gw, "leader").json()["access_token"]
    assert jwt.get_unverified_header(token)["kid"] == "k2"
    now = int(time.time())
    old = jwt.encode(
        {
            "sub": "leader",
            "roles": ["leader"],
            "iss": "minsheng",
            "aud": "minsheng-staff",
            "iat": now,
            "exp": now + 60,
        },
        "o" * 40,
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    for t in (token, old):
        resp = gw.post("/api/v1/notifications/d1/ack", headers={"Authorization": f"Bearer {t}"})
        assert resp.status_code == 200 and resp.json()["by"] == "leader"


# --- the audit log ---------------------------------------------------------------------------------


def test_every_staff_call_and_sign_in_is_audited_and_only_admins_read_it(gateway):
    gw = gateway()
    leader = bearer(gw, "leader")
    rid = f"audit-{uuid.uuid4().hex}"
    assert (
        gw.post("/api/v1/notifications/d-42/ack", headers={**leader, "X-Request-ID": rid}).status_code == 200
    )
    clerk = bearer(gw, "clerk")
    assert gw.post("/api/v1/notifications/d-43/ack", headers=clerk).status_code == 403
    assert sign_in(gw, "leader", "wrong-password").status_code == 401
    assert gw.get("/api/v1/notifications/feed", headers=API_KEY).status_code == 200  # a client: not audited

    admin = bearer(gw, "admin")
    assert gw.get("/api/v1/audit/events", headers=leader).status_code == 403
    assert gw.get("/api/v1/audit/events").status_code == 401
    page = gw.get("/api/v1/audit/events", params={"request_id": rid}, headers=admin)
    assert page.status_code == 200, page.text
    [row] = page.json()["items"]
    assert row["actor"] == "leader" and row["roles"] == ["leader"] and row["outcome"] == "ok"
    assert row["route"] == "/api/v1/notifications/{delivery_id}/ack" and row["method"] == "POST"
    assert row["target_ids"] == {"delivery_id": "d-42", "result_id": "ack-d-42"} and row["status"] == 200
    assert len(row["trace_id"]) == 32 and len(row["hash"]) == 64

    rows = gw.get("/api/v1/audit/events", params={"limit": 500}, headers=admin).json()["items"]
    refused = [r for r in rows if r["actor"] == "clerk" and r["route"].endswith("/ack")]
    assert [(r["status"], r["outcome"], r["target_ids"]) for r in refused] == [
        (403, "refused", {"delivery_id": "d-43"})
    ]
    sign_ins = [(r["actor"], r["status"]) for r in rows if r["action"] == "sign_in"]
    assert ("leader", 401) in sign_ins and ("admin", 200) in sign_ins
    assert not any(r["route"] == "/api/v1/notifications/feed" for r in rows)
    # The admin's own reading is audited too.
    assert any(r["actor"] == "admin" and r["route"] == "/api/v1/audit/events" for r in rows)
    check = gw.get("/api/v1/audit/verify", headers=admin).json()
    assert check["ok"] is True and check["checked"] >= len(rows)


async def _sql(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for s in statements:
                await conn.execute(text(s))
    finally:
        await engine.dispose()


def test_the_database_refuses_edits_and_the_chain_exposes_tampering(gateway, backend):
    import asyncio

    gw = gateway()
    admin = bearer(gw, "admin")
    leader = bearer(gw, "leader")
    for i in range(3):
        gw.post(f"/api/v1/notifications/t-{i}/ack", headers=leader)
    url = gw.app.state.settings.database_url
    for statement in ("UPDATE audit_event SET actor = 'someone-else'", "DELETE FROM audit_event"):
        with pytest.raises(Exception, match="append-only"):
            asyncio.run(_sql(url, statement))
    assert gw.get("/api/v1/audit/verify", headers=admin).json()["ok"] is True

    # Someone with the database owner's rights removes the guard and rewrites a row: the chain says so.
    unguard = (
        ["ALTER TABLE audit_event DISABLE TRIGGER USER"]
        if backend == "postgres"
        else ["DROP TRIGGER audit_event_no_update"]
    )
    asyncio.run(_sql(url, *unguard, "UPDATE audit_event SET status = status + 1 WHERE seq = 2"))
    check = gw.get("/api/v1/audit/verify", headers=admin).json()
    assert check["ok"] is False and check["broken_at"] == 2


@pytest.mark.once
def test_the_service_secret_rotates_without_refusing_calls_in_flight():
    from kit.security import decode_principal, encode_principal, sign_request, verify_signature
    from schema.dto import Principal

    old, new = "old-service-secret-" + "o" * 20, "new-service-secret-" + "n" * 20
    who = Principal(kind="staff", sub="wang", roles=["analyst"])
    # Mid-rotation: a process on the new secret still accepts what a process on the old one signed.
    for secret in (old, new):
        assert decode_principal(encode_principal(who, secret), new, previous=[old]).sub == "wang"
        header = sign_request(secret, "POST", "/internal/events", b"{}")
        verify_signature(new, header, "POST", "/internal/events", b"{}", previous=[old])
    # After the rotation the old secret is refused.
    with pytest.raises(AppError, match="not valid"):
        decode_principal(encode_principal(who, old), new)
    with pytest.raises(AppError, match="does not match"):
        verify_signature(new, sign_request(old, "POST", "/p", b""), "POST", "/p", b"")
    with pytest.raises(AppError, match="not valid"):  # an expired token is refused whatever the key
        decode_principal(encode_principal(who, new, ttl=-10), new, previous=[old])


def test_the_gateway_is_ready_once_it_asked_every_service_for_its_routes(gateway):
    gw = gateway()
    ready = wait_until(lambda: (r := gw.get("/readyz")).status_code == 200 and r.json(), what="ready")
    assert ready["service"] == "gateway" and ready["checks"]["database"] == "ok"
    # Services that are down do not keep the API unready; they are named.
    assert ready["checks"]["routes"] == {"loaded": 1, "missing": ["intake", "grading", "archive"]}
    assert gw.get("/livez").json()["status"] == "ok"


@pytest.mark.once
def test_passwords_are_stored_as_argon2id_hashes_only():
    from gateway.service import hash_password, verify_password

    stored = hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse battery staple")
    assert not verify_password(stored, "Correct horse battery staple")
    assert hash_password("same") != hash_password("same")  # salted
