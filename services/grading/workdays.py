"""Working days by the statutory holiday calendar (with its make-up working days) and the deadlines."""

import logging
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from schema.dto import Deadlines
from schema.enums import Level
from services.grading.policy import Policy

log = logging.getLogger("minsheng.grading.workdays")


class WorkCalendar:
    """Is a day a working day: chinese-calendar's statutory table, the policy's corrections, weekends
    for years the table does not cover (logged once per year)."""

    def __init__(self, policy: Policy, tz: str):
        self.tz = ZoneInfo(tz)
        self.extra_holidays = set(policy.calendar.extra_holidays)
        self.extra_workdays = set(policy.calendar.extra_workdays)
        self._warned: set[int] = set()
        # Every new incident's clocks ask about the same few weeks, and chinese-calendar validates and
        # looks a day up on every call: the answers are remembered (per calendar, so per bundle).
        self.is_workday = lru_cache(maxsize=4096)(self._is_workday)

    def local(self, at: datetime) -> datetime:
        """A moment in the city's time zone."""
        return at.astimezone(self.tz)

    def _is_workday(self, day: date) -> bool:
        """A working day (make-up Saturdays and Sundays included, statutory holidays excluded)."""
        if day in self.extra_workdays:
            return True
        if day in self.extra_holidays:
            return False
        import chinese_calendar

        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year not in self._warned:
                self._warned.add(day.year)
                log.warning(
                    "no statutory calendar for %s: weekends only (add calendar.extra_* to the policy)",
                    day.year,
                )
            return day.weekday() < 5

    def is_statutory_holiday(self, at: datetime) -> bool:
        """A statutory holiday (not an ordinary weekend)."""
        import chinese_calendar

        day = self.local(at).date()
        if day in self.extra_holidays:
            return True
        try:
            return (
                chinese_calendar.is_holiday(day) and chinese_calendar.get_holiday_detail(day)[1] is not None
            )
        except NotImplementedError:
            return False

    def add_working_days(self, start: datetime, days: float, *, day_ends_at: str = "24:00") -> datetime:
        """The end of the n-th working day after the day of `start` (fractions: hours of the next one)."""
        local = self.local(start)
        whole = int(days)
        d = local.date()
        counted = 0
        while counted < whole:
            d += timedelta(days=1)
            if self.is_workday(d):
                counted += 1
        end = self._end_of(d, day_ends_at)
        rest = days - whole
        if rest > 0:
            d2 = d + timedelta(days=1)
            while not self.is_workday(d2):
                d2 += timedelta(days=1)
            end = datetime.combine(d2, time(0), self.tz) + timedelta(hours=24 * rest)
        return end

    def _end_of(self, d: date, day_ends_at: str) -> datetime:
        if day_ends_at == "24:00":
            return datetime.combine(d + timedelta(days=1), time(0), self.tz)
        hh, mm = (int(x) for x in day_ends_at.split(":"))
        return datetime.combine(d, time(hh, mm), self.tz)


def reply_due(
    *, policy: Policy, calendar: WorkCalendar, received_at: datetime, days: float | None = None
) -> datetime:
    """The citizen reply's due time: working days by the calendar, or natural days, from receipt."""
    d = policy.deadlines
    n = d.reply_days if days is None else days
    if d.reply_working_days:
        return calendar.add_working_days(received_at, n, day_ends_at=d.day_ends_at).astimezone(
            received_at.tzinfo
        )
    return received_at + timedelta(days=n)


def deadlines_for(
    *, policy: Policy, calendar: WorkCalendar, level: Level, received_at: datetime
) -> Deadlines:
    """The clocks of DESIGN §2 for a level, from receipt."""
    d = policy.deadlines

    def hours(table: dict[Level, float]) -> datetime | None:
        h = table.get(level)
        return received_at + timedelta(hours=h) if h is not None else None

    return Deadlines(
        report_due=hours(d.report_hours),
        first_release_due=hours(d.first_release_hours),
        response_due=hours(d.response_hours),
        reply_due=reply_due(policy=policy, calendar=calendar, received_at=received_at),
    )
