"""Staff API of the handling workflow: 批办, the units' 签收/退回/延期/进展/答复, 审定, 公开, 公开回应,
重办, 甄别, 批示. A step the status does not allow is 409 with the allowed actions in `details`."""

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query

from kit.deps import SessionDep, StateDep
from kit.errors import not_found
from kit.security import CurrentPrincipal, access
from schema.enums import Role
from services.grading import workflow
from services.grading.api import views
from services.grading.api.incidents import STAFF, Limit, Offset, incident_out
from services.grading.api.schemas import IncidentOut
from services.grading.api.workflow_schemas import (
    AssignIn,
    AssignmentOut,
    AssignmentPage,
    DecisionIn,
    ExtensionDecisionIn,
    ExtensionIn,
    ExtensionOut,
    InstructionIn,
    ProgressIn,
    PublicResponseIn,
    PublishIn,
    ReasonIn,
    ReplyIn,
    ReplyOut,
    ReturnIn,
    RoundOut,
)
from services.grading.models import Assignment, ExtensionRequest

incidents = APIRouter(prefix="/api/v1/incidents", tags=["workflow"])
assignments = APIRouter(prefix="/api/v1/assignments", tags=["workflow"])
CONFLICT = {409: {"description": "not allowed in the current status; details name the allowed actions"}}
NOT_YOURS = {404: {"description": "no such assignment of the caller's unit"}}


def _ctx(session, state) -> workflow.Ctx:
    return workflow.Ctx(session=session, outbox=state.outbox, rt=state.grading, now=state.clock.now())


async def _done(session, state, incident_id: str) -> IncidentOut:
    await session.commit()
    incident = await workflow.get_incident(session, incident_id)
    return await incident_out(session, incident, with_timeline=True, rt=state.grading)


async def _assignment_view(session, state, a: Assignment) -> AssignmentOut:
    [out] = await views.assignments_out(session, [a], state.grading)
    return out


# --- on incidents --------------------------------------------------------------------------------------


@incidents.post(
    "/{incident_id}/assignments",
    summary="批办: lead unit, co-units, instruction",
    status_code=201,
    responses=CONFLICT,
    **access(Role.analyst, Role.leader),
)
async def assign(
    incident_id: str, body: AssignIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> RoundOut:
    """Assign the incident (re-routing a returned one, or 改派 of the round in hand); each unit's 签收
    clock starts; the citizen sees 已交办 with the lead unit. A leader's instruction is recorded as 批示."""
    ctx = _ctx(session, state)
    incident = await workflow.lock_incident(session, incident_id)
    rows = await workflow.assign(
        ctx,
        incident=incident,
        lead_unit=body.lead_unit,
        co_units=body.co_units,
        instruction=body.instruction,
        principal=principal,
    )
    await session.commit()
    items = await views.assignments_out(session, rows, state.grading, {incident.id: incident})
    lead = rows[0]
    return RoundOut(
        id=lead.id,
        incident_id=incident.id,
        round=lead.round,
        instruction=lead.instruction,
        assigned_by=lead.assigned_by,
        assigned_at=lead.assigned_at,
        assignments=items,
    )


@incidents.post(
    "/{incident_id}/reply/decision",
    summary="审定: approve (optionally edited) or send back",
    responses=CONFLICT,
    **access(Role.leader),
)
async def decide_reply(
    incident_id: str, body: DecisionIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """A leader approves the lead unit's reply (an edited text replaces it) or sends it back with a
    comment for the unit to reply again."""
    incident = await workflow.lock_incident(session, incident_id)
    await workflow.decide_reply(
        _ctx(session, state),
        incident=incident,
        approve=body.approve,
        comment=body.comment,
        edited_text=body.edited_text,
        principal=principal,
    )
    return await _done(session, state, incident_id)


@incidents.post(
    "/{incident_id}/publish",
    summary="公开: the approved reply to the citizen",
    responses=CONFLICT,
    **access(Role.analyst, Role.clerk),
)
async def publish(
    incident_id: str,
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
    body: Annotated[PublishIn | None, Body()] = None,
) -> IncidentOut:
    """The approved reply appears in the citizen view and goes to the portal's callback; the reply
    clock stops. For an online matter the public response (channel, link) can be recorded with it."""
    incident = await workflow.lock_incident(session, incident_id)
    response = body.public_response.model_dump() if body and body.public_response else None
    await workflow.publish(_ctx(session, state), incident=incident, principal=principal, response=response)
    return await _done(session, state, incident_id)


@incidents.post(
    "/{incident_id}/public-response",
    summary="公开回应 of an online matter (channel, time, link)",
    responses=CONFLICT,
    **access(Role.analyst, Role.clerk, Role.leader),
)
async def public_response(
    incident_id: str,
    body: PublicResponseIn,
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
) -> IncidentOut:
    """Record where and when the government responded in public; the first stops the response clock."""
    incident = await workflow.lock_incident(session, incident_id)
    await workflow.record_public_response(
        _ctx(session, state), incident=incident, principal=principal, **body.model_dump()
    )
    return await _done(session, state, incident_id)


@incidents.post(
    "/{incident_id}/reopen",
    summary="重办: handle the matter again",
    responses=CONFLICT,
    **access(Role.analyst, Role.clerk),
)
async def reopen(
    incident_id: str, body: ReasonIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """A published or closed matter is handled again (it flared up again) with a new reply deadline, by
    the same units in a new round; closing it again sends a new dossier version to the archive."""
    incident = await workflow.lock_incident(session, incident_id)
    await workflow.reopen(_ctx(session, state), incident=incident, reason=body.reason, actor=principal.sub)
    return await _done(session, state, incident_id)


@incidents.post(
    "/{incident_id}/screen-out",
    summary="甄别为无效 (junk, spam; reversible)",
    responses=CONFLICT,
    **access(Role.analyst, Role.clerk),
)
async def screen_out(
    incident_id: str, body: ReasonIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """Set a junk matter aside: work in hand ends, its clocks stop, the citizen sees 不予受理."""
    incident = await workflow.lock_incident(session, incident_id)
    await workflow.screen_out(
        _ctx(session, state), incident=incident, reason=body.reason, actor=principal.sub
    )
    return await _done(session, state, incident_id)


@incidents.post(
    "/{incident_id}/restore",
    summary="恢复受理 of a screened-out matter",
    responses=CONFLICT,
    **access(Role.analyst, Role.clerk),
)
async def restore(
    incident_id: str, body: ReasonIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """Bring a screened-out matter back for 批办."""
    incident = await workflow.lock_incident(session, incident_id)
    await workflow.restore(_ctx(session, state), incident=incident, reason=body.reason, actor=principal.sub)
    return await _done(session, state, incident_id)


@incidents.post(
    "/{incident_id}/instructions",
    summary="批示: a leader's instruction",
    status_code=201,
    responses=CONFLICT,
    **access(Role.leader),
)
async def instruct(
    incident_id: str, body: InstructionIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """Record a leader's 批示 on the incident (it goes into the dossier as such)."""
    incident = await workflow.lock_incident(session, incident_id)
    await workflow.instruct(_ctx(session, state), incident=incident, text=body.text, principal=principal)
    return await _done(session, state, incident_id)


# --- assignments -----------------------------------------------------------------------------------


@assignments.get("", summary="Assignments (a unit sees its own)", **access(*STAFF))
async def list_assignments(
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[
        str | None, Query(pattern="^(assigned|signed|replied|returned|done|withdrawn|active)$")
    ] = None,
    incident_id: Annotated[str | None, Query(max_length=36)] = None,
    extension_pending: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> AssignmentPage:
    """Assignments, newest first; `status=active` for those in hand; `extension_pending=true` for the
    requests waiting for a leader. Unit handlers see only their own unit's."""
    from sqlalchemy import func
    from sqlmodel import select

    if not principal.has_any(*(r for r in STAFF if r != Role.unit)):
        unit = principal.unit_code or "-"
    q = select(Assignment)
    if unit:
        q = q.where(Assignment.unit_code == unit)
    if status == "active":
        q = q.where(Assignment.status.in_(workflow.ACTIVE))
    elif status:
        q = q.where(Assignment.status == status)
    if incident_id:
        q = q.where(Assignment.incident_id == incident_id)
    if extension_pending is not None:
        pending = select(ExtensionRequest.assignment_id).where(ExtensionRequest.status == "pending")
        q = q.where(Assignment.id.in_(pending) if extension_pending else Assignment.id.not_in(pending))
    total = (await session.exec(select(func.count()).select_from(q.subquery()))).one()
    rows = list(
        (
            await session.exec(
                q.order_by(Assignment.assigned_at.desc(), Assignment.id).limit(limit).offset(offset)
            )
        ).all()
    )
    return AssignmentPage(items=await views.assignments_out(session, rows, state.grading), total=total)


@assignments.get("/{assignment_id}", summary="One assignment", responses=NOT_YOURS, **access(*STAFF))
async def get_assignment(
    assignment_id: str, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> AssignmentOut:
    """An assignment with its progress, its latest extension request and the actions allowed now."""
    a = await session.get(Assignment, assignment_id)
    if a is None or not workflow.can_see_assignment(principal, a):
        raise not_found("assignment", assignment_id)
    return await _assignment_view(session, state, a)


@assignments.post(
    "/{assignment_id}/sign",
    summary="签收",
    responses={**CONFLICT, **NOT_YOURS},
    **access(Role.unit),
)
async def sign(
    assignment_id: str, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> AssignmentOut:
    """The unit signs for the assignment (signing again is harmless); the lead's signing shows the
    citizen 办理中."""
    a = await workflow.unit_assignment(session, assignment_id, principal)
    await workflow.sign(_ctx(session, state), assignment=a, principal=principal)
    await session.commit()
    return await _assignment_view(session, state, a)


@assignments.post(
    "/{assignment_id}/return",
    summary="退回 with a reason",
    responses={**CONFLICT, **NOT_YOURS},
    **access(Role.unit),
)
async def return_assignment(
    assignment_id: str, body: ReturnIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> AssignmentOut:
    """The unit hands the assignment back (属地不符, 职能交叉, 权属不清 …); the lead's return sends the
    incident to the analyst for re-routing. Returns are counted per unit."""
    a = await workflow.unit_assignment(session, assignment_id, principal)
    await workflow.return_assignment(
        _ctx(session, state), assignment=a, reason=body.reason, note=body.note, principal=principal
    )
    await session.commit()
    return await _assignment_view(session, state, a)


@assignments.post(
    "/{assignment_id}/extension",
    summary="延期申请",
    status_code=201,
    responses={**CONFLICT, **NOT_YOURS},
    **access(Role.unit),
)
async def request_extension(
    assignment_id: str, body: ExtensionIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> ExtensionOut:
    """The lead unit asks, before the reply is due, for a later due time (never past the policy's cap
    from receipt); a leader decides."""
    a = await workflow.unit_assignment(session, assignment_id, principal)
    row = await workflow.request_extension(
        _ctx(session, state),
        assignment=a,
        requested_due=body.requested_due,
        reason=body.reason,
        principal=principal,
    )
    await session.commit()
    return views.extension_out(row)


@assignments.post(
    "/{assignment_id}/extension/decision",
    summary="延期审批 by a leader",
    responses=CONFLICT,
    **access(Role.leader),
)
async def decide_extension(
    assignment_id: str,
    body: ExtensionDecisionIn,
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
) -> ExtensionOut:
    """Approve (the reply due moves and the citizen view says so) or refuse the pending request."""
    a = await session.get(Assignment, assignment_id)
    if a is None:
        raise not_found("assignment", assignment_id)
    row = await workflow.decide_extension(
        _ctx(session, state),
        assignment=a,
        approve=body.approve,
        due=body.due,
        comment=body.comment,
        principal=principal,
    )
    await session.commit()
    return views.extension_out(row)


@assignments.post(
    "/{assignment_id}/progress",
    summary="进展, co-unit input or 情况说明",
    responses={**CONFLICT, **NOT_YOURS},
    **access(Role.unit),
)
async def add_progress(
    assignment_id: str,
    body: ProgressIn,
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> AssignmentOut:
    """Add a progress note (the lead's goes out as 续报 for level I–II), a co-unit's input for the lead's
    one reply, or an explanation of lateness (it keeps the unit off the 通报 list). A retried note
    (same Idempotency-Key, or the same text again) is added once."""
    a = await workflow.unit_assignment(session, assignment_id, principal)
    await workflow.add_progress(
        _ctx(session, state),
        assignment=a,
        note=body.note,
        kind=body.kind,
        key=idempotency_key,
        principal=principal,
    )
    await session.commit()
    return await _assignment_view(session, state, a)


@assignments.post(
    "/{assignment_id}/reply",
    summary="答复 by the lead unit",
    status_code=201,
    responses={**CONFLICT, **NOT_YOURS},
    **access(Role.unit),
)
async def reply(
    assignment_id: str, body: ReplyIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> ReplyOut:
    """The lead unit's one reply (统一口径): finding, text, measures; it waits for a leader's 审定."""
    a = await workflow.unit_assignment(session, assignment_id, principal)
    row = await workflow.reply(
        _ctx(session, state),
        assignment=a,
        finding=body.finding,
        reply_text=body.reply_text,
        measures=body.measures,
        principal=principal,
    )
    await session.commit()
    return views.reply_out(row)
