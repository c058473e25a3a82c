"""Idempotency-Key per the IETF draft, and natural-key duplicates, including concurrent twins."""

import concurrent.futures
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from services.intake.tests.helpers import as_client
from tests.support import message


def body_without_natural_key(**overrides) -> dict:
    body = message(channel="other", **overrides)
    body.pop("external_id")
    return body


def count_by_title(stack, title: str) -> int:
    return stack.sql("SELECT count(*) FROM message WHERE title = :t", t=title)[0][0]


def test_same_key_and_body_get_the_same_stored_answer(stack):
    title = f"幂等-{uuid.uuid4().hex[:8]}"
    body = body_without_natural_key(title=title)
    key = {"Idempotency-Key": f'"{uuid.uuid4()}"'}
    first = stack.post(body, **key)
    again = stack.post(body, **key)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert count_by_title(stack, title) == 1
    # Without the key the same body is a new message (there is no natural key here).
    assert stack.post(body).status_code == 201 and count_by_title(stack, title) == 2


def test_same_key_with_another_body_is_422_and_a_bad_key_is_400(stack):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert stack.post(body_without_natural_key(), **key).status_code == 201
    resp = stack.post(body_without_natural_key(content="另一条内容，完全不同"), **key)
    assert resp.status_code == 422 and resp.json()["error"]["code"] == "idempotency_key_reused"
    resp = stack.post(body_without_natural_key(), **{"Idempotency-Key": "x" * 256})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_idempotency_key"


def _seed_key(stack, scope: str, key: str, body: dict, *, state: str, locked_for: float, expires_in: float):
    raw = json.dumps(body).encode()
    fp = hashlib.sha256(b"POST /api/v1/messages\n" + raw).hexdigest()
    now = datetime.now(UTC)
    stack.sql(
        "INSERT INTO idempotency_key (scope, key, fingerprint, state, locked_until, created_at, expires_at) "
        "VALUES (:s, :k, :f, :st, :l, :c, :e)",
        s=scope,
        k=key,
        f=fp,
        st=state,
        l=stack.ts(now + timedelta(seconds=locked_for)),
        c=stack.ts(now),
        e=stack.ts(now + timedelta(seconds=expires_in)),
    )
    return raw


def test_a_request_in_flight_is_409_until_its_lease_runs_out(stack):
    body = body_without_natural_key()
    key = str(uuid.uuid4())
    raw = _seed_key(stack, "demo-portal", key, body, state="in_flight", locked_for=60, expires_in=3600)
    headers = {"Idempotency-Key": key, "X-API-Key": "demo-portal-key", "content-type": "application/json"}
    resp = stack.http.post("/api/v1/messages", content=raw, headers=headers)
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "idempotency_request_in_flight"
    assert resp.headers["retry-after"] == "1"
    # A crashed first attempt (lease over) is taken over by the retry.
    key2 = str(uuid.uuid4())
    raw = _seed_key(stack, "demo-portal", key2, body, state="in_flight", locked_for=-1, expires_in=3600)
    resp = stack.http.post("/api/v1/messages", content=raw, headers={**headers, "Idempotency-Key": key2})
    assert resp.status_code == 201


def test_an_expired_key_is_forgotten(stack):
    key = str(uuid.uuid4())
    _seed_key(stack, "demo-portal", key, {"other": "request"}, state="done", locked_for=-1, expires_in=-1)
    resp = stack.post(body_without_natural_key(), **{"Idempotency-Key": key})
    assert resp.status_code == 201  # not 422: the old use has expired


def test_keys_are_scoped_per_client(stack):
    key = str(uuid.uuid4())
    body = body_without_natural_key()
    a = httpx.post(
        f"{stack.intake.url}/api/v1/messages",
        json=body,
        headers={**as_client("portal-a"), "Idempotency-Key": key},
        trust_env=False,
    )
    b = httpx.post(
        f"{stack.intake.url}/api/v1/messages",
        json=body,
        headers={**as_client("portal-b"), "Idempotency-Key": key},
        trust_env=False,
    )
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


def test_a_failed_request_forgets_its_key_so_the_fixed_retry_goes_through(stack):
    key = {"Idempotency-Key": str(uuid.uuid4())}
    bad = stack.post(body_without_natural_key(reporter={"phone": "123"}), **key)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_phone"
    assert stack.post(body_without_natural_key(), **key).status_code == 201


def _hammer(url: str, body: dict, headers: dict, n: int = 12) -> list[httpx.Response]:
    with httpx.Client(trust_env=False, timeout=30) as client:

        def one(_):
            return client.post(f"{url}/api/v1/messages", json=body, headers=headers)

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return list(pool.map(one, range(n)))


def test_concurrent_twins_with_one_key_make_exactly_one_message(stack):
    title = f"并发-{uuid.uuid4().hex[:8]}"
    body = body_without_natural_key(title=title)
    results = _hammer(stack.intake.url, body, {**as_client(), "Idempotency-Key": str(uuid.uuid4())})
    codes = [r.status_code for r in results]
    assert set(codes) <= {201, 409} and 201 in codes, codes
    assert len({r.json()["id"] for r in results if r.status_code == 201}) == 1
    assert count_by_title(stack, title) == 1


def test_concurrent_resends_of_one_external_id_make_exactly_one_message(stack):
    body = message()
    results = _hammer(stack.intake.url, body, as_client())
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 1 and codes.count(200) == len(codes) - 1, codes
    assert len({r.json()["id"] for r in results}) == 1
    n = stack.sql("SELECT count(*) FROM message WHERE external_id = :e", e=body["external_id"])[0][0]
    assert n == 1
