"""What every service's `create_app()` shares: runtime resources, health, metrics, errors, middleware."""

import ctypes
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from kit.clock import Clock
from kit.db import make_engine, make_session_factory
from kit.errors import install_error_handlers
from kit.http import make_http_client
from kit.inbox import EventConsumer
from kit.logging import configure_logging
from kit.middleware import RequestContextMiddleware
from kit.outbox import Outbox
from kit.schema_revision import current_revision, head_revision
from kit.settings import ServiceSettings

log = logging.getLogger("minsheng.app")


@asynccontextmanager
async def service_runtime(
    app: FastAPI,
    settings: ServiceSettings,
    *,
    migrations_dir: Path | None = None,
    outbox_model=None,
    event_routes: dict[str, list[str]] | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Any]:
    """Open the database, the shared HTTP client and the outbox relay for the app's lifetime."""
    state = app.state
    state.settings = settings
    state.clock = clock or Clock()
    state.engine = make_engine(
        settings.resolved_database_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        statement_cache_params=settings.db_statement_cache_params,
    )
    state.sessions = make_session_factory(state.engine)
    state.http = make_http_client(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        max_connections=settings.http_max_connections,
    )
    state.migrations_dir = migrations_dir
    # A process started while the database restarts waits for it (then exits, for its supervisor to
    # start it again): starting without knowing the schema would skip its workers and start-up checks.
    state.schema_ok = await retry_while_database_down(
        lambda: _schema_at_head(state, raise_unreachable=True), seconds=settings.startup_db_wait_seconds
    )
    state.outbox = None
    if outbox_model is not None:
        state.outbox = Outbox(
            model=outbox_model,
            session_factory=state.sessions,
            http=state.http,
            settings=settings,
            routes=event_routes or {},
            clock=state.clock,
        )
        state.outbox.start()
    log.info("%s started (mode %s)", settings.service_name, settings.mode)
    try:
        yield state
    finally:
        if state.outbox is not None:
            await state.outbox.stop()
        await state.http.aclose()
        await state.engine.dispose()


# PostgreSQL's answers while it stops or starts: connection exceptions (class 08), and 57P01 admin
# shutdown, 57P02 crash shutdown, 57P03 "the database system is starting up".
_RESTARTING_SQLSTATES = {"57P01", "57P02", "57P03"}


def _sqlstates(exc: BaseException) -> set[str]:
    seen, found, todo = set(), set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(code, str):
            found.add(code)
        todo += [getattr(e, "orig", None), e.__cause__]  # the driver's error, and what it wraps
    return found


def database_unreachable(exc: BaseException) -> bool:
    """An error that means the database is down or restarting, not that the statement was wrong."""
    # Network errors only (a missing file is an OSError too, and waiting will not bring it back).
    if isinstance(exc, ConnectionError | TimeoutError | OperationalError | InterfaceError):
        return True
    if any(s.startswith("08") or s in _RESTARTING_SQLSTATES for s in _sqlstates(exc)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


async def retry_while_database_down(step: Callable[[], Awaitable[Any]], *, seconds: float) -> Any:
    """Run a start-up step, again while the database is unreachable, for up to `seconds`."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(seconds),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        retry=retry_if_exception(database_unreachable),
        before_sleep=lambda rs: log.warning(
            "database unreachable during start-up (%s); trying again", rs.outcome.exception()
        ),
        reraise=True,
    ):
        with attempt:
            return await step()
    return None


async def _schema_at_head(state, *, raise_unreachable: bool = False) -> bool:
    if state.migrations_dir is None:
        return True
    try:
        current = await current_revision(state.engine)
    except Exception as exc:
        if raise_unreachable and database_unreachable(exc):
            raise
        log.error("cannot read the schema revision: %s", exc)
        return False
    head = head_revision(state.migrations_dir)
    if current != head:
        log.error("database is at revision %s, code expects %s: run the migration step", current, head)
        return False
    return True


_heap_frozen = False


def _freezing_startup_heap(lifespan):
    """The app's lifespan, then (once per process) the start-up heap moved out of the collector's way.

    What start-up builds (modules, schemas, routes, models) lives as long as the process; a full
    collection walked all of it, ≈ 100 ms in which every request in flight waited — the long tail of
    the latency under load. Frozen, the collector scans only what requests allocate.
    """

    @asynccontextmanager
    async def run(app: FastAPI):
        global _heap_frozen
        async with lifespan(app) as value:
            if not _heap_frozen:
                _heap_frozen = True
                gc.collect()
                gc.freeze()
                log.info("start-up heap frozen: %s objects out of the collector's way", gc.get_freeze_count())
            yield value

    return run


_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def pin_malloc_mmap_threshold(nbytes: int) -> bool:
    """Make glibc give every allocation of at least `nbytes` its own mapping, returned when freed.

    glibc starts at 128 KiB but raises the threshold to the size of each mapped block freed (up to
    32 MiB); after that, large short-lived buffers (numpy arrays rebuilt as grading's index grows) come
    from the heap, whose holes are never given back: resident memory only grows (≈ 40 % of the index's
    per-message growth in a soak). Pinning it stops the sliding. False where there is no glibc.
    """
    if nbytes <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS), or no symbol
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, nbytes) == 1


def build_app(
    *,
    settings: ServiceSettings,
    title: str,
    description: str,
    lifespan,
    routers: list[APIRouter],
    consumer: EventConsumer | None = None,
    extra_readiness: Callable[[Any], Awaitable[dict[str, Any]]] | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """A FastAPI app with the platform's error shape, middleware, /livez, /readyz and /metrics."""
    configure_logging(service=settings.service_name, level=settings.log_level, json_output=settings.log_json)
    pin_malloc_mmap_threshold(settings.malloc_mmap_threshold_bytes)
    app = FastAPI(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=_freezing_startup_heap(lifespan),
        **fastapi_kwargs,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    for router in routers:
        app.include_router(router)
    if consumer is not None:
        app.include_router(consumer.router())
    app.include_router(_ops_router(settings.service_name, extra_readiness))
    return app


def _ops_router(service: str, extra_readiness) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/livez")
    async def livez() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz")
    async def readyz(request: Request):
        state = request.app.state
        checks: dict[str, Any] = {}
        ok = True
        try:
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            ok = False
            checks["database"] = f"unreachable: {type(exc).__name__}"
        if not state.schema_ok and checks["database"] == "ok":
            state.schema_ok = await _schema_at_head(state)
        if not state.schema_ok:
            ok = False
            checks["schema"] = "not migrated to head"
        if ok and state.outbox is not None:
            checks["outbox"] = await state.outbox.stats()
        if ok and extra_readiness is not None:
            extra = await extra_readiness(state)
            ok = ok and extra.pop("ok", True)
            checks.update(extra)
        body = {"status": "ok" if ok else "unavailable", "service": service, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        state = request.app.state
        if state.outbox is not None:
            try:
                await state.outbox.stats()
            except Exception:
                log.warning("could not refresh outbox metrics", exc_info=True)
        refresh = getattr(state, "refresh_metrics", None)
        if refresh is not None:
            await refresh(state)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
