"""How the workflow's rows look to staff (assignments, replies, clocks, the incident's workflow part)."""

from datetime import datetime
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from schema.dto import PublishedReply, UnitRef
from schema.enums import FINDING_TEXT, Finding
from services.grading import clocks, workflow
from services.grading.api.workflow_schemas import (
    AssignmentOut,
    ClockOut,
    ExtensionOut,
    FeedbackOut,
    InstructionOut,
    ProgressNote,
    ReplyOut,
)
from services.grading.models import (
    Assignment,
    ExtensionRequest,
    Incident,
    IncidentFeedback,
    Instruction,
    WorkflowClock,
)


async def latest_extensions(session: AsyncSession, assignment_ids: list[str]) -> dict[str, ExtensionRequest]:
    """The latest extension request of each assignment."""
    if not assignment_ids:
        return {}
    q = (
        select(ExtensionRequest)
        .where(ExtensionRequest.assignment_id.in_(assignment_ids))
        .order_by(ExtensionRequest.requested_at)
    )
    return {e.assignment_id: e for e in (await session.exec(q)).all()}


def extension_out(e: ExtensionRequest) -> ExtensionOut:
    """An extension request as staff see it."""
    return ExtensionOut.model_validate(e, from_attributes=True)


def assignment_out(
    a: Assignment, incident: Incident, *, extension: ExtensionRequest | None, return_reasons: dict[str, str]
) -> AssignmentOut:
    """An assignment, its incident's headline and what its unit may do now."""
    return AssignmentOut(
        id=a.id,
        incident_id=a.incident_id,
        incident_code=incident.code,
        incident_title=incident.title,
        incident_status=incident.status,
        level=incident.level,
        round=a.round,
        unit=UnitRef(code=a.unit_code, name=a.unit_name),
        role=a.role,
        instruction=a.instruction,
        assigned_by=a.assigned_by,
        assigned_at=a.assigned_at,
        sign_due=a.sign_due,
        reply_due=incident.reply_due if a.role == "lead" else None,
        status=a.status,
        signed_at=a.signed_at,
        signed_by=a.signed_by,
        returned_at=a.returned_at,
        return_reason=a.return_reason,
        return_reason_text=return_reasons.get(a.return_reason) if a.return_reason else None,
        return_note=a.return_note,
        ended_at=a.ended_at,
        progress=[ProgressNote(**{k: v for k, v in n.items() if k != "key"}) for n in a.progress or []],
        extension=extension_out(extension) if extension else None,
        allowed_actions=workflow.assignment_actions(a, incident),
    )


async def assignments_out(
    session: AsyncSession, rows: list[Assignment], rt, incidents: dict[str, Incident] | None = None
) -> list[AssignmentOut]:
    """Many assignments at once (their incidents and extensions in one query each)."""
    incidents = dict(incidents or {})
    missing = list({a.incident_id for a in rows} - set(incidents))
    if missing:
        for i in (await session.exec(select(Incident).where(Incident.id.in_(missing)))).all():
            incidents[i.id] = i
    ext = await latest_extensions(session, [a.id for a in rows])
    reasons = rt.bundle.policy.workflow.return_reasons
    return [
        assignment_out(a, incidents[a.incident_id], extension=ext.get(a.id), return_reasons=reasons)
        for a in rows
    ]


def reply_out(r) -> ReplyOut:
    """A reply as staff see it."""
    return ReplyOut(
        id=r.id,
        incident_id=r.incident_id,
        assignment_id=r.assignment_id,
        unit=UnitRef(code=r.unit_code, name=r.unit_name),
        finding=r.finding,
        finding_text=FINDING_TEXT[Finding(r.finding)],
        reply_text=r.reply_text,
        measures=r.measures,
        replied_by=r.replied_by,
        replied_at=r.replied_at,
        status=r.status,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        comment=r.comment,
        edited_text=r.edited_text,
        published_at=r.published_at,
        published_by=r.published_by,
    )


def clock_out(c: WorkflowClock, fractions: list[float]) -> ClockOut:
    """A clock as staff see it."""
    return ClockOut(
        id=c.id,
        kind=c.kind,
        kind_text=clocks.KIND_TEXT.get(c.kind, c.kind),
        unit_code=c.unit_code,
        assignment_id=c.assignment_id,
        started_at=c.started_at,
        due_at=c.due_at,
        reminders_sent=min(c.stage, len(fractions)),
        next_at=c.next_at,
        breached_at=c.breached_at,
        stopped_at=c.stopped_at,
        outcome=c.outcome,
        explained_at=c.explained_at,
    )


async def workflow_view(session: AsyncSession, incident: Incident, rt) -> dict[str, Any]:
    """The workflow's part of the one-incident view."""
    active = await workflow.active_assignments(session, incident.id)
    reply = await workflow.current_reply(session, incident.id)
    instructions = (
        await session.exec(
            select(Instruction).where(Instruction.incident_id == incident.id).order_by(Instruction.at)
        )
    ).all()
    feedback = (
        await session.exec(
            select(IncidentFeedback)
            .where(IncidentFeedback.incident_id == incident.id)
            .order_by(IncidentFeedback.at)
        )
    ).all()
    clock_rows = (
        await session.exec(
            select(WorkflowClock).where(WorkflowClock.incident_id == incident.id).order_by(WorkflowClock.id)
        )
    ).all()
    fractions = list(rt.bundle.policy.reminder_fractions)
    return {
        "assignments": await assignments_out(session, active, rt, {incident.id: incident}),
        "reply": reply_out(reply) if reply else None,
        "instructions": [InstructionOut.model_validate(i, from_attributes=True) for i in instructions],
        "feedback": [FeedbackOut.model_validate(f, from_attributes=True) for f in feedback],
        "clocks": [clock_out(c, fractions) for c in clock_rows],
    }


def published_reply(incident: Incident) -> PublishedReply | None:
    """The reply as published to the citizen."""
    return PublishedReply(**incident.published_reply) if incident.published_reply else None


def overdue_hours(due: datetime, now: datetime) -> float:
    """How long past due, in hours."""
    return round(max(0.0, (now - due).total_seconds()) / 3600, 2)
