"""The handling workflow (DESIGN §2 "Workflow", seed 003): 批办, 签收, 退回, 延期, 进展, 答复, 审定, 公开,
公开回应, 回访, 重办, 办结, and the side paths (甄别为无效, 直接办结).

Every step checks the state machine (409 naming the actions that are allowed), records who, when and
why on the timeline, keeps the clocks and the statistics, and tells the other services in the same
transaction (the citizen view, notify, the archive). No FastAPI here.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.context import current_traceparent
from kit.errors import AppError, conflict, invalid, not_found
from kit.outbox import Outbox
from schema.dto import Principal, UnitRef
from schema.enums import FINDING_TEXT, ONLINE_CHANNELS, Channel, Finding, IncidentStatus, Level, Role
from schema.events import (
    MessageFeedbackData,
    NotificationRequested,
    NotificationRequestedData,
)
from services.grading import clocks, metrics, stats
from services.grading.models import (
    Assignment,
    ExtensionRequest,
    Incident,
    IncidentFeedback,
    IncidentMessage,
    IncidentReply,
    Instruction,
    WorkflowClock,
)
from services.grading.service import close_incident, message_ids_of, record, status_event, summary_of
from services.grading.workdays import reply_due

log = logging.getLogger("minsheng.grading.workflow")
S = IncidentStatus

ACTION_TEXT = {
    "assign": "批办",
    "sign": "签收",
    "return": "退回",
    "extension": "延期申请",
    "extension_decision": "延期审批",
    "progress": "进展",
    "reply": "答复",
    "reply_decision": "审定",
    "publish": "公开",
    "public_response": "公开回应",
    "close": "办结",
    "reopen": "重办",
    "screen_out": "甄别为无效",
    "restore": "恢复受理",
    "instruct": "批示",
}
_OPEN = frozenset(
    {S.received, S.graded, S.assigned, S.signed, S.replied, S.approved, S.published, S.returned, S.reopened}
)
# Staff actions on an incident and the statuses that allow them (DESIGN §2 "Workflow").
INCIDENT_ACTIONS: dict[str, frozenset[IncidentStatus]] = {
    "assign": frozenset({S.received, S.graded, S.returned, S.reopened, S.assigned, S.signed}),
    "reply_decision": frozenset({S.replied}),
    "publish": frozenset({S.approved}),
    "public_response": _OPEN,
    "close": frozenset({S.published, S.received, S.graded, S.assigned, S.returned, S.screened_out}),
    "reopen": frozenset({S.published, S.closed}),
    "screen_out": frozenset({S.received, S.graded, S.assigned, S.returned}),
    "restore": frozenset({S.screened_out}),
    "instruct": _OPEN | {S.closed, S.screened_out},
}
# 直接办结: closing without a unit's reply (a consultation answered at once, a duplicate, junk).
DIRECT_CLOSE = frozenset({S.received, S.graded, S.assigned, S.returned, S.screened_out})
# While units work on an incident (their actions are possible).
UNIT_WORKING = frozenset({S.assigned, S.signed, S.replied, S.approved, S.reopened})
ACTIVE = ("assigned", "signed", "replied")  # assignment statuses still in hand
# The 总结报告 of a level I–III matter [000]: how it arose and spread, verification, measures, effect.
REPORT_FIELDS = {
    "origin_and_spread": "舆情发生衍变情况",
    "verification": "调查核实情况",
    "measures": "采取措施情况",
    "effect": "处置效果",
}


@dataclass
class Ctx:
    """What a workflow step works with: the transaction, the outbox, the runtime, the time."""

    session: AsyncSession
    outbox: Outbox
    rt: Any  # services.grading.runtime.GradingRuntime
    now: datetime

    @property
    def policy(self):
        return self.rt.bundle.policy

    @property
    def tz(self):
        return self.rt.engine.calendar.tz

    @property
    def fractions(self) -> list[float]:
        return list(self.policy.reminder_fractions)


# --- the state machine ------------------------------------------------------------------------------


def allowed_actions(incident: Incident) -> list[str]:
    """The staff actions the incident's status allows now."""
    st = S(incident.status)
    return [a for a, states in INCIDENT_ACTIONS.items() if st in states]


def assignment_actions(a: Assignment, incident: Incident) -> list[str]:
    """What the assignment's unit may do with it now."""
    st = S(incident.status)
    if st not in UNIT_WORKING or a.status not in ACTIVE:
        return []
    out = []
    if a.status == "assigned":
        out.append("sign")
    if a.status in ("assigned", "signed") and (a.role == "co" or st in (S.assigned, S.signed, S.reopened)):
        out.append("return")
    if a.role == "lead" and a.status in ("assigned", "signed") and st in (S.assigned, S.signed, S.reopened):
        out.append("extension")
    if a.status in ("signed", "replied"):
        out.append("progress")
    if a.role == "lead" and a.status == "signed" and st == S.signed:
        out.append("reply")
    return out


def _require(incident: Incident, action: str) -> None:
    if S(incident.status) not in INCIDENT_ACTIONS[action]:
        raise conflict(
            "action_not_allowed",
            f"{ACTION_TEXT[action]} ({action}) is not allowed while the incident is {incident.status}",
            [{"status": incident.status, "allowed": allowed_actions(incident)}],
        )


def _require_unit(a: Assignment, incident: Incident, action: str, why: str | None = None) -> None:
    allowed = assignment_actions(a, incident)
    if action not in allowed:
        raise conflict(
            "action_not_allowed",
            why
            or f"{ACTION_TEXT[action]} ({action}) is not allowed: the assignment is {a.status}, "
            f"the incident {incident.status}",
            [{"status": incident.status, "assignment_status": a.status, "allowed": allowed}],
        )


# --- helpers -----------------------------------------------------------------------------------------


def _unit(rt, code: str, fallback_name: str | None = None) -> UnitRef:
    unit = rt.bundle.units.get(code)
    if unit is None:
        if fallback_name:
            return UnitRef(code=code, name=fallback_name)
        raise invalid("unknown_unit", "unit not in the directory", [{"units": [code]}])
    return UnitRef(code=unit.code, name=unit.name)


def _count(ctx: Ctx, incident: Incident, unit_code: str | None, **counts: int) -> None:
    stats.record(ctx.session, at=ctx.now, tz=ctx.tz, unit_code=unit_code, **stats.dims(incident), **counts)


async def _emit_status(ctx: Ctx, incident: Incident, note: str | None = None) -> None:
    ids = await message_ids_of(session=ctx.session, incident_id=incident.id)
    if ids:
        ctx.outbox.add(ctx.session, status_event(incident, ids, note=note))


async def notify(
    ctx: Ctx,
    incident: Incident,
    *,
    kind: str,
    dedupe_key: str,
    unit_codes: list[str] | None = None,
    roles: list[str] | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """Ask notify to tell people (催办, 督办, 续报, 答复已公开, 质疑跟帖)."""
    ids = await message_ids_of(session=ctx.session, incident_id=incident.id)
    ctx.outbox.add(
        ctx.session,
        NotificationRequested.build(
            source="grading",
            trace=current_traceparent(),
            data=NotificationRequestedData(
                kind=kind,
                incident=summary_of(incident, ids),
                unit_codes=[u for u in (unit_codes or []) if u],
                recipient_roles=list(roles or []),
                params=params or {},
                dedupe_key=dedupe_key[:200],
            ),
        ),
    )


def _local(ctx_tz, at: datetime) -> str:
    return at.astimezone(ctx_tz).strftime("%Y年%m月%d日%H:%M")


def confident(incident: Incident, policy) -> bool:
    """A route a 12345 centre dispatches at once: the category is sure and a unit was found."""
    return (
        bool(incident.lead_unit_code)
        and not incident.low_confidence
        and (incident.lead_unit_code != policy.dispatch_unit)
    )


def _online(incident: Incident) -> bool:
    return any(Channel(c) in ONLINE_CHANNELS for c in incident.channels if c in Channel._value2member_map_)


def _units_of(incident: Incident) -> tuple[UnitRef | None, list[UnitRef]]:
    lead = (
        UnitRef(code=incident.lead_unit_code, name=incident.lead_unit_name or incident.lead_unit_code)
        if incident.lead_unit_code
        else None
    )
    return lead, [UnitRef(**u) for u in incident.co_units]


def _open_round(
    session: AsyncSession,
    *,
    incident: Incident,
    lead: UnitRef,
    co: list[UnitRef],
    instruction: str | None,
    actor: str,
    now: datetime,
    policy,
    tz,
) -> list[Assignment]:
    """A new round of 批办: one assignment per unit, each with its 签收 clock, counted."""
    incident.assign_round += 1
    sign_due = now + timedelta(hours=policy.workflow.sign_hours)
    rows = []
    for role, unit in [("lead", lead), *[("co", u) for u in co]]:
        a = Assignment(
            id=str(uuid.uuid4()),
            incident_id=incident.id,
            round=incident.assign_round,
            unit_code=unit.code,
            unit_name=unit.name,
            role=role,
            instruction=instruction,
            assigned_by=actor,
            assigned_at=now,
            sign_due=sign_due,
            status="assigned",
            updated_at=now,
        )
        session.add(a)
        rows.append(a)
        if "sign" in policy.workflow.clocks:
            clocks.start(
                session,
                incident_id=incident.id,
                kind="sign",
                unit_code=unit.code,
                started_at=now,
                due_at=sign_due,
                fractions=list(policy.reminder_fractions),
                assignment_id=a.id,
            )
        stats.record(session, at=now, tz=tz, unit_code=unit.code, **stats.dims(incident), assigned=1)
    incident.lead_unit_code, incident.lead_unit_name = lead.code, lead.name
    incident.co_units = [{"code": u.code, "name": u.name} for u in co]
    return rows


def _assigned_note(lead: UnitRef, co: list[UnitRef], instruction: str | None, kind: str) -> str:
    note = f"交办 {lead.name}"
    if co:
        note += f"（协办：{'、'.join(u.name for u in co)}）"
    if instruction:
        note += f"；{kind}：{instruction}"
    return note


def on_new_incident(session: AsyncSession, incident: Incident, *, engine, now: datetime) -> None:
    """A new incident (graded, or split off): its clocks, and 批办 at once when the route is confident."""
    policy = engine.policy
    wf = policy.workflow
    tz = engine.calendar.tz
    incident.reply_started_at = incident.received_at
    channels = "、".join(incident.channels)
    record(
        session,
        incident,
        action="received",
        at=incident.received_at,
        actor="system",
        note=f"受理（{channels}）" if channels else "受理",
    )
    lead, co = _units_of(incident)
    auto = (
        policy.auto_assign
        and lead is not None
        and (not wf.auto_assign_confident_only or confident(incident, policy))
    )
    if auto:
        _open_round(
            session,
            incident=incident,
            lead=lead,
            co=co,
            instruction=None,
            actor="system",
            now=now,
            policy=policy,
            tz=tz,
        )
        incident.status = S.assigned.value
        record(
            session,
            incident,
            action="assigned",
            at=now,
            actor="system",
            note=_assigned_note(lead, co, None, ""),
            public=True,
        )
        metrics.WORKFLOW.labels("assign").inc()
    else:
        why = "分类置信度低" if incident.low_confidence else "未匹配到承办单位"
        record(
            session,
            incident,
            action="awaiting_assignment",
            at=now,
            actor="system",
            note=f"待研判员批办（{why}）",
        )
    fractions = list(policy.reminder_fractions)
    if "reply" in wf.clocks and incident.reply_due:
        clocks.start(
            session,
            incident_id=incident.id,
            kind="reply",
            unit_code=lead.code if auto else policy.dispatch_unit,
            started_at=incident.received_at,
            due_at=incident.reply_due,
            fractions=fractions,
        )
    if "response" in wf.clocks and incident.response_due and _online(incident):
        clocks.start(
            session,
            incident_id=incident.id,
            kind="response",
            unit_code=lead.code if auto else policy.dispatch_unit,
            started_at=incident.received_at,
            due_at=incident.response_due,
            fractions=fractions,
        )


async def _incident_clocks(ctx: Ctx, incident: Incident, unit_code: str) -> None:
    """Keep the incident's reply (and online response) clocks running, held by `unit_code`."""
    wf = ctx.policy.workflow
    running = {
        c.kind: c
        for c in await clocks.open_clocks(ctx.session, incident_id=incident.id, kinds=("reply", "response"))
    }
    wanted = []
    if "reply" in wf.clocks and incident.reply_due and incident.replied_at is None:
        wanted.append(("reply", incident.reply_started_at or incident.received_at, incident.reply_due))
    if (
        "response" in wf.clocks
        and incident.response_due
        and incident.responded_at is None
        and _online(incident)
    ):
        wanted.append(("response", incident.received_at, incident.response_due))
    for kind, started, due in wanted:
        clock = running.get(kind)
        if clock is None:
            clocks.start(
                ctx.session,
                incident_id=incident.id,
                kind=kind,
                unit_code=unit_code,
                started_at=started,
                due_at=due,
                fractions=ctx.fractions,
            )
        else:
            clock.unit_code = unit_code
            ctx.session.add(clock)


async def _end_assignments(
    ctx: Ctx, incident: Incident, *, status: str, note: str, keep: set[str] | None = None
) -> list[Assignment]:
    """End the assignments still in hand (改派, 直接办结, 办结…): their sign clocks stop, requests lapse."""
    rows = await active_assignments(ctx.session, incident.id)
    ended = []
    for a in rows:
        if keep and a.id in keep:
            continue
        a.status, a.ended_at, a.end_note, a.updated_at = status, ctx.now, note[:200], ctx.now
        ctx.session.add(a)
        ended.append(a)
        for c in await clocks.open_clocks(
            ctx.session, incident_id=incident.id, kinds=("sign",), assignment_id=a.id
        ):
            clocks.stop(c, now=ctx.now, outcome="cancelled")
            ctx.session.add(c)
    if ended:
        await ctx.session.exec(
            update(ExtensionRequest)
            .where(
                ExtensionRequest.assignment_id.in_([a.id for a in ended]),
                ExtensionRequest.status == "pending",
            )
            .values(status="withdrawn", decided_at=ctx.now, comment=note[:200])
        )
    return ended


async def _explained(ctx: Ctx, incident: Incident, assignment: Assignment) -> None:
    """The unit explained itself (情况说明, an extension request): it is off the 通报 list for now."""
    assignment.explained_at, assignment.updated_at = ctx.now, ctx.now
    ctx.session.add(assignment)
    await ctx.session.exec(
        update(WorkflowClock)
        .where(
            WorkflowClock.incident_id == incident.id,
            WorkflowClock.unit_code == assignment.unit_code,
            WorkflowClock.stopped_at.is_(None),
            WorkflowClock.explained_at.is_(None),
        )
        .values(explained_at=ctx.now)
    )


async def _stop_incident_clocks(
    ctx: Ctx, incident: Incident, kinds: tuple[str, ...], outcome: str | None
) -> None:
    for c in await clocks.open_clocks(ctx.session, incident_id=incident.id, kinds=kinds):
        clocks.stop(c, now=ctx.now, outcome=outcome)
        ctx.session.add(c)


# --- look-ups ----------------------------------------------------------------------------------------


async def active_assignments(session: AsyncSession, incident_id: str) -> list[Assignment]:
    """The incident's assignments still in hand, lead first."""
    q = (
        select(Assignment)
        .where(Assignment.incident_id == incident_id, Assignment.status.in_(ACTIVE))
        .order_by(Assignment.role.desc(), Assignment.assigned_at)
    )
    rows = list((await session.exec(q)).all())
    return sorted(rows, key=lambda a: (a.role != "lead", a.assigned_at))


async def assignments_of(session: AsyncSession, incident_id: str) -> list[Assignment]:
    """Every assignment of the incident, oldest round first."""
    q = (
        select(Assignment)
        .where(Assignment.incident_id == incident_id)
        .order_by(Assignment.round, Assignment.assigned_at)
    )
    rows = list((await session.exec(q)).all())
    return sorted(rows, key=lambda a: (a.round, a.role != "lead", a.assigned_at))


async def current_reply(session: AsyncSession, incident_id: str) -> IncidentReply | None:
    """The lead unit's latest reply that is not sent back or superseded."""
    q = (
        select(IncidentReply)
        .where(IncidentReply.incident_id == incident_id)
        .where(IncidentReply.status.in_(("submitted", "approved", "published")))
        .order_by(IncidentReply.replied_at.desc())
        .limit(1)
    )
    return (await session.exec(q)).first()


async def pending_extension(session: AsyncSession, assignment_id: str) -> ExtensionRequest | None:
    """The assignment's extension request waiting for a leader, if any."""
    q = select(ExtensionRequest).where(
        ExtensionRequest.assignment_id == assignment_id, ExtensionRequest.status == "pending"
    )
    return (await session.exec(q)).first()


async def get_incident(session: AsyncSession, incident_id: str) -> Incident:
    """An incident by id, or 404."""
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise not_found("incident", incident_id)
    return incident


async def lock_incident(session: AsyncSession, incident_id: str) -> Incident:
    """An incident by id, locked for the transaction on PostgreSQL (workflow steps take turns), or 404."""
    incident = await session.get(Incident, incident_id, with_for_update=True, populate_existing=True)
    if incident is None:
        raise not_found("incident", incident_id)
    return incident


async def _locked(ctx: Ctx, assignment: Assignment) -> Incident:
    incident = await lock_incident(ctx.session, assignment.incident_id)
    await ctx.session.refresh(assignment)
    return incident


async def unit_assignment(session: AsyncSession, assignment_id: str, principal: Principal) -> Assignment:
    """An assignment of the caller's unit, or 404 (units never learn of others' work)."""
    a = await session.get(Assignment, assignment_id)
    if a is None or not principal.unit_code or a.unit_code != principal.unit_code:
        raise not_found("assignment", assignment_id)
    return a


def can_see_assignment(principal: Principal, a: Assignment) -> bool:
    """Unit handlers see their own unit's assignments; other staff see all."""
    if principal.has_any(Role.clerk, Role.analyst, Role.leader, Role.supervisor, Role.archivist, Role.admin):
        return True
    return bool(principal.unit_code) and a.unit_code == principal.unit_code


# --- 批办 --------------------------------------------------------------------------------------------


async def assign(
    ctx: Ctx,
    *,
    incident: Incident,
    lead_unit: str,
    co_units: list[str],
    instruction: str | None,
    principal: Principal,
) -> list[Assignment]:
    """批办: a lead unit and co-units with an instruction; the round in hand before it ends (改派)."""
    _require(incident, "assign")
    co_units = list(dict.fromkeys(co_units))
    if lead_unit in co_units:
        raise invalid("lead_is_co", "the lead unit cannot also co-handle", [{"lead_unit": lead_unit}])
    unknown = [c for c in [lead_unit, *co_units] if c not in ctx.rt.bundle.units]
    if unknown:
        raise invalid("unknown_unit", "units not in the directory", [{"units": unknown}])
    current = await active_assignments(ctx.session, incident.id)
    if (
        current
        and incident.status in (S.assigned.value, S.reopened.value)
        and current[0].unit_code == lead_unit
        and sorted(a.unit_code for a in current[1:]) == sorted(co_units)
        and current[0].instruction == instruction
        and current[0].assigned_by == principal.sub
    ):
        return current  # the same 批办 again (a retried request): nothing new
    is_leader = principal.has_any(Role.leader)
    kind = "批示" if is_leader else "交办意见"
    if current:
        await _end_assignments(ctx, incident, status="withdrawn", note=f"改派（{principal.sub}）")
    lead = _unit(ctx.rt, lead_unit)
    co = [_unit(ctx.rt, c) for c in co_units]
    rows = _open_round(
        ctx.session,
        incident=incident,
        lead=lead,
        co=co,
        instruction=instruction,
        actor=principal.sub,
        now=ctx.now,
        policy=ctx.policy,
        tz=ctx.tz,
    )
    if instruction:
        ctx.session.add(
            Instruction(
                incident_id=incident.id,
                at=ctx.now,
                by=principal.sub,
                role="leader" if is_leader else "analyst",
                kind=kind,
                text=instruction,
                round=incident.assign_round,
            )
        )
    incident.status = S.assigned.value
    incident.updated_at = ctx.now
    ctx.session.add(incident)
    record(
        ctx.session,
        incident,
        action="assigned",
        at=ctx.now,
        actor=principal.sub,
        note=_assigned_note(lead, co, instruction, kind),
        public=True,
    )
    await _incident_clocks(ctx, incident, lead.code)
    await _emit_status(ctx, incident)
    metrics.WORKFLOW.labels("assign").inc()
    return rows


async def instruct(ctx: Ctx, *, incident: Incident, text: str, principal: Principal) -> Instruction:
    """A leader's 批示 on the incident, recorded as such."""
    _require(incident, "instruct")
    row = Instruction(
        incident_id=incident.id,
        at=ctx.now,
        by=principal.sub,
        role="leader",
        kind="批示",
        text=text,
        round=incident.assign_round or None,
    )
    ctx.session.add(row)
    record(
        ctx.session, incident, action="instruction", at=ctx.now, actor=principal.sub, note=f"领导批示：{text}"
    )
    incident.updated_at = ctx.now
    ctx.session.add(incident)
    metrics.WORKFLOW.labels("instruct").inc()
    return row


# --- the unit's steps --------------------------------------------------------------------------------


async def sign(ctx: Ctx, *, assignment: Assignment, principal: Principal) -> Assignment:
    """签收: the unit takes the assignment; its sign clock stops; the lead's signing starts 办理中."""
    incident = await _locked(ctx, assignment)
    if assignment.status == "signed" and assignment.signed_by == principal.sub:
        return assignment  # signed already by the same person: a retried request
    _require_unit(assignment, incident, "sign")
    on_time = assignment.sign_due is None or ctx.now <= assignment.sign_due
    assignment.status, assignment.signed_at, assignment.signed_by = "signed", ctx.now, principal.sub
    assignment.updated_at = ctx.now
    ctx.session.add(assignment)
    for c in await clocks.open_clocks(
        ctx.session, incident_id=incident.id, kinds=("sign",), assignment_id=assignment.id
    ):
        clocks.stop(c, now=ctx.now)
        ctx.session.add(c)
    _count(ctx, incident, assignment.unit_code, signed=1, signed_on_time=int(on_time))
    role = "主办" if assignment.role == "lead" else "协办"
    if assignment.role == "lead" and incident.status in (S.assigned.value, S.reopened.value):
        incident.status = S.signed.value
        incident.updated_at = ctx.now
        ctx.session.add(incident)
        record(
            ctx.session,
            incident,
            action="signed",
            at=ctx.now,
            actor=principal.sub,
            note=f"{assignment.unit_name}（{role}）签收" + ("" if on_time else "（超过签收时限）"),
            public=True,
        )
        await _emit_status(ctx, incident)
    else:
        record(
            ctx.session,
            incident,
            action="signed",
            at=ctx.now,
            actor=principal.sub,
            note=f"{assignment.unit_name}（{role}）签收" + ("" if on_time else "（超过签收时限）"),
        )
    metrics.WORKFLOW.labels("sign").inc()
    return assignment


async def return_assignment(
    ctx: Ctx, *, assignment: Assignment, reason: str, note: str | None, principal: Principal
) -> Assignment:
    """退回 with a reason: the lead's return sends the incident back to the analyst for re-routing."""
    incident = await _locked(ctx, assignment)
    reasons = ctx.policy.workflow.return_reasons
    if reason not in reasons:
        raise invalid(
            "unknown_return_reason", f"unknown return reason {reason!r}", [{"allowed": list(reasons)}]
        )
    _require_unit(assignment, incident, "return")
    label = reasons[reason]
    assignment.status, assignment.returned_at, assignment.returned_by = "returned", ctx.now, principal.sub
    assignment.return_reason, assignment.return_note = reason, note
    assignment.ended_at, assignment.end_note, assignment.updated_at = ctx.now, f"退回：{label}", ctx.now
    ctx.session.add(assignment)
    for c in await clocks.open_clocks(
        ctx.session, incident_id=incident.id, kinds=("sign",), assignment_id=assignment.id
    ):
        clocks.stop(c, now=ctx.now, outcome="cancelled")
        ctx.session.add(c)
    await ctx.session.exec(
        update(ExtensionRequest)
        .where(ExtensionRequest.assignment_id == assignment.id, ExtensionRequest.status == "pending")
        .values(status="withdrawn", decided_at=ctx.now, comment="单位退回")
    )
    _count(ctx, incident, assignment.unit_code, returned=1)
    metrics.RETURNS.labels(reason).inc()
    text = f"{assignment.unit_name}退回：{label}" + (f"（{note}）" if note else "")
    if assignment.role == "lead":
        await _end_assignments(ctx, incident, status="withdrawn", note="主办单位退回，待重新交办")
        incident.status = S.returned.value
        incident.updated_at = ctx.now
        record(ctx.session, incident, action="returned", at=ctx.now, actor=principal.sub, note=text)
        await _incident_clocks(ctx, incident, ctx.policy.dispatch_unit)
        ctx.session.add(incident)
        await _emit_status(ctx, incident, note="正在重新确定承办单位")
    else:
        incident.co_units = [u for u in incident.co_units if u["code"] != assignment.unit_code]
        incident.updated_at = ctx.now
        ctx.session.add(incident)
        record(ctx.session, incident, action="returned", at=ctx.now, actor=principal.sub, note=text)
    metrics.WORKFLOW.labels("return").inc()
    return assignment


def extension_cap(ctx: Ctx, incident: Incident) -> datetime:
    """The latest reply due an extension may reach (the policy's cap from receipt, or from the 重办)."""
    start = incident.reply_started_at or incident.received_at
    return reply_due(
        policy=ctx.policy,
        calendar=ctx.rt.engine.calendar,
        received_at=start,
        days=ctx.policy.deadlines.reply_extension_cap_days,
    )


async def request_extension(
    ctx: Ctx, *, assignment: Assignment, requested_due: datetime, reason: str, principal: Principal
) -> ExtensionRequest:
    """延期申请 before the due time, never past the cap; a leader decides."""
    incident = await _locked(ctx, assignment)
    pending = await pending_extension(ctx.session, assignment.id)
    if pending is not None:
        if pending.requested_due == requested_due and pending.requested_by == principal.sub:
            return pending  # the same request again
        raise conflict(
            "extension_pending",
            "an extension request is already waiting for a leader's decision",
            [{"extension_id": pending.id, "requested_due": pending.requested_due.isoformat()}],
        )
    why = "only the lead unit asks for more time for the reply" if assignment.role != "lead" else None
    _require_unit(assignment, incident, "extension", why)
    if incident.reply_due is None:
        raise conflict("no_deadline", "the incident has no reply deadline to extend")
    if ctx.now >= incident.reply_due:
        raise conflict(
            "past_due",
            "an extension must be asked for before the reply is due",
            [{"reply_due": incident.reply_due.isoformat(), "allowed": ["progress"]}],
        )
    if requested_due <= incident.reply_due:
        raise invalid(
            "not_later",
            "the requested due time is not later than the current one",
            [{"reply_due": incident.reply_due.isoformat()}],
        )
    cap = extension_cap(ctx, incident)
    if requested_due > cap:
        raise invalid(
            "past_cap",
            f"an extension may reach {cap.isoformat()} at the latest "
            f"({ctx.policy.deadlines.reply_extension_cap_days:g} days from receipt)",
            [{"cap": cap.isoformat()}],
        )
    row = ExtensionRequest(
        id=str(uuid.uuid4()),
        incident_id=incident.id,
        assignment_id=assignment.id,
        unit_code=assignment.unit_code,
        previous_due=incident.reply_due,
        requested_due=requested_due,
        reason=reason,
        requested_by=principal.sub,
        requested_at=ctx.now,
        status="pending",
    )
    ctx.session.add(row)
    await _explained(ctx, incident, assignment)
    record(
        ctx.session,
        incident,
        action="extension_requested",
        at=ctx.now,
        actor=principal.sub,
        note=f"{assignment.unit_name}申请延期至{_local(ctx.tz, requested_due)}：{reason}",
    )
    metrics.EXTENSIONS.labels("requested").inc()
    metrics.WORKFLOW.labels("extension").inc()
    return row


async def decide_extension(
    ctx: Ctx,
    *,
    assignment: Assignment,
    approve: bool,
    due: datetime | None,
    comment: str | None,
    principal: Principal,
) -> ExtensionRequest:
    """A leader approves (the reply due moves; the citizen view says so) or refuses an extension."""
    incident = await _locked(ctx, assignment)
    req = await pending_extension(ctx.session, assignment.id)
    if req is None:
        raise conflict(
            "no_pending_extension",
            "no extension request is waiting for a decision on this assignment",
            [{"allowed": allowed_actions(incident)}],
        )
    if S(incident.status) not in UNIT_WORKING:
        raise conflict(
            "action_not_allowed",
            f"the incident is {incident.status}; its reply deadline no longer moves",
            [{"status": incident.status, "allowed": allowed_actions(incident)}],
        )
    req.decided_by, req.decided_at, req.comment = principal.sub, ctx.now, comment
    if approve:
        new_due = due or req.requested_due
        cap = extension_cap(ctx, incident)
        if new_due > cap:
            raise invalid(
                "past_cap",
                f"an extension may reach {cap.isoformat()} at the latest",
                [{"cap": cap.isoformat()}],
            )
        if incident.reply_due and new_due <= incident.reply_due:
            raise invalid("not_later", "the new due time is not later than the current one")
        req.status, req.approved_due = "approved", new_due
        incident.reply_due = new_due
        incident.updated_at = ctx.now
        for c in await clocks.open_clocks(ctx.session, incident_id=incident.id, kinds=("reply",)):
            clocks.move(c, due_at=new_due, fractions=ctx.fractions)
            ctx.session.add(c)
        record(
            ctx.session,
            incident,
            action="extension_decided",
            at=ctx.now,
            actor=principal.sub,
            note=f"同意延期至{_local(ctx.tz, new_due)}" + (f"：{comment}" if comment else ""),
            public=True,
        )
        _count(ctx, incident, assignment.unit_code, extended=1)
        ctx.session.add(incident)
        await _emit_status(ctx, incident, note=f"经批准，答复期限延至{_local(ctx.tz, new_due)}")
        metrics.EXTENSIONS.labels("approved").inc()
    else:
        req.status = "rejected"
        record(
            ctx.session,
            incident,
            action="extension_decided",
            at=ctx.now,
            actor=principal.sub,
            note="不同意延期" + (f"：{comment}" if comment else ""),
        )
        metrics.EXTENSIONS.labels("rejected").inc()
    ctx.session.add(req)
    metrics.WORKFLOW.labels("extension_decision").inc()
    return req


async def add_progress(
    ctx: Ctx, *, assignment: Assignment, note: str, kind: str | None, key: str | None, principal: Principal
) -> Assignment:
    """进展 (the lead's progress, a co-unit's input, an explanation of lateness); 续报 for levels I–II."""
    incident = await _locked(ctx, assignment)
    kind = kind or ("progress" if assignment.role == "lead" else "input")
    notes = list(assignment.progress or [])
    last = notes[-1] if notes else None
    if (key and any(n.get("key") == key for n in notes)) or (
        not key
        and last
        and last.get("by") == principal.sub
        and last.get("note") == note
        and last.get("kind") == kind
    ):
        return assignment  # the same note again (a retried request)
    _require_unit(assignment, incident, "progress")
    if len(notes) >= ctx.policy.workflow.max_progress_notes:
        raise conflict("too_many_notes", "this assignment has as many progress notes as the policy allows")
    notes.append(
        {
            "at": ctx.now.isoformat(),
            "by": principal.sub,
            "unit": assignment.unit_code,
            "kind": kind,
            "note": note,
            "key": key,
        }
    )
    assignment.progress = notes
    assignment.updated_at = ctx.now
    if kind == "explanation":
        await _explained(ctx, incident, assignment)
    ctx.session.add(assignment)
    label = {"progress": "办理进展", "input": "协办意见", "explanation": "情况说明"}[kind]
    record(
        ctx.session,
        incident,
        action="progress",
        at=ctx.now,
        actor=principal.sub,
        note=f"{assignment.unit_name}{label}：{note}",
    )
    incident.updated_at = ctx.now
    ctx.session.add(incident)
    if Level(incident.level) in ctx.policy.workflow.follow_up_levels and kind == "progress":
        await notify(
            ctx,
            incident,
            kind="follow_up",
            dedupe_key=f"follow_up:{incident.id}:{assignment.id}:{len(notes)}",
            unit_codes=[assignment.unit_code],
            params={"progress": note[:200], "unit": assignment.unit_name},
        )
    metrics.WORKFLOW.labels("progress").inc()
    return assignment


async def reply(
    ctx: Ctx,
    *,
    assignment: Assignment,
    finding: Finding,
    reply_text: str,
    measures: str | None,
    principal: Principal,
) -> IncidentReply:
    """答复: the lead unit's one answer (统一口径) with its finding and measures, for a leader's 审定."""
    incident = await _locked(ctx, assignment)
    if incident.status == S.replied.value:
        cur = await current_reply(ctx.session, incident.id)
        if (
            cur is not None
            and cur.assignment_id == assignment.id
            and cur.reply_text == reply_text
            and cur.finding == finding.value
        ):
            return cur  # the same reply again
    why = (
        "only the lead unit replies (统一口径); co-units give their input as progress"
        if assignment.role != "lead"
        else None
    )
    _require_unit(assignment, incident, "reply", why)
    row = IncidentReply(
        id=str(uuid.uuid4()),
        incident_id=incident.id,
        assignment_id=assignment.id,
        unit_code=assignment.unit_code,
        unit_name=assignment.unit_name,
        finding=finding.value,
        reply_text=reply_text,
        measures=measures,
        replied_by=principal.sub,
        replied_at=ctx.now,
        status="submitted",
    )
    ctx.session.add(row)
    assignment.status, assignment.updated_at = "replied", ctx.now
    ctx.session.add(assignment)
    incident.status = S.replied.value
    incident.updated_at = ctx.now
    ctx.session.add(incident)
    record(
        ctx.session,
        incident,
        action="replied",
        at=ctx.now,
        actor=principal.sub,
        note=f"{assignment.unit_name}答复（{FINDING_TEXT[finding]}），待审定",
    )
    metrics.WORKFLOW.labels("reply").inc()
    return row


# --- 审定, 公开, 公开回应 ----------------------------------------------------------------------------


async def decide_reply(
    ctx: Ctx,
    *,
    incident: Incident,
    approve: bool,
    comment: str | None,
    edited_text: str | None,
    principal: Principal,
) -> IncidentReply:
    """审定: a leader approves the reply (perhaps edited) or sends it back with a comment."""
    _require(incident, "reply_decision")
    row = await current_reply(ctx.session, incident.id)
    if row is None or row.status != "submitted":
        raise conflict(
            "no_reply", "there is no reply waiting for 审定", [{"allowed": allowed_actions(incident)}]
        )
    row.decided_by, row.decided_at, row.comment = principal.sub, ctx.now, comment
    if approve:
        edited = edited_text if edited_text and edited_text != row.reply_text else None
        row.status, row.edited_text = "approved", edited
        incident.status = S.approved.value
        note = "审定通过" + ("（修改后定稿）" if edited else "") + (f"：{comment}" if comment else "")
        record(ctx.session, incident, action="approved", at=ctx.now, actor=principal.sub, note=note)
    else:
        if not comment:
            raise invalid("comment_required", "sending a reply back needs a comment saying what to change")
        row.status = "sent_back"
        incident.status = S.signed.value
        lead = await ctx.session.get(Assignment, row.assignment_id)
        if lead is not None and lead.status == "replied":
            lead.status, lead.updated_at = "signed", ctx.now
            ctx.session.add(lead)
        record(
            ctx.session,
            incident,
            action="sent_back",
            at=ctx.now,
            actor=principal.sub,
            note=f"退回修改：{comment}",
        )
    incident.updated_at = ctx.now
    ctx.session.add_all([row, incident])
    metrics.WORKFLOW.labels("approve" if approve else "send_back").inc()
    return row


async def record_public_response(
    ctx: Ctx,
    *,
    incident: Incident,
    channel: str,
    url: str | None,
    text: str,
    published_at: datetime | None,
    principal: Principal,
) -> dict[str, Any]:
    """公开回应 of an online matter (channel, time, link): the first stops the response clock."""
    _require(incident, "public_response")
    at = published_at or ctx.now
    entry = {
        "text": text,
        "channel": channel,
        "url": url,
        "published_at": at.isoformat(),
        "by": principal.sub,
    }
    if incident.public_response is None:
        incident.public_response = {**entry, "updates": []}
        incident.responded_at = at
        for c in await clocks.open_clocks(ctx.session, incident_id=incident.id, kinds=("response",)):
            clocks.stop(c, now=at)
            ctx.session.add(c)
    else:
        incident.public_response = {
            **incident.public_response,
            "updates": [*incident.public_response.get("updates", []), entry],
        }
    incident.updated_at = ctx.now
    ctx.session.add(incident)
    record(
        ctx.session,
        incident,
        action="public_response",
        at=ctx.now,
        actor=principal.sub,
        note=f"公开回应（{channel}）" + (f"：{url}" if url else ""),
    )
    metrics.WORKFLOW.labels("public_response").inc()
    return incident.public_response


async def publish(
    ctx: Ctx,
    *,
    incident: Incident,
    principal: Principal,
    response: dict[str, Any] | None = None,
) -> IncidentReply:
    """公开: the approved reply reaches the citizen view and the portal's callback; its clock stops."""
    _require(incident, "publish")
    row = await current_reply(ctx.session, incident.id)
    if row is None or row.status != "approved":
        raise conflict(
            "no_approved_reply",
            "there is no approved reply to publish",
            [{"allowed": allowed_actions(incident)}],
        )
    row.status, row.published_at, row.published_by = "published", ctx.now, principal.sub
    incident.published_reply = {
        "text": row.edited_text or row.reply_text,
        "unit": {"code": row.unit_code, "name": row.unit_name},
        "finding": row.finding,
        "published_at": ctx.now.isoformat(),
    }
    incident.replied_at = ctx.now
    incident.status = S.published.value
    incident.updated_at = ctx.now
    on_time = incident.reply_due is None or ctx.now <= incident.reply_due
    await _stop_incident_clocks(ctx, incident, ("reply",), None)
    _count(ctx, incident, row.unit_code, replied=1, replied_on_time=int(on_time))
    ctx.session.add_all([row, incident])
    record(
        ctx.session,
        incident,
        action="published",
        at=ctx.now,
        actor=principal.sub,
        note=f"公开答复（{row.unit_name}）" + ("" if on_time else "（超过答复时限）"),
        public=True,
    )
    if response is not None:
        await record_public_response(ctx, incident=incident, principal=principal, **response)
    await _emit_status(ctx, incident)
    await notify(
        ctx,
        incident,
        kind="reply_published",
        dedupe_key=f"reply_published:{incident.id}:{row.id}",
        unit_codes=[row.unit_code],
        params={"unit": row.unit_name},
    )
    metrics.WORKFLOW.labels("publish").inc()
    return row


# --- 办结, 重办, 甄别 ---------------------------------------------------------------------------------


def check_summary(ctx: Ctx, incident: Incident, summary: dict[str, Any]) -> bool:
    """Whether this is a 直接办结; a level I–III matter closed after handling needs a 总结报告."""
    direct = S(incident.status) in DIRECT_CLOSE
    if not direct and Level(incident.level) in ctx.policy.workflow.report_levels:
        missing = [f for f in REPORT_FIELDS if not str(summary.get(f) or "").strip()]
        if missing:
            raise invalid(
                "report_required",
                f"closing a level {incident.level} matter needs a 总结报告: "
                + "、".join(REPORT_FIELDS[f] for f in missing),
                [{"missing": missing}],
            )
    return direct


async def close(ctx: Ctx, *, incident: Incident, summary: dict[str, Any], actor: str) -> Incident:
    """办结 (or 直接办结 with a summary): work in hand ends, clocks stop, the dossier goes to the archive."""
    if incident.status in (S.closed.value, S.archived.value):
        raise conflict("already_closed", "the incident is already closed", [{"allowed": ["reopen"]}])
    _require(incident, "close")
    direct = check_summary(ctx, incident, summary)
    summary = {k: v for k, v in summary.items() if v not in (None, "")}
    summary["direct"] = direct
    await _end_assignments(
        ctx, incident, status="withdrawn" if direct else "done", note="直接办结" if direct else "办结"
    )
    await _stop_incident_clocks(
        ctx, incident, ("reply", "response"), "cancelled" if incident.status == S.screened_out.value else None
    )
    lead = incident.lead_unit_code if incident.assign_round else None
    _count(ctx, incident, lead, closed=1)
    metrics.WORKFLOW.labels("close").inc()
    parts = await dossier_parts(ctx, incident)
    return await close_incident(
        session=ctx.session,
        outbox=ctx.outbox,
        incident=incident,
        actor=actor,
        summary=summary,
        now=ctx.now,
        parts=parts,
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


async def dossier_parts(ctx: Ctx, incident: Incident) -> dict[str, Any]:
    """The workflow's part of the dossier: assignments, the reply, instructions, public response, feedback."""
    session = ctx.session
    reasons = ctx.policy.workflow.return_reasons
    extensions: dict[str, list[dict[str, Any]]] = {}
    for e in (
        await session.exec(
            select(ExtensionRequest)
            .where(ExtensionRequest.incident_id == incident.id)
            .order_by(ExtensionRequest.requested_at)
        )
    ).all():
        extensions.setdefault(e.assignment_id, []).append(
            {
                "requested_due": _iso(e.requested_due),
                "previous_due": _iso(e.previous_due),
                "reason": e.reason,
                "requested_by": e.requested_by,
                "requested_at": _iso(e.requested_at),
                "status": e.status,
                "approved": e.status == "approved",
                "approved_due": _iso(e.approved_due),
                "decided_by": e.decided_by,
                "decided_at": _iso(e.decided_at),
                "comment": e.comment,
            }
        )
    assignments = [
        {
            "id": a.id,
            "round": a.round,
            "unit": {"code": a.unit_code, "name": a.unit_name},
            "role": a.role,
            "instruction": a.instruction,
            "assigned_by": a.assigned_by,
            "assigned_at": _iso(a.assigned_at),
            "sign_due": _iso(a.sign_due),
            "signed_by": a.signed_by,
            "signed_at": _iso(a.signed_at),
            "returned_at": _iso(a.returned_at),
            "return_reason": reasons.get(a.return_reason, a.return_reason) if a.return_reason else None,
            "return_note": a.return_note,
            "status": a.status,
            "ended_at": _iso(a.ended_at),
            "extensions": extensions.get(a.id, []),
            "progress": [{k: v for k, v in n.items() if k != "key"} for n in a.progress or []],
        }
        for a in await assignments_of(session, incident.id)
    ]
    replies = list(
        (
            await session.exec(
                select(IncidentReply)
                .where(IncidentReply.incident_id == incident.id)
                .order_by(IncidentReply.replied_at)
            )
        ).all()
    )
    final = next((r for r in reversed(replies) if r.status in ("published", "approved", "submitted")), None)
    reply = None
    if final is not None:
        reply = {
            "unit": {"code": final.unit_code, "name": final.unit_name},
            "finding": final.finding,
            "reply_text": final.reply_text,
            "measures": final.measures,
            "replied_at": _iso(final.replied_at),
            "replied_by": final.replied_by,
            "approved_at": _iso(final.decided_at) if final.status in ("approved", "published") else None,
            "approved_by": final.decided_by if final.status in ("approved", "published") else None,
            "comment": final.comment,
            "edited_text": final.edited_text,
            "published_at": _iso(final.published_at),
            "published_by": final.published_by,
            "sent_back": [
                {
                    "reply_text": r.reply_text,
                    "replied_at": _iso(r.replied_at),
                    "by": r.decided_by,
                    "at": _iso(r.decided_at),
                    "comment": r.comment,
                }
                for r in replies
                if r.status == "sent_back"
            ],
        }
    instructions = [
        {"at": _iso(i.at), "by": i.by, "role": i.role, "kind": i.kind, "text": i.text, "round": i.round}
        for i in (
            await session.exec(
                select(Instruction).where(Instruction.incident_id == incident.id).order_by(Instruction.at)
            )
        ).all()
    ]
    feedback = [
        {"satisfaction": f.satisfaction, "comment": f.comment, "at": _iso(f.at), "outcome": f.outcome}
        for f in (
            await session.exec(
                select(IncidentFeedback)
                .where(IncidentFeedback.incident_id == incident.id)
                .order_by(IncidentFeedback.at)
            )
        ).all()
    ]
    return {
        "assignments": assignments,
        "reply": reply,
        "public_response": incident.public_response,
        "feedback": feedback,
        "instructions": instructions,
    }


async def reopen(
    ctx: Ctx,
    *,
    incident: Incident,
    reason: str,
    actor: str,
    source: str = "staff",
    public_note: str | None = None,
) -> Incident:
    """重办: the matter is handled again with a new reply deadline, by the same units in a new round."""
    _require(incident, "reopen")
    incident.status = S.reopened.value
    incident.reopen_count += 1
    incident.reply_started_at = ctx.now
    incident.reply_due = reply_due(
        policy=ctx.policy,
        calendar=ctx.rt.engine.calendar,
        received_at=ctx.now,
        days=ctx.policy.workflow.reopen_reply_days,
    )
    incident.replied_at = None
    incident.closed_at = None
    incident.updated_at = ctx.now
    record(
        ctx.session,
        incident,
        action="reopened",
        at=ctx.now,
        actor=actor,
        note=f"重办：{reason}；答复期限{_local(ctx.tz, incident.reply_due)}",
        public=True,
    )
    lead, co = _units_of(incident)
    if lead is not None and incident.assign_round:
        await _end_assignments(ctx, incident, status="done", note="重办")
        _open_round(
            ctx.session,
            incident=incident,
            lead=lead,
            co=co,
            instruction=f"重办：{reason}",
            actor=actor,
            now=ctx.now,
            policy=ctx.policy,
            tz=ctx.tz,
        )
    await _incident_clocks(
        ctx, incident, lead.code if lead and incident.assign_round else ctx.policy.dispatch_unit
    )
    _count(ctx, incident, lead.code if lead else None, reopened=1)
    ctx.session.add(incident)
    await _emit_status(
        ctx, incident, note=public_note or f"重新办理，答复期限{_local(ctx.tz, incident.reply_due)}"
    )
    metrics.REOPENED.labels(source).inc()
    metrics.WORKFLOW.labels("reopen").inc()
    return incident


async def screen_out(ctx: Ctx, *, incident: Incident, reason: str, actor: str) -> Incident:
    """甄别为无效 (junk, spam): work in hand ends, clocks stop; reversible by staff."""
    _require(incident, "screen_out")
    await _end_assignments(ctx, incident, status="withdrawn", note="甄别为无效")
    await _stop_incident_clocks(ctx, incident, ("reply", "response"), "cancelled")
    incident.status = S.screened_out.value
    incident.updated_at = ctx.now
    ctx.session.add(incident)
    record(
        ctx.session, incident, action="screened_out", at=ctx.now, actor=actor, note=f"甄别为无效：{reason}"
    )
    await _emit_status(ctx, incident, note="经甄别，不予受理")
    metrics.WORKFLOW.labels("screen_out").inc()
    return incident


async def restore(ctx: Ctx, *, incident: Incident, reason: str, actor: str) -> Incident:
    """恢复受理 of a screened-out matter: back to the analyst for 批办, its clocks running again."""
    _require(incident, "restore")
    incident.status = S.graded.value
    incident.updated_at = ctx.now
    record(ctx.session, incident, action="restored", at=ctx.now, actor=actor, note=f"恢复受理：{reason}")
    await _incident_clocks(ctx, incident, ctx.policy.dispatch_unit)
    ctx.session.add(incident)
    await _emit_status(ctx, incident, note="恢复受理")
    metrics.WORKFLOW.labels("restore").inc()
    return incident


# --- what citizens and the matter itself do ----------------------------------------------------------


async def apply_feedback(ctx: Ctx, *, data: MessageFeedbackData) -> IncidentFeedback:
    """回访: satisfied closes the loop (levels without a 总结报告); unsatisfied reopens the matter (重办)."""
    row = await ctx.session.get(IncidentMessage, data.message_id)
    if row is None:
        raise AppError(404, "unknown_message", f"grading has no message {data.message_id}")
    incident = await get_incident(ctx.session, row.incident_id)
    hops = 0
    while incident.merged_into and hops < 10:
        incident = await get_incident(ctx.session, incident.merged_into)
        hops += 1
    fb = IncidentFeedback(
        incident_id=incident.id,
        message_id=data.message_id,
        satisfaction=data.satisfaction.value,
        comment=data.comment,
        at=data.received_at,
        outcome="recorded",
    )
    ctx.session.add(fb)
    text = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}[
        data.satisfaction.value
    ]
    record(
        ctx.session,
        incident,
        action="feedback",
        at=ctx.now,
        actor="citizen",
        note=f"群众评价：{text}" + (f"（{data.comment}）" if data.comment else ""),
    )
    unit = incident.lead_unit_code if incident.assign_round else None
    _count(ctx, incident, unit, **{data.satisfaction.value: 1})
    wf = ctx.policy.workflow
    if data.satisfaction.value == "unsatisfied" and S(incident.status) in INCIDENT_ACTIONS["reopen"]:
        await reopen(
            ctx,
            incident=incident,
            reason="群众不满意" + (f"：{data.comment}" if data.comment else ""),
            actor="citizen",
            source="citizen",
            public_note="已收到您的不满意评价，事项重新办理",
        )
        fb.outcome = "reopened"
    elif (
        data.satisfaction.value in wf.auto_close_on
        and incident.status == S.published.value
        and Level(incident.level) not in wf.report_levels
    ):
        await close(
            ctx,
            incident=incident,
            summary={"summary": f"已答复，群众评价{text}，办结。"},
            actor="system",
        )
        fb.outcome = "closed"
    return fb
