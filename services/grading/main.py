"""Grading's app: `create_app()` for uvicorn (`--factory`)."""

import asyncio
import contextlib
import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from kit.app import build_app, retry_while_database_down, service_runtime
from services.grading import metrics, workflow_events  # noqa: F401 — registers message.feedback
from services.grading.api import admin, incidents
from services.grading.api import stats as stats_api
from services.grading.api import supervision as supervision_api
from services.grading.api import workflow as workflow_api
from services.grading.config import GradingSettings
from services.grading.handlers import consumer
from services.grading.models import OutboxEvent
from services.grading.outbox import EVENT_ROUTES
from services.grading.runtime import GradingRuntime
from services.grading.supervision import Supervisor

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("minsheng.grading")


def _runtime(settings: GradingSettings) -> GradingRuntime:
    rt = GradingRuntime(
        bundle_dir=settings.bundle_dir,
        model_path=settings.resolved_model_path(),
        route_model_path=settings.resolved_route_model_path(),
        timezone=settings.timezone,
    )
    return rt


async def _watch_bundle(state, seconds: float) -> None:
    """Reload the bundle when its files change (every replica converges without an admin call each)."""
    rt = state.grading

    def stamp():
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in rt.holder.directory.glob("*.yaml")))

    last = stamp()
    while True:
        await asyncio.sleep(seconds)
        try:
            now = stamp()
            if now != last:
                last = now
                await asyncio.to_thread(rt.reload_bundle)
        except Exception:
            log.exception("bundle watch failed")


async def _readiness(state) -> dict:
    rt = getattr(state, "grading", None)
    if rt is None:
        return {"ok": False, "bundle": "not loaded"}
    out = {"bundle": rt.bundle.policy_version, "classifier": rt.engine.classifier.mode}
    if rt.holder.last_error:
        out["bundle_reload"] = "last reload refused; previous bundle in use"
    if not rt.index_ready:
        out["ok"] = False
        out["index"] = "loading"
    return out


def create_app(settings: GradingSettings | None = None) -> FastAPI:
    """The grading service."""
    settings = settings or GradingSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_runtime(
            app, settings, migrations_dir=MIGRATIONS, outbox_model=OutboxEvent, event_routes=EVENT_ROUTES
        ) as state:
            state.grading = await asyncio.to_thread(_runtime, settings)
            state.refresh_metrics = metrics.refresh
            if state.schema_ok:

                async def rebuild_index():
                    async with state.sessions() as session:
                        await state.grading.sync_index(session, now=state.clock.now())

                await retry_while_database_down(rebuild_index, seconds=settings.startup_db_wait_seconds)
            watcher = None
            if settings.bundle_watch_seconds > 0:
                watcher = asyncio.create_task(_watch_bundle(state, settings.bundle_watch_seconds))
            state.supervision = Supervisor(state)
            if state.schema_ok:
                state.supervision.start()
            try:
                yield
            finally:
                await state.supervision.stop()
                if watcher is not None:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher

    return build_app(
        settings=settings,
        title="Minsheng grading 研判·交办·督办",
        description="Incidents, levels and their reasons, routing, deadlines and the handling workflow.",
        lifespan=lifespan,
        routers=[
            incidents.router,
            workflow_api.incidents,
            workflow_api.assignments,
            supervision_api.router,
            stats_api.router,
            admin.router,
        ],
        consumer=consumer,
        extra_readiness=_readiness,
    )
