"""Staff API: deliveries, alerts, acknowledgement; the public acknowledgement link; the archive's look-up."""

import hmac
import html
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import select

from kit.deps import SessionDep, StateDep
from kit.errors import AppError, error_body, forbidden, not_found
from kit.security import PUBLIC, CurrentPrincipal, access, verified_internal
from schema.dto import NotificationRecord, Principal
from schema.enums import Role
from services.notify import acklink, service
from services.notify.models import Alert, Delivery, DeliveryAttempt

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
internal = APIRouter(prefix="/internal", include_in_schema=False, dependencies=[Depends(verified_internal)])
STAFF = (Role.clerk, Role.analyst, Role.unit, Role.leader, Role.supervisor, Role.archivist, Role.admin)
Status = Literal["queued", "sent", "delivered", "failed", "cancelled"]
Channel = Literal["sms", "wecom_app", "wecom_robot", "dingtalk", "email", "console"]


class DeliveryOut(BaseModel):
    """One delivery as staff see it (addresses masked)."""

    id: str
    alert_id: str | None
    incident_id: str | None
    incident_code: str | None
    event: str
    level: str | None
    step: int
    recipient: str
    recipient_id: str
    channel: str
    address: str | None
    content: str
    segments: int
    status: str
    attempts: int
    provider: str | None
    provider_message_id: str | None
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    last_error: str | None
    grouped: int


class AttemptOut(BaseModel):
    """One call to a provider."""

    number: int
    provider: str
    at: datetime
    duration_ms: float
    outcome: str
    code: str | None
    detail: str | None
    provider_message_id: str | None


class DeliveryDetail(DeliveryOut):
    """A delivery with its attempts."""

    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    """A page of deliveries."""

    items: list[DeliveryOut]
    total: int


class AlertOut(BaseModel):
    """An alert and where its escalation chain stands."""

    id: str
    incident_id: str | None
    incident_code: str | None
    kind: str
    level: str | None
    policy: str
    status: str
    step: int
    steps: int
    next_step_at: datetime | None
    created_at: datetime
    acked_at: datetime | None
    acked_by: str | None
    ended_at: datetime | None


class AlertPage(BaseModel):
    """A page of alerts."""

    items: list[AlertOut]
    total: int


class AckResult(BaseModel):
    """What an acknowledgement link shows."""

    notification_id: str
    incident_code: str | None
    event: str
    recipient: str
    content: str
    acknowledged: bool
    acked_at: datetime | None
    expires_at: datetime


def out(d: Delivery) -> DeliveryOut:
    """The staff view of a delivery."""
    return DeliveryOut(
        id=d.id,
        alert_id=d.alert_id,
        incident_id=d.incident_id,
        incident_code=d.incident_code,
        event=d.event,
        level=d.level,
        step=d.step,
        recipient=d.recipient_name,
        recipient_id=d.recipient_id,
        channel=d.channel,
        address=d.address_masked,
        content=d.content,
        segments=d.segments,
        status=d.status,
        attempts=d.attempts,
        provider=d.provider,
        provider_message_id=d.provider_message_id,
        created_at=d.created_at,
        next_attempt_at=d.next_attempt_at if d.status == "queued" else None,
        sent_at=d.sent_at,
        delivered_at=d.delivered_at,
        failed_at=d.failed_at,
        acked_at=d.acked_at,
        acked_by=d.acked_by,
        last_error=d.last_error,
        grouped=len(d.items or []),
    )


def _unit_only(principal: Principal) -> bool:
    return principal.has_any(Role.unit) and not principal.has_any(*(r for r in STAFF if r != Role.unit))


def _unit_recipients(state, principal: Principal) -> list[str]:
    return [c.id for c in state.directory.unit_contacts.get(principal.unit_code or "", [])]


@router.get("", summary="Deliveries", **access(*STAFF))
async def list_notifications(
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
    incident_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Status | None = None,
    channel: Channel | None = None,
    event: Annotated[str | None, Query(max_length=32)] = None,
    recipient_id: Annotated[str | None, Query(max_length=64)] = None,
    alert_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> DeliveryPage:
    """Deliveries (newest first) with their status, attempts and acknowledgement; a unit sees its own."""
    if _unit_only(principal):
        mine = _unit_recipients(state, principal)
        if recipient_id and recipient_id not in mine:
            raise forbidden("a unit sees only the notifications sent to its contacts")
        if not mine:
            return DeliveryPage(items=[], total=0)
        q_ids = [recipient_id] if recipient_id else mine
        rows, total = [], 0
        for rid in q_ids:  # a unit has one or two contacts
            r, t = await service.list_deliveries(
                session=session,
                incident_id=incident_id,
                status=status,
                channel=channel,
                event=event,
                recipient_id=rid,
                alert_id=alert_id,
                limit=limit + offset,
                offset=0,
            )
            rows += r
            total += t
        rows = sorted(rows, key=lambda d: d.created_at, reverse=True)[offset : offset + limit]
        return DeliveryPage(items=[out(d) for d in rows], total=total)
    rows, total = await service.list_deliveries(
        session=session,
        incident_id=incident_id,
        status=status,
        channel=channel,
        event=event,
        recipient_id=recipient_id,
        alert_id=alert_id,
        limit=limit,
        offset=offset,
    )
    return DeliveryPage(items=[out(d) for d in rows], total=total)


@router.get(
    "/alerts",
    summary="Alerts and their escalation",
    **access(Role.leader, Role.supervisor, Role.analyst, Role.admin),
)
async def list_alerts(
    session: SessionDep,
    incident_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Literal["open", "acked", "unacknowledged", "closed", "superseded", "info"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> AlertPage:
    """Alerts (newest first): which chain step each is at, and who acknowledged."""
    q = select(Alert)
    if incident_id:
        q = q.where(Alert.incident_id == incident_id)
    if status:
        q = q.where(Alert.status == status)
    total = (await session.exec(select(func.count()).select_from(q.subquery()))).one()
    rows = (
        await session.exec(q.order_by(Alert.created_at.desc(), Alert.id).limit(limit).offset(offset))
    ).all()
    return AlertPage(
        items=[
            AlertOut(
                id=a.id,
                incident_id=a.incident_id,
                incident_code=a.incident_code,
                kind=a.kind,
                level=a.level,
                policy=a.policy,
                status=a.status,
                step=a.step,
                steps=len(a.chain) * a.rounds,
                next_step_at=a.next_step_at,
                created_at=a.created_at,
                acked_at=a.acked_at,
                acked_by=a.acked_by,
                ended_at=a.ended_at,
            )
            for a in rows
        ],
        total=total,
    )


@router.get("/ack/{token}", summary="Acknowledgement link (what it acknowledges)", **access(PUBLIC))
async def ack_link_view(
    token: Annotated[str, Path(max_length=200)], request: Request, session: SessionDep, state: StateDep
):
    """The page an alert's link opens: what it is about and a button to acknowledge (opening it does not)."""
    try:
        ref, expires = acklink.read_token(state.settings.ack_secret, token, now=state.clock.now())
        d = await service.delivery_by_ref(session=session, ref=ref)
    except (acklink.InvalidToken, AppError) as exc:
        return _link_error(request, exc)
    return _ack_page(request, d, expires, just_acked=False)


@router.post("/ack/{token}", summary="Acknowledge by link", **access(PUBLIC))
async def ack_by_link(
    token: Annotated[str, Path(max_length=200)], request: Request, session: SessionDep, state: StateDep
):
    """Acknowledge the alert the link was sent with; its escalation stops."""
    now = state.clock.now()
    try:
        ref, expires = acklink.read_token(state.settings.ack_secret, token, now=now)
        d = await service.acknowledge_by_ref(session=session, ref=ref, now=now)
        await session.commit()
    except (acklink.InvalidToken, AppError) as exc:
        return _link_error(request, exc)
    return _ack_page(request, d, expires, just_acked=True)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "application/json" not in accept.split(",")[0]


def _link_error(request: Request, exc: Exception):
    if isinstance(exc, acklink.InvalidToken):
        status, code, message = (
            (410, "link_expired", "确认链接已过期，请联系值班室。")
            if exc.reason == "expired"
            else (404, "not_found", "确认链接无效。")
        )
    else:
        status, code, message = exc.status, exc.code, exc.message
    if _wants_html(request):
        return HTMLResponse(_page("无法确认", f"<p>{html.escape(message)}</p>"), status_code=status)
    return JSONResponse(error_body(code, message), status_code=status)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)} · 民声</title></head>"
        "<body style='font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em'>"
        f"<h1 style='font-size:1.3em'>{html.escape(title)}</h1>{body}</body></html>"
    )


def _ack_page(request: Request, d: Delivery, expires: datetime, *, just_acked: bool):
    result = AckResult(
        notification_id=d.id,
        incident_code=d.incident_code,
        event=d.event,
        recipient=d.recipient_name,
        content=d.content,
        acknowledged=d.acked_at is not None,
        acked_at=d.acked_at,
        expires_at=expires,
    )
    if not _wants_html(request):
        return JSONResponse(result.model_dump(mode="json"))
    body = f"<p>{html.escape(d.content)}</p><p>接收人：{html.escape(d.recipient_name)}</p>"
    if d.acked_at:
        body += "<p><strong>已确认收到。</strong>升级提醒已停止。</p>"
    else:
        body += (
            "<form method='post'><button type='submit' style='font-size:1.2em;padding:.5em 2em'>"
            "确认收到</button></form>"
        )
    return HTMLResponse(_page("告警确认" if not just_acked else "已确认", body))


class TencentReceipt(BaseModel):
    """One item of Tencent Cloud's SMS status callback (短信下发状态通知)."""

    user_receive_time: str | None = Field(default=None, max_length=32)
    mobile: str | None = Field(default=None, max_length=32)
    report_status: str = Field(max_length=16)
    errmsg: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)
    sid: str = Field(max_length=100)


class AliyunReceipt(BaseModel):
    """One item of Alibaba Cloud's SMS receipt push (短信发送状态报告, HTTP batch push)."""

    phone_number: str | None = Field(default=None, max_length=32)
    report_time: str | None = Field(default=None, max_length=32)
    success: bool
    err_code: str | None = Field(default=None, max_length=100)
    err_msg: str | None = Field(default=None, max_length=500)
    biz_id: str | None = Field(default=None, max_length=100)
    out_id: str | None = Field(default=None, max_length=100)


def _receipt_auth(state, token: str) -> None:
    if not hmac.compare_digest(token.encode(), state.settings.receipt_token.encode()):
        raise AppError(401, "invalid_token", "the receipt token is not valid")


def _local_time(state, value: str | None) -> datetime | None:
    try:
        return datetime.strptime(value or "", "%Y-%m-%d %H:%M:%S").replace(tzinfo=state.directory.tz)
    except ValueError:
        return None


@router.post("/receipts/tencent", summary="Tencent SMS receipts (callback)", **access(PUBLIC))
async def tencent_receipts(
    items: Annotated[list[TencentReceipt], Body(max_length=1000)],
    session: SessionDep,
    state: StateDep,
    token: Annotated[str, Query(max_length=200)],
) -> dict:
    """Tencent tells which SMS reached the phone; answers as Tencent expects ({"result": 0})."""
    _receipt_auth(state, token)
    receipts = [
        service.Receipt(
            message_id=i.sid,
            delivery_id=None,
            delivered=i.report_status.upper() == "SUCCESS",
            at=_local_time(state, i.user_receive_time),
            code=i.errmsg or i.description,
        )
        for i in items
    ]
    await service.apply_receipts(
        session=session, provider="tencent", receipts=receipts, now=state.clock.now()
    )
    await session.commit()
    return {"result": 0, "errmsg": "OK"}


@router.post("/receipts/aliyun", summary="Alibaba SMS receipts (callback)", **access(PUBLIC))
async def aliyun_receipts(
    items: Annotated[list[AliyunReceipt], Body(max_length=1000)],
    session: SessionDep,
    state: StateDep,
    token: Annotated[str, Query(max_length=200)],
) -> dict:
    """Alibaba tells which SMS reached the phone; answers as Alibaba expects ({"code": 0})."""
    _receipt_auth(state, token)
    receipts = [
        service.Receipt(
            message_id=i.biz_id,
            delivery_id=i.out_id,
            delivered=i.success,
            at=_local_time(state, i.report_time),
            code=i.err_code,
        )
        for i in items
    ]
    await service.apply_receipts(session=session, provider="aliyun", receipts=receipts, now=state.clock.now())
    await session.commit()
    return {"code": 0, "msg": "成功"}


@router.get("/{delivery_id}", summary="One delivery with its attempts", **access(*STAFF))
async def get_notification(
    delivery_id: Annotated[str, Path(max_length=36)],
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
) -> DeliveryDetail:
    """A delivery and every call made to a provider for it."""
    d = await session.get(Delivery, delivery_id)
    if d is None or (_unit_only(principal) and d.recipient_id not in _unit_recipients(state, principal)):
        raise not_found("notification", delivery_id)
    attempts = (
        await session.exec(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == d.id)
            .order_by(DeliveryAttempt.number)
        )
    ).all()
    return DeliveryDetail(
        **out(d).model_dump(),
        attempt_log=[
            AttemptOut(
                number=a.number,
                provider=a.provider,
                at=a.at,
                duration_ms=a.duration_ms,
                outcome=a.outcome,
                code=a.code,
                detail=a.detail,
                provider_message_id=a.provider_message_id,
            )
            for a in attempts
        ],
    )


@router.post("/{delivery_id}/ack", summary="Acknowledge", **access(*STAFF))
async def ack(
    delivery_id: Annotated[str, Path(max_length=36)],
    session: SessionDep,
    state: StateDep,
    principal: CurrentPrincipal,
) -> DeliveryOut:
    """Acknowledge a notification; the escalation of its alert stops."""
    if _unit_only(principal):
        d = await session.get(Delivery, delivery_id)
        if d is None or d.recipient_id not in _unit_recipients(state, principal):
            raise not_found("notification", delivery_id)
    d = await service.acknowledge(
        session=session, delivery_id=delivery_id, actor=principal.sub, now=state.clock.now()
    )
    await session.commit()
    return out(d)


@internal.get("/notifications")
async def records(session: SessionDep, incident_id: str) -> list[NotificationRecord]:
    """Deliveries of an incident, for the archive."""
    rows, _ = await service.list_deliveries(
        session=session, incident_id=incident_id, status=None, limit=10000, offset=0
    )
    return [service.record_of(d) for d in rows]
