"""Time as services see it: the system clock in production, a movable one in tests."""

from datetime import datetime, timedelta

from kit.db import utcnow


class Clock:
    """The current time in UTC, optionally shifted (tests and catch-up drills move it)."""

    def __init__(self, offset: timedelta = timedelta(0)):
        self.offset = offset
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        """Now, per this clock."""
        return self._frozen if self._frozen is not None else utcnow() + self.offset

    def __call__(self) -> datetime:
        return self.now()

    def freeze(self, at: datetime) -> None:
        """Stop the clock at a moment."""
        self._frozen = at

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward."""
        if self._frozen is not None:
            self._frozen += delta
        else:
            self.offset += delta
