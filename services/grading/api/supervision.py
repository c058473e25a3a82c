"""Supervision (督办) for supervisors and leaders: the overdue list, the 通报 list, a round on demand."""

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from kit.deps import SessionDep, StateDep
from kit.errors import AppError
from kit.security import access
from schema.dto import UnitRef
from schema.enums import Level, Role
from services.grading import clocks, supervision
from services.grading.api.incidents import Limit, Offset
from services.grading.api.views import overdue_hours
from services.grading.api.workflow_schemas import (
    NoticeList,
    NoticeUnit,
    OverdueIncident,
    OverdueItem,
    OverduePage,
    SweepOut,
)

router = APIRouter(prefix="/api/v1/supervision", tags=["supervision"])
READERS = (Role.supervisor, Role.leader, Role.admin)


def _unit(rt, code: str | None) -> UnitRef | None:
    if not code:
        return None
    unit = rt.bundle.units.get(code)
    return UnitRef(code=code, name=unit.name if unit else code)


def _item(rt, c, i, now) -> OverdueItem:
    return OverdueItem(
        clock_id=c.id,
        kind=c.kind,
        kind_text=clocks.KIND_TEXT.get(c.kind, c.kind),
        incident=OverdueIncident(id=i.id, code=i.code, title=i.title, level=i.level, status=i.status),
        unit=_unit(rt, c.unit_code),
        started_at=c.started_at,
        due_at=c.due_at,
        overdue_hours=overdue_hours(c.due_at, now),
        supervised=c.breached_at is not None,
        explained=c.explained_at is not None,
        explained_at=c.explained_at,
    )


@router.get("/overdue", summary="The overdue list", **access(*READERS))
async def overdue(
    session: SessionDep,
    state: StateDep,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    kind: Literal["sign", "reply", "response"] | None = None,
    level: Level | None = None,
    explained: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> OverduePage:
    """Running clocks past their due time (签收, 答复, 公开回应), the longest overdue first, with the unit
    that holds each and whether it explained itself."""
    now = state.clock.now()
    rows, total = await supervision.overdue(
        session, now=now, unit=unit, kind=kind, level=level, explained=explained, limit=limit, offset=offset
    )
    return OverduePage(items=[_item(state.grading, c, i, now) for c, i in rows], total=total)


@router.get("/notices", summary="The 通报 list: units overdue with no explanation", **access(*READERS))
async def notices(session: SessionDep, state: StateDep) -> NoticeList:
    """Units whose reply or public response is overdue with neither an answer nor an explanation (情况说明
    or an extension request), the most overdue matters first [seed 003]."""
    now = state.clock.now()
    grace = state.grading.bundle.policy.workflow.notice_grace_hours
    groups = await supervision.notice_list(session, now=now, grace=timedelta(hours=grace))
    items = [
        NoticeUnit(
            unit=_unit(state.grading, g["unit_code"]),
            overdue=len(g["items"]),
            oldest_due=min(c.due_at for c, _ in g["items"]),
            items=[_item(state.grading, c, i, now) for c, i in g["items"]],
        )
        for g in groups
    ]
    return NoticeList(items=items, total=len(items), grace_hours=grace)


@router.post("/sweep", summary="Run one supervision round now", **access(Role.supervisor, Role.admin))
async def sweep(state: StateDep) -> SweepOut:
    """Sweep the due clocks (催办, 督办) and roll the statistics up now, on this replica, if it can take
    the supervision lease (409 while another replica holds it)."""
    result = await state.supervision.tick()
    if not result.get("leader"):
        raise AppError(409, "lease_held", "another replica runs supervision now; it sweeps on its own")
    return SweepOut(**{k: v for k, v in result.items() if k in SweepOut.model_fields})
