"""Supervision (督办): the scheduler that keeps every clock, the overdue list and the 通报 list.

One replica at a time runs the scheduler (a lease row, kit.lease). Each round it
- sweeps the clocks whose next stage is due (`workflow_clock.next_at <= now`, read through a partial
  index, so the cost follows the due clocks, not the open incidents): a 催办 to the unit at each
  reminder fraction, a 督办 to the unit, the supervisor and the leader in charge at the breach;
- rolls the day's counts and newly graded messages up into the statistics, and tells the people who
  answered for a published reply when a new message of the matter arrives (质疑跟帖).

Clock rows are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL and each batch is one transaction
with what it causes (notices, notification events, timeline steps, counts); every notice's dedupe key
is unique, so nothing goes out twice even if two replicas ever overlap. After downtime the due clocks
simply come up: each sends only the latest stage it reached (a matter already overdue gets its 督办,
not the reminders it missed). Time is `state.clock`: tests move it.
"""

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.context import current_traceparent
from kit.db import is_sqlite
from kit.lease import Lease
from kit.worker import BackgroundWorker
from schema.enums import IncidentStatus, Level
from schema.events import NotificationRequested, NotificationRequestedData
from services.grading import clocks, metrics, stats
from services.grading.models import (
    Incident,
    IncidentEvent,
    IncidentMessage,
    SupervisionNotice,
    WorkflowClock,
)
from services.grading.models import Lease as LeaseRow
from services.grading.service import summary_of

log = logging.getLogger("minsheng.grading.supervision")
LEASE_NAME = "supervision"
# Incidents whose clocks no longer run (the sweep stops what it finds of them).
FINISHED = frozenset(
    {
        IncidentStatus.closed.value,
        IncidentStatus.archived.value,
        IncidentStatus.merged.value,
        IncidentStatus.screened_out.value,
    }
)
JOINED_BY_STAFF = {"new", "split", "merge", None}
# The incident columns a notification's summary needs (not the digest text and the grading detail).
SUMMARY_COLUMNS = (
    "id", "code", "title", "status", "level", "score", "factors", "category", "request_type", "response_type",
    "warning_class", "lead_unit_code", "lead_unit_name", "co_units", "report_due", "first_release_due",
    "response_due", "reply_due", "channels", "received_at", "heat", "district", "excerpt", "policy_version",
)  # fmt: skip
CLOCK_STATE = ("due_at", "stage", "next_at", "breached_at", "stopped_at", "outcome")  # what a sweep changes


def _local(tz, at: datetime) -> str:
    return at.astimezone(tz).strftime("%m月%d日%H:%M")


def deadline_text(clock: WorkflowClock, fraction: float | None, tz) -> str:
    """The words of a 催办/督办 about a clock: which time limit, when, how far gone."""
    base = f"{clocks.KIND_TEXT.get(clock.kind, clock.kind)}时限{_local(tz, clock.due_at)}"
    return base + ("，已超期" if fraction is None else f"，已过时限{round(fraction * 100)}%")


class Supervisor(BackgroundWorker):
    """The supervision scheduler of one replica (it works only while it holds the lease)."""

    worker_name = "grading-supervision"

    def __init__(self, state):
        super().__init__()
        self.state = state
        self.settings = state.settings
        self.sessions = state.sessions
        self.clock = state.clock
        self.lease = Lease(
            model=LeaseRow,
            sessions=state.sessions,
            name=LEASE_NAME,
            seconds=self.settings.supervision_lease_seconds,
            on_change=lambda held: metrics.SUPERVISION_LEADER.set(1 if held else 0),
        )
        self._sqlite = is_sqlite(self.sessions.kw["bind"])
        self._lock = asyncio.Lock()

    @property
    def rt(self):
        return self.state.grading

    @property
    def poll_seconds(self) -> float:
        return self.settings.supervision_poll_seconds

    def start(self) -> None:
        """Run rounds in the background every supervision_poll_seconds (none when it is 0)."""
        if self.poll_seconds > 0:
            super().start()
            self.wake()

    async def stop(self) -> None:
        """Stop, and hand the lease back so another replica takes over at once."""
        await super().stop()
        with contextlib.suppress(Exception):
            await self.lease.release(self.clock.now())

    async def run_round(self) -> None:
        await self.tick()

    async def tick(self, now: datetime | None = None) -> dict[str, Any]:
        """One round: hold the lease, sweep the due clocks, roll the statistics up."""
        async with self._lock:
            now = now or self.clock.now()
            if not await self.lease.acquire(now):
                return {"leader": False, "holder": None}
            started = time.perf_counter()
            swept = await self.sweep(now)
            rolled = await self.rollup(now)
            seconds = time.perf_counter() - started
            metrics.SWEEP_SECONDS.observe(seconds)
            return {"leader": True, **swept, "rolled_up": rolled, "seconds": round(seconds, 4)}

    # --- clocks ------------------------------------------------------------------------------------

    async def sweep(self, now: datetime) -> dict[str, int]:
        """Handle every clock whose next stage is due, in batches; returns what was sent."""
        out: Counter = Counter()
        batch = self.settings.supervision_batch_size
        while True:
            n, sent = await self._sweep_batch(now, batch)
            out.update(sent)
            out["clocks"] += n
            if n < batch:
                return dict(out)

    async def _sweep_batch(self, now: datetime, limit: int) -> tuple[int, Counter]:
        rt = self.rt
        policy = rt.bundle.policy
        fractions = list(policy.reminder_fractions)
        tz = rt.engine.calendar.tz
        sent: Counter = Counter()
        t, it = WorkflowClock.__table__, Incident.__table__
        async with self.sessions() as s:
            conn = await s.connection()
            q = select(t).where(t.c.next_at <= now).order_by(t.c.next_at).limit(limit)
            if not self._sqlite:
                q = q.with_for_update(skip_locked=True)
            # Plain rows, not ORM objects: a sweep after downtime handles thousands of clocks.
            due = [SimpleNamespace(**r._mapping) for r in (await conn.execute(q)).all()]
            if not due:
                return 0, sent
            ids = list({c.incident_id for c in due})
            cols = [it.c[n] for n in SUMMARY_COLUMNS]
            incidents = {i.id: i for i in (await conn.execute(select(*cols).where(it.c.id.in_(ids)))).all()}
            plan: list[tuple[Any, str, int, str]] = []
            for c in due:
                inc = incidents.get(c.incident_id)
                if inc is None or inc.status in FINISHED:
                    clocks.stop(c, now=now, outcome="cancelled")
                    continue
                # An incident-level clock follows its incident (an extension or a regrading moved it).
                if c.kind == "reply" and inc.reply_due and inc.reply_due != c.due_at:
                    c.due_at = inc.reply_due
                if c.kind == "response" and inc.response_due and inc.response_due != c.due_at:
                    c.due_at = inc.response_due
                reached = clocks.reached(c, fractions, now)
                if reached >= c.stage:
                    kind = "supervision" if reached == len(fractions) else "reminder"
                    key = f"{kind}:{c.id}:{reached}:{int(c.due_at.timestamp())}"
                    plan.append((c, kind, reached, key))
                    if kind == "supervision":
                        c.breached_at = c.due_at
                    c.stage = reached + 1
                c.next_at = clocks.next_due(c, fractions)
            fresh = await self._claim_notices(s, plan, now)
            by_incident = await _message_ids(s, [c.incident_id for c, _, _, k in plan if k in fresh])
            events, steps = [], []
            for c, kind, reached, key in plan:
                if key not in fresh:
                    continue  # sent before (an overlapping replica, a replayed round): never twice
                inc = incidents[c.incident_id]
                fraction = fractions[reached] if kind == "reminder" else None
                events.append(
                    self._notification(inc, c, kind, fraction, key, by_incident.get(inc.id, []), tz)
                )
                unit = rt.bundle.units.get(c.unit_code or "")
                who = unit.name if unit else (c.unit_code or "")
                label = clocks.KIND_TEXT.get(c.kind, c.kind)
                if kind == "reminder":
                    note = f"催办{who}（{label}，已过时限{round(fraction * 100)}%）"
                else:
                    note = f"督办：{who}{label}超期（时限{_local(tz, c.due_at)}）"
                    if c.kind == "reply":
                        stats.record(s, at=now, tz=tz, unit_code=c.unit_code, **stats.dims(inc), overdue=1)
                steps.append(
                    {
                        "incident_id": inc.id,
                        "at": now,
                        "action": "reminded" if kind == "reminder" else "supervised",
                        "status": inc.status,
                        "actor": "system",
                        "note": note,
                        "public": False,
                    }
                )
                metrics.NOTICES.labels(kind, c.kind).inc()
                sent[kind] += 1
            # Thousands at once after downtime: bulk statements, not an ORM object per row.
            await self.state.outbox.add_many(s, events)
            if steps:
                await conn.execute(IncidentEvent.__table__.insert(), steps)
            await conn.execute(
                update(t)
                .where(t.c.id == bindparam("clock_id"))
                .values({k: bindparam(k) for k in CLOCK_STATE}),
                [{"clock_id": c.id, **{k: getattr(c, k) for k in CLOCK_STATE}} for c in due],
            )
            await s.commit()
        return len(due), sent

    async def _claim_notices(self, s: AsyncSession, plan, now: datetime) -> set[str]:
        """Insert the notices of a batch once each; returns the keys that were new."""
        if not plan:
            return set()
        t = SupervisionNotice.__table__
        fractions = self.rt.bundle.policy.reminder_fractions
        rows = [
            {
                "clock_id": c.id,
                "incident_id": c.incident_id,
                "unit_code": c.unit_code,
                "kind": kind,
                "clock_kind": c.kind,
                "fraction": None if kind == "supervision" else fractions[reached],
                "due_at": c.due_at,
                "sent_at": now,
                "dedupe_key": key,
            }
            for c, kind, reached, key in plan
        ]
        ins = (sqlite if self._sqlite else postgresql).insert(t)
        stmt = ins.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(t.c.dedupe_key)
        result = await (await s.connection()).execute(stmt, rows)
        return set(result.scalars().all())

    def _notification(self, inc: Incident, c: WorkflowClock, kind: str, fraction, key: str, ids, tz):
        params: dict[str, Any] = {
            "clock": c.kind,
            "due_at": c.due_at.isoformat(),
            "deadline": c.due_at.isoformat(),
            "deadline_text": deadline_text(c, fraction, tz),
        }
        if fraction is not None:
            params["fraction"] = fraction
        else:
            params["overdue"] = True
        return NotificationRequested.build(
            source="grading",
            trace=current_traceparent(),
            data=NotificationRequestedData(
                kind=kind,
                incident=summary_of(inc, ids),
                unit_codes=[c.unit_code] if c.unit_code else [],
                recipient_roles=["supervisor", "leader_in_charge"] if kind == "supervision" else [],
                params=params,
                dedupe_key=key,
            ),
        )

    # --- statistics and 质疑跟帖 ---------------------------------------------------------------------

    async def rollup(self, now: datetime) -> int:
        """Roll counts and new messages up into the daily statistics; flag challenges to published replies."""
        total = 0
        batch = self.settings.supervision_batch_size * 10
        tz = self.rt.engine.calendar.tz
        while True:
            async with self.sessions() as s:
                n, messages = await stats.rollup(s, tz=tz, batch=batch)
                await self._challenges(s, messages, now)
                await s.commit()
            total += n
            if n < batch:
                return total

    async def _challenges(self, s: AsyncSession, messages: list[Any], now: datetime) -> None:
        hits = [
            r
            for r in messages
            if r.status == IncidentStatus.published.value and r.joined_by not in JOINED_BY_STAFF
        ]
        if not hits:
            return
        by_incident = await _message_ids(s, [r.incident_id for r in hits])
        for r in hits:
            inc = await s.get(Incident, r.incident_id)
            if inc is None:
                continue
            self.state.outbox.add(
                s,
                NotificationRequested.build(
                    source="grading",
                    trace=current_traceparent(),
                    data=NotificationRequestedData(
                        kind="challenge",
                        incident=summary_of(inc, by_incident.get(inc.id, [])),
                        unit_codes=[inc.lead_unit_code] if inc.lead_unit_code else [],
                        params={
                            "note": (r.excerpt or "")[:40],
                            "message_id": r.message_id,
                            "channel": r.channel,
                        },
                        dedupe_key=f"challenge:{inc.id}:{r.message_id}",
                    ),
                ),
            )
            metrics.WORKFLOW.labels("challenge").inc()


async def _message_ids(s: AsyncSession, incident_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    if not incident_ids:
        return out
    q = (
        select(IncidentMessage.incident_id, IncidentMessage.message_id)
        .where(IncidentMessage.incident_id.in_(list(set(incident_ids))))
        .order_by(IncidentMessage.received_at)
    )
    for incident_id, message_id in (await s.exec(q)).all():
        out[incident_id].append(message_id)
    return out


# --- what supervisors read ---------------------------------------------------------------------------


async def overdue(
    session: AsyncSession,
    *,
    now: datetime,
    unit: str | None = None,
    kind: str | None = None,
    level: Level | None = None,
    explained: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[tuple[WorkflowClock, Incident]], int]:
    """Running clocks past their due time (the overdue list), the longest overdue first."""
    q = (
        select(WorkflowClock, Incident)
        .join(Incident, Incident.id == WorkflowClock.incident_id)
        .where(WorkflowClock.stopped_at.is_(None), WorkflowClock.due_at < now)
        .where(Incident.status.not_in(list(FINISHED)))
    )
    if unit:
        q = q.where(WorkflowClock.unit_code == unit)
    if kind:
        q = q.where(WorkflowClock.kind == kind)
    if level:
        q = q.where(Incident.level == level.value)
    if explained is not None:
        q = q.where(
            WorkflowClock.explained_at.is_not(None) if explained else WorkflowClock.explained_at.is_(None)
        )
    total = (await session.exec(select(func.count()).select_from(q.subquery()))).one()
    rows = (
        await session.exec(q.order_by(WorkflowClock.due_at, WorkflowClock.id).limit(limit).offset(offset))
    ).all()
    return [(c, i) for c, i in rows], total


async def notice_list(
    session: AsyncSession, *, now: datetime, grace: timedelta, kinds: tuple[str, ...] = ("reply", "response")
) -> list[dict[str, Any]]:
    """通报: units overdue with no explanation (neither a reply nor a 情况说明 or extension request)."""
    q = (
        select(WorkflowClock, Incident)
        .join(Incident, Incident.id == WorkflowClock.incident_id)
        .where(
            WorkflowClock.stopped_at.is_(None),
            WorkflowClock.due_at < now - grace,
            WorkflowClock.explained_at.is_(None),
            WorkflowClock.kind.in_(kinds),
            WorkflowClock.unit_code.is_not(None),
        )
        .where(Incident.status.not_in(list(FINISHED)))
        .order_by(WorkflowClock.unit_code, WorkflowClock.due_at)
    )
    units: dict[str, list[tuple[WorkflowClock, Incident]]] = defaultdict(list)
    for c, i in (await session.exec(q)).all():
        units[c.unit_code].append((c, i))
    return [
        {"unit_code": code, "items": items}
        for code, items in sorted(units.items(), key=lambda kv: -len(kv[1]))
    ]
