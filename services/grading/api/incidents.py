"""Staff API for incidents: list, read, close (办结); analysts review, merge and split."""

from typing import Annotated

from fastapi import APIRouter, Query

from kit.deps import SessionDep, StateDep
from kit.errors import not_found
from kit.security import CurrentPrincipal, access
from schema.dto import Category, Principal
from schema.enums import LEVEL_TEXT, IncidentStatus, Level, Role
from services.grading import matters, service, workflow
from services.grading.api import views
from services.grading.api.schemas import (
    CloseIn,
    IncidentOut,
    IncidentPage,
    MergeIn,
    ReviewIn,
    ReviewOut,
    SplitIn,
    TimelineOut,
)
from services.grading.heat import STAGE_TEXT
from services.grading.models import Incident

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
STAFF = (Role.clerk, Role.analyst, Role.unit, Role.leader, Role.supervisor, Role.archivist, Role.admin)
# Paging bound: a deeper page is refused (422), never a database error on a huge offset.
MAX_OFFSET = 1_000_000
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=500)]


async def incident_out(session, incident: Incident, *, with_timeline: bool, rt=None) -> IncidentOut:
    """The staff view of an incident (the one-incident view adds the workflow's detail)."""
    ids = await service.message_ids_of(session=session, incident_id=incident.id)
    summary = service.summary_of(incident, ids)
    timeline, reviews = [], []
    extra = {}
    if with_timeline and rt is not None:
        extra = await views.workflow_view(session, incident, rt)
    if with_timeline:
        timeline = [
            TimelineOut.model_validate(e, from_attributes=True)
            for e in await service.timeline_of(session=session, incident_id=incident.id)
        ]
        reviews = [
            ReviewOut.model_validate(r, from_attributes=True)
            for r in await service.reviews_of(session=session, incident_id=incident.id)
        ]
    return IncidentOut(
        **summary.model_dump(exclude={"timeline"}),
        level_text=LEVEL_TEXT[Level(incident.level)],
        classification=incident.classification,
        low_confidence=incident.low_confidence,
        request_type_inferred=incident.request_type_inferred,
        route_reason=incident.route_reason,
        districts=incident.districts,
        streets=incident.streets,
        message_count=incident.message_count,
        last_message_at=incident.last_message_at,
        heat_detail=incident.heat_detail,
        stage=incident.stage,
        stage_text=STAGE_TEXT.get(incident.stage, ""),
        merged_into=incident.merged_into,
        original_grading=incident.original_grading if with_timeline else None,
        review_pins=incident.review_pins,
        reviews=reviews,
        timeline=timeline,
        allowed_actions=workflow.allowed_actions(incident),
        reopen_count=incident.reopen_count,
        published_reply=views.published_reply(incident),
        public_response=incident.public_response,
        close_summary=incident.close_summary,
        **extra,
    )


def _visible_to(principal: Principal, incident: Incident) -> bool:
    """Unit handlers see only incidents their unit leads or co-handles."""
    if principal.has_any(*(r for r in STAFF if r != Role.unit)):
        return True
    code = principal.unit_code
    return bool(code) and (
        incident.lead_unit_code == code or any(u["code"] == code for u in incident.co_units)
    )


@router.get("", summary="List incidents", **access(*STAFF))
async def list_incidents(
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
    status: IncidentStatus | None = None,
    level: Level | None = None,
    unit: str | None = None,
    overdue: bool | None = None,
    message_id: str | None = None,
    tracking_code: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> IncidentPage:
    """Incidents with level, factors, category, units and deadlines; units see only their own."""
    if not principal.has_any(*(r for r in STAFF if r != Role.unit)):
        unit = principal.unit_code or "-"
    rows, total = await service.list_incidents(
        session=session,
        status=status.value if status else None,
        level=level,
        unit=unit,
        overdue=overdue,
        message_id=message_id,
        tracking_code=tracking_code,
        limit=limit,
        offset=offset,
        now=state.clock.now(),
    )
    return IncidentPage(
        items=[await incident_out(session, i, with_timeline=False) for i in rows], total=total
    )


async def _visible(session, principal: Principal, incident_id: str) -> Incident:
    incident = await service.get_incident(session=session, incident_id=incident_id)
    if not _visible_to(principal, incident):
        raise not_found("incident", incident_id)
    return incident


@router.get("/{incident_id}", summary="One incident with its timeline", **access(*STAFF))
async def get_incident(
    incident_id: str, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """An incident, with its whole timeline, its reviews, the original machine grading and its
    workflow: assignments in hand, the reply, instructions, feedback, clocks, allowed actions."""
    incident = await _visible(session, principal, incident_id)
    return await incident_out(session, incident, with_timeline=True, rt=state.grading)


@router.post(
    "/{incident_id}/close",
    summary="办结 (or 直接办结 of a matter that needs no unit)",
    responses={409: {"description": "the status does not allow closing; details name what is allowed"}},
    **access(Role.analyst, Role.clerk),
)
async def close_incident(
    incident_id: str, body: CloseIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """Close the incident with a summary (a 总结报告 for level I–III after handling); its dossier goes
    to the archive, the citizen sees 已办结."""
    ctx = workflow.Ctx(session=session, outbox=state.outbox, rt=state.grading, now=state.clock.now())
    incident = await workflow.lock_incident(session, incident_id)
    await workflow.close(ctx, incident=incident, summary=body.model_dump(), actor=principal.sub)
    await session.commit()
    state.grading.index.forget_incident(incident.id)
    return await incident_out(session, incident, with_timeline=True, rt=state.grading)


@router.post(
    "/{incident_id}/review", summary="研判调整: change level, category or units", **access(Role.analyst)
)
async def review_incident(
    incident_id: str, body: ReviewIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """Change level, category or units with a reason; the original grading and every change are kept."""
    incident = await service.get_incident(session=session, incident_id=incident_id)
    await matters.review(
        session=session,
        outbox=state.outbox,
        rt=state.grading,
        incident=incident,
        level=body.level,
        category=Category(**body.category.model_dump()) if body.category else None,
        lead_unit=body.lead_unit,
        co_units=body.co_units,
        actor=principal.sub,
        reason=body.reason,
        now=state.clock.now(),
    )
    await session.commit()
    return await incident_out(session, incident, with_timeline=True, rt=state.grading)


@router.post("/{incident_id}/merge", summary="Merge other incidents into this one", **access(Role.analyst))
async def merge_incidents(
    incident_id: str, body: MergeIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """The other incidents' messages join this one (same matter); they are marked merged."""
    target = await service.get_incident(session=session, incident_id=incident_id)
    others = await matters.get_many(session, list(dict.fromkeys(body.incident_ids)))
    await matters.merge(
        session=session,
        outbox=state.outbox,
        rt=state.grading,
        target=target,
        others=others,
        actor=principal.sub,
        reason=body.reason,
        now=state.clock.now(),
    )
    await session.commit()
    return await incident_out(session, target, with_timeline=True, rt=state.grading)


@router.post(
    "/{incident_id}/split",
    summary="Split messages off into a new incident",
    status_code=201,
    **access(Role.analyst),
)
async def split_incident(
    incident_id: str, body: SplitIn, session: SessionDep, state: StateDep, principal: CurrentPrincipal
) -> IncidentOut:
    """The named messages leave this incident for a new one, graded and routed afresh."""
    source = await service.get_incident(session=session, incident_id=incident_id)
    new = await matters.split(
        session=session,
        outbox=state.outbox,
        rt=state.grading,
        source=source,
        message_ids=list(dict.fromkeys(body.message_ids)),
        actor=principal.sub,
        reason=body.reason,
        now=state.clock.now(),
    )
    await session.commit()
    return await incident_out(session, new, with_timeline=True, rt=state.grading)
