"""Transactional outbox and its relay.

An event is written to the service's `outbox` table in the same transaction as the change that caused
it, one row per subscribing service. The relay (a background task of each replica) claims due rows,
POSTs them in batches to the subscriber's `/internal/events`, and marks what the subscriber applied.
A subscriber that is down only delays delivery: its rows wait with jittered exponential backoff.
On PostgreSQL, replicas claim rows with FOR UPDATE SKIP LOCKED plus a lease, so none sends the same
row at the same time; a replica that dies mid-send lets the lease lapse and another resends (the
subscriber's inbox makes the resend harmless).
"""

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import Counter, Gauge
from sqlalchemy import Index, Text, cast, event, func, or_, text, update
from sqlalchemy.orm import Session
from sqlmodel import Field, SQLModel, select

from kit.context import current_traceparent
from kit.db import JSONType, UTCDateTime, is_sqlite, padded, utcnow
from kit.security import ServiceAuth
from kit.worker import BackgroundWorker
from schema.events import Event

log = logging.getLogger("minsheng.outbox")

RELAYED = Counter("minsheng_outbox_relayed_total", "Outbox rows delivered", ["destination", "event_type"])
RELAY_FAILURES = Counter("minsheng_outbox_failures_total", "Failed delivery attempts", ["destination"])
DEAD = Counter("minsheng_outbox_dead_total", "Outbox rows rejected for good", ["destination"])
BACKLOG = Gauge("minsheng_outbox_backlog", "Outbox rows not yet delivered")
BACKLOG_AGE = Gauge("minsheng_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox row")

# A claim outlives the delivery's own time limit, so no other replica sends a batch still in flight.
LEASE_MARGIN = timedelta(seconds=5)


class OutboxFields(SQLModel):
    """Columns of a service's `outbox` table (each service declares the table on its own metadata)."""

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=64)
    destination: str = Field(max_length=32)
    payload: dict[str, Any] = Field(sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    dead_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=1000)


def outbox_table_args() -> tuple:
    """Indexes of an outbox table: unique per (event, destination), and the pending rows by due time."""
    pending = text("delivered_at IS NULL AND dead_at IS NULL")
    return (
        Index("ux_outbox_event_destination", "event_id", "destination", unique=True),
        Index("ix_outbox_pending", "next_attempt_at", postgresql_where=pending, sqlite_where=pending),
    )


@event.listens_for(Session, "after_commit")
def _wake_relay_after_commit(session: Session) -> None:
    outbox = session.info.pop("outbox", None)
    if outbox is not None:
        outbox.wake()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("outbox", None)


class Outbox(BackgroundWorker):
    """Writes events into the outbox and relays them to subscribers."""

    worker_name = "outbox-relay"

    def __init__(
        self,
        *,
        model: type[OutboxFields],
        session_factory,
        http: httpx.AsyncClient,
        settings,
        routes: dict[str, list[str]],
        clock: Callable[[], datetime] = utcnow,
    ):
        self.model = model
        self.sessions = session_factory
        self.http = http
        self.settings = settings
        self.routes = routes
        self.clock = clock
        super().__init__()
        self._failures: dict[str, int] = {}
        self._blocked_until: dict[str, datetime] = {}
        self._sqlite = is_sqlite(session_factory.kw["bind"])
        self.paused = False

    def add(self, session, event: Event) -> None:
        """Queue an event in the caller's transaction, one row per subscriber of its type."""
        destinations = self.routes.get(event.type, [])
        if not destinations:
            raise ValueError(f"no subscriber is configured for {event.type}")
        now = self.clock()
        payload = event.model_dump(mode="json")
        if not payload.get("trace"):  # the trace continues into the consumer even if the emitter forgot
            payload["trace"] = current_traceparent()
        for dest in destinations:
            session.add(
                self.model(
                    event_id=event.id,
                    event_type=event.type,
                    destination=dest,
                    payload=payload,
                    created_at=now,
                    next_attempt_at=now,
                )
            )
        session.info["outbox"] = self

    async def add_many(self, session, events: list[Event]) -> None:
        """Queue many events in the caller's transaction with one bulk INSERT (no ORM object per row):
        for workers that emit thousands at once, e.g. a supervision sweep."""
        if not events:
            return
        rows = self.rows(events)
        conn = await session.connection()
        await conn.execute(self.model.__table__.insert(), rows)
        session.info["outbox"] = self

    def rows(self, events: list[Event]) -> list[dict[str, Any]]:
        """The outbox rows of events, one per event and subscriber, for a caller's own INSERT."""
        trace = current_traceparent()
        payloads = []
        for ev in events:
            payload = ev.model_dump(mode="json")
            if not payload.get("trace"):
                payload["trace"] = trace
            payloads.append((ev.id, ev.type, payload))
        return self._rows_of(payloads)

    def text_rows(self, sealed: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        """The outbox rows of events already serialised as (id, type, JSON text with its trace), for a
        caller whose own INSERT takes JSON as text: the payload is not decoded and encoded again."""
        return self._rows_of(sealed)

    def _rows_of(self, payloads: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
        """One row per (event id, type, payload) and subscriber of the type."""
        now = self.clock()
        rows = []
        for event_id, event_type, payload in payloads:
            destinations = self.routes.get(event_type, [])
            if not destinations:
                raise ValueError(f"no subscriber is configured for {event_type}")
            rows += [
                {
                    "event_id": event_id,
                    "event_type": event_type,
                    "destination": dest,
                    "payload": payload,
                    "created_at": now,
                    "next_attempt_at": now,
                    "attempts": 0,
                }
                for dest in destinations
            ]
        return rows

    @property
    def poll_seconds(self) -> float:
        return self.settings.relay_poll_seconds

    async def run_round(self) -> None:
        """Send everything due, in batches."""
        if self.settings.relay_linger_seconds:
            # A moment's wait lets events committed together travel in one batch.
            await asyncio.sleep(self.settings.relay_linger_seconds)
        if self.paused:
            return
        while await self.drain_once() >= self.settings.relay_batch_size:
            pass

    async def drain_once(self) -> int:
        """Claim and send one batch of due rows; returns how many were claimed."""
        now = self.clock()
        rows = await self._claim(now)
        if not rows:
            return 0
        by_dest: OrderedDict[str, list[Any]] = OrderedDict()
        for row in rows:
            by_dest.setdefault(row.destination, []).append(row)
        outcomes: dict[int, tuple[str, str | None]] = {}
        await asyncio.gather(*(self._send(dest, items, outcomes) for dest, items in by_dest.items()))
        await self._record(rows, outcomes)
        return len(rows)

    async def _claim(self, now: datetime) -> list[Any]:
        """Lease a batch of due rows in one statement (SKIP LOCKED keeps replicas apart on PostgreSQL)."""
        t = self.model.__table__
        blocked = [d for d, until in self._blocked_until.items() if until > now]
        if blocked and set(blocked) >= {d for dests in self.routes.values() for d in dests}:
            return []  # every subscriber is backing off: no need to ask the database
        due = (
            select(t.c.id)
            .where(t.c.delivered_at.is_(None), t.c.dead_at.is_(None), t.c.next_attempt_at <= now)
            .where(or_(t.c.claimed_until.is_(None), t.c.claimed_until < now))
            .order_by(t.c.id)
            .limit(self.settings.relay_batch_size)
        )
        if blocked:
            due = due.where(t.c.destination.not_in(blocked))
        if not self._sqlite:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(t)
            .where(t.c.id.in_(due.scalar_subquery()))
            .values(claimed_until=now + timedelta(seconds=self.settings.relay_timeout_seconds) + LEASE_MARGIN)
            .returning(
                t.c.id,
                t.c.event_id,
                t.c.event_type,
                t.c.destination,
                # as the stored text: the relay forwards it without decoding and encoding it again
                cast(t.c.payload, Text).label("payload"),
                t.c.attempts,
            )
        )
        async with self.sessions() as s:
            rows = list((await s.exec(stmt)).all())
            await s.commit()
        return sorted(rows, key=lambda r: r.id)

    async def _send(self, dest: str, items: list[Any], outcomes: dict) -> None:
        base = self.settings.service_urls.get(dest)
        try:
            if base is None:
                raise RuntimeError(f"unknown destination service {dest!r}")
            resp = await self.http.post(
                f"{base}/internal/events",
                content='{"events":[' + ",".join(r.payload for r in items) + "]}",
                headers={"content-type": "application/json"},
                auth=ServiceAuth(self.settings.service_secret),
                timeout=httpx.Timeout(
                    self.settings.relay_timeout_seconds, connect=self.settings.http_connect_timeout
                ),
            )
            if resp.status_code != 200:
                raise RuntimeError(f"{dest} answered {resp.status_code}: {resp.text[:200]}")
            results = {r["id"]: r for r in resp.json()["results"]}
        except Exception as exc:  # a down or failing subscriber: everything for it waits
            n = self._failures.get(dest, 0) + 1
            self._failures[dest] = n
            self._blocked_until[dest] = self.clock() + timedelta(seconds=self._backoff(n))
            RELAY_FAILURES.labels(dest).inc()
            log.warning(
                "delivery to %s failed (%s attempt in a row): %s: %s", dest, n, type(exc).__name__, exc
            )
            for r in items:
                outcomes[r.id] = ("wait", str(exc)[:1000])
            return
        self._failures.pop(dest, None)
        self._blocked_until.pop(dest, None)
        for r in items:
            res = results.get(r.event_id)
            if res is None:
                outcomes[r.id] = ("retry", "no result for this event")
            elif res["status"] in ("applied", "duplicate"):
                outcomes[r.id] = ("delivered", None)
            elif res["status"] == "rejected":
                outcomes[r.id] = ("dead", res.get("detail"))
            else:
                outcomes[r.id] = ("retry", res.get("detail"))

    def _backoff(self, attempts: int) -> float:
        base = self.settings.relay_backoff_base_seconds * (2 ** min(attempts - 1, 20))
        return min(self.settings.relay_backoff_max_seconds, base) * random.uniform(0.5, 1.5)

    async def _record(self, rows: list[Any], outcomes: dict) -> None:
        """Write back what happened: delivered rows in one statement, the rest with their backoff."""
        t = self.model.__table__
        now = self.clock()
        delivered = [r.id for r in rows if outcomes.get(r.id, ("retry",))[0] == "delivered"]
        waiting = [r.id for r in rows if outcomes.get(r.id, ("retry",))[0] == "wait"]
        async with self.sessions() as s:
            if delivered:
                await s.exec(
                    update(t)
                    .where(t.c.id.in_(padded(delivered)))
                    .values(delivered_at=now, claimed_until=None, last_error=None, attempts=t.c.attempts + 1)
                )
            if waiting:
                # The subscriber is down: its rows wait as long as the subscriber is blocked.
                dest_until = {
                    r.id: self._blocked_until.get(r.destination, now) for r in rows if r.id in waiting
                }
                await s.exec(
                    update(t)
                    .where(t.c.id.in_(padded(waiting)))
                    .values(
                        claimed_until=None,
                        attempts=t.c.attempts + 1,
                        next_attempt_at=max(dest_until.values()),
                        last_error=outcomes[waiting[0]][1],
                    )
                )
            for r in rows:
                verdict, detail = outcomes.get(r.id, ("retry", "not sent"))
                if verdict == "delivered":
                    RELAYED.labels(r.destination, r.event_type).inc()
                elif verdict == "dead":
                    DEAD.labels(r.destination).inc()
                    log.error("event %s to %s rejected for good: %s", r.event_id, r.destination, detail)
                    await s.exec(
                        update(t)
                        .where(t.c.id == r.id)
                        .values(dead_at=now, claimed_until=None, last_error=detail, attempts=t.c.attempts + 1)
                    )
                elif verdict == "retry":
                    await s.exec(
                        update(t)
                        .where(t.c.id == r.id)
                        .values(
                            claimed_until=None,
                            attempts=t.c.attempts + 1,
                            next_attempt_at=now + timedelta(seconds=self._backoff(r.attempts + 1)),
                            last_error=detail,
                        )
                    )
            await s.commit()

    async def stats(self) -> dict[str, Any]:
        """Backlog size, age of the oldest pending row, and dead rows; also updates the gauges."""
        m = self.model
        async with self.sessions() as s:
            pending, oldest = (
                await s.exec(
                    select(func.count(), func.min(m.created_at)).where(
                        m.delivered_at.is_(None), m.dead_at.is_(None)
                    )
                )
            ).one()
            dead = (await s.exec(select(func.count()).where(m.dead_at.is_not(None)))).one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=utcnow().tzinfo)
        age = (self.clock() - oldest).total_seconds() if oldest else 0.0
        BACKLOG.set(pending)
        BACKLOG_AGE.set(age)
        return {"pending": pending, "oldest_age_seconds": round(age, 3), "dead": dead}
