"""Grading's logic: incidents from messages, their state and the events they cause. No FastAPI here."""

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, func, or_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.context import current_traceparent
from kit.errors import conflict, not_found
from kit.outbox import Outbox
from schema.dto import (
    Category,
    Deadlines,
    Factor,
    IncidentDossier,
    IncidentSummary,
    PublishedReply,
    TimelineEntry,
    UnitRef,
)
from schema.enums import CITIZEN_STATUS_OF, IncidentStatus, Level
from schema.events import IncidentClosed, MessageStatusChanged, MessageStatusChangedData
from services.grading.models import Incident, IncidentEvent, IncidentMessage, IncidentReview

_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
OPEN_STATUSES = (
    IncidentStatus.received,
    IncidentStatus.graded,
    IncidentStatus.assigned,
    IncidentStatus.signed,
    IncidentStatus.replied,
    IncidentStatus.approved,
    IncidentStatus.published,
    IncidentStatus.returned,
    IncidentStatus.reopened,
)
# Open and still owing the citizen a reply (a published reply is an answer, even before 办结).
AWAITING_REPLY = tuple(s for s in OPEN_STATUSES if s != IncidentStatus.published)


def new_incident_code(now: datetime) -> str:
    """A short code people can say and SMS can carry, e.g. SJ261122-7KQ2M."""
    return f"SJ{now:%y%m%d}-" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(5))


def summary_of(incident: Incident, message_ids: list[str]) -> IncidentSummary:
    """The incident as other services see it."""
    return IncidentSummary(
        id=incident.id,
        code=incident.code,
        title=incident.title,
        status=incident.status,
        level=incident.level,
        score=incident.score,
        factors=[Factor(**f) for f in incident.factors],
        category=Category(**incident.category) if incident.category else None,
        request_type=incident.request_type,
        response_type=incident.response_type,
        warning_class=incident.warning_class,
        lead_unit=UnitRef(code=incident.lead_unit_code, name=incident.lead_unit_name)
        if incident.lead_unit_code
        else None,
        co_units=[UnitRef(**u) for u in incident.co_units],
        deadlines=deadlines_of(incident),
        message_ids=message_ids,
        channels=incident.channels,
        received_at=incident.received_at,
        heat=incident.heat,
        district=incident.district,
        excerpt=incident.excerpt,
        policy_version=incident.policy_version,
    )


def deadlines_of(incident: Incident) -> Deadlines:
    """The incident's clocks."""
    return Deadlines(
        report_due=incident.report_due,
        first_release_due=incident.first_release_due,
        response_due=incident.response_due,
        reply_due=incident.reply_due,
    )


async def message_ids_of(*, session: AsyncSession, incident_id: str) -> list[str]:
    """Ids of the messages of an incident, oldest first."""
    q = (
        select(IncidentMessage.message_id)
        .where(IncidentMessage.incident_id == incident_id)
        .order_by(IncidentMessage.received_at)
    )
    return list((await session.exec(q)).all())


def record(
    session: AsyncSession,
    incident: Incident,
    *,
    action: str,
    at: datetime,
    actor: str | None = None,
    note: str | None = None,
    public: bool = False,
) -> None:
    """Add a timeline step to the incident."""
    session.add(
        IncidentEvent(
            incident_id=incident.id,
            at=at,
            action=action,
            status=incident.status,
            actor=actor,
            note=note,
            public=public,
        )
    )


def status_event(
    incident: Incident, message_ids: list[str], *, note: str | None = None
) -> MessageStatusChanged:
    """message.status_changed for the citizen view of the incident's messages (with the published reply
    and the category when there are)."""
    incident.status_sequence += 1
    lead = (
        UnitRef(code=incident.lead_unit_code, name=incident.lead_unit_name)
        if incident.lead_unit_code
        else None
    )
    reply = None
    if incident.published_reply and incident.status in (
        IncidentStatus.published.value,
        IncidentStatus.closed.value,
    ):
        reply = PublishedReply(**incident.published_reply)
    return MessageStatusChanged.build(
        source="grading",
        trace=current_traceparent(),
        data=MessageStatusChangedData(
            message_ids=message_ids,
            incident_id=incident.id,
            incident_status=incident.status,
            citizen_status=CITIZEN_STATUS_OF[IncidentStatus(incident.status)],
            sequence=incident.status_sequence,
            handling_unit=lead,
            public_note=note,
            reply_due=incident.reply_due,
            reply=reply,
            category=Category(**incident.category) if incident.category else None,
        ),
    )


async def get_incident(*, session: AsyncSession, incident_id: str) -> Incident:
    """An incident by id, or 404."""
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise not_found("incident", incident_id)
    return incident


async def timeline_of(*, session: AsyncSession, incident_id: str) -> list[IncidentEvent]:
    """The incident's steps, oldest first."""
    q = (
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id)
        .order_by(IncidentEvent.at, IncidentEvent.id)
    )
    return list((await session.exec(q)).all())


async def reviews_of(*, session: AsyncSession, incident_id: str) -> list[IncidentReview]:
    """Analysts' reviews of an incident, oldest first."""
    q = (
        select(IncidentReview)
        .where(IncidentReview.incident_id == incident_id)
        .order_by(IncidentReview.at, IncidentReview.id)
    )
    return list((await session.exec(q)).all())


async def list_incidents(
    *,
    session: AsyncSession,
    status: str | None = None,
    level: Level | None = None,
    unit: str | None = None,
    overdue: bool | None = None,
    message_id: str | None = None,
    tracking_code: str | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime,
) -> tuple[list[Incident], int]:
    """Incidents matching the filters, newest first, and how many match in all."""
    q = select(Incident)
    if status:
        q = q.where(Incident.status == status)
    if level:
        q = q.where(Incident.level == level.value)
    if unit:
        q = q.where(or_(Incident.lead_unit_code == unit, cast(Incident.co_units, Text).contains(f'"{unit}"')))
    if overdue is not None:
        late = (Incident.reply_due < now) & Incident.status.in_([s.value for s in AWAITING_REPLY])
        q = q.where(late if overdue else ~late)
    if message_id or tracking_code:
        sub = select(IncidentMessage.incident_id)
        sub = sub.where(IncidentMessage.message_id == message_id) if message_id else sub
        sub = sub.where(IncidentMessage.tracking_code == tracking_code) if tracking_code else sub
        q = q.where(Incident.id.in_(sub))
    total = (await session.exec(select(func.count()).select_from(q.subquery()))).one()
    rows = (await session.exec(q.order_by(Incident.received_at.desc()).limit(limit).offset(offset))).all()
    return list(rows), total


async def close_incident(
    *,
    session: AsyncSession,
    outbox: Outbox,
    incident: Incident,
    actor: str,
    summary: dict[str, Any],
    now: datetime,
    parts: dict[str, Any] | None = None,
) -> Incident:
    """办结: close the incident, tell the citizen, hand the dossier (with the workflow's `parts`:
    assignments, reply, instructions …) to the archive."""
    if incident.status in (IncidentStatus.closed.value, IncidentStatus.archived.value):
        raise conflict("already_closed", "the incident is already closed", [{"allowed": ["reopen"]}])
    incident.status = IncidentStatus.closed.value
    incident.closed_at = now
    incident.closed_by = actor
    incident.close_summary = summary
    incident.close_count += 1
    incident.updated_at = now
    session.add(incident)
    record(session, incident, action="closed", at=now, actor=actor, note=summary.get("summary"), public=True)
    await session.flush()
    message_ids = await message_ids_of(session=session, incident_id=incident.id)
    timeline = await timeline_of(session=session, incident_id=incident.id)
    dossier = IncidentDossier(
        **summary_of(incident, message_ids).model_dump(),
        closed_at=now,
        closed_by=actor,
        close_summary=summary,
        timeline=[
            TimelineEntry(
                at=e.at, action=e.action, status=e.status, actor=e.actor, note=e.note, public=e.public
            )
            for e in timeline
        ],
        close_count=incident.close_count,
        reviews=[
            {
                "at": r.at.isoformat(),
                "by": r.actor,
                "actor": r.actor,
                "reason": r.reason,
                "before": r.before,
                "after": r.after,
            }
            for r in await reviews_of(session=session, incident_id=incident.id)
        ],
        **(parts or {}),
    )
    outbox.add(session, IncidentClosed.build(source="grading", trace=current_traceparent(), data=dossier))
    outbox.add(session, status_event(incident, message_ids, note="已办结"))
    return incident
