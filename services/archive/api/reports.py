"""Reports from the archive: 舆情日报/周报/月报 and the annual 自查报告 draft, as DOCX, PDF or JSON."""

import asyncio
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Response

from kit.deps import SessionDep, StateDep
from kit.security import access
from services.archive import metrics, reports
from services.archive.api.dossiers import ARCHIVE_STAFF, attachment
from services.archive.documents import to_docx, to_pdf

router = APIRouter(prefix="/api/v1/archive/reports", tags=["archive"])

MEDIA = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


@router.get(
    "/{kind}",
    summary="A 舆情 report or the annual self-inspection draft",
    response_model=None,
    responses={
        200: {
            "content": {"application/json": {}, MEDIA["pdf"]: {}, MEDIA["docx"]: {}},
            "description": "the report's figures (json) or the document",
        }
    },
    **access(*ARCHIVE_STAFF),
)
async def report(
    kind: Literal["daily", "weekly", "monthly", "annual"],
    session: SessionDep,
    state: StateDep,
    day: Annotated[
        date | None,
        Query(alias="date", description="a day in the period (local); default today"),
    ] = None,
    format: Annotated[Literal["pdf", "docx", "json"], Query()] = "pdf",
) -> Response | dict[str, Any]:
    """Counts by level, channel and category, on-time rates per unit, overdue units, typical cases, charts."""
    settings = state.settings
    tz = settings.timezone
    today = state.clock.now().astimezone(ZoneInfo(tz)).date()
    period = reports.period_of(kind, day or today, tz)
    config = state.policy.get("reports") or {}
    stats, cases = await reports.gather(session=session, period=period, config=config, tz=tz)
    metrics.REPORTS.labels(kind, format).inc()
    if format == "json":
        return {
            "kind": kind,
            "period": {"start": period.start, "end": period.end, "label": period.label},
            **{k: v for k, v in stats.items() if k != "typical_ids"},
            "typical_cases": [
                {"dossier_id": c["row"].id, "incident_code": c["row"].incident_code, "title": c["row"].title}
                for c in cases
            ],
        }

    def render() -> bytes:
        doc = reports.build_document(
            kind=kind,
            period=period,
            stats=stats,
            cases=cases,
            config=config,
            city=state.city,
            tz=tz,
            now=state.clock.now(),
            font_path=settings.cjk_font_path,
        )
        return to_pdf(doc, font_path=settings.cjk_font_path) if format == "pdf" else to_docx(doc)

    data = await asyncio.to_thread(render)
    stamp = period.start.astimezone(ZoneInfo(tz)).date().isoformat()
    ascii_name = f"report-{kind}-{stamp}.{format}"
    name = f"{state.city}舆情{reports.KIND_TEXT[kind]}-{period.label}.{format}"
    return Response(data, media_type=MEDIA[format], headers=attachment(name, ascii_name))
