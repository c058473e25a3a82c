"""The citizen view and satisfaction feedback: anyone holding a tracking code (rate-limited per address)."""

from fastapi import APIRouter, Path, Request

from kit.deps import SessionDep, StateDep
from kit.errors import not_found
from kit.security import PUBLIC, CurrentPrincipal, access
from schema.dto import Category, FeedbackIn, PublishedReply, UnitRef
from schema.enums import CITIZEN_STATUS_TEXT, CitizenStatus
from services.intake import service
from services.intake.api.deps import ConfigDep, limit_rate
from services.intake.api.schemas import CitizenView, FeedbackAccepted, PublicTimelineEntry
from services.intake.pii import mask_text

router = APIRouter(prefix="/api/v1/public", tags=["citizen"])

CODE = Path(min_length=4, max_length=40, description="the tracking code, any case, hyphens optional")


def public_reply(reply: dict | None) -> PublishedReply | None:
    """The published reply with mobile and ID numbers masked (the unit's own landline stays readable)."""
    if not reply:
        return None
    return PublishedReply(**{**reply, "text": mask_text(reply.get("text"), landlines=False)})


@router.get(
    "/messages/{tracking_code}",
    summary="A message's status, by tracking code",
    response_model=CitizenView,
    responses={429: {"description": "too many look-ups from this address (Retry-After says when to retry)"}},
    **access(PUBLIC),
)
async def citizen_view(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    config: ConfigDep,
    tracking_code: str = CODE,
) -> CitizenView:
    """Status in Chinese, handling unit, the published reply and the public timeline; nothing private."""
    await limit_rate(request, principal, rule=config.rate_limits.citizen_lookup, what="look-ups")
    message = await service.get_by_tracking_code(session=session, code=tracking_code)
    if message is None:
        raise not_found("message", None)
    timeline = await service.public_timeline(session=session, message_id=message.id)
    st = CitizenStatus(message.citizen_status)
    feedback_open = st in (CitizenStatus.replied, CitizenStatus.closed) and bool(message.reply)
    if feedback_open:
        feedback_open = not await service.feedback_given(session=session, message=message)
    return CitizenView(
        tracking_code=message.tracking_code,
        title=mask_text(message.title),
        channel=message.channel,
        received_at=message.received_at,
        status=st,
        status_text=CITIZEN_STATUS_TEXT[st],
        handling_unit=UnitRef(**message.handling_unit) if message.handling_unit else None,
        reply_due=message.reply_due,
        reply=public_reply(message.reply),
        category=Category(**message.category) if message.category else None,
        feedback_open=feedback_open,
        timeline=[
            PublicTimelineEntry(at=e.at, status=e.status, text=mask_text(e.text, landlines=False))
            for e in timeline
        ],
    )


@router.post(
    "/messages/{tracking_code}/feedback",
    status_code=201,
    summary="The citizen's satisfaction with the published reply",
    response_model=FeedbackAccepted,
    responses={409: {"description": "no published reply yet, or this reply was rated already"}},
    **access(PUBLIC),
)
async def give_feedback(
    body: FeedbackIn,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    config: ConfigDep,
    tracking_code: str = CODE,
) -> FeedbackAccepted:
    """One rating per published reply; it goes to grading as message.feedback (回访)."""
    await limit_rate(request, principal, rule=config.rate_limits.feedback, what="feedback submissions")
    message = await service.get_by_tracking_code(session=session, code=tracking_code)
    if message is None:
        raise not_found("message", None)
    fb = await service.give_feedback(
        session=session,
        outbox=state.outbox,
        message=message,
        satisfaction=body.satisfaction.value,
        comment=body.comment,
        now=state.clock.now(),
    )
    return FeedbackAccepted(
        id=fb.id,
        tracking_code=message.tracking_code,
        satisfaction=body.satisfaction,
        received_at=fb.received_at,
    )
