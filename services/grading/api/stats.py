"""Statistics for supervision and assessment (考核): per unit, channel, category, level and period."""

from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from kit.deps import SessionDep, StateDep
from kit.errors import invalid
from kit.security import access
from schema.enums import Level, Role
from services.grading import stats
from services.grading.api.workflow_schemas import StatCounts, StatGroup, StatPoint, StatRates, StatsOut

router = APIRouter(prefix="/api/v1/stats", tags=["statistics"])
MAX_DAYS = 3 * 366  # the longest range one query covers


def _name(rt, group_by: str | None, key: str) -> str:
    if not key:
        return "（未定）"
    if group_by == "unit":
        unit = rt.bundle.units.get(key)
        return unit.name if unit else key
    return key


@router.get(
    "",
    summary="Counts and rates per unit, channel, category, level and period",
    **access(Role.supervisor, Role.leader, Role.admin),
)
async def get_stats(
    session: SessionDep,
    state: StateDep,
    from_date: Annotated[
        date | None, Query(alias="from", description="first local day (default: 30 days ago)")
    ] = None,
    to_date: Annotated[date | None, Query(alias="to", description="last local day (default: today)")] = None,
    unit: Annotated[str | None, Query(max_length=64)] = None,
    channel: Annotated[str | None, Query(max_length=16)] = None,
    category: Annotated[str | None, Query(max_length=50, description="level-1 category")] = None,
    level: Level | None = None,
    group_by: Literal["unit", "channel", "category", "level", "none"] = "unit",
    period: Literal["day", "week", "month"] = "day",
) -> StatsOut:
    """Received, assigned, signed (on time), returned, extended, replied (on time), overdue, reopened,
    closed and satisfaction; 响应率, 解决率, 满意率, 按时办结率; one group per unit (channel, category,
    level) and a time series by day, week or month. Counts are of the local day they happened on."""
    tz = state.grading.engine.calendar.tz
    today = state.clock.now().astimezone(tz).date()
    end = to_date or today
    start = from_date or end - timedelta(days=29)
    if start > end:
        raise invalid(
            "bad_range", "`from` is after `to`", [{"from": start.isoformat(), "to": end.isoformat()}]
        )
    if (end - start).days >= MAX_DAYS:
        raise invalid("range_too_long", f"a query covers at most {MAX_DAYS} days")
    g = None if group_by == "none" else group_by
    out = await stats.query(
        session,
        start=start,
        end=end,
        tz=tz,
        unit=unit,
        channel=channel,
        category=category,
        level=level.value if level else None,
        group_by=g,
        period=period,
    )
    groups = sorted(out["groups"].items(), key=lambda kv: (-kv[1]["received"] - kv[1]["assigned"], kv[0]))
    return StatsOut(
        from_date=start,
        to_date=end,
        group_by=g,
        period=period,
        filters={
            "unit": unit,
            "channel": channel,
            "category": category,
            "level": level.value if level else None,
        },
        totals=StatCounts(**out["totals"]),
        rates=StatRates(**stats.rates(out["totals"])),
        groups=[
            StatGroup(
                key=k,
                name=_name(state.grading, g, k),
                counts=StatCounts(**c),
                rates=StatRates(**stats.rates(c)),
            )
            for k, c in groups
        ],
        series=[
            StatPoint(period=d, counts=StatCounts(**c), rates=StatRates(**stats.rates(c)))
            for d, c in out["series"]
        ],
        complete=out["complete"],
    )
