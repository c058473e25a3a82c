"""Helpers of the ops tests: a fake upstream service, OpenAPI route walking, metric scraping."""

import uuid
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from kit.security import CLIENT, PUBLIC, CurrentPrincipal, access
from schema.enums import Role
from tests.support import DEMO_SECRET

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def fake_notify() -> FastAPI:
    """A stand-in for a service: one public, one client and one staff route, echoing the principal."""
    app = FastAPI()
    app.state.settings = SimpleNamespace(service_secret=DEMO_SECRET)

    @app.get("/api/v1/notifications/open", **access(PUBLIC))
    async def open_route(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"kind": principal.kind}

    @app.get("/api/v1/notifications/feed", **access(CLIENT))
    async def client_route(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"kind": principal.kind, "client": principal.client_id}

    @app.post("/api/v1/notifications/{delivery_id}/ack", **access(Role.leader, Role.analyst))
    async def staff_route(delivery_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
        return {"id": f"ack-{delivery_id}", "by": principal.sub}

    return app


def operations(doc: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """Every (method, path template, x-access) of an OpenAPI document."""
    out = []
    for path, item in sorted(doc.get("paths", {}).items()):
        for method in HTTP_METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                out.append((method.upper(), path, list(op.get("x-access", []))))
    return out


def fill_path(template: str) -> str:
    """A concrete path for a template: every parameter gets a value no record has."""
    parts = []
    for p in template.split("/"):
        parts.append(f"zz-{uuid.uuid4().hex[:12]}" if p.startswith("{") else p)
    return "/".join(parts)


def scrape(url: str) -> dict[str, Any]:
    """The metric families a process exposes at /metrics, by name."""
    resp = httpx.get(f"{url}/metrics", timeout=10, trust_env=False)
    resp.raise_for_status()
    return {f.name: f for f in text_string_to_metric_families(resp.text)}


def request_counts(url: str) -> dict[tuple[str, str], float]:
    """minsheng_http_requests_total of a process summed by (method, route)."""
    fam = scrape(url).get("minsheng_http_requests")
    out: dict[tuple[str, str], float] = {}
    for s in fam.samples if fam else []:
        if s.name.endswith("_total"):
            key = (s.labels["method"], s.labels["route"])
            out[key] = out.get(key, 0.0) + s.value
    return out
