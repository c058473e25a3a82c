"""Notify's app: `create_app()` for uvicorn (`--factory`)."""

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI

from kit.app import build_app, service_runtime
from kit.ratelimit import RateLimiter
from services.notify import metrics
from services.notify.api import notifications
from services.notify.clients.aliyun_sms import AliyunSms
from services.notify.clients.base import provider_timeout
from services.notify.clients.dingtalk import DingTalkRobot
from services.notify.clients.email import Console, Smtp
from services.notify.clients.tencent_sms import TencentSms
from services.notify.clients.wecom import WeComApp, WeComRobot
from services.notify.config import NotifySettings
from services.notify.dispatcher import Dispatcher, Scrubber
from services.notify.handlers import consumer
from services.notify.models import OutboxEvent
from services.notify.outbox import EVENT_ROUTES
from services.notify.recipients import load_directory
from services.notify.scheduler import Scheduler
from services.notify.service import Context, mask

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("minsheng.notify")


def _scrubbing_record_factory(scrub: Scrubber, previous):
    """Every log record of the process is scrubbed as it is made, whatever logger or handler it goes to."""

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            msg = record.getMessage()
        except Exception:  # a malformed call: leave it to logging to report
            return record
        clean = scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            trace = logging.Formatter().formatException(record.exc_info)
            if scrub(trace) != trace:  # formatters print exc_text when there is no exc_info
                record.exc_info, record.exc_text = None, scrub(trace)
        return record

    factory.previous = previous
    return factory


def build_providers(settings: NotifySettings, http: httpx.AsyncClient) -> dict[str, list]:
    """The provider adapters of each channel."""
    return {
        "sms": [TencentSms(settings, http), AliyunSms(settings, http)],
        "wecom_app": [WeComApp(settings, http)],
        "wecom_robot": [WeComRobot(settings, http)],
        "dingtalk": [DingTalkRobot(settings, http)],
        "email": [Smtp(settings)],
        "console": [Console(mask)],
    }


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    """The notify service."""
    settings = settings or NotifySettings()
    scrub = Scrubber(settings.secrets())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        factory = _scrubbing_record_factory(scrub, logging.getLogRecordFactory())
        logging.setLogRecordFactory(factory)
        async with service_runtime(
            app, settings, migrations_dir=MIGRATIONS, outbox_model=OutboxEvent, event_routes=EVENT_ROUTES
        ) as state:
            state.loop = asyncio.get_running_loop()  # tests drive the workers on it from their thread
            state.directory = load_directory(settings.bundle_dir)
            # Providers get their own client: no internal request ids or trace headers go to vendors.
            state.provider_http = httpx.AsyncClient(
                timeout=provider_timeout(settings),
                limits=httpx.Limits(
                    max_connections=settings.dispatch_concurrency,
                    max_keepalive_connections=settings.dispatch_concurrency,
                ),
                trust_env=False,
            )
            state.providers = build_providers(settings, state.provider_http)
            configured = frozenset(ch for ch, ps in state.providers.items() if any(p.configured for p in ps))
            unconfigured = sorted(set(state.providers) - configured)
            if unconfigured:
                log.warning(
                    "no provider configured for %s: %s",
                    ", ".join(unconfigured),
                    "alerts go to the console (demo)"
                    if settings.fallback_to_console
                    else "those deliveries will fail",
                )
            state.notify_ctx = lambda: Context(
                directory=state.directory, settings=settings, configured_channels=configured
            )
            state.refresh_metrics = metrics.refresh
            state.dispatcher = Dispatcher(
                state=state,
                providers=state.providers,
                limiter=RateLimiter(settings.rate_limit_redis_url, namespace="minsheng-notify"),
                scrub=scrub,
            )
            state.scheduler = Scheduler(state=state, ctx_factory=state.notify_ctx)
            if settings.workers_enabled:
                state.dispatcher.start()
                state.scheduler.start()
            try:
                yield
            finally:
                await state.scheduler.stop()
                await state.dispatcher.stop()
                await state.provider_http.aclose()
                if logging.getLogRecordFactory() is factory:
                    logging.setLogRecordFactory(factory.previous)

    async def readiness(state) -> dict:
        """What an operator checks first: which channels can send, and whether this replica schedules."""
        return {
            "channels": sorted(state.notify_ctx().configured_channels),
            "scheduler_leader": state.scheduler.leader,
        }

    return build_app(
        settings=settings,
        extra_readiness=readiness,
        title="Minsheng notify 通知",
        description="Alerts to leaders and units by SMS, WeCom, DingTalk and e-mail, until acknowledged.",
        lifespan=lifespan,
        routers=[notifications.router, notifications.internal],
        consumer=consumer,
    )
