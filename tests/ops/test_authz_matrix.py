"""The authorisation matrix: every role against every route of the merged OpenAPI document.

What each route admits is read from its own `x-access` declaration, so routes added later are
covered without touching this test. A refused call is 401 (anonymous) or 403 (the wrong role)
and is answered by the gateway: no service counts a request on that route while the refused calls
are made. An admitted call is never 401/403 (nor a 5xx) whatever the service then makes of it.
"""

import pytest

from deploy.launcher import SERVICES
from gateway.service import bundle_units
from kit.settings import REPO_ROOT
from tests.ops.support import fill_path, operations, request_counts
from tests.support import API_KEY

STAFF_ROLES = ("clerk", "analyst", "unit", "leader", "supervisor", "archivist", "admin")
CALLERS = (*STAFF_ROLES, "client", "anonymous")


def expected_allowed(caller: str, access: list[str]) -> bool:
    """The matrix as the declaration states it (written out here, not borrowed from the gateway)."""
    if "public" in access:
        return True
    if caller == "client":
        return "client" in access
    if caller == "anonymous":
        return False
    return caller in access


@pytest.fixture(scope="module")
def credentials(platform) -> dict[str, dict[str, str]]:
    unit_user = bundle_units(REPO_ROOT / "deploy" / "bundles" / "a-city")[0]["code"]
    creds = {role: platform.staff(role) for role in STAFF_ROLES if role != "unit"}
    creds["unit"] = platform.staff(unit_user)
    creds["client"] = dict(API_KEY)
    creds["anonymous"] = {}
    return creds


def call(platform, method: str, template: str, headers: dict[str, str]):
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return platform.http.request(method, fill_path(template), headers=headers, **kwargs)


def is_refusal(template: str, resp) -> bool:
    """A refusal in the route's own error format: GeoReport v2 on /open311, ours elsewhere."""
    if template.startswith("/open311/"):
        if template.endswith(".xml"):
            return f"<code>{resp.status_code}</code>" in resp.text
        return resp.json()[0]["code"] == resp.status_code
    return resp.json()["error"]["code"] in ("unauthenticated", "forbidden")


def test_every_route_declares_who_may_call_it_and_the_matrix_is_complete(platform):
    ops = operations(platform.http.get("/openapi.json").json())
    assert len(ops) >= 10
    undeclared = [f"{m} {p}" for m, p, access in ops if not access]
    assert not undeclared, f"routes in the public document without x-access: {undeclared}"
    # Every staff route is closed to anonymous callers; some route is open to each caller.
    for caller in CALLERS:
        assert any(expected_allowed(caller, a) for _, _, a in ops), caller


def test_refused_calls_are_answered_by_the_gateway_before_any_service(platform, credentials):
    ops = operations(platform.http.get("/openapi.json").json())
    refused = [(c, m, p) for c in CALLERS for m, p, a in ops if not expected_allowed(c, a)]
    assert refused
    before = {s: request_counts(platform.url(s)) for s in SERVICES}
    wrong = []
    for caller, method, template in refused:
        resp = call(platform, method, template, credentials[caller])
        want = 401 if caller == "anonymous" else 403
        if resp.status_code != want or not is_refusal(template, resp):
            wrong.append(f"{caller} {method} {template}: {resp.status_code} {resp.text[:300]}")
    assert not wrong, "refusals that went wrong:\n" + "\n".join(wrong)
    templates = {(m, p) for _, m, p in refused}
    reached = []
    for service in SERVICES:
        after = request_counts(platform.url(service))
        for key in templates:
            if after.get(key, 0) != before[service].get(key, 0):
                reached.append(f"{service} counted {key} while only refused calls were made")
    assert not reached, "\n".join(reached)


def test_admitted_calls_are_never_refused(platform, credentials):
    ops = operations(platform.http.get("/openapi.json").json())
    wrong = []
    for caller in CALLERS:
        for method, template, access in ops:
            if not expected_allowed(caller, access):
                continue
            resp = call(platform, method, template, credentials[caller])
            if resp.status_code in (401, 403) or resp.status_code >= 500:
                wrong.append(f"{caller} {method} {template}: {resp.status_code} {resp.text[:200]}")
    assert not wrong, "admitted callers refused or failing:\n" + "\n".join(wrong)
