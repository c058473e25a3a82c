"""/healthz, the merged /openapi.json and /docs."""

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from gateway.openapi import merge
from kit.security import PUBLIC, access

router = APIRouter(tags=["meta"])


async def _probe(state, name: str, url: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        resp = await state.http.get(f"{url}/readyz", timeout=state.settings.health_timeout_seconds)
        body = resp.json()
        status = "ok" if resp.status_code == 200 else "unavailable"
        return {
            "status": status,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "checks": body.get("checks", {}),
        }
    except Exception as exc:
        return {"status": "unreachable", "error": type(exc).__name__}


@router.get("/healthz", summary="Gateway and service readiness", **access(PUBLIC))
async def healthz(request: Request) -> JSONResponse:
    """200 when every service is ready, 503 otherwise, with each service's state."""
    state = request.app.state
    urls = {n: state.settings.service_urls[n] for n in state.settings.services}
    results = await asyncio.gather(*(_probe(state, n, u) for n, u in urls.items()))
    services = dict(zip(urls, results, strict=True))
    ok = all(s["status"] == "ok" for s in services.values())
    body = {"status": "ok" if ok else "degraded", "gateway": "ok", "services": services}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request) -> JSONResponse:
    """The whole public contract in one document."""
    app = request.app
    state = app.state
    if len(state.routes.specs) < len(state.settings.services):
        await state.routes.refresh(only_missing=True)
    own = get_openapi(title=app.title, version=app.version, routes=app.routes)
    doc = merge(own=own, services=state.routes.specs, title="Minsheng 民声 API", version=app.version)
    return JSONResponse(doc)


@router.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    """Swagger UI over the merged document."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Minsheng 民声 API")
