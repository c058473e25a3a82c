"""The workflow's clocks (签收 of an assignment, 答复 and 公开回应 of an incident): start, move, stop.

A clock runs from `started_at` to `due_at`. Its stages are the policy's reminder fractions (催办)
and then the breach (督办); `stage` counts the stages already handled and `next_at` is when the next
one falls due (NULL when none is left), which is what the scheduler's sweep reads through its index.
"""

from datetime import datetime

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.grading.models import WorkflowClock

KIND_TEXT = {"sign": "签收", "reply": "答复", "response": "公开回应"}


def stage_times(started_at: datetime, due_at: datetime, fractions: list[float]) -> list[datetime]:
    """When each stage falls due: the reminders at their fractions, then the breach at the due time."""
    span = due_at - started_at
    return [started_at + span * f for f in fractions] + [due_at]


def next_due(clock: WorkflowClock, fractions: list[float]) -> datetime | None:
    """When the clock's next stage falls due, or None once every stage is handled or it stopped."""
    if clock.stopped_at is not None:
        return None
    times = stage_times(clock.started_at, clock.due_at, fractions)
    return times[clock.stage] if clock.stage < len(times) else None


def reached(clock: WorkflowClock, fractions: list[float], now: datetime) -> int:
    """The latest stage whose time has come (len(fractions) is the breach), or -1 for none yet."""
    out = -1
    for i, t in enumerate(stage_times(clock.started_at, clock.due_at, fractions)):
        if t <= now:
            out = i
    return out


def start(
    session: AsyncSession,
    *,
    incident_id: str,
    kind: str,
    unit_code: str | None,
    started_at: datetime,
    due_at: datetime,
    fractions: list[float],
    assignment_id: str | None = None,
) -> WorkflowClock:
    """Start a clock (the sweep sends what falls due, the latest stage only if it starts late)."""
    clock = WorkflowClock(
        incident_id=incident_id,
        assignment_id=assignment_id,
        kind=kind,
        unit_code=unit_code,
        started_at=started_at,
        due_at=max(due_at, started_at),
    )
    clock.next_at = next_due(clock, fractions)
    session.add(clock)
    return clock


def stop(clock: WorkflowClock, *, now: datetime, outcome: str | None = None) -> None:
    """Stop a clock: met in time, late, or cancelled (the work it timed ended another way)."""
    if clock.stopped_at is not None:
        return
    clock.stopped_at = now
    clock.outcome = outcome or ("met" if now <= clock.due_at else "late")
    clock.next_at = None


def move(clock: WorkflowClock, *, due_at: datetime, fractions: list[float]) -> None:
    """A new due time (an approved extension); reminders already sent are not sent again."""
    clock.due_at = due_at
    clock.next_at = next_due(clock, fractions)


async def open_clocks(
    session: AsyncSession,
    *,
    incident_id: str,
    kinds: tuple[str, ...] | None = None,
    assignment_id: str | None = None,
) -> list[WorkflowClock]:
    """The running clocks of an incident (of some kinds, or of one assignment)."""
    q = select(WorkflowClock).where(
        WorkflowClock.incident_id == incident_id, WorkflowClock.stopped_at.is_(None)
    )
    if kinds:
        q = q.where(WorkflowClock.kind.in_(kinds))
    if assignment_id:
        q = q.where(WorkflowClock.assignment_id == assignment_id)
    return list((await session.exec(q.order_by(WorkflowClock.id))).all())
