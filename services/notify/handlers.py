"""What notify does with the events it receives."""

from kit.errors import AppError
from kit.inbox import EventConsumer
from schema.events import IncidentClosed, IncidentEscalated, IncidentGraded, NotificationRequested
from services.notify import service
from services.notify.models import InboxEvent
from services.notify.policy import EVENTS

consumer = EventConsumer(inbox_model=InboxEvent)


@consumer.on_batch("incident.graded")
async def on_graded(session, events: list[IncidentGraded], state) -> None:
    """Alert the people the level calls for; follow a level I–II incident with 续报. A run of events
    is looked up at once (most incidents are new: nothing to supersede, group with or re-check)."""
    now = state.clock.now()
    ctx = state.notify_ctx()
    keys = [f"graded:{e.data.id}" for e in events]
    hints = await service.run_hints(
        session=session, incident_ids=[e.data.id for e in events], dedupe_keys=keys
    )
    for event, key in zip(events, keys, strict=True):
        incident = event.data
        await service.track_incident(session=session, incident=incident, now=now, hints=hints)
        await service.raise_alert(
            session=session, ctx=ctx, kind="graded", incident=incident, dedupe_key=key, now=now, hints=hints
        )
        await service.start_follow_up(session=session, ctx=ctx, incident=incident, now=now)
        hints.done(incident.id, key)


@consumer.on_each("incident.escalated")
async def on_escalated(session, event: IncidentEscalated, state) -> None:
    """The level rose: a new alert replaces the old chain; 续报 start or speed up."""
    now = state.clock.now()
    incident = event.data
    await service.track_incident(session=session, incident=incident, now=now)
    await service.raise_alert(
        session=session,
        ctx=state.notify_ctx(),
        kind="escalated",
        incident=incident,
        dedupe_key=f"escalated:{incident.id}:{incident.level.value}",
        now=now,
        params={"previous_level": incident.previous_level.value},
    )
    await service.start_follow_up(session=session, ctx=state.notify_ctx(), incident=incident, now=now)


@consumer.on_each("incident.closed")
async def on_closed(session, event: IncidentClosed, state) -> None:
    """Chains, 续报 and waiting alerts of a closed incident stop."""
    await service.close_incident(session=session, incident=event.data, now=state.clock.now())


@consumer.on_each("notification.requested")
async def on_requested(session, event: NotificationRequested, state) -> None:
    """催办, 督办, 续报, a published reply, 质疑跟帖 … as the workflow asks."""
    data = event.data
    if data.kind not in EVENTS:
        raise AppError(
            422, "unknown_kind", f"notify has no policy for {data.kind!r}", [{"allowed": list(EVENTS)}]
        )
    now = state.clock.now()
    ctx = state.notify_ctx()
    inc = data.incident
    wc = inc.warning_class.value if inc.warning_class else None
    rt = inc.response_type.value if inc.response_type else None
    if not ctx.policy.matching(data.kind, inc.level.value, wc, rt) and not data.recipient_roles:
        # A policy gap, not a transient failure: say so rather than have the sender retry forever.
        raise AppError(422, "no_policy", f"no notification policy covers {data.kind!r} for this incident")
    await service.track_incident(session=session, incident=inc, now=now)
    await service.raise_alert(
        session=session,
        ctx=ctx,
        kind=data.kind,
        incident=data.incident,
        dedupe_key=data.dedupe_key or f"{data.kind}:{event.id}",
        now=now,
        params=data.params,
        unit_codes=data.unit_codes,
        extra_roles=data.recipient_roles,
    )
