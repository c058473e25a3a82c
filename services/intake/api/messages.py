"""Channel clients submit messages (one, a batch, files); staff read them and release screened-out ones."""

from datetime import datetime
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response

from kit.deps import SessionDep, StateDep
from kit.errors import AppError, not_found
from kit.security import CLIENT, CurrentPrincipal, access
from schema.dto import Principal
from schema.enums import CITIZEN_STATUS_TEXT, Channel, CitizenStatus, PrincipalKind, Role
from services.intake import idempotency, metrics, rules, service, uploads
from services.intake.api.deps import ConfigDep, VaultDep
from services.intake.api.schemas import (
    BatchIn,
    BatchItemResult,
    BatchResult,
    ItemError,
    MessageAccepted,
    MessageIn,
    MessageList,
    ReleaseIn,
    ReporterView,
    StaffMessage,
    TimelineEntry,
    UploadOut,
)
from services.intake.models import Message
from services.intake.pii import masked_identity
from services.intake.preparer import prepare_items

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])

STAFF_READERS = (Role.clerk, Role.analyst, Role.leader, Role.supervisor, Role.admin)
# Below this many items a batch is prepared on the event loop; above, in a worker thread.
_INLINE_ITEMS = 16


def client_scope(principal: Principal) -> str:
    """Who a message, an upload or an Idempotency-Key belongs to."""
    if principal.kind == PrincipalKind.client and principal.client_id:
        return principal.client_id
    return f"staff:{principal.sub}"


def _accepted(o: service.Outcome) -> MessageAccepted:
    st = CitizenStatus(o.citizen_status)
    return MessageAccepted(
        id=o.id,
        tracking_code=o.tracking_code,
        status=st,
        status_text=CITIZEN_STATUS_TEXT[st],
        received_at=o.received_at,
        duplicate=o.status == "duplicate",
    )


async def run_idempotent(
    request: Request, state, session, scope: str, handler, *, atomic_statements: bool = False
) -> Response:
    """Run a creating handler under the request's Idempotency-Key (if any); it returns (status, body).

    `atomic_statements`: every write of the handler is a single statement that is atomic by itself,
    so without a key it runs in autocommit on PostgreSQL (no BEGIN and COMMIT round trips)."""
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    if key is None:
        if atomic_statements and session.bind.dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        status, body = await handler()
        await session.commit()
        return JSONResponse(body, status_code=status)
    fp = idempotency.fingerprint(request.method, request.url.path, await request.body())
    stored = await state.idempotency.begin(scope=scope, key=key, print_=fp)
    if stored is not None:
        metrics.DUPLICATES.labels("idempotency_replay").inc()
        return Response(
            stored.body,
            status_code=stored.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        status, body = await handler()
        await state.idempotency.complete(session, scope=scope, key=key, status_code=status, body=body)
        await session.commit()
    except BaseException:
        await session.rollback()
        await state.idempotency.forget(scope=scope, key=key)
        raise
    return JSONResponse(body, status_code=status)


def _rejected(err: rules.Rejected) -> AppError:
    return AppError(422, err.code, err.message, err.details)


@router.post(
    "",
    status_code=201,
    summary="Submit one message",
    response_model=MessageAccepted,
    responses={
        200: {"model": MessageAccepted, "description": "already received under this external_id"},
        409: {"description": "a request with this Idempotency-Key is still in flight"},
        422: {"description": "breaks the contract or a bundle rule (channel fields, identity, limits)"},
    },
    **access(CLIENT, Role.clerk),
)
async def submit_message(
    body: MessageIn,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    config: ConfigDep,
    vault: VaultDep,
) -> Response:
    """Store a message and return its tracking code; a channel re-sending its own id gets the original.

    Honors `Idempotency-Key` (IETF draft): the same key and body get the same answer again.
    """
    scope = client_scope(principal)
    now = state.clock.now()

    async def handler() -> tuple[int, dict[str, Any]]:
        try:
            prepared = service.prepare(
                index=0,
                data=body,
                client_id=scope,
                config=config,
                screener=state.screener,
                vault=vault,
                now=now,
            )
        except rules.Rejected as err:
            metrics.REJECTED.labels(err.code).inc()
            raise _rejected(err) from None
        [outcome] = await service.store(
            session=session, outbox=state.outbox, prepared=[prepared], client_id=scope, now=now
        )
        if outcome.status == "rejected":
            metrics.REJECTED.labels(outcome.error.code).inc()
            raise _rejected(outcome.error)
        request.state.counted = (outcome, prepared)
        return (201 if outcome.status == "created" else 200), _accepted(outcome).model_dump(mode="json")

    # One message is one INSERT statement on PostgreSQL (service.store), atomic by itself.
    response = await run_idempotent(request, state, session, scope, handler, atomic_statements=True)
    counted = getattr(request.state, "counted", None)
    if counted is not None:
        service.count_outcomes([counted[0]], {0: counted[1].row})
    return response


def _natural_key(raw: Any) -> tuple[str, str] | None:
    if (
        isinstance(raw, dict)
        and isinstance(raw.get("channel"), str)
        and isinstance(raw.get("external_id"), str)
    ):
        return raw["channel"], raw["external_id"].strip()
    return None


@router.post(
    "/batch",
    summary="Submit up to 1000 messages; a result per item",
    response_model=BatchResult,
    **access(CLIENT, Role.clerk),
)
async def submit_batch(
    body: BatchIn,
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    config: ConfigDep,
    vault: VaultDep,
) -> Response:
    """Each item is checked and stored on its own terms: good items are kept when others fail.

    Items re-sending a known (channel, external_id), or repeating one earlier in the batch, come back
    as `duplicate` with the stored message. Honors `Idempotency-Key` like the single POST.
    """
    limit = config.limits.batch_max_items
    if len(body.items) > limit:
        raise AppError(
            422, "batch_too_large", f"a batch holds at most {limit} items; this one has {len(body.items)}"
        )
    scope = client_scope(principal)
    now = state.clock.now()
    kwargs = {"scope": scope, "config": config, "screener": state.screener, "vault": vault, "now": now}
    request.state.prepared_rows = {}

    async def handler() -> tuple[int, dict[str, Any]]:
        # Items re-sending a stored (channel, external_id) are answered before any cleaning work.
        keys = {i: _natural_key(raw) for i, raw in enumerate(body.items)}
        known = await service.existing_by_key(session, [k for k in keys.values() if k])
        resent = {i: service.duplicate_of(i, known[k]) for i, k in keys.items() if k in known}
        todo = [(i, raw) for i, raw in enumerate(body.items) if i not in resent]
        stored, rejected = [], {}
        preparer = state.preparer
        if len(todo) <= _INLINE_ITEMS or preparer.processes == 0:
            if len(todo) <= _INLINE_ITEMS:
                parts = [prepare_items(todo, **kwargs)]
            else:  # no worker processes: a thread keeps the event loop free at least
                parts = [await to_thread.run_sync(lambda: prepare_items(todo, **kwargs))]
            for prepared, bad in parts:
                rejected.update(bad)
                request.state.prepared_rows.update({p.index: p.row for p in prepared})
                stored += await service.store(
                    session=session, outbox=state.outbox, prepared=prepared, client_id=scope, now=now
                )
        else:
            # Chunks are prepared in worker processes; each is inserted (same transaction) as it arrives.
            for future in preparer.chunks(todo, scope=scope, now=now):
                prepared, bad = await preparer.unpack(future)
                rejected.update(bad)
                stored += await service.store(
                    session=session, outbox=state.outbox, prepared=prepared, client_id=scope, now=now
                )
                request.state.prepared_rows.update({p.index: p.row for p in prepared})
        outcomes = sorted([*stored, *rejected.values(), *resent.values()], key=lambda o: o.index)
        request.state.counted = (outcomes, request.state.prepared_rows)
        results = []
        for o in outcomes:
            item = BatchItemResult(index=o.index, status=o.status)
            if o.status == "rejected":
                item.error = ItemError(code=o.error.code, message=o.error.message, details=o.error.details)
            else:
                item.id, item.tracking_code = o.id, o.tracking_code
                item.message_status = CitizenStatus(o.citizen_status)
            results.append(item)
        counts = {k: sum(1 for o in outcomes if o.status == k) for k in ("created", "duplicate", "rejected")}
        return 200, BatchResult(results=results, **counts).model_dump(mode="json", exclude_none=True)

    # Several statements (and chunks): one transaction, never autocommit.
    response = await run_idempotent(request, state, session, scope, handler)
    counted = getattr(request.state, "counted", None)
    if counted is not None:
        service.count_outcomes(*counted)
    return response


@router.post(
    "/uploads",
    status_code=201,
    summary="Upload a file to attach to a message",
    response_model=UploadOut,
    **access(CLIENT, Role.clerk),
)
async def upload_file(
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    config: ConfigDep,
    response: Response,
    file: UploadFile = File(description="the file (multipart/form-data field `file`)"),
) -> UploadOut:
    """Store a file (type sniffed from its bytes, size limited by the bundle), id and and SHA-256."""
    upload, duplicate = await uploads.save(
        session=session,
        file=file,
        client_id=client_scope(principal),
        rules=config.uploads,
        var_dir=state.settings.var_dir,
        now=state.clock.now(),
    )
    if duplicate:
        response.status_code = 200
    return UploadOut(**upload.model_dump(), duplicate=duplicate)


@router.get(
    "/uploads/{upload_id}",
    summary="Download an uploaded file",
    response_class=FileResponse,
    **access(CLIENT, *STAFF_READERS),
)
async def download_file(
    upload_id: str, principal: CurrentPrincipal, session: SessionDep, state: StateDep, config: ConfigDep
):
    """The stored bytes; a channel client sees only its own uploads."""
    from services.intake.models import Upload

    upload = await session.get(Upload, upload_id)
    if upload is None or (
        principal.kind == PrincipalKind.client and upload.client_id != client_scope(principal)
    ):
        raise not_found("upload", upload_id)
    path = uploads.path_for(uploads.storage_dir(state.settings.var_dir, config.uploads), upload.sha256)
    exists = await to_thread.run_sync(path.exists)
    if not exists:
        raise AppError(410, "gone", "the stored file is missing")
    return FileResponse(path, media_type=upload.media_type, filename=upload.name or upload.sha256)


# --- staff -----------------------------------------------------------------------------------------


def staff_view(m: Message, *, vault, reveal: bool, full: bool, timeline=None) -> StaffMessage:
    """A message for staff: reporter identity masked unless revealed."""
    reporter = None
    flags = m.reporter_flags or {}
    if m.reporter_encrypted or flags:
        identity = vault.open(m.reporter_encrypted) if m.reporter_encrypted else {}
        shown = identity if reveal else masked_identity(identity)
        reporter = ReporterView(**{k: v for k, v in shown.items() if v}, **flags, masked=not reveal)
    st = CitizenStatus(m.citizen_status)
    return StaffMessage(
        id=m.id,
        tracking_code=m.tracking_code,
        channel=m.channel,
        external_id=m.external_id,
        client_id=m.client_id,
        title=m.title,
        title_original=m.title_original if full else None,
        content=m.content_normalized,
        content_original=m.content_original if full else None,
        request_type=m.request_type,
        occurred_at=m.occurred_at,
        published_at=m.published_at,
        received_at=m.received_at,
        source_name=m.source_name,
        source_url=m.source_url,
        location=m.location,
        metrics=m.metrics,
        attachments=m.attachments,
        superior=m.superior,
        category_hint=m.category_hint,
        status=st,
        status_text=CITIZEN_STATUS_TEXT[st],
        screening=m.screening,
        released_at=m.released_at,
        released_by=m.released_by,
        incident_id=m.incident_id,
        handling_unit=m.handling_unit,
        reporter=reporter,
        timeline=[
            TimelineEntry(at=e.at, status=e.status, text=e.text, public=e.public, actor=e.actor)
            for e in timeline
        ]
        if timeline is not None
        else None,
    )


@router.get("", summary="Messages as received (staff)", response_model=MessageList, **access(*STAFF_READERS))
async def list_messages(
    session: SessionDep,
    vault: VaultDep,
    status: CitizenStatus | None = Query(default=None, description="e.g. screened_out for the junk queue"),
    channel: Channel | None = None,
    external_id: str | None = Query(default=None, max_length=200),
    client_id: str | None = Query(default=None, max_length=64),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=1_000_000),
) -> MessageList:
    """Newest first; reporter identity is always masked in lists."""
    rows, total = await service.list_messages(
        session=session,
        status=status.value if status else None,
        channel=channel.value if channel else None,
        external_id=external_id,
        client_id=client_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    return MessageList(
        items=[staff_view(m, vault=vault, reveal=False, full=False) for m in rows], total=total
    )


@router.get(
    "/{message_id}", summary="One message (staff)", response_model=StaffMessage, **access(*STAFF_READERS)
)
async def read_message(
    message_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    config: ConfigDep,
    vault: VaultDep,
) -> StaffMessage:
    """The message with its whole timeline; the reporter's identity is shown only to the bundle's reveal roles
    (the clerk, who calls citizens back), and each such read is written to the timeline."""
    m = await service.get_message(session=session, message_id=message_id)
    if m is None:
        raise not_found("message", message_id)
    reveal = bool(m.reporter_encrypted) and any(str(r) in config.pii.reveal_roles for r in principal.roles)
    if reveal:
        service.note_identity_read(session=session, message=m, actor=principal.sub, now=state.clock.now())
        await session.commit()
    events = await service.timeline(session=session, message_id=m.id, public_only=False)
    return staff_view(m, vault=vault, reveal=reveal, full=True, timeline=events)


@router.post(
    "/{message_id}/release",
    summary="Release a screened-out message (staff)",
    response_model=StaffMessage,
    **access(Role.clerk, Role.analyst),
)
async def release_message(
    message_id: str,
    body: ReleaseIn,
    principal: CurrentPrincipal,
    session: SessionDep,
    state: StateDep,
    vault: VaultDep,
) -> StaffMessage:
    """Junk screening was wrong: the message is received after all and goes to grading (message.received)."""
    m = await service.release(
        session=session,
        outbox=state.outbox,
        message_id=message_id,
        actor=principal.sub,
        reason=body.reason,
        now=state.clock.now(),
    )
    return staff_view(m, vault=vault, reveal=False, full=False)
