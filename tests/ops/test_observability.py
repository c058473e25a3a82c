"""Watching the platform: every process's /metrics has the families operators need, JSON logs carry
the request id and trace id, and one W3C trace follows a message from the gateway through intake
and, via the event, into grading (and on to whoever grading tells)."""

import contextlib
import json
import re
import secrets

import yaml

from deploy.launcher import ALL, SERVICES
from kit.settings import REPO_ROOT
from tests.ops.support import scrape
from tests.support import message, wait_until

# Families every process exposes (prometheus_client strips `_total` from counter family names).
COMMON = {"minsheng_http_requests", "minsheng_http_request_duration_seconds"}
OUTBOX = {"minsheng_outbox_backlog", "minsheng_outbox_oldest_age_seconds"}
GATEWAY = {
    "minsheng_gateway_rate_limited",
    "minsheng_gateway_audit_events",
    "minsheng_gateway_audit_failures",
}
# The domain figures of the issue: (process, what, family name pattern, a label its samples carry).
DOMAIN = [
    ("intake", "messages by channel", r"^minsheng_intake_messages", "channel"),
    ("grading", "incidents by level", r"^minsheng_grading_incidents", "level"),
    ("grading", "open overdue clocks", r"^minsheng_grading_\w*overdue", None),
    ("notify", "notification failures", r"^minsheng_notify_\w*fail", None),
]


def _log_lines(platform, name: str) -> list[dict]:
    out = []
    for line in (platform.platform.log_dir / f"{name}.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


def test_every_process_exposes_the_metric_families_operators_watch(platform):
    # Traffic first, so labelled families have samples: a message from a channel, graded.
    accepted = platform.post_message(message(channel="hotline")).json()
    wait_until(lambda: platform.incidents_of(accepted["id"]), what="the incident")
    missing = []
    families = {name: scrape(platform.url(name)) for name in ALL}
    for name in ALL:
        absent = (COMMON | (OUTBOX if name in SERVICES else GATEWAY)) - set(families[name])
        missing += [f"{name}: {f}" for f in sorted(absent)]
    for name, what, pattern, label in DOMAIN:
        found = [f for n, f in families[name].items() if re.search(pattern, n)]
        if not found:
            missing.append(f"{name}: {what} (a family matching {pattern})")
        elif label and not any(label in s.labels for f in found for s in f.samples):
            missing.append(f"{name}: {what} has no samples labelled {label!r}")
    assert not missing, "missing metric families:\n" + "\n".join(missing)


def test_every_metric_the_alert_rules_use_is_exposed(platform):
    rules = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs and all(r.get("labels", {}).get("severity") for g in rules["groups"] for r in g["rules"])
    exposed: set[str] = set()
    for name in ALL:
        for fam in scrape(platform.url(name)).values():
            exposed |= {fam.name, *(s.name for s in fam.samples)}
            if fam.type == "counter":
                exposed.add(fam.name + "_total")
            if fam.type == "histogram":
                exposed |= {fam.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    used = {m for e in exprs for m in re.findall(r"\bminsheng_[a-z0-9_]+", e)}
    assert used, exprs
    assert not used - exposed, f"alert rules use metrics nobody exposes: {sorted(used - exposed)}"


def test_one_trace_runs_from_the_gateway_through_intake_into_grading_via_the_event(platform):
    trace_id = secrets.token_hex(16)
    rid = f"trace-{secrets.token_hex(6)}"
    caller = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    resp = platform.post_message(message(), traceparent=caller, **{"X-Request-ID": rid})
    assert resp.status_code == 201, resp.text
    # The answer continues the caller's trace in a span of its own.
    answered = resp.headers["traceparent"].split("-")
    assert answered[1] == trace_id and answered[2] != caller.split("-")[2]
    accepted = resp.json()
    wait_until(lambda: platform.incidents_of(accepted["id"]), what="the incident")

    def lines_of(name):
        return [ln for ln in _log_lines(platform, name) if ln.get("trace_id") == trace_id]

    gateway = wait_until(lambda: lines_of("gateway"), what="the gateway's log line in the trace")
    intake = wait_until(lambda: lines_of("intake"), what="intake's log line in the trace")
    grading = wait_until(
        lambda: [ln for ln in lines_of("grading") if "message.received" in ln["message"]],
        what="grading applying message.received in the same trace",
    )
    # Request id: the gateway's and intake's lines for the call carry it; every line is JSON with both.
    assert any(ln["request_id"] == rid for ln in gateway) and any(ln["request_id"] == rid for ln in intake)
    for ln in gateway + intake + grading:
        assert {"time", "level", "logger", "message", "service", "request_id", "trace_id"} <= set(ln)
    # Grading's own events carry the trace on: intake applies the status change in the same trace.
    wait_until(
        lambda: [ln for ln in lines_of("intake") if "message.status_changed" in ln["message"]],
        what="intake applying grading's status change in the same trace",
    )


def test_a_malformed_traceparent_starts_a_new_trace_and_never_fails_the_call(platform):
    resp = platform.post_message(message(), traceparent="00-zzzz-not-a-trace-01")
    assert resp.status_code == 201
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", resp.headers["traceparent"])
