"""Fuzzing the public API through the gateway.

- Schemathesis walks every operation of the merged OpenAPI document with generated requests (as a
  caller the operation's `x-access` admits): no 5xx, and no response that breaks its own schema.
- Hypothesis throws near-valid and arbitrary payloads at intake (POST /api/v1/messages and /batch):
  never a 5xx, every error in the JSON error shape, every success in the documented shape.

Both are bounded in time (a budget per operation, a fixed number of examples) and run once.
"""

import time
import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, response_schema_conformance

from gateway.service import bundle_units
from kit.settings import REPO_ROOT
from schema.enums import Channel
from tests.support import API_KEY

pytestmark = pytest.mark.once

SECONDS_PER_OPERATION = 0.6
EXAMPLES_PER_OPERATION = 10
QUIET = settings(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.generate],
)


def _caller(platform, access: list[str]) -> dict[str, str]:
    if "public" in access:
        return {}
    if "client" in access:
        return dict(API_KEY)
    role = sorted(a for a in access if a not in ("public", "client"))[0]
    user = bundle_units(REPO_ROOT / "deploy" / "bundles" / "a-city")[0]["code"] if role == "unit" else role
    return platform.staff(user)


def _fuzz_operation(platform, op, headers: dict[str, str], failures: dict[str, str]) -> None:
    """Up to EXAMPLES_PER_OPERATION generated calls within SECONDS_PER_OPERATION; the first failure counts."""
    stop_at = time.monotonic() + SECONDS_PER_OPERATION

    @settings(QUIET, max_examples=EXAMPLES_PER_OPERATION)
    @given(case=op.as_strategy())
    def check(case):
        if time.monotonic() > stop_at or op.label in failures:
            return
        try:
            case.call_and_validate(
                base_url=platform.gateway,
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance],
                timeout=30,
            )
        except (AssertionError, BaseExceptionGroup) as exc:
            failures[op.label] = str(exc)[:1500]

    check()


def test_schemathesis_finds_no_server_error_and_no_response_breaking_its_schema(platform):
    schema = schemathesis.openapi.from_url(f"{platform.gateway}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        _fuzz_operation(platform, op, _caller(platform, op.definition.raw.get("x-access", [])), failures)
    assert operations >= 10
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


# --- intake payloads -----------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)  # JSON has no NaN or infinity
json_scalars = st.none() | st.booleans() | st.integers() | finite | st.text(max_size=50)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
odd_text = st.text(max_size=300) | st.sampled_from(
    ["", " ", "\x00", "A" * 30000, "😀" * 50, "<script>x</script>"]
)


@st.composite
def near_valid_message(draw) -> dict[str, Any]:
    """A message that is mostly right, with some fields wrong in type, size or content."""
    body: dict[str, Any] = {
        "channel": draw(st.sampled_from([c.value for c in Channel]) | st.text(max_size=8)),
        "external_id": draw(st.just(f"fz-{uuid.uuid4()}") | st.text(max_size=300) | json_values),
        "title": draw(odd_text | json_values),
        "content": draw(odd_text | st.just("A5区洞井街道某小区已经停水三天，请尽快处理。")),
    }
    optional = {
        "request_type": st.sampled_from(["consult", "complaint", "nonsense"]) | json_values,
        "occurred_at": st.sampled_from(["2026-11-20T08:00:00+08:00", "2026-13-40", "yesterday", ""])
        | json_values,
        "source_url": st.sampled_from(["https://weibo.example/1", "javascript:alert(1)", "x" * 3000]),
        "location": st.fixed_dictionaries(
            {},
            optional={
                "text": odd_text,
                "lat": finite | json_values,
                "lng": finite,
                "district_code": st.text(max_size=20),
            },
        ),
        "reporter": st.fixed_dictionaries(
            {},
            optional={
                "name": odd_text,
                "phone": st.sampled_from(["13800138000", "123", "+86 138-0013-8000", ""]) | json_values,
                "id_number": st.sampled_from(["11010519491231002X", "not-an-id"]) | json_values,
                "email": st.sampled_from(["a@b.example", "@@"]),
                "anonymous": st.booleans() | json_values,
            },
        ),
        "metrics": st.dictionaries(
            st.sampled_from(["views", "reposts", "comments", "likes", "dislikes", "other"]),
            st.integers(min_value=-(2**70), max_value=2**70) | json_values,
            max_size=5,
        ),
        "attachments": st.lists(
            st.fixed_dictionaries(
                {"url": st.text(max_size=50)}, optional={"media_type": st.text(max_size=20)}
            ),
            max_size=3,
        )
        | json_values,
        "superior": json_values,
        "unknown_field": json_values,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body


def _assert_well_formed(resp: httpx.Response, sent: Any) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:500], sent)
    body = resp.json()
    if resp.status_code >= 400:
        assert set(body) == {"error"}, body
        err = body["error"]
        assert isinstance(err["code"], str) and isinstance(err["message"], str), body
        assert isinstance(err["details"], list), body
    else:
        assert resp.status_code in (200, 201, 207), resp.status_code


def test_submitting_odd_messages_never_fails_the_server(platform):
    @settings(QUIET, max_examples=150)
    @given(body=near_valid_message() | json_values)
    def submit(body):
        resp = platform.http.post("/api/v1/messages", json=body, headers=API_KEY)
        _assert_well_formed(resp, body)
        if resp.status_code in (200, 201):
            accepted = resp.json()
            assert accepted["id"] and accepted["tracking_code"], accepted

    submit()


def test_odd_batches_get_one_result_per_item_or_a_json_error(platform):
    @settings(QUIET, max_examples=60)
    @given(
        body=st.fixed_dictionaries({"items": st.lists(near_valid_message() | json_values, max_size=12)})
        | json_values
    )
    def submit(body):
        resp = platform.http.post("/api/v1/messages/batch", json=body, headers=API_KEY)
        _assert_well_formed(resp, body)
        if resp.status_code < 300:
            result = resp.json()
            assert [r["index"] for r in result["results"]] == list(range(len(body["items"])))
            assert result["created"] + result["duplicate"] + result["rejected"] == len(body["items"])
            for r in result["results"]:
                assert (r["status"] == "rejected") == (r.get("error") is not None), r

    submit()


def test_bodies_that_are_not_json_are_refused_in_the_error_shape(platform):
    @settings(QUIET, max_examples=40)
    @given(
        raw=st.binary(max_size=400),
        content_type=st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "",
                "application/json; charset=gbk",
            ]
        ),
    )
    def submit(raw, content_type):
        for path in ("/api/v1/messages", "/api/v1/messages/batch"):
            headers = {**API_KEY, "content-type": content_type} if content_type else dict(API_KEY)
            resp = platform.http.post(path, content=raw, headers=headers)
            _assert_well_formed(resp, raw)

    submit()
