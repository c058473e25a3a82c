"""Intake's app: `create_app()` for uvicorn (`--factory`)."""

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from kit.app import build_app, service_runtime
from kit.ratelimit import RateLimiter
from services.intake import metrics, open311
from services.intake.api import internal, messages, public
from services.intake.api import open311 as open311_api
from services.intake.callbacks import CallbackSender
from services.intake.config import IntakeSettings, load_config
from services.intake.handlers import consumer
from services.intake.idempotency import IdempotencyKeys
from services.intake.models import OutboxEvent
from services.intake.outbox import EVENT_ROUTES
from services.intake.pii import PiiVault
from services.intake.preparer import Preparer
from services.intake.screening import Screener

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    """The intake service."""
    settings = settings or IntakeSettings()
    config = load_config(settings)  # fail fast on a broken bundle, before anything starts

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_runtime(
            app, settings, migrations_dir=MIGRATIONS, outbox_model=OutboxEvent, event_routes=EVENT_ROUTES
        ) as state:
            state.config = config
            state.vault = PiiVault(settings.pii_keys)
            state.screener = Screener(config.screening)
            state.limiter = RateLimiter(settings.rate_limit_redis_url, namespace="minsheng-intake")
            state.idempotency = IdempotencyKeys(
                sessions=state.sessions, rules=config.idempotency, clock=state.clock
            )
            state.open311 = open311.Catalogue(config)
            state.refresh_metrics = metrics.refresh
            state.preparer = Preparer(
                config=config,
                pii_keys=settings.pii_keys,
                processes=settings.prepare_processes,
                chunk=settings.prepare_chunk,
            )
            state.callbacks = CallbackSender(
                sessions=state.sessions,
                http=state.http,
                config=config,
                secrets=settings.callback_secrets,
                clock=state.clock,
            )
            state.callbacks.housekeeping = state.idempotency.purge_expired
            if settings.workers and state.schema_ok:
                state.callbacks.start()
            try:
                yield
            finally:
                await state.callbacks.stop()
                state.preparer.close()

    app = build_app(
        settings=settings,
        title="Minsheng intake 受理",
        description="Messages from every channel, the citizen view and the Open311 facade.",
        lifespan=lifespan,
        routers=[messages.router, public.router, open311_api.router, internal.router],
        consumer=consumer,
    )

    async def open311_error(request, exc: open311.Open311Error):
        return open311.error_response(exc)

    app.add_exception_handler(open311.Open311Error, open311_error)
    return app
