"""From messages to graded incidents: open a new incident or join the same matter, regrade and escalate,
merge and split, and analysts' reviews. Database and events here; the computing is in grader/clustering.
"""

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Histogram
from sqlalchemy import func
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.context import current_traceparent
from kit.db import padded
from kit.errors import AppError, conflict, invalid, not_found
from kit.outbox import Outbox
from schema.dto import Category, Factor
from schema.enums import IncidentStatus, Level
from schema.events import IncidentEscalated, IncidentEscalatedData, IncidentGraded, MessageReceivedData
from services.grading import metrics, workflow
from services.grading.clustering import Candidate, Features
from services.grading.grader import Engine, Grading
from services.grading.heat import HeatInput, heat_of, interactions_of
from services.grading.models import Incident, IncidentMessage, IncidentReview, MatterSignature
from services.grading.runtime import GradingRuntime, cluster_lock
from services.grading.scoring import Facts
from services.grading.service import (
    message_ids_of,
    new_incident_code,
    record,
    status_event,
    summary_of,
)
from services.grading.text import message_text

log = logging.getLogger("minsheng.grading.matters")

# Statuses whose incident still takes new messages of its matter (a published reply may be challenged).
JOINABLE = {
    IncidentStatus.received.value,
    IncidentStatus.graded.value,
    IncidentStatus.assigned.value,
    IncidentStatus.signed.value,
    IncidentStatus.replied.value,
    IncidentStatus.approved.value,
    IncidentStatus.published.value,
    IncidentStatus.returned.value,
    IncidentStatus.reopened.value,
}
BATCH_MESSAGES = Histogram(
    "minsheng_grading_ingest_batch_messages",
    "Messages graded together in one transaction (a relay delivery)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
DIGEST_LIMIT = 20_000  # characters of message text kept on the incident for regrading (storage bound)
METRIC_KEYS = ("views", "reposts", "comments", "likes", "dislikes")


def _grading_record(g: Grading) -> dict[str, Any]:
    """A message's own grading as stored beside it (and as the incident's original)."""
    return {
        "category": g.category.model_dump() if g.category else None,
        "department_type": g.department_type,
        "request_type": g.request_type.value,
        "request_type_inferred": g.request_type_inferred,
        "districts": g.places.districts,
        "streets": g.places.streets,
        "level": g.level.value,
        "score": g.score,
        "factors": [f.model_dump() for f in g.factors],
        "warning_class": g.warning_class.value,
        "response_type": g.response_type.value,
        "lead_unit": {"code": g.route.lead.code, "name": g.route.lead.name},
        "co_units": [{"code": u.code, "name": u.name} for u in g.route.co],
        "route_reason": g.route.reason,
        "route_rule": g.route.rule,
        "classification": _classification(g),
        "policy_version": g.policy_version,
    }


def _classification(g: Grading) -> dict[str, Any]:
    p = g.prediction
    return {
        "source": p.source,
        "confidence": p.confidence,
        "low_confidence": p.low_confidence,
        "runners_up": [{"level1": lb, "confidence": c} for lb, c in p.runners_up],
    }


def _append_digest(incident: Incident, msg_title: str | None, content: str) -> None:
    room = DIGEST_LIMIT - len(incident.digest_text)
    if room > 0:
        piece = message_text(msg_title, content)[: min(room, 600)]
        incident.digest_text = (incident.digest_text + "\n" + piece) if incident.digest_text else piece


def _add_metrics(total: dict[str, Any], metrics_in: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(total or {})
    for k in METRIC_KEYS:
        out[k] = int(out.get(k, 0)) + int((metrics_in or {}).get(k, 0) or 0)
    return out


@dataclass
class _Counts:
    """An incident's messages in the growth window, and in the heat window and the one before it."""

    growth: int = 0
    heat_recent: int = 0
    heat_previous: int = 0

    def add(self, engine: Engine, received: list[datetime], now: datetime) -> "_Counts":
        """The counts with messages not yet in the database added."""
        growth = now - timedelta(hours=engine.policy.cluster.growth_window_hours)
        heat = now - timedelta(hours=engine.policy.heat.growth_window_hours)
        before = heat - timedelta(hours=engine.policy.heat.growth_window_hours)
        return _Counts(
            self.growth + sum(1 for t in received if t > growth),
            self.heat_recent + sum(1 for t in received if t > heat),
            self.heat_previous + sum(1 for t in received if before < t <= heat),
        )


async def _counts_of(
    session: AsyncSession, engine: Engine, incident_ids: list[str], now: datetime
) -> dict[str, _Counts]:
    """The windows' counts of several incidents in one grouped query."""
    m = IncidentMessage.__table__.c
    growth = now - timedelta(hours=engine.policy.cluster.growth_window_hours)
    heat = now - timedelta(hours=engine.policy.heat.growth_window_hours)
    before = heat - timedelta(hours=engine.policy.heat.growth_window_hours)
    q = (
        sa_select(
            m.incident_id,
            func.count().filter(m.received_at > growth),
            func.count().filter(m.received_at > heat),
            func.count().filter((m.received_at > before) & (m.received_at <= heat)),
        )
        .where(m.incident_id.in_(padded(incident_ids)))
        .group_by(m.incident_id)
    )
    rows = (await (await session.connection()).execute(q)).all()
    return {r[0]: _Counts(int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in rows}


def _score(
    *, session: AsyncSession, engine: Engine, incident: Incident, now: datetime, counts: _Counts, why: str
) -> Level | None:
    """Regrade an incident as a whole, heat and stage too; the level it had if it rose, else None."""
    policy = engine.policy
    facts = Facts(
        text=incident.digest_text,
        received_at=incident.received_at,
        now=now,
        message_count=incident.message_count,
        channels=incident.channels,
        metrics=incident.metrics_total,
        recent_messages=counts.growth,
        superior_issuers=incident.superior_issuers,
        districts=incident.districts,
        request_type=incident.request_type,
    )
    s = engine.score_incident(facts)
    heat, stage, parts = heat_of(
        policy,
        HeatInput(
            messages=incident.message_count,
            interactions=interactions_of(incident.metrics_total),
            channels=incident.channels,
            recent=counts.heat_recent,
            previous=counts.heat_previous,
            last_message_at=incident.last_message_at,
            now=now,
        ),
    )
    incident.heat, incident.stage, incident.heat_detail = heat, stage, parts
    previous_level = Level(incident.level)
    incident.machine_level = s.level.value
    incident.score = s.score
    incident.factors = [f.model_dump() for f in s.factors]
    incident.warning_class = s.warning_class.value
    incident.response_type = s.response_type.value
    incident.policy_version = engine.bundle.policy_version
    new_level = s.level
    if "level" in incident.review_pins:
        # An analyst fixed the level: only a situation worse than the one reviewed raises it again.
        at_review = Level(incident.machine_level_at_review or previous_level.value)
        new_level = (
            s.level
            if s.level.rank < at_review.rank and s.level.rank < previous_level.rank
            else previous_level
        )
    if new_level != previous_level:
        incident.level = new_level.value
        d = engine.deadlines(new_level, incident.received_at)
        incident.report_due, incident.first_release_due, incident.response_due = (
            d.report_due,
            d.first_release_due,
            d.response_due,
        )
    if new_level.rank >= previous_level.rank:
        return None
    record(
        session,
        incident,
        action="escalated",
        at=now,
        actor="system",
        note=f"升级：{previous_level.value} → {new_level.value}（{s.score} 分）；{why}",
    )
    return previous_level


def _escalate(
    session: AsyncSession, outbox: Outbox, incident: Incident, ids: list[str], previous: Level
) -> None:
    outbox.add(
        session,
        IncidentEscalated.build(
            source="grading",
            trace=current_traceparent(),
            data=IncidentEscalatedData(**summary_of(incident, ids).model_dump(), previous_level=previous),
        ),
    )
    metrics.ESCALATED.inc()


async def _apply_score(
    *, session: AsyncSession, outbox: Outbox, engine: Engine, incident: Incident, now: datetime, why: str
) -> None:
    """Regrade an incident as a whole; heat and stage too; escalate when its level rises."""
    await session.flush()  # the counts read the messages as they are now
    counts = (await _counts_of(session, engine, [incident.id], now)).get(incident.id, _Counts())
    previous = _score(session=session, engine=engine, incident=incident, now=now, counts=counts, why=why)
    if previous is not None:
        ids = await message_ids_of(session=session, incident_id=incident.id)
        _escalate(session, outbox, incident, ids, previous)


class _Decisions:
    """What one batch knows of the incidents its messages may join: loaded once, or opened in it.

    Picking needs only an incident's status and what it was merged into; the whole row (a dozen JSON
    columns) is loaded only for the incidents messages join."""

    def __init__(self, session: AsyncSession):
        self.session = session
        self.states: dict[str, tuple[str, str | None] | None] = {}  # id → (status, merged_into)
        self.incidents: dict[str, Incident] = {}  # whole rows: opened in the batch or joined
        self.message_incident: dict[str, str | None] = {}

    def _current(self, c: Candidate) -> str:
        return (self.message_incident.get(c.message_id) if c.message_id else None) or c.incident_id

    def opened(self, incident: Incident) -> None:
        """An incident this batch opened."""
        self.incidents[incident.id] = incident
        self.states[incident.id] = (incident.status, None)

    async def load(self, message_ids: list[str], incident_ids: list[str]) -> None:
        """Load messages' incidents and incidents' states (and what those were merged into) in few queries."""
        mids = [m for m in set(message_ids) if m not in self.message_incident]
        conn = await self.session.connection()
        if mids:
            q = sa_select(IncidentMessage.message_id, IncidentMessage.incident_id).where(
                IncidentMessage.message_id.in_(padded(mids))
            )
            found = dict((await conn.execute(q)).all())
            self.message_incident.update({m: found.get(m) for m in mids})
        wanted = {self.message_incident.get(m) or "" for m in message_ids} | set(incident_ids)
        wanted.discard("")
        c = Incident.__table__.c
        while wanted := wanted - self.states.keys():
            rows = (
                await conn.execute(sa_select(c.id, c.status, c.merged_into).where(c.id.in_(padded(wanted))))
            ).all()
            for i in wanted:
                self.states[i] = None
            for incident_id, status, merged_into in rows:
                self.states[incident_id] = (status, merged_into)
            wanted = {r.merged_into for r in rows if r.merged_into}

    async def pick(self, candidates: list[Candidate]) -> tuple[str | None, Candidate | None]:
        """The first candidate whose incident (after merges) still takes messages: its id."""
        await self.load(
            [c.message_id for c in candidates if c.message_id], [c.incident_id for c in candidates]
        )
        for c in candidates:
            incident_id = self._current(c)
            state, hops = self.states.get(incident_id), 0
            while state is not None and state[1] and hops < 10:
                incident_id = state[1]
                state, hops = self.states.get(incident_id), hops + 1
            if state is not None and state[0] in JOINABLE:
                return incident_id, c
        return None, None

    async def load_whole(self, incident_ids: set[str]) -> None:
        """The whole rows of incidents messages join, in one query."""
        wanted = incident_ids - self.incidents.keys()
        if wanted:
            rows = (await self.session.exec(select(Incident).where(Incident.id.in_(padded(wanted))))).all()
            self.incidents.update({row.id: row for row in rows})


async def ingest(
    *, session: AsyncSession, outbox: Outbox, rt: GradingRuntime, msg: MessageReceivedData, now: datetime
) -> Incident:
    """Grade a received message and put it into its incident (new or the same matter's)."""
    placed = await ingest_many(session=session, outbox=outbox, rt=rt, msgs=[msg], now=now)
    return await session.get(Incident, placed[msg.message_id])


async def ingest_many(
    *,
    session: AsyncSession,
    outbox: Outbox,
    rt: GradingRuntime,
    msgs: list[MessageReceivedData],
    now: datetime,
) -> dict[str, str]:
    """Grade received messages into their incidents and commit the caller's transaction with them;
    returns each message's incident id.

    One lock, one catch-up on other replicas' messages and a few statements for the whole batch, yet
    each decision sees the ones before it (two messages of one matter in a batch join one incident).
    An incident several messages join is regraded once, with all of them, at the end of the batch.
    """
    started = time.perf_counter()
    ids = list(dict.fromkeys(m.message_id for m in msgs))
    q = sa_select(IncidentMessage.message_id, IncidentMessage.incident_id).where(
        IncidentMessage.message_id.in_(padded(ids))
    )
    placed: dict[str, str] = dict((await (await session.connection()).execute(q)).all())
    fresh: list[MessageReceivedData] = []
    for m in msgs:  # one delivered again under another event id is already in an incident
        if m.message_id not in placed:
            placed[m.message_id] = ""
            fresh.append(m)
    if not fresh:
        return placed
    engine, index = rt.engine, rt.index
    graded = await asyncio.to_thread(_grade_and_featurize, engine, index, fresh, now)
    async with rt.lock:
        await cluster_lock(session)
        await rt.sync_index(session, now=now)
        watermark, added = index.watermark, {}
        try:
            with session.no_autoflush:  # one flush for the batch, not one per query
                top = await _decide(
                    session=session,
                    outbox=outbox,
                    rt=rt,
                    batch=list(zip(fresh, graded, strict=True)),
                    now=now,
                    started=started,
                    placed=placed,
                    added=added,
                )
            await session.commit()
        except BaseException:
            index.remove(list(added), added)  # the transaction did not commit: neither did they
            index.watermark = watermark
            raise
        index.watermark = max(index.watermark, top)
    if len(index) // 1000 != (len(index) - len(fresh)) // 1000:
        index.evict(now - timedelta(days=rt.bundle.policy.clustering.window_days))
    share = (time.perf_counter() - started) / len(fresh)  # the batch's time, shared by its messages
    for m, (g, _) in zip(fresh, graded, strict=True):
        metrics.observe_grading(g, started=time.perf_counter() - share, received_at=m.received_at, now=now)
    BATCH_MESSAGES.observe(len(fresh))
    return placed


async def _decide(
    *,
    session: AsyncSession,
    outbox: Outbox,
    rt: GradingRuntime,
    batch: list[tuple[MessageReceivedData, tuple[Grading, Features]]],
    now: datetime,
    started: float,
    placed: dict[str, str],
    added: dict[str, Features],
) -> int:
    """Place each message in order, regrade the incidents that grew, write the batch; returns the highest
    signature sequence written."""
    engine, index = rt.engine, rt.index
    decisions = _Decisions(session)
    # Most candidates existed before the batch: load them all at once.
    related = [index.related(f, m.received_at) for m, (_, f) in batch]
    await decisions.load([m for ms, _ in related for m in ms], [i for _, incs in related for i in incs])
    rows: list[dict[str, Any]] = []
    opened: list[Incident] = []
    joins: list[tuple[MessageReceivedData, Grading, str, Candidate]] = []
    joiners: dict[str, list[str]] = {}
    arrived: dict[str, list[tuple[datetime, str]]] = {}
    for msg, (g, f) in batch:
        target, why = await decisions.pick(index.lookup(f, msg.received_at))
        if target is None:
            incident = _new_incident(session=session, outbox=outbox, engine=engine, g=g, msg=msg, now=now)
            decisions.opened(incident)
            opened.append(incident)
            target, joined_by, similarity = incident.id, "new", None
        else:
            joins.append((msg, g, target, why))
            joined_by, similarity = why.kind, why.similarity
        decisions.message_incident[msg.message_id] = target
        arrived.setdefault(target, []).append((msg.received_at, msg.message_id))
        placed[msg.message_id] = target
        rows.append(_message_row(msg, g, target, joined_by, similarity))
        index.add(msg.message_id, target, f, msg.received_at)
        added[msg.message_id] = f
    # Then the joins, in arrival order, on the whole rows of the incidents joined.
    await decisions.load_whole({target for _, _, target, _ in joins})
    for msg, g, target, why in joins:
        _join(session=session, incident=decisions.incidents[target], g=g, msg=msg, why=why, now=now)
        joiners.setdefault(target, []).append(msg.message_id)
    if joiners:
        await _regrade_joined(session, outbox, engine, decisions, joiners, arrived, now)
    # The new incidents go first, in one statement: the ORM orders a flush's tables by class name, so
    # rows pointing at an incident (its 批办, say) could otherwise be written before it.
    for incident in opened:
        session.expunge(incident)
    if opened:
        cols = [c.name for c in Incident.__table__.columns]
        await (await session.connection()).execute(
            sa_insert(Incident.__table__), [{c: getattr(i, c) for c in cols} for i in opened]
        )
    await session.flush()
    graded_at = now + timedelta(seconds=time.perf_counter() - started)
    for row in rows:
        row["graded_at"] = graded_at
    await (await session.connection()).execute(sa_insert(IncidentMessage.__table__), rows)
    sig = MatterSignature.__table__
    seqs = await (await session.connection()).execute(
        sa_insert(sig).returning(sig.c.seq),
        [
            {
                "message_id": m.message_id,
                "received_at": m.received_at,
                "hashvalues": f.hashvalues.tobytes(),
                "title_words": f.title_words,
                "tf": f.tf,
            }
            for m, (_, f) in batch
        ],
    )
    return max((s for (s,) in seqs.all()), default=0)


async def _regrade_joined(
    session: AsyncSession,
    outbox: Outbox,
    engine: Engine,
    decisions: _Decisions,
    joiners: dict[str, list[str]],
    arrived: dict[str, list[tuple[datetime, str]]],
    now: datetime,
) -> None:
    """Regrade each incident messages joined, once; escalate those whose level rose; the joining
    messages' citizen view follows their incident."""
    counts = await _counts_of(session, engine, list(joiners), now)  # the rows before this batch
    escalated: list[tuple[Incident, Level]] = []
    for incident_id, mids in joiners.items():
        incident = decisions.incidents[incident_id]
        batch_times = [t for t, _ in arrived[incident_id]]
        previous = _score(
            session=session,
            engine=engine,
            incident=incident,
            now=now,
            counts=counts.get(incident_id, _Counts()).add(engine, batch_times, now),
            why="新留言并入",
        )
        if previous is not None:
            escalated.append((incident, previous))
        outbox.add(session, status_event(incident, mids))
    if escalated:
        m = IncidentMessage.__table__.c
        q = sa_select(m.incident_id, m.received_at, m.message_id).where(
            m.incident_id.in_(padded([i.id for i, _ in escalated]))
        )
        members: dict[str, list[tuple[datetime, str]]] = {}
        for incident_id, at, mid in (await (await session.connection()).execute(q)).all():
            members.setdefault(incident_id, []).append((at, mid))
        for incident, previous in escalated:
            ids = [mid for _, mid in sorted(members.get(incident.id, []) + arrived[incident.id])]
            _escalate(session, outbox, incident, ids, previous)


def _message_row(
    msg: MessageReceivedData, g: Grading, incident_id: str, joined_by: str, similarity: float | None
) -> dict[str, Any]:
    return {
        "message_id": msg.message_id,
        "incident_id": incident_id,
        "tracking_code": msg.tracking_code,
        "channel": msg.channel.value,
        "title": msg.title,
        "content": msg.content,
        "request_type": g.request_type.value,
        "metrics": msg.metrics.model_dump() if msg.metrics else None,
        "received_at": msg.received_at,
        "grading": _grading_record(g),
        "superior_issuer": msg.superior.issuer if msg.superior else None,
        "joined_by": joined_by,
        "similarity": similarity,
    }


def _grade_and_featurize(
    engine: Engine, index, msgs: list[MessageReceivedData], now: datetime
) -> list[tuple[Grading, Features]]:
    return [(engine.grade(m, now=now), index.features(m.title, m.content)) for m in msgs]


def _new_incident(
    *,
    session: AsyncSession,
    outbox: Outbox,
    engine: Engine,
    g: Grading,
    msg: MessageReceivedData,
    now: datetime,
) -> Incident:
    """Open an incident for a message of a new matter."""
    title = msg.title or msg.content[:60]
    single = g.places.districts[0] if len(g.places.districts) == 1 else None
    incident = Incident(
        id=str(uuid.uuid4()),
        code=new_incident_code(now),
        title=title[:500],
        excerpt=msg.content[:200],
        status=IncidentStatus.graded.value,
        level=g.level.value,
        machine_level=g.level.value,
        score=g.score,
        factors=[f.model_dump() for f in g.factors],
        category=g.category.model_dump() if g.category else None,
        request_type=g.request_type.value,
        request_type_inferred=g.request_type_inferred,
        response_type=g.response_type.value,
        warning_class=g.warning_class.value,
        lead_unit_code=g.route.lead.code,
        lead_unit_name=g.route.lead.name,
        co_units=[{"code": u.code, "name": u.name} for u in g.route.co],
        route_reason=g.route.reason,
        department_type=g.department_type,
        district=single,
        districts=g.places.districts,
        streets=g.places.streets,
        classification=_classification(g),
        low_confidence=g.prediction.low_confidence,
        channels=[msg.channel.value],
        message_count=1,
        metrics_total=_add_metrics({}, msg.metrics.model_dump() if msg.metrics else None),
        superior_issuers=[msg.superior.issuer] if msg.superior else [],
        report_due=g.deadlines.report_due,
        first_release_due=g.deadlines.first_release_due,
        response_due=g.deadlines.response_due,
        reply_due=g.deadlines.reply_due,
        policy_version=g.policy_version,
        received_at=msg.received_at,
        first_message_at=msg.received_at,
        last_message_at=msg.received_at,
        updated_at=now,
        review_pins=[],  # given, not defaulted: pydantic inspects a default factory on every construction
    )
    incident.original_grading = _grading_record(g)
    _append_digest(incident, msg.title, msg.content)
    heat, stage, parts = heat_of(
        engine.policy,
        HeatInput(1, interactions_of(incident.metrics_total), incident.channels, 1, 0, msg.received_at, now),
    )
    incident.heat, incident.stage, incident.heat_detail = heat, stage, parts
    session.add(incident)
    record(
        session,
        incident,
        action="graded",
        at=now,
        actor="system",
        note=f"定级 {g.level.value}（{g.score} 分，策略 {g.policy_version}）；{g.route.reason}",
    )
    if g.prediction.low_confidence:
        record(
            session,
            incident,
            action="needs_review",
            at=now,
            actor="system",
            note=f"分类置信度低（{g.prediction.confidence:.2f}），请研判员核定类别",
        )
    workflow.on_new_incident(session, incident, engine=engine, now=now)  # clocks; 批办 when confident
    ids = [msg.message_id]
    outbox.add(
        session,
        IncidentGraded.build(source="grading", trace=current_traceparent(), data=summary_of(incident, ids)),
    )
    outbox.add(session, status_event(incident, ids))
    return incident


def _join(
    *,
    session: AsyncSession,
    incident: Incident,
    g: Grading,
    msg: MessageReceivedData,
    why: Candidate,
    now: datetime,
) -> None:
    """A message of the same matter joins an incident: aggregates and timeline (the batch regrades it)."""
    incident.message_count += 1
    if msg.channel.value not in incident.channels:
        incident.channels = [*incident.channels, msg.channel.value]
    incident.metrics_total = _add_metrics(
        incident.metrics_total, msg.metrics.model_dump() if msg.metrics else None
    )
    if msg.superior and msg.superior.issuer not in incident.superior_issuers:
        incident.superior_issuers = [*incident.superior_issuers, msg.superior.issuer]
    for d in g.places.districts:
        if d not in incident.districts:
            incident.districts = [*incident.districts, d]
    if incident.last_message_at is None or msg.received_at > incident.last_message_at:
        incident.last_message_at = msg.received_at
    _append_digest(incident, msg.title, msg.content)
    incident.updated_at = now
    kind = "近似重复" if why.kind == "near_duplicate" else "同一事项"
    record(
        session,
        incident,
        action="message_joined",
        at=now,
        actor="system",
        note=f"新留言并入（{kind}，相似度 {why.similarity:.2f}，{msg.channel.value}）",
    )
    if incident.status == IncidentStatus.published.value:
        record(
            session,
            incident,
            action="challenged",
            at=now,
            actor="system",
            note="答复公开后又有同一事项留言（质疑跟帖）",
        )
    metrics.JOINED.labels(why.kind).inc()


# --- staff actions: merge, split, review ------------------------------------------------------------


async def _rebuild(session: AsyncSession, incident: Incident) -> list[IncidentMessage]:
    """Recompute an incident's aggregates from its messages (after merge or split)."""
    rows = list(
        (
            await session.exec(
                select(IncidentMessage)
                .where(IncidentMessage.incident_id == incident.id)
                .order_by(IncidentMessage.received_at)
            )
        ).all()
    )
    incident.message_count = len(rows)
    incident.channels = list(dict.fromkeys(r.channel for r in rows))
    total: dict[str, Any] = {}
    for r in rows:
        total = _add_metrics(total, r.metrics)
    incident.metrics_total = total
    incident.superior_issuers = list(dict.fromkeys(r.superior_issuer for r in rows if r.superior_issuer))
    districts: list[str] = []
    for r in rows:
        for d in (r.grading or {}).get("districts", []):
            if d not in districts:
                districts.append(d)
    incident.districts = districts
    incident.digest_text = ""
    for r in rows:
        _append_digest(incident, r.title, r.content)
    if rows:
        incident.first_message_at, incident.last_message_at = rows[0].received_at, rows[-1].received_at
    return rows


async def merge(
    *,
    session: AsyncSession,
    outbox: Outbox,
    rt: GradingRuntime,
    target: Incident,
    others: list[Incident],
    actor: str,
    reason: str,
    now: datetime,
) -> Incident:
    """Merge other incidents into the target: their messages move, they become `merged`."""
    if target.status not in JOINABLE:
        raise conflict("not_open", f"incident {target.code} is {target.status} and takes no messages")
    moved: list[str] = []
    for other in others:
        if other.id == target.id:
            raise invalid("same_incident", "an incident cannot be merged into itself")
        if other.status not in JOINABLE:
            raise conflict("not_open", f"incident {other.code} is {other.status} and cannot be merged")
        ids = await message_ids_of(session=session, incident_id=other.id)
        for row in (
            await session.exec(select(IncidentMessage).where(IncidentMessage.incident_id == other.id))
        ).all():
            row.incident_id = target.id
            row.joined_by = "merge"
            session.add(row)
        moved += ids
        target.status_sequence = max(target.status_sequence, other.status_sequence)
        other.status = IncidentStatus.merged.value
        other.merged_into = target.id
        other.message_count = 0
        other.updated_at = now
        record(
            session, other, action="merged_into", at=now, actor=actor, note=f"并入 {target.code}：{reason}"
        )
        record(
            session,
            target,
            action="merged",
            at=now,
            actor=actor,
            note=f"并入 {other.code}（{len(ids)} 条留言）：{reason}",
        )
        rt.index.merge_incident(other.id, target.id)
        session.add(other)
    await session.flush()
    await _rebuild(session, target)
    target.updated_at = now
    await _apply_score(
        session=session, outbox=outbox, engine=rt.engine, incident=target, now=now, why="合并事项"
    )
    session.add(target)
    if moved:
        outbox.add(session, status_event(target, moved))
    return target


async def split(
    *,
    session: AsyncSession,
    outbox: Outbox,
    rt: GradingRuntime,
    source: Incident,
    message_ids: list[str],
    actor: str,
    reason: str,
    now: datetime,
) -> Incident:
    """Move some messages of an incident into a new incident of their own, graded afresh."""
    if source.status not in JOINABLE:
        raise conflict("not_open", f"incident {source.code} is {source.status} and cannot be split")
    rows = list(
        (
            await session.exec(
                select(IncidentMessage)
                .where(IncidentMessage.incident_id == source.id, IncidentMessage.message_id.in_(message_ids))
                .order_by(IncidentMessage.received_at)
            )
        ).all()
    )
    unknown = sorted(set(message_ids) - {r.message_id for r in rows})
    if unknown:
        raise invalid(
            "unknown_messages", "these messages are not in the incident", [{"message_ids": unknown}]
        )
    if len(rows) >= source.message_count:
        raise invalid("split_all", "a split must leave at least one message in the incident")
    first = rows[0].grading or {}
    engine = rt.engine
    lead = first.get("lead_unit") or {
        "code": engine.bundle.dispatch.code,
        "name": engine.bundle.dispatch.name,
    }
    new = Incident(
        id=str(uuid.uuid4()),
        code=new_incident_code(now),
        title=(rows[0].title or rows[0].content[:60])[:500],
        excerpt=rows[0].content[:200],
        status=IncidentStatus.graded.value,
        status_sequence=source.status_sequence,
        level=first.get("level", Level.IV.value),
        machine_level=first.get("level", Level.IV.value),
        category=first.get("category"),
        department_type=first.get("department_type"),
        classification=first.get("classification"),
        request_type=rows[0].request_type,
        lead_unit_code=lead["code"],
        lead_unit_name=lead["name"],
        co_units=first.get("co_units", []),
        route_reason=first.get("route_reason"),
        streets=first.get("streets", []),
        policy_version=engine.bundle.policy_version,
        received_at=rows[0].received_at,
        updated_at=now,
    )
    new.original_grading = first or None
    d = engine.deadlines(Level(new.level), new.received_at)
    new.report_due, new.first_release_due, new.response_due, new.reply_due = (
        d.report_due,
        d.first_release_due,
        d.response_due,
        d.reply_due,
    )
    session.add(new)
    await session.flush()
    for r in rows:
        r.incident_id = new.id
        r.joined_by = "split"
        session.add(r)
    await session.flush()
    await _rebuild(session, new)
    new.district = new.districts[0] if len(new.districts) == 1 else None
    record(
        session,
        new,
        action="split_from",
        at=now,
        actor=actor,
        note=f"自 {source.code} 拆分（{len(rows)} 条留言）：{reason}",
    )
    record(
        session,
        source,
        action="split",
        at=now,
        actor=actor,
        note=f"拆出 {new.code}（{len(rows)} 条留言）：{reason}",
    )
    await _apply_score(session=session, outbox=outbox, engine=engine, incident=new, now=now, why="拆分事项")
    workflow.on_new_incident(session, new, engine=engine, now=now)  # clocks; 批办 when confident
    await _rebuild(session, source)
    source.updated_at = now
    await _apply_score(
        session=session, outbox=outbox, engine=engine, incident=source, now=now, why="拆分后重新研判"
    )
    session.add_all([new, source])
    moved = [r.message_id for r in rows]
    rt.index.move(moved, new.id, await _features_of(session, moved))
    outbox.add(
        session,
        IncidentGraded.build(source="grading", trace=current_traceparent(), data=summary_of(new, moved)),
    )
    outbox.add(session, status_event(new, moved))
    return new


async def _features_of(session: AsyncSession, message_ids: list[str]) -> dict[str, Features]:
    """The same-matter features stored for messages."""
    import numpy as np

    q = select(MatterSignature).where(MatterSignature.message_id.in_(padded(message_ids)))
    return {
        r.message_id: Features(
            np.frombuffer(r.hashvalues, dtype=np.uint32).copy(), list(r.title_words), dict(r.tf)
        )
        for r in (await session.exec(q)).all()
    }


def _grading_view(incident: Incident) -> dict[str, Any]:
    return {
        "level": incident.level,
        "category": incident.category,
        "lead_unit": {"code": incident.lead_unit_code, "name": incident.lead_unit_name}
        if incident.lead_unit_code
        else None,
        "co_units": incident.co_units,
    }


async def review(
    *,
    session: AsyncSession,
    outbox: Outbox,
    rt: GradingRuntime,
    incident: Incident,
    level: Level | None,
    category: Category | None,
    lead_unit: str | None,
    co_units: list[str] | None,
    actor: str,
    reason: str,
    now: datetime,
) -> IncidentReview:
    """An analyst changes level, category or units with a reason; the change and the original are kept."""
    if incident.status not in JOINABLE:
        raise conflict("not_open", f"incident {incident.code} is {incident.status}; reopen it first")
    bundle = rt.bundle
    before = _grading_view(incident)
    pins = set(incident.review_pins)
    changed: list[str] = []
    if category is not None:
        paths = [
            p
            for p in bundle.categories
            if p.level1 == category.level1
            and (category.level2 is None or p.level2 == category.level2)
            and (category.level3 is None or p.level3 == category.level3)
        ]
        if not paths:
            raise invalid("unknown_category", "the category is not in the taxonomy", [category.model_dump()])
        path = paths[0]
        value = {"level1": path.level1, "level2": path.level2, "level3": path.level3, "confidence": 1.0}
        if value != incident.category:
            incident.category, incident.department_type = value, path.department_type
            incident.low_confidence = False
            pins.add("category")
            changed.append("category")
    units_changed = False
    if lead_unit is not None or co_units is not None:
        new_lead = incident.lead_unit_code if lead_unit is None else lead_unit
        new_co = [u["code"] for u in incident.co_units] if co_units is None else co_units
        unknown = [c for c in [new_lead, *new_co] if c not in bundle.units]
        if unknown:
            raise invalid("unknown_unit", "units not in the directory", [{"units": unknown}])
        if new_lead in new_co:
            raise invalid("lead_is_co", "the lead unit cannot also co-handle")
        if new_lead != incident.lead_unit_code or new_co != [u["code"] for u in incident.co_units]:
            unit = bundle.units[new_lead]
            incident.lead_unit_code, incident.lead_unit_name = unit.code, unit.name
            incident.co_units = [{"code": c, "name": bundle.units[c].name} for c in dict.fromkeys(new_co)]
            incident.route_reason = f"研判员调整：{reason}"
            pins.add("units")
            changed.append("units")
            units_changed = True
    previous = Level(incident.level)
    if level is not None and level != previous:
        incident.level = level.value
        d = rt.engine.deadlines(level, incident.received_at)
        incident.report_due, incident.first_release_due, incident.response_due = (
            d.report_due,
            d.first_release_due,
            d.response_due,
        )
        pins.add("level")
        incident.machine_level_at_review = incident.machine_level or previous.value
        changed.append("level")
    if not changed:
        raise invalid("no_change", "the review changes nothing: give a different level, category or units")
    incident.review_pins = sorted(pins)
    incident.reviewed_at = now
    incident.updated_at = now
    row = IncidentReview(
        incident_id=incident.id,
        at=now,
        actor=actor,
        reason=reason,
        before=before,
        after=_grading_view(incident),
    )
    session.add_all([incident, row])
    record(
        session,
        incident,
        action="reviewed",
        at=now,
        actor=actor,
        note=f"研判调整（{'、'.join(changed)}）：{reason}",
    )
    ids = await message_ids_of(session=session, incident_id=incident.id)
    if "level" in changed and Level(incident.level).rank < previous.rank:
        outbox.add(
            session,
            IncidentEscalated.build(
                source="grading",
                trace=current_traceparent(),
                data=IncidentEscalatedData(**summary_of(incident, ids).model_dump(), previous_level=previous),
            ),
        )
        metrics.ESCALATED.inc()
    if units_changed and ids:
        outbox.add(session, status_event(incident, ids))
    return row


async def get_many(session: AsyncSession, ids: list[str]) -> list[Incident]:
    """Incidents by id, or 404 naming the first missing one."""
    out = []
    for i in ids:
        inc = await session.get(Incident, i)
        if inc is None:
            raise not_found("incident", i)
        out.append(inc)
    return out


def factors_of(incident: Incident) -> list[Factor]:
    """The incident's factors as models."""
    return [Factor(**f) for f in incident.factors]


__all__ = ["AppError", "get_many", "ingest", "merge", "review", "split"]
