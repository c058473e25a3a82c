"""Archive's app: `create_app()` for uvicorn (`--factory`)."""

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import yaml
from fastapi import FastAPI

from kit.app import build_app, service_runtime
from services.archive import fonts, segment
from services.archive.api import dossiers, reports
from services.archive.config import ArchiveSettings
from services.archive.handlers import consumer
from services.archive.indexer import SearchIndexer
from services.archive.metrics import refresh_metrics
from services.archive.models import OutboxEvent
from services.archive.outbox import EVENT_ROUTES

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: ArchiveSettings | None = None) -> FastAPI:
    """The archive service."""
    settings = settings or ArchiveSettings()
    if settings.seal_key_id not in settings.seal_keys:
        raise ValueError(f"ARCHIVE_SEAL_KEY_ID {settings.seal_key_id!r} is not among ARCHIVE_SEAL_KEYS")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with service_runtime(
            app, settings, migrations_dir=MIGRATIONS, outbox_model=OutboxEvent, event_routes=EVENT_ROUTES
        ) as state:
            bundle = settings.bundle_dir
            state.policy = yaml.safe_load((bundle / "archive.yaml").read_text(encoding="utf-8"))
            meta = yaml.safe_load((bundle / "bundle.yaml").read_text(encoding="utf-8")) or {}
            state.city = meta.get("name", "")
            state.refresh_metrics = refresh_metrics
            state.indexer = SearchIndexer(sessions=state.sessions, settings=settings)
            # The segmenter's dictionary loads now, off the event loop. The CJK font (reportlab and
            # matplotlib, ~50 MB) loads with the first PDF or report: most replicas never render one.
            warm = asyncio.create_task(asyncio.to_thread(segment.warm_up))
            fonts.check_font_file(settings.cjk_font_path)
            state.indexer.start()
            try:
                yield
            finally:
                await state.indexer.stop()
                await warm

    return build_app(
        settings=settings,
        title="Minsheng archive 归档",
        description="Sealed dossiers on a hash chain, Chinese full-text search, exports and reports.",
        lifespan=lifespan,
        routers=[dossiers.router, reports.router],
        consumer=consumer,
    )
