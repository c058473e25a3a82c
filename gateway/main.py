"""The gateway's app: `create_app()` for uvicorn (`--factory`)."""

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request

from gateway import service
from gateway.api import audit as audit_api
from gateway.api import auth, meta
from gateway.audit import AuditLog, AuditMiddleware
from gateway.config import GatewaySettings
from gateway.proxy import forward, open311_error
from gateway.routing import RouteTable
from gateway.upstream import Upstream
from gateway.webguard import CorsMiddleware, SecurityHeadersMiddleware
from kit.app import build_app, retry_while_database_down, service_runtime
from kit.errors import AppError
from kit.ratelimit import RateLimiter

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("minsheng.gateway")


async def _check_credentials(state, settings: GatewaySettings) -> None:
    """Demo mode seeds the demo credentials; production mode refuses to start while any exist."""
    async with state.sessions() as session:
        if settings.demo:
            added = await service.seed_demo(
                session=session, bundle_dir=settings.bundle_dir, now=state.clock.now()
            )
            if added:
                log.info("demo credentials seeded: %s", added)
            return
        present = await service.demo_credentials_present(session=session)
        if present:
            raise RuntimeError(
                "production mode refuses to start while demo credentials exist: " + ", ".join(present[:10])
            )


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The API gateway."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_runtime(app, settings, migrations_dir=MIGRATIONS) as state:
            state.api_keys = service.ApiKeyCache(settings.api_key_cache_seconds)
            state.limiter = RateLimiter(settings.redis_url, namespace=settings.rate_limit_namespace)
            state.audit = AuditLog(state.sessions)
            if state.schema_ok:
                await retry_while_database_down(
                    lambda: _check_credentials(state, settings), seconds=settings.startup_db_wait_seconds
                )
            services = {n: settings.service_urls[n] for n in settings.services}
            state.routes = RouteTable(
                services=services, http=state.http, refresh_seconds=settings.spec_refresh_seconds
            )
            state.routes.start()
            state.upstream = Upstream(
                connect_timeout=settings.http_connect_timeout,
                read_timeout=settings.http_read_timeout,
                max_connections=settings.http_max_connections,
            )
            await state.upstream.start()
            try:
                yield
            finally:
                await state.routes.stop()
                await state.upstream.close()

    async def routes_ready(state) -> dict:
        # Ready once every service's document was asked for (a service that is down does not keep
        # the whole API unready: its routes answer 502 until it is back).
        routes = getattr(state, "routes", None)
        attempted = routes is not None and routes.attempted
        missing = [n for n in settings.services if routes is None or n not in routes.specs]
        loaded = len(settings.services) - len(missing)
        return {"ok": attempted, "routes": {"loaded": loaded, "missing": missing}}

    app = build_app(
        settings=settings,
        extra_readiness=routes_ready,
        title="Minsheng gateway",
        description="The one public entry: routing, authentication, roles, limits, request ids.",
        lifespan=lifespan,
        routers=[auth.router, audit_api.router, meta.router],
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    async def proxy(request: Request):
        try:
            return await forward(request)
        except AppError as exc:
            # Open311 clients parse the spec's error list, not our JSON error shape.
            if request.url.path.startswith("/open311/"):
                return open311_error(request.url.path, exc)
            raise

    # The last added is the outermost: security headers go on every answer, CORS preflights are
    # answered before routing, and the audit row is written as the response starts.
    app.add_middleware(AuditMiddleware)
    app.add_middleware(CorsMiddleware, origins=settings.cors_origins, max_age=settings.cors_max_age_seconds)
    app.add_middleware(SecurityHeadersMiddleware, hsts_seconds=settings.hsts_seconds)

    # Registered last: anything not served by the gateway itself is forwarded.
    app.add_api_route(
        "/{path:path}", proxy, methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
    )
    return app
