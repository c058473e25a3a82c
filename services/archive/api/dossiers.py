"""Archivist API: search, read, export, verify, disposal list."""

import asyncio
import json
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from kit.deps import SessionDep, StateDep
from kit.security import access
from schema.enums import Channel, Level, Role
from services.archive import metrics, service
from services.archive.dossier_doc import export_zip
from services.archive.indexer import index_lag

router = APIRouter(prefix="/api/v1/archive", tags=["archive"])
ARCHIVE_STAFF = (Role.archivist, Role.admin)


class DossierBrief(BaseModel):
    """A dossier in a list."""

    id: str
    seq: int
    incident_id: str
    incident_code: str
    version: int
    supersedes: str | None = None
    title: str
    level: str
    category: str | None
    lead_unit_code: str | None
    lead_unit_name: str | None = None
    channels: list[str] = Field(default_factory=list)
    district: str | None = None
    received_at: datetime | None = None
    closed_at: datetime
    sealed_at: datetime
    retention_until: datetime | None
    content_sha256: str
    chain_hash: str

    @classmethod
    def of(cls, d: Any) -> "DossierBrief":
        """From a Dossier row."""
        data = {k: getattr(d, k) for k in cls.model_fields if k != "channels"}
        return cls(**data, channels=[c for c in d.channels.split(",") if c])


class Highlight(BaseModel):
    """Where the query's words occur: HTML-escaped text with each hit in <em>…</em>."""

    title: str | None = None
    snippet: str | None = None


class DossierHit(DossierBrief):
    """A dossier found by a search."""

    highlight: Highlight | None = None


class DossierOut(DossierBrief):
    """A dossier with its sealed content."""

    prev_chain_hash: str
    header_sha256: str | None = None
    seal_version: int
    content: dict[str, Any]


class DossierPage(BaseModel):
    """A page of dossiers."""

    items: list[DossierHit]
    total: int
    terms: list[str] = Field(default_factory=list, description="the query's words as segmented")
    index_pending: int = Field(
        default=0, description="with q: dossiers sealed but not yet searchable by words (seconds behind)"
    )


class DisposalItem(DossierBrief):
    """A dossier whose retention period has ended."""

    retention_years: int | None


class DisposalPage(BaseModel):
    """Dossiers due for disposal (销毁鉴定) as of a date."""

    as_of: datetime
    items: list[DisposalItem]
    total: int


def attachment(name: str, ascii_name: str) -> dict[str, str]:
    """Content-Disposition for a download with a Chinese file name (RFC 6266 / 5987)."""
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"}


@router.get(
    "/dossiers", summary="Search dossiers (Chinese full text, filters, highlights)", **access(*ARCHIVE_STAFF)
)
async def list_dossiers(
    session: SessionDep,
    state: StateDep,
    q: Annotated[str | None, Query(max_length=200, description="words in Chinese or other languages")] = None,
    incident_id: Annotated[str | None, Query(max_length=36)] = None,
    level: Level | None = None,
    unit: Annotated[str | None, Query(max_length=64, description="lead or co-handling unit code")] = None,
    category: Annotated[str | None, Query(max_length=100, description="a category name at any level")] = None,
    channel: Channel | None = None,
    district: Annotated[str | None, Query(max_length=64)] = None,
    closed_from: Annotated[date | None, Query(description="closed on or after this local day")] = None,
    closed_to: Annotated[date | None, Query(description="closed on or before this local day")] = None,
    latest_only: Annotated[bool, Query(description="only the newest version of each incident")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> DossierPage:
    """Dossiers matching every given filter, newest first; with `q`, each hit carries highlights."""
    start, end = service.date_bounds(closed_from, closed_to, state.settings.timezone)
    filters = service.SearchFilters(
        q=q,
        incident_id=incident_id,
        level=level.value if level else None,
        unit=unit,
        category=category,
        channel=channel.value if channel else None,
        district=district,
        closed_from=start,
        closed_to=end,
        latest_only=latest_only,
    )
    rows, total, terms = await service.search_dossiers(
        session=session, filters=filters, limit=limit, offset=offset
    )
    items = []
    for d in rows:
        hit = DossierHit(**DossierBrief.of(d).model_dump())
        if terms:
            hit.highlight = Highlight(**service.highlights(d, terms))
        items.append(hit)
    pending = await index_lag(session) if terms else 0
    return DossierPage(items=items, total=total, terms=terms, index_pending=pending)


@router.get("/verify", summary="Check the hash chain", **access(*ARCHIVE_STAFF))
async def verify(session: SessionDep, state: StateDep) -> dict[str, Any]:
    """Walk the whole chain; every altered, re-sealed or missing dossier is named in `problems`."""
    return await service.verify_chain(session=session, settings=state.settings)


@router.get("/disposal", summary="Dossiers whose retention has ended", **access(*ARCHIVE_STAFF))
async def disposal(
    session: SessionDep,
    state: StateDep,
    as_of: Annotated[datetime | None, Query(description="default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DisposalPage:
    """The disposal list (到期鉴定清单): retention ended on or before `as_of`; permanent dossiers never."""
    when = as_of or state.clock.now()
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(state.settings.timezone))
    rows, total = await service.disposal_list(session=session, as_of=when, limit=limit, offset=offset)
    years = state.policy.get("retention_years") or {}
    return DisposalPage(
        as_of=when,
        items=[
            DisposalItem(**DossierBrief.of(d).model_dump(), retention_years=years.get(d.level)) for d in rows
        ],
        total=total,
    )


@router.get("/dossiers/{dossier_id}", summary="One dossier", **access(*ARCHIVE_STAFF))
async def get_dossier(dossier_id: str, session: SessionDep) -> DossierOut:
    """A dossier with its sealed content (reporter identity stays encrypted)."""
    d = await service.get_dossier(session=session, dossier_id=dossier_id)
    return DossierOut(
        **DossierBrief.of(d).model_dump(),
        prev_chain_hash=d.prev_chain_hash,
        header_sha256=d.header_sha256,
        seal_version=d.seal_version,
        content=json.loads(d.content),
    )


@router.get(
    "/dossiers/{dossier_id}/export",
    summary="Export a dossier as a zip",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "the export"}},
    **access(*ARCHIVE_STAFF),
)
async def export(dossier_id: str, session: SessionDep, state: StateDep) -> Response:
    """dossier.json (sealed bytes), seal.json, dossier.html, dossier.pdf, attachments.json, manifest."""
    d = await service.get_dossier(session=session, dossier_id=dossier_id)
    data = await asyncio.to_thread(
        export_zip, d, tz=state.settings.timezone, font_path=state.settings.cjk_font_path
    )
    metrics.EXPORTS.inc()
    name = f"dossier-{d.incident_code}-v{d.version}.zip"
    return Response(data, media_type="application/zip", headers=attachment(f"卷宗-{name}", name))
