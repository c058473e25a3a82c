"""Statistics for supervision and assessment (考核): counts per local day, unit, channel, category and
level, and the rates built from them (响应率, 解决率, 满意率, 按时办结率).

Counts are appended as things happen (`stat_event`, one row per count: no hot row to fight over) and
rolled up in batches into `stat_daily`, as are newly graded messages (`received`). A query reads the
pre-aggregated days plus whatever is not rolled up yet, so it costs the number of day rows, not the
number of messages.
"""

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from services.grading.models import (
    STAT_COUNTERS,
    Incident,
    IncidentMessage,
    StatDaily,
    StatEvent,
)

KEY = ("day", "unit_code", "channel", "category", "level")
GROUPS = {"unit": "unit_code", "channel": "channel", "category": "category", "level": "level"}
PERIODS = ("day", "week", "month")
TAIL_LIMIT = 20_000  # pending rows a query adds itself; beyond that it says how many wait


def dims(incident: Incident) -> dict[str, str]:
    """The channel, category (level 1) and level an incident's counts are filed under."""
    return {
        "channel": incident.channels[0] if incident.channels else "",
        "category": ((incident.category or {}).get("level1") or "")[:50],
        "level": incident.level or "",
    }


def record(
    session: AsyncSession,
    *,
    at: datetime,
    tz: ZoneInfo,
    unit_code: str | None,
    channel: str,
    category: str,
    level: str,
    **counts: int,
) -> None:
    """Count what happened (e.g. assigned=1) for a unit on the local day of `at`."""
    day = at.astimezone(tz).date()
    for counter, n in counts.items():
        if counter not in STAT_COUNTERS:
            raise ValueError(f"unknown statistics counter {counter!r}")
        if n:
            session.add(
                StatEvent(
                    day=day,
                    unit_code=unit_code or "",
                    channel=channel,
                    category=category,
                    level=level,
                    counter=counter,
                    n=n,
                )
            )


def _pg(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


async def _pending_events(session: AsyncSession, *, limit: int, lock: bool) -> list[Any]:
    t = StatEvent.__table__
    q = select(t).order_by(t.c.id).limit(limit)
    if lock and _pg(session):
        q = q.with_for_update(skip_locked=True)
    return list((await (await session.connection()).execute(q)).all())


async def _uncounted_messages(session: AsyncSession, *, limit: int, lock: bool) -> list[Any]:
    m, i = IncidentMessage.__table__, Incident.__table__
    q = (
        select(
            m.c.message_id,
            m.c.channel,
            m.c.received_at,
            m.c.joined_by,
            func.substr(func.coalesce(m.c.title, m.c.content), 1, 60).label("excerpt"),
            i.c.id.label("incident_id"),
            i.c.status,
            i.c.lead_unit_code,
            i.c.category,
            i.c.level,
        )
        .join(i, i.c.id == m.c.incident_id)
        .where(text("NOT incident_message.stat_counted"))  # as the partial index says it, on both engines
        .order_by(m.c.received_at)
        .limit(limit)
    )
    if lock and _pg(session):
        q = q.with_for_update(skip_locked=True, of=m)
    return list((await (await session.connection()).execute(q)).all())


def _aggregate(events: list[Any], messages: list[Any], tz: ZoneInfo) -> dict[tuple, Counter]:
    agg: dict[tuple, Counter] = defaultdict(Counter)
    for e in events:
        agg[(e.day, e.unit_code, e.channel, e.category, e.level)][e.counter] += e.n
    for r in messages:
        category = ((r.category or {}).get("level1") or "")[:50]
        key = (r.received_at.astimezone(tz).date(), r.lead_unit_code or "", r.channel, category, r.level)
        agg[key]["received"] += 1
    return agg


async def rollup(session: AsyncSession, *, tz: ZoneInfo, batch: int = 5000) -> tuple[int, list[Any]]:
    """Fold a batch of pending counts and newly graded messages into stat_daily; returns how many rows
    it took and the messages (the caller acts on them in the same transaction).

    Claimed with SKIP LOCKED on PostgreSQL and done in one transaction, so a row is counted once.
    """
    events = await _pending_events(session, limit=batch, lock=True)
    messages = await _uncounted_messages(session, limit=batch, lock=True)
    if not events and not messages:
        return 0, []
    agg = _aggregate(events, messages, tz)
    t = StatDaily.__table__
    rows = [
        {**dict(zip(KEY, key, strict=True)), **{c: counts.get(c, 0) for c in STAT_COUNTERS}}
        for key, counts in agg.items()
    ]
    ins = (postgresql if _pg(session) else sqlite).insert(t)
    stmt = ins.on_conflict_do_update(
        index_elements=list(KEY), set_={c: t.c[c] + ins.excluded[c] for c in STAT_COUNTERS}
    )
    conn = await session.connection()
    await conn.execute(stmt, rows)
    if events:
        await conn.execute(
            delete(StatEvent.__table__).where(StatEvent.__table__.c.id.in_([e.id for e in events]))
        )
    if messages:
        m = IncidentMessage.__table__
        await conn.execute(
            update(m).where(m.c.message_id.in_([r.message_id for r in messages])).values(stat_counted=True)
        )
    return len(events) + len(messages), messages


def rates(c: dict[str, int]) -> dict[str, float | None]:
    """响应率, 解决率, 满意率, 按时办结率 from counts (None when nothing to divide by)."""

    def ratio(a: float, b: float) -> float | None:
        return round(max(0.0, min(1.0, a / b)), 4) if b else None

    rated = c["satisfied"] + c["basically_satisfied"] + c["unsatisfied"]
    return {
        "response_rate": ratio(c["signed_on_time"], c["assigned"]),
        "resolution_rate": ratio(c["closed"] - c["reopened"], c["closed"]),
        "satisfaction_rate": ratio(c["satisfied"] + c["basically_satisfied"], rated),
        "on_time_rate": ratio(c["replied_on_time"], c["replied"]),
    }


def period_of(day: date, period: str) -> date:
    """The first day of the day's week (Monday) or month, or the day itself."""
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


async def query(
    session: AsyncSession,
    *,
    start: date,
    end: date,
    tz: ZoneInfo,
    unit: str | None = None,
    channel: str | None = None,
    category: str | None = None,
    level: str | None = None,
    group_by: str | None = "unit",
    period: str = "day",
) -> dict[str, Any]:
    """Totals, one group per unit/channel/category/level and a time series for the filters."""
    t = StatDaily.__table__
    filters = [t.c.day >= start, t.c.day <= end]
    wanted = {"unit_code": unit, "channel": channel, "category": category, "level": level}
    filters += [t.c[col] == value for col, value in wanted.items() if value is not None]
    sums = [func.sum(t.c[c]).label(c) for c in STAT_COUNTERS]
    group_col = GROUPS.get(group_by or "")
    by_group: dict[str, Counter] = defaultdict(Counter)
    by_day: dict[date, Counter] = defaultdict(Counter)
    conn = await session.connection()

    def counts(row, skip: int) -> dict[str, int]:
        return {c: int(row[i + skip] or 0) for i, c in enumerate(STAT_COUNTERS)}

    if group_col and _pg(session):
        # One pass over the day rows for both the groups and the series (GROUPING SETS).
        q = (
            select(t.c[group_col], t.c.day, *sums)
            .where(*filters)
            .group_by(func.grouping_sets(t.c[group_col], t.c.day))
        )
        for row in (await conn.execute(q)).all():
            if row[1] is None:
                by_group[row[0]].update(counts(row, 2))
            else:
                by_day[row[1]].update(counts(row, 2))
    else:
        if group_col:
            q = select(t.c[group_col], *sums).where(*filters).group_by(t.c[group_col])
            for row in (await conn.execute(q)).all():
                by_group[row[0]].update(counts(row, 1))
        for row in (await conn.execute(select(t.c.day, *sums).where(*filters).group_by(t.c.day))).all():
            by_day[row[0]].update(counts(row, 1))
    # What is not rolled up yet (usually a few seconds' worth) is added here, read-only.
    events = await _pending_events(session, limit=TAIL_LIMIT, lock=False)
    messages = await _uncounted_messages(session, limit=TAIL_LIMIT, lock=False)
    for key, counts in _aggregate(events, messages, tz).items():
        row = dict(zip(KEY, key, strict=True))
        if not (start <= row["day"] <= end) or any(
            v is not None and row[col] != v for col, v in wanted.items()
        ):
            continue
        if group_col:
            by_group[row[group_col]].update(counts)
        by_day[row["day"]].update(counts)
    series: dict[date, Counter] = defaultdict(Counter)
    for d, counts in by_day.items():
        series[period_of(d, period)].update(counts)
    totals: Counter = Counter()
    for counts in by_day.values():
        totals.update(counts)

    def full(c: Counter) -> dict[str, int]:
        return {k: int(c.get(k, 0)) for k in STAT_COUNTERS}

    return {
        "totals": full(totals),
        "groups": {k: full(v) for k, v in by_group.items()},
        "series": [(d, full(series[d])) for d in sorted(series)],
        # More waits to be rolled up than a query adds itself: the figures lag behind a little.
        "complete": len(events) < TAIL_LIMIT and len(messages) < TAIL_LIMIT,
    }
