"""Grading's Prometheus metrics (domain figures; the kit adds HTTP, outbox and inbox ones)."""

import time
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func
from sqlmodel import select

GRADED = Counter("minsheng_grading_messages_graded_total", "Messages graded", ["level", "source"])
LOW_CONFIDENCE = Counter(
    "minsheng_grading_low_confidence_total", "Messages whose category a person must check (low confidence)"
)
JOINED = Counter(
    "minsheng_grading_messages_joined_total", "Messages that joined an existing incident", ["kind"]
)
ESCALATED = Counter("minsheng_grading_escalations_total", "Incidents whose level rose")
GRADE_SECONDS = Histogram(
    "minsheng_grading_grade_seconds",
    "Time to grade one message and place it in its incident",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LAG_SECONDS = Histogram(
    "minsheng_grading_receipt_to_graded_seconds",
    "From intake's receipt to the graded incident",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
INCIDENTS = Gauge("minsheng_grading_incidents", "Incidents by level and status group", ["level", "state"])
OVERDUE = Gauge(
    "minsheng_grading_overdue_incidents", "Open incidents whose citizen reply is past its due time", ["level"]
)
INDEXED = Gauge("minsheng_grading_index_messages", "Messages in this replica's same-matter index")
# The handling workflow and its supervision (issue 5).
WORKFLOW = Counter("minsheng_grading_workflow_actions_total", "Workflow steps taken", ["action"])
RETURNS = Counter("minsheng_grading_returns_total", "Assignments units returned (退回)", ["reason"])
EXTENSIONS = Counter(
    "minsheng_grading_extensions_total", "Extension requests (延期) and their decisions", ["outcome"]
)
REOPENED = Counter("minsheng_grading_reopened_total", "Matters reopened (重办)", ["source"])
NOTICES = Counter(
    "minsheng_grading_supervision_notices_total",
    "催办 (reminder) and 督办 (supervision) sent",
    ["kind", "clock"],
)
OVERDUE_CLOCKS = Gauge(
    "minsheng_grading_overdue_clocks", "Running clocks past their due time (签收, 答复, 公开回应)", ["clock"]
)
SWEEP_SECONDS = Histogram(
    "minsheng_grading_supervision_sweep_seconds",
    "One supervision sweep (due clocks and the statistics roll-up)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
SUPERVISION_LEADER = Gauge(
    "minsheng_grading_supervision_leader", "1 while this replica holds the supervision lease"
)


def observe_grading(g, *, started: float, received_at: datetime, now: datetime) -> None:
    """Count a graded message and how long it took."""
    GRADED.labels(g.level.value, g.prediction.source).inc()
    if g.prediction.low_confidence:
        LOW_CONFIDENCE.inc()
    GRADE_SECONDS.observe(time.perf_counter() - started)
    LAG_SECONDS.observe(max(0.0, (now - received_at).total_seconds()))


async def refresh(state) -> None:
    """DB-backed gauges, refreshed when /metrics is scraped."""
    from services.grading.models import Incident, WorkflowClock
    from services.grading.service import AWAITING_REPLY, OPEN_STATUSES

    open_values = [s.value for s in OPEN_STATUSES]
    async with state.sessions() as session:
        q = select(Incident.level, Incident.status, func.count()).group_by(Incident.level, Incident.status)
        counts: dict[tuple[str, str], int] = {}
        for level, status, n in (await session.exec(q)).all():
            key = (level, "open" if status in open_values else "done")
            counts[key] = counts.get(key, 0) + n
        for g in INCIDENTS._metrics.values():  # reset so a level with no rows shows 0
            g.set(0)
        for (level, state_), n in counts.items():
            INCIDENTS.labels(level, state_).set(n)
        now = state.clock.now()
        waiting = [s.value for s in AWAITING_REPLY]  # a published reply is an answer: not overdue
        late = (
            select(Incident.level, func.count())
            .where(Incident.status.in_(waiting), Incident.reply_due < now)
            .group_by(Incident.level)
        )
        for g in OVERDUE._metrics.values():
            g.set(0)
        for level in ("I", "II", "III", "IV"):
            OVERDUE.labels(level)
        for level, n in (await session.exec(late)).all():
            OVERDUE.labels(level).set(n)
        # Running clocks past due, read through the partial index of running clocks.
        clocks_late = (
            select(WorkflowClock.kind, func.count())
            .join(Incident, Incident.id == WorkflowClock.incident_id)
            .where(WorkflowClock.stopped_at.is_(None), WorkflowClock.due_at < now)
            .where(Incident.status.in_(open_values))
            .group_by(WorkflowClock.kind)
        )
        counts_late = dict((await session.exec(clocks_late)).all())
        for kind in ("sign", "reply", "response"):
            OVERDUE_CLOCKS.labels(kind).set(counts_late.get(kind, 0))
    runtime = getattr(state, "grading", None)
    if runtime is not None:
        INDEXED.set(len(runtime.index))
