"""The consuming side of events: `/internal/events`, applying each event exactly once.

Each event is applied in its own transaction together with a row in the service's `inbox` table
keyed by the event id. A redelivered event finds its row and changes nothing; two deliveries racing
each other collide on the primary key and only one transaction commits.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from kit.context import trace_from_header, trace_var
from kit.db import UTCDateTime, padded, utcnow
from kit.errors import AppError
from kit.security import verified_internal
from schema.events import Event, EventBatch, EventResult, parse_event

log = logging.getLogger("minsheng.inbox")

CONSUMED = Counter("minsheng_events_consumed_total", "Events received by outcome", ["event_type", "status"])

Handler = Callable[[Any, Event, Any], Awaitable[None]]
BatchHandler = Callable[[Any, list[Event], Any], Awaitable[None]]


class InboxFields(SQLModel):
    """Columns of a service's `inbox` table: the ids of events already applied."""

    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=64)
    source: str = Field(max_length=32)
    received_at: datetime = Field(sa_type=UTCDateTime)


class EventConsumer:
    """Routes incoming events to handlers `async def handler(session, event, state)`.

    A type registered with `on_batch` gets consecutive events of that type of one delivery together,
    `async def handler(session, events, state)`, applied in one transaction (one commit for many
    events). If that transaction fails, the events are applied one by one, so a single bad event
    cannot hold back the others.
    """

    def __init__(self, *, inbox_model: type[InboxFields]):
        self.inbox_model = inbox_model
        self.handlers: dict[str, Handler] = {}
        self.batch_handlers: dict[str, BatchHandler] = {}

    def on(self, event_type: str) -> Callable[[Handler], Handler]:
        """Register the handler of an event type."""

        def register(fn: Handler) -> Handler:
            self.handlers[event_type] = fn
            return fn

        return register

    def on_batch(self, event_type: str) -> Callable[[BatchHandler], BatchHandler]:
        """Register a handler that takes a list of events of one type in one transaction."""

        def register(fn: BatchHandler) -> BatchHandler:
            self.batch_handlers[event_type] = fn

            async def one(session, event, state):
                await fn(session, [event], state)

            self.handlers[event_type] = one
            return fn

        return register

    def on_each(self, event_type: str) -> Callable[[Handler], Handler]:
        """Register a per-event handler; a run of such events is applied in one transaction, each
        event seeing the rows of the ones before it (a failure falls back to one transaction each)."""

        def register(fn: Handler) -> Handler:
            async def run(session, events, state) -> None:
                for event in events:
                    await fn(session, event, state)
                    await session.flush()

            self.on_batch(event_type)(run)
            return fn

        return register

    async def apply_all(self, raws: list[dict[str, Any]], state: Any) -> list[EventResult]:
        """Apply a delivery in order; runs of a batch-handled type share one transaction."""
        results: list[EventResult | None] = [None] * len(raws)
        run: list[tuple[int, Event]] = []

        async def flush():
            if run:
                for i, res in await self._apply_run(list(run), state):
                    results[i] = res
                run.clear()

        for i, raw in enumerate(raws):
            event_type = raw.get("type") if isinstance(raw, dict) else None
            if event_type in self.batch_handlers:
                try:
                    event = parse_event(raw)
                except ValidationError:
                    await flush()
                    results[i] = await self.apply(raw, state)
                    continue
                if run and run[0][1].type != event.type:
                    await flush()
                run.append((i, event))
                continue
            await flush()
            results[i] = await self.apply(raw, state)
        await flush()
        return [r for r in results if r is not None]

    async def _apply_run(self, run: list[tuple[int, Event]], state: Any) -> list[tuple[int, EventResult]]:
        if len(run) == 1:
            i, event = run[0]
            return [(i, await self.apply(event.model_dump(mode="json"), state))]
        handler = self.batch_handlers[run[0][1].type]
        out: list[tuple[int, EventResult]] = []
        try:
            async with state.sessions() as session:
                ids = [e.id for _, e in run]
                m = self.inbox_model
                seen = set((await session.exec(select(m.event_id).where(m.event_id.in_(padded(ids))))).all())
                fresh: list[tuple[int, Event]] = []
                for i, e in run:
                    if e.id in seen:
                        out.append((i, EventResult(id=e.id, status="duplicate")))
                        continue
                    seen.add(e.id)
                    fresh.append((i, e))
                    session.add(m(event_id=e.id, event_type=e.type, source=e.source, received_at=utcnow()))
                if fresh:
                    await session.flush()
                    await handler(session, [e for _, e in fresh], state)
                    await session.commit()
        except Exception as exc:  # fall back to one at a time: each event gets its own verdict
            log.warning("batch of %s %s failed (%s); applying one by one", len(run), run[0][1].type, exc)
            return [(i, await self.apply(e.model_dump(mode="json"), state)) for i, e in run]
        for i, e in fresh:
            out.append((i, EventResult(id=e.id, status="applied")))
        for _, e in run:
            CONSUMED.labels(e.type, next(r.status for j, r in out if r.id == e.id)).inc()
        if fresh:
            log.info("applied %s %s events in one transaction", len(fresh), run[0][1].type)
        return out

    async def apply(self, raw: dict[str, Any], state: Any) -> EventResult:
        """Apply one raw event once; the verdict says whether the sender may forget it."""
        event_id = str(raw.get("id", "?"))
        try:
            event = parse_event(raw)
        except ValidationError as exc:
            CONSUMED.labels(str(raw.get("type", "?")), "rejected").inc()
            return EventResult(id=event_id, status="rejected", detail=f"invalid event: {exc.errors()[:3]}")
        handler = self.handlers.get(event.type)
        if handler is None:
            CONSUMED.labels(event.type, "rejected").inc()
            return EventResult(id=event_id, status="rejected", detail=f"this service takes no {event.type}")
        token = trace_var.set(trace_from_header(event.trace))
        try:
            status, detail = await self._apply_once(event, handler, state)
            # One line per event, in the trace of the request that caused it (follow a message by it).
            log.info("event %s %s from %s: %s", event.type, event.id, event.source, status)
        finally:
            trace_var.reset(token)
        CONSUMED.labels(event.type, status).inc()
        return EventResult(id=event.id, status=status, detail=detail)

    async def _apply_once(self, event: Event, handler: Handler, state: Any) -> tuple[str, str | None]:
        async with state.sessions() as session:
            if await session.get(self.inbox_model, event.id) is not None:
                return "duplicate", None
            session.add(
                self.inbox_model(
                    event_id=event.id, event_type=event.type, source=event.source, received_at=utcnow()
                )
            )
            try:
                await session.flush()  # a racing delivery of the same event waits here, then collides
                await handler(session, event, state)
                await session.commit()
            except IntegrityError as exc:
                await session.rollback()
                async with state.sessions() as check:
                    if await check.get(self.inbox_model, event.id) is not None:
                        return "duplicate", None
                log.exception("event %s (%s) hit a constraint", event.id, event.type)
                return "error", f"constraint: {str(exc.orig)[:300]}"
            except AppError as exc:
                await session.rollback()
                if exc.status < 500:
                    log.error("event %s (%s) rejected: %s", event.id, event.type, exc.message)
                    return "rejected", f"{exc.code}: {exc.message}"
                return "error", exc.message
            except Exception as exc:
                await session.rollback()
                log.exception("event %s (%s) failed; the sender will retry", event.id, event.type)
                return "error", f"{type(exc).__name__}: {str(exc)[:300]}"
        return "applied", None

    def router(self) -> APIRouter:
        """The `/internal/events` endpoint (signed calls only, not in the public contract)."""
        router = APIRouter(include_in_schema=False)

        @router.post("/internal/events", dependencies=[Depends(verified_internal)])
        async def receive_events(batch: EventBatch, request: Request) -> dict[str, Any]:
            results = await self.apply_all(batch.events, request.app.state)
            return {"results": [r.model_dump() for r in results]}

        return router
