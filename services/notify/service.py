"""Notify's logic: which alerts an event raises, who gets which delivery when (grouping), acknowledgement,
and the record of every delivery. No FastAPI here."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.db import padded
from kit.errors import AppError, not_found
from schema.dto import IncidentSummary, NotificationRecord
from schema.enums import LEVEL_TEXT, Level
from services.notify import acklink, metrics
from services.notify.models import Alert, Delivery, Job, TrackedIncident
from services.notify.policy import Step
from services.notify.recipients import Directory, Recipient
from services.notify.templates import render

log = logging.getLogger("minsheng.notify")

KIND_TEXT = {
    "graded": "定级",
    "escalated": "升级",
    "reminder": "催办",
    "supervision": "督办",
    "follow_up": "续报",
    "reply_published": "答复公开",
    "challenge": "质疑跟帖",
    "digest": "日报",
}
INCIDENT_ALERTS = ("graded", "escalated")  # a newer one of these replaces the older one's chain
TERMINAL_ALERT = ("acked", "unacknowledged", "closed", "superseded", "info")


@dataclass
class Context:
    """What notify needs at hand to raise alerts: directory and policy, channels configured, settings."""

    directory: Directory
    settings: Any
    configured_channels: frozenset[str]

    @property
    def policy(self):
        """The notification policy."""
        return self.directory.policy


def mask(address: str | None) -> str | None:
    """A phone as 138****0001, an e-mail as z***@domain; other addresses as they are."""
    if not address:
        return address
    prefix, digits = ("+86", address[3:]) if address.startswith("+86") else ("", address)
    if digits.isdigit() and len(digits) >= 7:
        return prefix + digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    if "@" in address:
        user, _, domain = address.partition("@")
        return f"{user[:1]}***@{domain}"
    return address


def _local(directory: Directory, at: datetime) -> datetime:
    return at.astimezone(directory.tz)


def _deadline_text(directory: Directory, params: dict[str, Any]) -> str:
    """The deadline words of a 催办/督办 from the request's params."""
    if params.get("deadline_text"):
        return str(params["deadline_text"])
    due = params.get("due_at") or params.get("deadline")
    out = ""
    if due:
        try:
            at = _local(directory, datetime.fromisoformat(str(due)))
            out = f"办理时限{at:%m月%d日%H:%M}"
        except ValueError:
            out = f"办理时限{due}"
    fraction = params.get("fraction")
    if params.get("overdue") or (fraction is not None and float(fraction) >= 1):
        out += "，已超期"
    elif fraction is not None:
        out += f"，已过时限{round(float(fraction) * 100)}%"
    return out or "请按时限办理"


def incident_values(
    directory: Directory, incident: IncidentSummary, params: dict[str, Any] | None = None
) -> dict:
    """Template values of an incident (and the request's params)."""
    params = params or {}
    level = incident.level.value
    values = {
        "code": incident.code,
        "title": incident.title,
        "level": level,
        "level_text": LEVEL_TEXT[Level(level)],
        "unit": incident.lead_unit.name if incident.lead_unit else "待分派",
        "deadline_text": _deadline_text(directory, params),
        "note": str(params.get("note") or params.get("comment") or incident.excerpt[:40] or "请关注"),
        "progress": str(params.get("progress") or "处置中"),
    }
    if getattr(incident, "previous_level", None):
        values["previous_level"] = incident.previous_level.value
    for k, v in params.items():
        if isinstance(v, str | int | float) and k not in values:
            values[k] = v
    return values


# --- incidents notify follows ----------------------------------------------------------------------


@dataclass
class RunHints:
    """What one look-up per run of events found, so that each event skips the queries whose answer is
    already known: incidents notify has no row for, incidents with no alert or delivery yet, dedupe keys
    no alert holds. An event's own changes end what is known of its incident (`done`)."""

    untracked: set[str]
    quiet: set[str]
    free_keys: set[str]

    def done(self, incident_id: str, dedupe_key: str) -> None:
        """The event of this incident has been handled: later ones in the run look again."""
        self.untracked.discard(incident_id)
        self.quiet.discard(incident_id)
        self.free_keys.discard(dedupe_key)


async def run_hints(*, session: AsyncSession, incident_ids: list[str], dedupe_keys: list[str]) -> RunHints:
    """Four queries for a whole run of events; the tracked incidents stay loaded in the session."""
    ids = list(dict.fromkeys(incident_ids))
    tracked = (await session.exec(select(TrackedIncident).where(TrackedIncident.id.in_(padded(ids))))).all()
    alerted = set(
        (
            await session.exec(select(Alert.incident_id).where(Alert.incident_id.in_(padded(ids))).distinct())
        ).all()
    )
    delivered = set(
        (
            await session.exec(
                select(Delivery.incident_id).where(Delivery.incident_id.in_(padded(ids))).distinct()
            )
        ).all()
    )
    taken = set(
        (await session.exec(select(Alert.dedupe_key).where(Alert.dedupe_key.in_(padded(dedupe_keys))))).all()
    )
    return RunHints(
        untracked=set(ids) - {t.id for t in tracked},
        quiet=set(ids) - alerted - delivered,
        free_keys=set(dedupe_keys) - taken,
    )


async def track_incident(
    *,
    session: AsyncSession,
    incident: IncidentSummary,
    now: datetime,
    closed: bool = False,
    hints: RunHints | None = None,
) -> TrackedIncident:
    """Remember (or update) what an event said of an incident."""
    row = None
    if hints is None or incident.id not in hints.untracked:
        row = await session.get(TrackedIncident, incident.id)
    if row is None:
        row = TrackedIncident(
            id=incident.id,
            code=incident.code,
            title=incident.title[:500],
            level=incident.level.value,
            status="open",
            received_at=incident.received_at,
            first_seen_at=now,
            updated_at=now,
        )
    row.level = incident.level.value
    row.title = incident.title[:500]
    row.warning_class = incident.warning_class.value if incident.warning_class else None
    row.lead_unit_code = incident.lead_unit.code if incident.lead_unit else None
    row.lead_unit_name = incident.lead_unit.name if incident.lead_unit else None
    row.updated_at = now
    row.summary = incident.model_dump(mode="json", include=set(IncidentSummary.model_fields))
    if closed:
        row.status = "closed"
        row.closed_at = now
    session.add(row)
    return row


# --- raising alerts --------------------------------------------------------------------------------


def _merge_steps(policies) -> tuple[list[dict[str, Any]], int, list[Step], bool]:
    """One chain from the matching policies (step i = the union of their step i), their cc lists."""
    chain: list[dict[str, Any]] = []
    for p in policies:
        for i, step in enumerate(p.chain):
            if i == len(chain):
                chain.append({"roles": [], "channels": [], "wait_seconds": step.wait.total_seconds()})
            s = chain[i]
            s["roles"] += [r for r in step.roles if r not in s["roles"]]
            s["channels"] += [c for c in step.channels if c not in s["channels"]]
            s["wait_seconds"] = min(s["wait_seconds"], step.wait.total_seconds())
    rounds = 1 + max([p.repeat for p in policies if p.chain] or [0])
    cc = [p.cc for p in policies if p.cc is not None]
    return chain, rounds, cc, any(p.immediate for p in policies)


async def raise_alert(
    *,
    session: AsyncSession,
    ctx: Context,
    kind: str,
    incident: IncidentSummary | None,
    dedupe_key: str,
    now: datetime,
    params: dict[str, Any] | None = None,
    unit_codes: list[str] | None = None,
    extra_roles: list[str] | None = None,
    policies=None,
    hints: RunHints | None = None,
) -> Alert | None:
    """Raise the alert an event calls for (once per dedupe key): tell the first step and the copy list,
    and schedule the escalation chain."""
    known_free = hints is not None and dedupe_key in hints.free_keys
    if (
        not known_free
        and (await session.exec(select(Alert.id).where(Alert.dedupe_key == dedupe_key))).first()
    ):
        return None
    quiet = hints is not None and incident is not None and incident.id in hints.quiet
    level = incident.level.value if incident else None
    wc = incident.warning_class.value if incident and incident.warning_class else None
    rt = incident.response_type.value if incident and incident.response_type else None
    if policies is None:
        policies = ctx.policy.matching(kind, level, wc, rt)
    if not policies and not extra_roles:
        return None
    chain, rounds, cc, immediate = _merge_steps(policies)
    if extra_roles:
        if chain:
            chain[0]["roles"] += [r for r in extra_roles if r not in chain[0]["roles"]]
        else:
            cc.append(Step(roles=tuple(extra_roles), channels=("sms", "wecom_app")))
    values = incident_values(ctx.directory, incident, params) if incident else dict(params or {})
    alert = Alert(
        id=str(uuid.uuid4()),
        incident_id=incident.id if incident else None,
        incident_code=incident.code if incident else None,
        kind=kind,
        level=level,
        policy="、".join(p.name for p in policies)[:200] or "requested",
        status="open" if chain else "info",
        step=0,
        chain=chain,
        rounds=rounds,
        context={
            "values": values,
            "lead_unit": incident.lead_unit.code if incident and incident.lead_unit else None,
            "co_units": [u.code for u in incident.co_units] if incident else [],
            "listed_units": list(unit_codes or []),
            "immediate": immediate,
        },
        dedupe_key=dedupe_key[:200],
        created_at=now,
        next_step_at=now + timedelta(seconds=chain[0]["wait_seconds"]) if chain else None,
    )
    if kind in INCIDENT_ALERTS and incident is not None and not quiet:
        await _supersede(session=session, incident_id=incident.id, now=now)
    session.add(alert)
    targets: list[tuple[Recipient, str]] = []
    if chain:
        targets += _targets(ctx, alert, chain[0]["roles"], chain[0]["channels"], now)
    for step in cc:
        targets += _targets(ctx, alert, step.roles, step.channels, now)
    await _deliver_to(session=session, ctx=ctx, alert=alert, step=0, targets=targets, now=now, quiet=quiet)
    if chain:
        schedule_job(
            session,
            kind="escalate",
            key=f"escalate:{alert.id}:1",
            subject=alert.id,
            due_at=alert.next_step_at,
            now=now,
            payload={"step": 1},
        )
    return alert


async def _supersede(*, session: AsyncSession, incident_id: str, now: datetime) -> None:
    rows = (
        await session.exec(
            select(Alert).where(
                Alert.incident_id == incident_id, Alert.kind.in_(INCIDENT_ALERTS), Alert.status == "open"
            )
        )
    ).all()
    for a in rows:
        a.status = "superseded"
        a.ended_at = now
        session.add(a)
        await _end_jobs(session=session, subject=a.id, outcome="superseded", now=now)
        await _cancel_unsent(session=session, alert_id=a.id, now=now, reason="superseded by a newer alert")


def _targets(ctx: Context, alert: Alert, roles, channels, now: datetime) -> list[tuple[Recipient, str]]:
    c = alert.context
    people = ctx.directory.resolve(
        list(roles),
        now=now,
        lead_unit=c.get("lead_unit"),
        co_units=c.get("co_units") or [],
        listed_units=c.get("listed_units") or [],
    )
    return [(r, ch) for r in people for ch in channels]


def effective_channel(ctx: Context, channel: str) -> str:
    """The channel actually used: the configured one, or the console in the demo when it is not."""
    if channel in ctx.configured_channels or channel == "console":
        return channel
    return "console" if ctx.settings.fallback_to_console else channel


def ack_link(ctx: Context, ref: str, now: datetime) -> str:
    """The signed acknowledgement link of a delivery."""
    token = acklink.make_token(ctx.settings.ack_secret, ref, now + ctx.policy.ack_link_ttl)
    return f"{ctx.settings.public_url.rstrip('/')}/api/v1/notifications/ack/{token}"


def _render(ctx: Context, template: str, values: dict, channel: str):
    sms = channel == "sms"
    return render(
        ctx.policy.templates[template],
        values,
        sign=ctx.policy.sms_sign if sms else "",
        max_segments=ctx.policy.sms_max_segments if sms else 0,
    )


async def _deliver_to(
    *,
    session: AsyncSession,
    ctx: Context,
    alert: Alert,
    step: int,
    targets,
    now: datetime,
    quiet: bool = False,
) -> list[Delivery]:
    """Create the deliveries of one step: one per recipient and channel, grouped per incident (`quiet`:
    the incident is known to have had no delivery yet)."""
    out: list[Delivery] = []
    seen: set[tuple[str, str]] = set()
    grouped = bool(alert.incident_id and not alert.context.get("immediate"))
    if grouped and not quiet:
        pending, last_sent = await _recent_deliveries(session, ctx, alert, now)
    else:
        pending, last_sent = {}, {}
    for recipient, wanted in targets:
        channel = effective_channel(ctx, wanted)
        address = recipient.address(channel)
        if not address or (recipient.id, channel) in seen:
            continue
        seen.add((recipient.id, channel))
        item = {"kind": alert.kind, "alert_id": alert.id, "at": now.isoformat(), "text": _item_text(alert)}
        held_until = None
        if grouped:
            waiting = pending.get((recipient.id, channel))
            if waiting is not None:
                _merge_into(ctx, waiting, item, alert)
                session.add(waiting)
                continue
            last = last_sent.get((recipient.id, channel))
            held_until = last + ctx.policy.repeat_interval if last is not None else None
        ref = acklink.new_ref()
        values = {**alert.context.get("values", {}), "link": ack_link(ctx, ref, now)}
        rendered = _render(
            ctx, alert.kind if alert.kind in ctx.policy.templates else "graded", values, channel
        )
        d = Delivery(
            id=str(uuid.uuid4()),
            alert_id=alert.id,
            step=step,
            incident_id=alert.incident_id,
            incident_code=alert.incident_code,
            event=alert.kind,
            level=alert.level,
            recipient_id=recipient.id,
            recipient_name=recipient.name[:100],
            channel=channel,
            address_masked=mask(address),
            template=alert.kind,
            params=rendered.params,
            items=[item],
            content=rendered.text,
            segments=rendered.segments if channel == "sms" else 0,
            status="queued",
            ack_ref=ref,
            dedupe_key=f"{alert.id}:{step}:{recipient.id}:{channel}"[:200],
            created_at=now,
            next_attempt_at=held_until or now,
        )
        session.add(d)
        metrics.DELIVERIES.labels(channel, "queued").inc()
        out.append(d)
    if out:
        session.info["notify_dispatch"] = True  # wake the dispatcher after commit
    return out


def _item_text(alert: Alert) -> str:
    v = alert.context.get("values", {})
    label = KIND_TEXT.get(alert.kind, alert.kind)
    if alert.kind == "escalated":
        return f"{label}为{v.get('level')}级"
    return label


async def _recent_deliveries(session, ctx: Context, alert: Alert, now: datetime):
    """For the repeat interval, per (recipient, channel) of the incident: the delivery still waiting
    for it to pass (new items fold into it), and when another alert last reached them."""
    waiting = and_(
        Delivery.status == "queued",
        Delivery.attempts == 0,
        Delivery.next_attempt_at > now,
        or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
    )
    sent = and_(
        Delivery.sent_at > now - ctx.policy.repeat_interval,
        or_(Delivery.alert_id.is_(None), Delivery.alert_id != alert.id),
    )
    # One query for every recipient of the step (the step's people are few, their history short).
    q = select(Delivery, waiting.label("waiting"), sent.label("sent")).where(
        Delivery.incident_id == alert.incident_id, or_(waiting, sent)
    )
    pending: dict[tuple[str, str], Delivery] = {}
    last_sent: dict[tuple[str, str], datetime] = {}
    for d, is_waiting, is_sent in (await session.exec(q)).all():
        key = (d.recipient_id, d.channel)
        if is_waiting and (key not in pending or d.next_attempt_at < pending[key].next_attempt_at):
            pending[key] = d
        if is_sent and (key not in last_sent or d.sent_at > last_sent[key]):
            last_sent[key] = d.sent_at
    return pending, last_sent


def _merge_into(ctx: Context, d: Delivery, item: dict, alert: Alert) -> None:
    """Fold one more alert into a waiting delivery; it goes out as one summary."""
    d.items = [*d.items, item]
    counts: dict[str, int] = {}
    for it in d.items:
        counts[it["text"]] = counts.get(it["text"], 0) + 1
    items = "、".join(f"{k}×{n}" if n > 1 else k for k, n in counts.items())
    values = {
        **alert.context.get("values", {}),
        "count": len(d.items),
        "items": items,
        "link": ack_link(ctx, d.ack_ref, datetime.fromisoformat(item["at"])),
    }
    rendered = _render(ctx, "grouped", values, d.channel)
    d.template = "grouped"
    d.params = rendered.params
    d.content = rendered.text
    d.segments = rendered.segments if d.channel == "sms" else 0
    metrics.GROUPED.labels(d.channel).inc()


# --- escalation steps, run by the scheduler --------------------------------------------------------


def schedule_job(
    session, *, kind: str, key: str, subject: str | None, due_at: datetime, now: datetime, payload=None
):
    """Queue a job in the caller's transaction."""
    session.add(
        Job(kind=kind, key=key[:200], subject=subject, due_at=due_at, payload=payload or {}, created_at=now)
    )


async def _end_jobs(*, session: AsyncSession, subject: str, outcome: str, now: datetime) -> None:
    await session.exec(
        update(Job).where(Job.subject == subject, Job.done_at.is_(None)).values(done_at=now, outcome=outcome)
    )


async def escalate(*, session: AsyncSession, ctx: Context, alert_id: str, step: int, now: datetime) -> str:
    """The next step of an alert's chain, unless someone acknowledged or the matter ended."""
    alert = await session.get(Alert, alert_id)
    if alert is None or alert.status != "open":
        return "ended"
    total = len(alert.chain) * alert.rounds
    if step >= total:
        alert.status = "unacknowledged"
        alert.ended_at = now
        alert.next_step_at = None
        session.add(alert)
        metrics.UNACKNOWLEDGED.labels(alert.kind).inc()
        log.warning(
            "alert %s (%s %s) ran its chain with no acknowledgement",
            alert.id,
            alert.kind,
            alert.incident_code,
        )
        return "unacknowledged"
    s = alert.chain[step % len(alert.chain)]
    targets = _targets(ctx, alert, s["roles"], s["channels"], now)
    await _deliver_to(session=session, ctx=ctx, alert=alert, step=step, targets=targets, now=now)
    alert.step = step
    alert.next_step_at = now + timedelta(seconds=s["wait_seconds"])
    session.add(alert)
    schedule_job(
        session,
        kind="escalate",
        key=f"escalate:{alert.id}:{step + 1}",
        subject=alert.id,
        due_at=alert.next_step_at,
        now=now,
        payload={"step": step + 1},
    )
    metrics.ESCALATIONS.labels(alert.kind).inc()
    return f"step {step}"


# --- acknowledgement -------------------------------------------------------------------------------


async def acknowledge(*, session: AsyncSession, delivery_id: str, actor: str, now: datetime) -> Delivery:
    """Acknowledge a delivery (the first acknowledgement stands); the alerts it carries stop escalating."""
    delivery = await session.get(Delivery, delivery_id)
    if delivery is None:
        raise not_found("notification", delivery_id)
    await _ack(session=session, delivery=delivery, actor=actor, now=now)
    return delivery


async def acknowledge_by_ref(*, session: AsyncSession, ref: str, now: datetime) -> Delivery:
    """Acknowledge through the signed link of a delivery (the recipient is the actor)."""
    delivery = (await session.exec(select(Delivery).where(Delivery.ack_ref == ref))).first()
    if delivery is None:
        raise not_found("notification")
    await _ack(session=session, delivery=delivery, actor=f"link:{delivery.recipient_id}", now=now)
    return delivery


async def delivery_by_ref(*, session: AsyncSession, ref: str) -> Delivery:
    """The delivery an acknowledgement link names."""
    delivery = (await session.exec(select(Delivery).where(Delivery.ack_ref == ref))).first()
    if delivery is None:
        raise not_found("notification")
    return delivery


async def _ack(*, session: AsyncSession, delivery: Delivery, actor: str, now: datetime) -> None:
    if delivery.status == "cancelled":
        raise AppError(409, "cancelled", "this notification was cancelled and needs no acknowledgement")
    if delivery.acked_at is None:
        delivery.acked_at = now
        delivery.acked_by = actor[:64]
        session.add(delivery)
        metrics.ACKS.labels(delivery.channel).inc()
    alert_ids = {delivery.alert_id, *(it.get("alert_id") for it in delivery.items or [])} - {None}
    for alert_id in alert_ids:
        alert = await session.get(Alert, alert_id)
        if alert is None or alert.status != "open":
            continue
        alert.status = "acked"
        alert.acked_at = now
        alert.acked_by = actor[:64]
        alert.ended_at = now
        alert.next_step_at = None
        session.add(alert)
        await _end_jobs(session=session, subject=alert.id, outcome="acked", now=now)
        await _cancel_unsent(session=session, alert_id=alert.id, now=now, reason="acknowledged")


async def _cancel_unsent(*, session: AsyncSession, alert_id: str, now: datetime, reason: str) -> None:
    """Chain deliveries of an ended alert that have not gone out yet are not sent."""
    await session.exec(
        update(Delivery)
        .where(
            Delivery.alert_id == alert_id,
            Delivery.status == "queued",
            Delivery.attempts == 0,
            Delivery.step > 0,
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
        )
        .values(status="cancelled", last_error=reason)
    )


async def close_incident(*, session: AsyncSession, incident: IncidentSummary, now: datetime) -> int:
    """An incident closed: its chains and 续报 stop, and what still waits for it is not sent."""
    await track_incident(session=session, incident=incident, now=now, closed=True)
    alerts = (
        await session.exec(select(Alert).where(Alert.incident_id == incident.id, Alert.status == "open"))
    ).all()
    for a in alerts:
        a.status = "closed"
        a.ended_at = now
        a.next_step_at = None
        session.add(a)
        await _end_jobs(session=session, subject=a.id, outcome="incident closed", now=now)
    await _end_jobs(session=session, subject=incident.id, outcome="incident closed", now=now)
    await session.exec(
        update(Delivery)
        .where(
            Delivery.incident_id == incident.id,
            Delivery.status == "queued",
            Delivery.attempts == 0,
            Delivery.next_attempt_at > now,
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
        )
        .values(status="cancelled", last_error="incident closed")
    )
    return len(alerts)


# --- delivery receipts (状态回执) ----------------------------------------------------------------------


@dataclass
class Receipt:
    """One provider's word on whether an SMS reached the phone."""

    message_id: str | None
    delivery_id: str | None
    delivered: bool
    at: datetime | None
    code: str | None


async def apply_receipts(
    *, session: AsyncSession, provider: str, receipts: list[Receipt], now: datetime
) -> int:
    """Mark sent SMS delivered (or failed) as the provider reports; returns how many matched."""
    matched = 0
    for r in receipts:
        q = select(Delivery).where(Delivery.provider == provider, Delivery.channel == "sms")
        if r.message_id:
            q = q.where(Delivery.provider_message_id == r.message_id)
        elif r.delivery_id:
            q = q.where(Delivery.id == r.delivery_id)
        else:
            continue
        d = (await session.exec(q)).first()
        if d is None or d.status not in ("sent", "delivered", "failed"):
            continue
        matched += 1
        if r.delivered:
            if d.status != "delivered":
                d.status = "delivered"
                d.delivered_at = r.at or now
                metrics.DELIVERIES.labels(d.channel, "delivered").inc()
        elif d.status == "sent":
            d.status = "failed"
            d.failed_at = r.at or now
            d.last_error = f"receipt: {r.code or 'not delivered'}"[:1000]
            metrics.DELIVERIES.labels(d.channel, "failed").inc()
        session.add(d)
    return matched


# --- reading ---------------------------------------------------------------------------------------


async def list_deliveries(
    *,
    session: AsyncSession,
    incident_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
    channel: str | None = None,
    recipient_id: str | None = None,
    alert_id: str | None = None,
    event: str | None = None,
) -> tuple[list[Delivery], int]:
    """Deliveries, newest first, and how many match."""
    q = select(Delivery)
    for col, value in (
        (Delivery.incident_id, incident_id),
        (Delivery.status, status),
        (Delivery.channel, channel),
        (Delivery.recipient_id, recipient_id),
        (Delivery.alert_id, alert_id),
        (Delivery.event, event),
    ):
        if value:
            q = q.where(col == value)
    total = (await session.exec(select(func.count()).select_from(q.subquery()))).one()
    rows = (
        await session.exec(q.order_by(Delivery.created_at.desc(), Delivery.id).limit(limit).offset(offset))
    ).all()
    return list(rows), total


def record_of(d: Delivery) -> NotificationRecord:
    """A delivery as the archive keeps it."""
    return NotificationRecord(
        id=d.id,
        incident_id=d.incident_id,
        event=d.event,
        recipient=d.recipient_name,
        channel=d.channel,
        status=d.status,
        attempts=d.attempts,
        created_at=d.created_at,
        sent_at=d.sent_at,
        acked_at=d.acked_at,
        acked_by=d.acked_by,
    )


# --- 续报 and the daily digest, run by the scheduler -----------------------------------------------


async def start_follow_up(
    *, session: AsyncSession, ctx: Context, incident: IncidentSummary, now: datetime
) -> None:
    """While a level I–II incident is open, 续报 go out at the level's interval: make sure one is due."""
    fu = ctx.policy.follow_up
    interval = fu.intervals.get(incident.level.value)
    if incident.level.value not in fu.levels or interval is None:
        return
    due = now + interval
    pending = (
        await session.exec(
            select(Job).where(Job.subject == incident.id, Job.kind == "follow_up", Job.done_at.is_(None))
        )
    ).first()
    if pending is not None:
        if pending.due_at > due:  # the level rose: the shorter interval applies from now
            pending.due_at = due
            session.add(pending)
        return
    seq = (
        await session.exec(select(func.count()).where(Job.subject == incident.id, Job.kind == "follow_up"))
    ).one() + 1
    schedule_job(
        session,
        kind="follow_up",
        key=f"follow_up:{incident.id}:{seq}",
        subject=incident.id,
        due_at=due,
        now=now,
        payload={"seq": seq},
    )


def _hours(delta: timedelta) -> str:
    h = delta.total_seconds() / 3600
    return f"{h:.0f}小时" if h >= 1 else f"{max(1, round(h * 60))}分钟"


async def follow_up(*, session: AsyncSession, ctx: Context, incident_id: str, seq: int, now: datetime) -> str:
    """One 续报 of an open level I–II incident, and the next one scheduled."""
    row = await session.get(TrackedIncident, incident_id)
    if row is None or row.status != "open":
        return "ended"
    fu = ctx.policy.follow_up
    interval = fu.intervals.get(row.level)
    if row.level not in fu.levels or interval is None:
        return "level no longer followed"
    incident = IncidentSummary.model_validate(row.summary)
    progress = f"已持续{_hours(now - row.received_at)}，仍在处置，承办：{row.lead_unit_name or '待分派'}"
    policy = _periodic_policy("续报", "follow_up", fu.roles, fu.channels)
    await raise_alert(
        session=session,
        ctx=ctx,
        kind="follow_up",
        incident=incident,
        dedupe_key=f"follow_up:{incident_id}:{seq}",
        now=now,
        params={"progress": progress},
        policies=[policy],
    )
    # After downtime the next one counts from now: missed 续报 are not sent in a burst.
    schedule_job(
        session,
        kind="follow_up",
        key=f"follow_up:{incident_id}:{seq + 1}",
        subject=incident_id,
        due_at=now + interval,
        now=now,
        payload={"seq": seq + 1},
    )
    return f"follow-up {seq}"


def _periodic_policy(name: str, event: str, roles, channels):
    from services.notify.policy import Policy

    return Policy(name=name, events=(event,), cc=Step(roles=tuple(roles), channels=tuple(channels)))


def next_digest_at(ctx: Context, after: datetime) -> datetime:
    """The first digest time (local) strictly after a moment."""
    at = ctx.policy.digest.at
    local = after.astimezone(ctx.directory.tz)
    candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(after.tzinfo)


async def ensure_digest_job(*, session: AsyncSession, ctx: Context, now: datetime) -> None:
    """Keep one digest scheduled (the first time, at the next digest time)."""
    pending = (await session.exec(select(Job.id).where(Job.kind == "digest", Job.done_at.is_(None)))).first()
    if pending is not None:
        return
    last = (await session.exec(select(func.max(Job.due_at)).where(Job.kind == "digest"))).one()
    due = next_digest_at(ctx, last or now)
    day = due.astimezone(ctx.directory.tz).date().isoformat()
    schedule_job(
        session,
        kind="digest",
        key=f"digest:{day}",
        subject=None,
        due_at=due,
        now=now,
        payload={"since": (last or due - timedelta(days=1)).isoformat()},
    )


async def digest(
    *, session: AsyncSession, ctx: Context, due_at: datetime, since: datetime, now: datetime
) -> str:
    """The 舆情日报 for the period up to its due time (sent late, once, after downtime)."""
    level_counts = dict(
        (
            await session.exec(
                select(TrackedIncident.level, func.count())
                .where(TrackedIncident.first_seen_at >= since, TrackedIncident.first_seen_at < due_at)
                .group_by(TrackedIncident.level)
            )
        ).all()
    )
    closed = (
        await session.exec(
            select(func.count()).where(TrackedIncident.closed_at >= since, TrackedIncident.closed_at < due_at)
        )
    ).one()
    open_major = (
        await session.exec(
            select(TrackedIncident)
            .where(TrackedIncident.status == "open", TrackedIncident.level.in_(["I", "II"]))
            .order_by(TrackedIncident.level, TrackedIncident.received_at)
            .limit(ctx.policy.digest.list_open_max)
        )
    ).all()
    unacked = (
        await session.exec(
            select(func.count()).where(
                Alert.status == "unacknowledged", Alert.ended_at >= since, Alert.ended_at < due_at
            )
        )
    ).one()
    total = sum(level_counts.values())
    by_level = "、".join(
        f"{lv}级{level_counts[lv]}件" for lv in ("I", "II", "III", "IV") if level_counts.get(lv)
    )
    summary = f"新增舆情{total}件" + (f"（{by_level}）" if by_level else "") + f"，办结{closed}件"
    if open_major:
        summary += "；在办重大舆情：" + "；".join(f"{r.level}级{r.code}{r.title[:20]}" for r in open_major)
    else:
        summary += "；无在办重大舆情"
    if unacked:
        summary += f"；{unacked}条告警无人确认"
    local_day = due_at.astimezone(ctx.directory.tz)
    dg = ctx.policy.digest
    alert = await raise_alert(
        session=session,
        ctx=ctx,
        kind="digest",
        incident=None,
        dedupe_key=f"digest:{local_day.date().isoformat()}",
        now=now,
        params={"date": f"{ctx.directory.city}{local_day:%m月%d日}", "summary": summary},
        policies=[_periodic_policy("舆情日报", "digest", dg.roles, dg.channels)],
    )
    nxt = next_digest_at(ctx, max(now, due_at))
    day = nxt.astimezone(ctx.directory.tz).date().isoformat()
    schedule_job(
        session,
        kind="digest",
        key=f"digest:{day}",
        subject=None,
        due_at=nxt,
        now=now,
        payload={"since": due_at.isoformat()},
    )
    return "sent" if alert else "nothing to send"
