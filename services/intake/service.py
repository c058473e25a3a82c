"""Intake's logic: take messages in (one or a thousand), keep the citizen view current. No FastAPI here."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.context import current_traceparent
from kit.db import padded
from kit.errors import AppError, conflict, not_found
from kit.outbox import Outbox
from schema.dto import MessageRecord, ReporterFlags
from schema.enums import CITIZEN_STATUS_TEXT, CitizenStatus
from schema.events import (
    MessageFeedback,
    MessageFeedbackData,
    MessageReceived,
    MessageReceivedData,
    MessageStatusChangedData,
)
from services.intake import callbacks, metrics, rules
from services.intake.api.schemas import MessageIn
from services.intake.cleaning import normalize_text
from services.intake.config import IntakeConfig
from services.intake.models import Feedback, Message, MessageEvent, Upload
from services.intake.open311 import service_code_for
from services.intake.pii import PiiVault
from services.intake.screening import Screener
from services.intake.tracking import canonical_tracking_code, new_tracking_code

_MESSAGE = Message.__table__
_EVENT = MessageEvent.__table__
_MESSAGE_ADAPTER = None  # set lazily: a TypeAdapter(MessageIn) for batch items


@dataclass
class Prepared:
    """A checked, cleaned and sealed submission, ready to insert."""

    index: int
    row: dict[str, Any]
    upload_ids: list[str] = field(default_factory=list)
    # message.received as (id, type, JSON text), made where the message was prepared (a batch's worker
    # process); None: made when stored.
    events: list[tuple[str, str, str]] | None = None

    @property
    def natural_key(self) -> tuple[str, str] | None:
        ext = self.row["external_id"]
        return (self.row["channel"], ext) if ext else None


@dataclass
class Outcome:
    """What became of one submission."""

    index: int
    status: str  # created | duplicate | rejected
    id: str | None = None
    tracking_code: str | None = None
    citizen_status: str | None = None
    received_at: datetime | None = None
    error: rules.Rejected | None = None


# --- taking messages in ----------------------------------------------------------------------------


def item_adapter():
    """A validator of one batch item against MessageIn."""
    global _MESSAGE_ADAPTER
    if _MESSAGE_ADAPTER is None:
        from pydantic import TypeAdapter

        _MESSAGE_ADAPTER = TypeAdapter(MessageIn)
    return _MESSAGE_ADAPTER


def parse_item(raw: Any) -> MessageIn:
    """A batch item as MessageIn; raises rules.Rejected(validation_error) with pydantic's details."""
    try:
        return item_adapter().validate_python(raw)
    except ValidationError as exc:
        details = [
            {
                "loc": ["body", *[str(p) for p in e.get("loc", ())]],
                "msg": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        raise rules.Rejected("validation_error", "the item does not fit the contract", details) from None


def prepare(
    *,
    index: int,
    data: MessageIn,
    client_id: str | None,
    config: IntakeConfig,
    screener: Screener,
    vault: PiiVault,
    now: datetime,
    service_code: str | None = None,
) -> Prepared:
    """Check the bundle's rules, keep the original, normalise and screen the text, seal the reporter."""
    identity = rules.check(data, config)
    flags = ReporterFlags()
    if data.reporter is not None:
        r = data.reporter
        flags = ReporterFlags(anonymous=r.anonymous, wants_reply=r.wants_reply, confidential=r.confidential)
    title = normalize_text(data.title) if data.title else None
    normalized = normalize_text(data.content)
    verdict = screener.screen(title=title, text=normalized)
    screened = verdict.screened
    attachments, upload_ids = [], []
    for a in data.attachments:
        if a.upload_id:
            upload_ids.append(a.upload_id)
            attachments.append({"upload_id": a.upload_id, "name": a.name})
        else:
            attachments.append(a.model_dump(mode="json", exclude={"upload_id"}))
    row = {
        "id": str(uuid.uuid4()),
        "tracking_code": new_tracking_code(),
        "channel": data.channel.value,
        "external_id": data.external_id,
        "client_id": client_id,
        "title": None if verdict.title_spam and not screened else title,
        "title_original": data.title,
        "content_original": data.content,
        "content_normalized": verdict.text,
        "request_type": data.request_type.value if data.request_type else None,
        "occurred_at": data.occurred_at,
        "published_at": data.published_at,
        "source_name": data.source_name,
        "source_url": str(data.source_url) if data.source_url else None,
        "location": data.location.model_dump(mode="json", exclude_none=True) if data.location else None,
        "metrics": data.metrics.model_dump(mode="json") if data.metrics else None,
        "attachments": attachments,
        "superior": data.superior.model_dump(mode="json", exclude_none=True) if data.superior else None,
        "category_hint": data.category_hint,
        "service_code": service_code,
        "reporter_encrypted": vault.seal(identity) if identity else None,
        "reporter_flags": flags.model_dump(),
        "confidential": flags.confidential,
        "received_at": now,
        "screening": verdict.record(),
        "released_at": None,
        "released_by": None,
        "citizen_status": (CitizenStatus.screened_out if screened else CitizenStatus.received).value,
        "status_sequence": 0,
        "incident_id": None,
        "handling_unit": None,
        "reply": None,
        "reply_due": None,
        "category": None,
        "updated_at": now,
    }
    return Prepared(index=index, row=row, upload_ids=upload_ids)


def received_event(values: dict[str, Any], *, trace: str | None = None) -> MessageReceived:
    """The message.received event grading consumes, from a message's column values."""
    return MessageReceived.build(
        source="intake",
        trace=trace or current_traceparent(),
        data=MessageReceivedData(
            message_id=values["id"],
            tracking_code=values["tracking_code"],
            channel=values["channel"],
            external_id=values["external_id"],
            title=values["title"],
            content=values["content_normalized"],
            request_type=values["request_type"],
            occurred_at=values["occurred_at"],
            published_at=values["published_at"],
            received_at=values["received_at"],
            source_name=values["source_name"],
            source_url=values["source_url"],
            location=values["location"],
            metrics=values["metrics"],
            category_hint=values["category_hint"],
            superior=values["superior"],
            reporter=ReporterFlags(**(values["reporter_flags"] or {})),
            attachment_count=len(values["attachments"] or []),
            client_id=values["client_id"],
        ),
    )


def _insert(session: AsyncSession, table):
    dialect = session.bind.dialect.name
    return (
        postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    ).on_conflict_do_nothing()


async def _resolve_uploads(
    session: AsyncSession, prepared: list[Prepared], client_id: str | None
) -> list[Prepared]:
    """Fill upload attachments in from the upload table; returns the items naming unknown uploads."""
    wanted = {u for p in prepared for u in p.upload_ids}
    if not wanted:
        return []
    found = {
        u.id: u
        for u in (await session.exec(select(Upload).where(Upload.id.in_(wanted)))).all()
        if u.client_id == (client_id or "")
    }
    bad = []
    for p in prepared:
        missing = [u for u in p.upload_ids if u not in found]
        if missing:
            bad.append(p)
            continue
        for a in p.row["attachments"]:
            if "upload_id" in a:
                u = found[a["upload_id"]]
                a.update(sha256=u.sha256, size=u.size, media_type=u.media_type, name=a.get("name") or u.name)
    return bad


async def store(
    *,
    session: AsyncSession,
    outbox: Outbox,
    prepared: list[Prepared],
    client_id: str | None,
    now: datetime,
) -> list[Outcome]:
    """Insert new messages in bulk; a (channel, external_id) already known answers with the stored message.

    The caller commits. Duplicates inside the list and against the database (including a concurrent
    request inserting the same key) come back as `duplicate` with the first message's id.
    """
    outcomes: dict[int, Outcome] = {}
    for p in await _resolve_uploads(session, prepared, client_id):
        outcomes[p.index] = Outcome(
            p.index,
            "rejected",
            error=rules.Rejected(
                "unknown_upload",
                "an attachment names an upload this client does not have",
                [{"loc": ["body", "attachments"], "msg": "unknown upload_id", "type": "unknown_upload"}],
            ),
        )
    first_by_key: dict[tuple[str, str], Prepared] = {}
    fresh: list[Prepared] = []
    twins: list[Prepared] = []  # same natural key as an earlier item of this list
    for p in prepared:
        if p.index in outcomes:
            continue
        key = p.natural_key
        if key is not None and key in first_by_key:
            twins.append(p)
            continue
        if key is not None:
            first_by_key[key] = p
        fresh.append(p)

    # Core statements on the session's connection: the ORM layer adds nothing to bulk inserts but time.
    conn = await session.connection()
    # On PostgreSQL the messages, their timeline steps and outbox rows go in one statement (one round
    # trip instead of three; atomic by itself, so the caller may even run it outside a transaction).
    one_statement = conn.dialect.name == "postgresql"
    inserted: list[Prepared] = []
    pending = fresh
    for _ in range(3):  # a tracking-code collision (60 random bits) is retried with a new code
        if not pending:
            break
        if one_statement:
            done = await _insert_many_with_events(conn, outbox, pending, now)
        else:
            result = await conn.execute(
                _insert(session, _MESSAGE).returning(_MESSAGE.c.id), [p.row for p in pending]
            )
            done = {r[0] for r in result}
        missed = [p for p in pending if p.row["id"] not in done]
        inserted.extend(p for p in pending if p.row["id"] in done)
        existing = await existing_by_key(session, [p.natural_key for p in missed if p.natural_key])
        pending = []
        for p in missed:
            hit = existing.get(p.natural_key) if p.natural_key else None
            if hit is not None:
                outcomes[p.index] = duplicate_of(p.index, hit)
            else:
                p.row["tracking_code"] = new_tracking_code()
                p.row["id"] = str(uuid.uuid4())
                p.events = None  # they named the old id and code
                pending.append(p)
    if pending:
        raise AppError(500, "internal_error", "could not allocate tracking codes")

    for p in inserted:
        outcomes[p.index] = Outcome(
            p.index,
            "created",
            p.row["id"],
            p.row["tracking_code"],
            p.row["citizen_status"],
            p.row["received_at"],
        )
    for p in twins:
        first = first_by_key[p.natural_key]
        o = outcomes[first.index]
        outcomes[p.index] = Outcome(
            p.index, "duplicate", o.id, o.tracking_code, o.citizen_status, o.received_at
        )

    if inserted and not one_statement:
        await conn.execute(insert(_EVENT), [_timeline_row(p, now) for p in inserted])
        await outbox.add_many(session, [e for p in inserted for e in _received_events(p)])
    elif inserted:
        session.info["outbox"] = outbox  # wakes the relay after the commit
    return [outcomes[p.index] for p in prepared]


def _timeline_row(p: Prepared, now: datetime) -> dict[str, Any]:
    """The first step of a new message's timeline."""
    status = p.row["citizen_status"]
    return {
        "message_id": p.row["id"],
        "at": now,
        "status": status,
        "text": CITIZEN_STATUS_TEXT[CitizenStatus(status)],
        "public": True,
        "actor": None,
    }


def _received_events(p: Prepared) -> list[MessageReceived]:
    """`message.received` for a new message, unless screening held it back."""
    return [received_event(p.row)] if p.row["citizen_status"] == CitizenStatus.received else []


def seal_events(p: Prepared, *, trace: str | None) -> list[tuple[str, str, str]]:
    """`message.received` for a new message as (id, type, JSON text), unless screening held it back."""
    if p.row["citizen_status"] != CitizenStatus.received:
        return []
    event = received_event(p.row, trace=trace)
    return [(event.id, event.type, event.model_dump_json())]


_OUTBOX_COLUMNS = (
    "event_id",
    "event_type",
    "destination",
    "payload",
    "created_at",
    "next_attempt_at",
    "attempts",
)
_STEP_COLUMNS = ("at", "status", "text", "public", "actor")


_MANY_STATEMENTS: dict[tuple, tuple[str, list]] = {}


def _from_arrays(
    conn,
    table,
    columns: tuple[str, ...],
    first: int,
    *,
    join: bool = False,
    key: bool = False,
    as_text: tuple[str, ...] = (),
) -> tuple[str, list]:
    """`INSERT INTO table (columns) SELECT … FROM unnest($first::type[], …) AS u`, JSON travelling as
    text and cast; `key`: a leading message-id array that is not stored; `join`: only rows whose
    `u.message_id` is among the inserted messages `m`; `as_text`: JSON columns whose values come
    serialised already. Also each array's bind processor, so that values are stored as SQLAlchemy's own
    INSERT stores them."""
    dialect, quote = conn.dialect, conn.dialect.identifier_preparer.quote
    arrays = [("message_id", _EVENT.c.message_id)] if key else []
    arrays += [(c, table.c[c]) for c in columns]
    params, names, picks = [], [], []
    for i, (name, column) in enumerate(arrays):
        sql_type = column.type.compile(dialect=dialect)
        is_json = sql_type in ("JSON", "JSONB")
        params.append(f"${first + i}::{'text' if is_json else sql_type}[]")
        names.append(quote(name))
        picks.append(f"u.{quote(name)}::{sql_type}" if is_json else f"u.{quote(name)}")
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"  # noqa: S608 — metadata only
        f" SELECT {', '.join(picks[1:] if key else picks)}"
        f" FROM unnest({', '.join(params)}) AS u({', '.join(names)})"
    )
    if join:
        sql += " JOIN m ON m.id = u.message_id"
    return sql, [
        None if name in as_text else column.type._cached_bind_processor(dialect) for name, column in arrays
    ]


def _many_statement(conn, outbox: Outbox, columns: tuple[str, ...]) -> tuple[str, list]:
    """Messages from column arrays (ON CONFLICT DO NOTHING) and, for the ones inserted, their timeline
    steps and outbox rows: one statement, built once per shape, returning the inserted ids; with the
    bind processors of its parameters, in order."""
    key = (outbox.model.__tablename__, columns)
    if key not in _MANY_STATEMENTS:
        steps = ("message_id", *_STEP_COLUMNS)
        table = outbox.model.__table__
        messages, proc_m = _from_arrays(conn, _MESSAGE, columns, 1)
        first = 1 + len(columns)
        timeline, proc_e = _from_arrays(conn, _EVENT, steps, first, join=True)
        first += len(steps)
        boxed, proc_o = _from_arrays(
            conn, table, _OUTBOX_COLUMNS, first, join=True, key=True, as_text=("payload",)
        )
        sql = (
            f"WITH m AS ({messages} ON CONFLICT DO NOTHING RETURNING id),"  # noqa: S608 — built above
            f" e AS ({timeline}), o AS ({boxed}) SELECT id FROM m"
        )
        _MANY_STATEMENTS[key] = (sql, [*proc_m, *proc_e, *proc_o])
    return _MANY_STATEMENTS[key]


async def _insert_many_with_events(conn, outbox: Outbox, prepared: list[Prepared], now: datetime) -> set[str]:
    """Insert messages with their timeline steps and outbox rows in one statement (PostgreSQL); the ids
    inserted. Column arrays instead of a row of parameters per message: SQLAlchemy's work per
    parameter of a 250-row INSERT was the largest part of intake's CPU storing a batch."""
    columns = tuple(prepared[0].row)
    sql, processors = _many_statement(conn, outbox, columns)
    trace = current_traceparent()
    events = [
        (p.row["id"], e)
        for p in prepared
        for e in (p.events if p.events is not None else seal_events(p, trace=trace))
    ]
    message_of = {e[0]: message_id for message_id, e in events}
    rows = outbox.text_rows([e for _, e in events])
    boxed = [dict(row, message_id=message_of[row["event_id"]]) for row in rows]
    tables = (
        ([p.row for p in prepared], columns),
        ([_timeline_row(p, now) for p in prepared], ("message_id", *_STEP_COLUMNS)),
        (boxed, ("message_id", *_OUTBOX_COLUMNS)),
    )
    arrays = [[r[c] for r in table_rows] for table_rows, names in tables for c in names]
    params = tuple(
        [proc(v) for v in values] if proc else values for values, proc in zip(arrays, processors, strict=True)
    )
    if conn.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        # Outside a transaction nothing of SQLAlchemy's is needed: the driver runs the statement.
        raw = await conn.get_raw_connection()
        return {r[0] for r in await raw.driver_connection.fetch(sql, *params)}
    result = await conn.exec_driver_sql(sql, params)
    return {r[0] for r in result}


async def existing_by_key(session: AsyncSession, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """Stored messages by (channel, external_id): id, tracking code, status, receipt time."""
    if not keys:
        return {}
    out = {}
    wanted = set(keys)
    ids = sorted({k[1] for k in keys})
    conn = await session.connection()
    cols = (
        Message.id,
        Message.tracking_code,
        Message.channel,
        Message.external_id,
        Message.citizen_status,
        Message.received_at,
    )
    for i in range(0, len(ids), 500):
        q = select(*cols).where(Message.external_id.in_(padded(ids[i : i + 500])))
        rows = (await conn.execute(q)).all()
        for r in rows:
            if (r.channel, r.external_id) in wanted:
                out[(r.channel, r.external_id)] = r
    return out


def duplicate_of(index: int, row) -> Outcome:
    """The outcome of a submission that re-sends a stored message."""
    return Outcome(index, "duplicate", row.id, row.tracking_code, row.citizen_status, row.received_at)


def count_outcomes(outcomes: list[Outcome], prepared_rows: dict[int, dict[str, Any]]) -> None:
    """Count received, screened-out and duplicate messages for /metrics."""
    for o in outcomes:
        if o.status == "created":
            row = prepared_rows[o.index]
            metrics.RECEIVED.labels(row["channel"]).inc()
            if o.citizen_status == CitizenStatus.screened_out:
                metrics.SCREENED.labels((row["screening"] or {}).get("reason") or "unknown").inc()
        elif o.status == "duplicate":
            metrics.DUPLICATES.labels("natural_key").inc()
        else:
            metrics.REJECTED.labels(o.error.code if o.error else "unknown").inc()


# --- reading -----------------------------------------------------------------------------------------


async def get_message(*, session: AsyncSession, message_id: str) -> Message | None:
    """A message by id."""
    return await session.get(Message, message_id)


async def get_by_tracking_code(*, session: AsyncSession, code: str) -> Message | None:
    """The message with a tracking code, in any form a citizen may type it."""
    canonical = canonical_tracking_code(code)
    if canonical is None:
        return None
    return (await session.exec(select(Message).where(Message.tracking_code == canonical))).first()


async def list_messages(
    *,
    session: AsyncSession,
    status: str | None = None,
    channel: str | None = None,
    external_id: str | None = None,
    client_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Message], int]:
    """Messages for staff, newest first, with the total that match."""
    conditions = []
    if status:
        conditions.append(Message.citizen_status == status)
    if channel:
        conditions.append(Message.channel == channel)
    if external_id:
        conditions.append(Message.external_id == external_id)
    if client_id:
        conditions.append(Message.client_id == client_id)
    if since:
        conditions.append(Message.received_at >= since)
    if until:
        conditions.append(Message.received_at < until)
    q = (
        select(Message)
        .where(*conditions)
        .order_by(Message.received_at.desc(), Message.id)
        .offset(offset)
        .limit(limit)
    )
    total = (await session.exec(select(func.count()).select_from(Message).where(*conditions))).one()
    return list((await session.exec(q)).all()), total


async def timeline(*, session: AsyncSession, message_id: str, public_only: bool) -> list[MessageEvent]:
    """A message's steps, oldest first."""
    q = select(MessageEvent).where(MessageEvent.message_id == message_id)
    if public_only:
        q = q.where(MessageEvent.public.is_(True))
    return list((await session.exec(q.order_by(MessageEvent.at, MessageEvent.id))).all())


async def public_timeline(*, session: AsyncSession, message_id: str) -> list[MessageEvent]:
    """The public steps of a message, oldest first."""
    return await timeline(session=session, message_id=message_id, public_only=True)


def note_identity_read(*, session: AsyncSession, message: Message, actor: str, now: datetime) -> None:
    """Write that a staff member read the reporter's identity (internal timeline)."""
    session.add(
        MessageEvent(
            message_id=message.id,
            at=now,
            status=message.citizen_status,
            text="查看举报人身份信息",
            public=False,
            actor=actor,
        )
    )


# --- staff actions -----------------------------------------------------------------------------------


async def release(
    *, session: AsyncSession, outbox: Outbox, message_id: str, actor: str, reason: str, now: datetime
) -> Message:
    """Take a screened-out message back in: 已受理 again, and message.received goes to grading."""
    message = await session.get(Message, message_id, with_for_update=True)
    if message is None:
        raise not_found("message", message_id)
    if message.citizen_status != CitizenStatus.screened_out or message.incident_id is not None:
        raise conflict("not_screened_out", "only a message screened out by intake can be released")
    message.citizen_status = CitizenStatus.received.value
    message.released_at = now
    message.released_by = actor
    message.screening = {
        **(message.screening or {}),
        "released": {"by": actor, "at": now.isoformat(), "reason": reason},
    }
    message.updated_at = now
    session.add(message)
    session.add(
        MessageEvent(
            message_id=message.id,
            at=now,
            status="received",
            text=f"人工复核放行：{reason}",
            public=False,
            actor=actor,
        )
    )
    session.add(
        MessageEvent(
            message_id=message.id, at=now, status="received", text=CITIZEN_STATUS_TEXT[CitizenStatus.received]
        )
    )
    await outbox.add_many(session, [received_event(message.model_dump())])
    await session.commit()
    metrics.RELEASED.inc()
    return message


async def give_feedback(
    *,
    session: AsyncSession,
    outbox: Outbox,
    message: Message,
    satisfaction: str,
    comment: str | None,
    now: datetime,
) -> Feedback:
    """Record the citizen's satisfaction with the published reply; grading gets message.feedback."""
    if not message.reply or message.citizen_status not in (CitizenStatus.replied, CitizenStatus.closed):
        raise conflict("no_reply_to_rate", "there is no published reply to rate yet")
    reply_key = str(message.reply.get("published_at"))[:64]
    feedback = Feedback(
        id=str(uuid.uuid4()),
        message_id=message.id,
        reply_key=reply_key,
        satisfaction=satisfaction,
        comment=comment,
        received_at=now,
    )
    result = await (await session.connection()).execute(
        _insert(session, Feedback.__table__).returning(Feedback.__table__.c.id), [feedback.model_dump()]
    )
    if result.first() is None:
        await session.rollback()
        raise conflict("feedback_already_given", "this reply has been rated already")
    session.add(
        MessageEvent(message_id=message.id, at=now, status=message.citizen_status, text="已收到满意度评价")
    )
    event = MessageFeedback.build(
        source="intake",
        trace=current_traceparent(),
        data=MessageFeedbackData(
            message_id=message.id,
            tracking_code=message.tracking_code,
            satisfaction=satisfaction,
            comment=comment,
            received_at=now,
        ),
    )
    await outbox.add_many(session, [event])
    await session.commit()
    metrics.FEEDBACK.labels(satisfaction).inc()
    return feedback


async def feedback_given(*, session: AsyncSession, message: Message) -> bool:
    """True when the current reply has been rated."""
    if not message.reply:
        return False
    reply_key = str(message.reply.get("published_at"))[:64]
    q = (
        select(func.count())
        .select_from(Feedback)
        .where(Feedback.message_id == message.id, Feedback.reply_key == reply_key)
    )
    return (await session.exec(q)).one() > 0


# --- events from grading -----------------------------------------------------------------------------


_STATUS_COLUMNS = (Message.id, Message.status_sequence, Message.citizen_status, Message.reply)


async def apply_status_changes(
    *,
    session: AsyncSession,
    changes: list[tuple[MessageStatusChangedData, datetime]],
    config: IntakeConfig | None = None,
) -> int:
    """Update the citizen view of incidents' messages, change by change in the order given (each at
    its time); stale (out-of-order) changes are ignored. Returns how many message updates were made.

    A newly published reply is queued for the channel client's callback URL in the same transaction.
    Core statements on the few columns involved (loading whole messages into the ORM to change five
    columns was most of intake's CPU for a status change, which every graded message brings), and for
    a run of changes one read of the messages and one insert of the public timeline steps: only the
    update is made per change.
    """
    ids = {i for data, _ in changes for i in data.message_ids}
    if not ids:
        return 0
    q = select(*_STATUS_COLUMNS).where(Message.id.in_(padded(ids)))
    # message id → [status sequence, citizen status, reply], as the changes before leave it
    current = {r.id: [r.status_sequence, r.citizen_status, r.reply] for r in (await session.exec(q)).all()}
    conn = await session.connection()
    steps: list[dict[str, Any]] = []
    updated = 0
    for data, at in changes:
        before = [
            i for i in dict.fromkeys(data.message_ids) if i in current and data.sequence > current[i][0]
        ]
        if not before:
            continue
        values, reply = _status_values(data, at)
        # The sequence again in the WHERE: a change applied meanwhile by another transaction wins if newer.
        stmt = (
            update(Message)
            .where(Message.id.in_(padded(before)), Message.status_sequence < data.sequence)
            .values(values)
            .returning(Message.id)
        )
        changed = [i for (i,) in (await conn.execute(stmt)).all()]
        updated += len(changed)
        status = values["citizen_status"]
        text = (data.public_note or _status_note(data))[:500]
        published = []
        for i in changed:
            row = current[i]
            if row[1] != status or data.public_note:
                steps.append({"message_id": i, "at": at, "status": status, "text": text, "public": True})
            if reply is not None and (row[2] or {}).get("published_at") != reply.get("published_at"):
                published.append(i)
            row[0], row[1] = data.sequence, status
            if reply is not None:
                row[2] = reply
        if config is not None:
            for i in published:
                message = await session.get(Message, i, populate_existing=True)
                await callbacks.enqueue_reply(session=session, message=message, config=config, now=at)
    if steps:
        await conn.execute(insert(_EVENT), [{**s, "actor": None} for s in steps])
    return updated


def _status_values(data: MessageStatusChangedData, at: datetime) -> tuple[dict[str, Any], dict | None]:
    """The message columns a status change sets, and its reply as stored (None when it brings none)."""
    values: dict[str, Any] = {
        "status_sequence": data.sequence,
        "citizen_status": data.citizen_status.value,
        "incident_id": data.incident_id,
        "updated_at": at,
    }
    if data.handling_unit is not None:
        values["handling_unit"] = data.handling_unit.model_dump(mode="json")
    reply = data.reply.model_dump(mode="json") if data.reply is not None else None
    if reply is not None:
        values["reply"] = reply
    if data.reply_due is not None:
        values["reply_due"] = data.reply_due
    if data.category is not None:
        c = data.category
        values["category"] = c.model_dump(mode="json")
        if c.level3:
            values["service_code"] = func.coalesce(
                Message.service_code, service_code_for(c.level1, c.level2, c.level3)
            )
    return values, reply


def _status_note(data: MessageStatusChangedData) -> str:
    text = CITIZEN_STATUS_TEXT[data.citizen_status]
    if data.citizen_status == CitizenStatus.assigned and data.handling_unit is not None:
        return f"{text}：{data.handling_unit.name}"
    return text


# --- the archive's look-up ---------------------------------------------------------------------------


async def records_for(*, session: AsyncSession, message_ids: list[str]) -> list[MessageRecord]:
    """Messages as the archive keeps them (reporter identity still encrypted), with the feedback given."""
    rows = (await session.exec(select(Message).where(Message.id.in_(message_ids)))).all()
    feedback: dict[str, list[dict[str, Any]]] = {}
    if rows:
        q = (
            select(Feedback)
            .where(Feedback.message_id.in_([m.id for m in rows]))
            .order_by(Feedback.received_at)
        )
        for f in (await session.exec(q)).all():
            feedback.setdefault(f.message_id, []).append(
                {
                    "satisfaction": f.satisfaction,
                    "comment": f.comment,
                    "received_at": f.received_at.isoformat(),
                }
            )
    return [record_of(m, feedback.get(m.id, [])) for m in rows]


def record_of(m: Message, feedback: list[dict[str, Any]] | None = None) -> MessageRecord:
    """The archive's view of one message."""
    data: dict[str, Any] = {
        "id": m.id,
        "tracking_code": m.tracking_code,
        "channel": m.channel,
        "external_id": m.external_id,
        "title": m.title,
        "content_original": m.content_original,
        "content_normalized": m.content_normalized,
        "request_type": m.request_type,
        "occurred_at": m.occurred_at,
        "published_at": m.published_at,
        "received_at": m.received_at,
        "source_name": m.source_name,
        "source_url": m.source_url,
        "location": m.location,
        "metrics": m.metrics,
        "attachments": m.attachments,
        "superior": m.superior,
        "reporter_encrypted": m.reporter_encrypted,
        "citizen_status": m.citizen_status,
        "feedback": feedback or [],
    }
    return MessageRecord.model_validate(data)
