"""GET /api/v1/audit/events and /api/v1/audit/verify: the staff audit log, read-only, for admins."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime, BaseModel
from sqlmodel import select

from gateway.audit import count_events, verify_chain
from gateway.limits import limit_principal
from gateway.models import AuditEvent
from gateway.proxy import authenticated
from kit.security import access
from schema.enums import Role


async def gateway_principal(request: Request) -> None:
    """Authenticate a call to the gateway's own staff routes exactly as a forwarded call."""
    state = request.app.state
    principal = await authenticated(request, b"", state)
    request.state.principal = principal  # what access(...) reads
    request.scope["minsheng_audit"] = {"principal": principal, "route": request.scope["route"].path}
    await limit_principal(state, principal)


router = APIRouter(prefix="/api/v1/audit", tags=["audit"], dependencies=[Depends(gateway_principal)])
AUDITORS = (Role.admin,)


class AuditEventOut(BaseModel):
    """One audited staff call."""

    seq: int
    at: datetime
    actor: str
    roles: list[str]
    unit_code: str | None
    action: str
    method: str
    route: str
    path: str
    target_ids: dict[str, str]
    query: str | None
    status: int
    outcome: str
    request_id: str
    trace_id: str | None
    client_ip: str | None
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """A page of the audit log, newest first."""

    items: list[AuditEventOut]
    total: int


class ChainCheck(BaseModel):
    """The outcome of recomputing the hash chain."""

    ok: bool
    checked: int
    broken_at: int | None
    last_hash: str


@router.get("/events", summary="Read the staff audit log", **access(*AUDITORS))
async def list_events(
    request: Request,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    route: Annotated[str | None, Query(max_length=300, description="a route template")] = None,
    outcome: Annotated[str | None, Query(pattern="^(ok|refused|rejected|failed)$")] = None,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> AuditPage:
    """Audit rows matching the filters, newest first."""
    conditions: list[Any] = []
    if actor:
        conditions.append(AuditEvent.actor == actor)
    if route:
        conditions.append(AuditEvent.route == route)
    if outcome:
        conditions.append(AuditEvent.outcome == outcome)
    if request_id:
        conditions.append(AuditEvent.request_id == request_id)
    if since:
        conditions.append(AuditEvent.at >= since)
    if until:
        conditions.append(AuditEvent.at < until)
    # Sessions here close before the answer starts: the audit row of this very call is written then.
    async with request.app.state.sessions() as session:
        rows = (
            await session.exec(
                select(AuditEvent)
                .where(*conditions)
                .order_by(AuditEvent.seq.desc())
                .offset(offset)
                .limit(limit)
            )
        ).all()
        total = await count_events(session, conditions)
    return AuditPage(items=[AuditEventOut.model_validate(r.model_dump()) for r in rows], total=total)


@router.get("/verify", summary="Check the audit log's hash chain", **access(*AUDITORS))
async def verify(request: Request) -> ChainCheck:
    """Recompute every row's hash from the first one."""
    async with request.app.state.sessions() as session:
        return ChainCheck(**await verify_chain(session))
