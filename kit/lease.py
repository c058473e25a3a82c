"""A database lease: one replica at a time runs a singleton worker (a scheduler, a sweep).

The lease is a row (name, holder, expires_at) in the service's own `lease` table. A replica takes it
with a conditional UPDATE (it is free, lapsed, or already ours) and renews it every round; a replica
that stops hands it back at once, one that dies lets it lapse and another takes over. Declare the
table on the service's metadata: `class Lease(LeaseFields, MyTable, table=True): __tablename__ = "lease"`.
"""

import logging
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from kit.db import UTCDateTime

log = logging.getLogger("minsheng.lease")


class LeaseFields(SQLModel):
    """Columns of a lease row."""

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime)


def holder_name() -> str:
    """A name for this process as a lease holder: host plus a random suffix."""
    return f"{socket.gethostname()}:{secrets.token_hex(4)}"[:64]


class Lease:
    """Take, renew and hand back one named lease."""

    def __init__(
        self,
        *,
        model: type[LeaseFields],
        sessions,
        name: str,
        seconds: float,
        holder: str | None = None,
        on_change: Callable[[bool], None] | None = None,
    ):
        self.model = model
        self.sessions = sessions
        self.name = name
        self.seconds = seconds
        self.holder = holder or holder_name()
        self.on_change = on_change
        self.held = False

    async def acquire(self, now: datetime) -> bool:
        """Take or renew the lease; True while this process holds it."""
        m = self.model
        until = now + timedelta(seconds=self.seconds)
        async with self.sessions() as s:
            res = await s.exec(
                update(m)
                .where(m.name == self.name)
                .where(or_(m.holder == self.holder, m.expires_at < now))
                .values(holder=self.holder, expires_at=until)
            )
            if res.rowcount == 1:
                await s.commit()
                self._set(True)
                return True
            exists = (await s.exec(select(m.name).where(m.name == self.name))).first()
            if exists is None:
                s.add(m(name=self.name, holder=self.holder, expires_at=until))
                try:
                    await s.commit()
                    self._set(True)
                    return True
                except IntegrityError:
                    await s.rollback()
        self._set(False)
        return False

    async def release(self, now: datetime) -> None:
        """Hand the lease back (when held) so another replica takes over at once."""
        if not self.held:
            return
        m = self.model
        async with self.sessions() as s:
            await s.exec(
                update(m)
                .where(m.name == self.name, m.holder == self.holder)
                .values(expires_at=now - timedelta(seconds=1))
            )
            await s.commit()
        self._set(False)

    def _set(self, value: bool) -> None:
        if value != self.held:
            log.info("lease %s %s by %s", self.name, "taken" if value else "not held", self.holder)
            if self.on_change is not None:
                self.on_change(value)
        self.held = value
