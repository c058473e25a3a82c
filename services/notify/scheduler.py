"""The scheduler: escalation steps, 续报 and the daily digest, from the persisted `job` table.

One replica at a time runs it: it holds a lease row (taken with a conditional UPDATE, renewed every
round, taken over by another replica when it lapses). Each job is claimed with FOR UPDATE SKIP LOCKED
on PostgreSQL and done in one transaction with what it causes (deliveries, the next job), guarded by
`done_at IS NULL`: a job is done exactly once, even if two replicas ever overlap. Time comes from
`state.clock`, so tests move time instead of sleeping; after downtime the due jobs simply run (once
each, and periodic ones reschedule from now rather than sending every missed round).
"""

import contextlib
import logging
import secrets
import socket
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from kit.db import is_sqlite
from kit.worker import BackgroundWorker
from services.notify import metrics, service
from services.notify.models import Job, Lease

log = logging.getLogger("minsheng.notify.scheduler")
LEASE_NAME = "scheduler"


class Scheduler(BackgroundWorker):
    """Runs due jobs while it holds the scheduler lease."""

    worker_name = "notify-scheduler"

    def __init__(self, *, state, ctx_factory, holder: str | None = None):
        self.state = state
        self.settings = state.settings
        self.sessions = state.sessions
        self.clock = state.clock
        self.ctx_factory = ctx_factory
        self.holder = holder or f"{socket.gethostname()}:{secrets.token_hex(4)}"
        super().__init__()
        self._sqlite = is_sqlite(self.sessions.kw["bind"])
        self.leader = False

    @property
    def poll_seconds(self) -> float:
        return self.settings.scheduler_poll_seconds

    def start(self) -> None:
        """Run in the background, with a first round at once (catching up after downtime)."""
        super().start()
        self.wake()

    async def run_round(self) -> None:
        """Run what is due."""
        await self.tick()

    async def stop(self) -> None:
        """Stop, and hand the lease back so another replica takes over at once."""
        await super().stop()
        if self.leader:
            with contextlib.suppress(Exception):
                async with self.sessions() as s:
                    await s.exec(
                        update(Lease)
                        .where(Lease.name == LEASE_NAME, Lease.holder == self.holder)
                        .values(expires_at=self.clock.now() - timedelta(seconds=1))
                    )
                    await s.commit()
            self.leader = False

    async def tick(self) -> int:
        """One round: hold the lease, keep the digest scheduled, run every due job; returns how many ran."""
        now = self.clock.now()
        if not await self.acquire(now):
            return 0
        ctx = self.ctx_factory()
        async with self.sessions() as s:
            await service.ensure_digest_job(session=s, ctx=ctx, now=now)
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()
        ran = 0
        while True:
            jobs = await self._claim(now)
            for job in jobs:
                ran += await self._run_job(job, ctx, now)
            if len(jobs) < self.settings.scheduler_batch_size:
                return ran

    async def acquire(self, now: datetime) -> bool:
        """Take or renew the lease; True while this replica holds it."""
        until = now + timedelta(seconds=self.settings.scheduler_lease_seconds)
        async with self.sessions() as s:
            res = await s.exec(
                update(Lease)
                .where(Lease.name == LEASE_NAME)
                .where(or_(Lease.holder == self.holder, Lease.expires_at < now))
                .values(holder=self.holder, expires_at=until)
            )
            if res.rowcount == 1:
                await s.commit()
                self._set_leader(True)
                return True
            exists = (await s.exec(select(Lease.name).where(Lease.name == LEASE_NAME))).first()
            if exists is None:
                s.add(Lease(name=LEASE_NAME, holder=self.holder, expires_at=until))
                try:
                    await s.commit()
                    self._set_leader(True)
                    return True
                except IntegrityError:
                    await s.rollback()
        self._set_leader(False)
        return False

    def _set_leader(self, value: bool) -> None:
        if value != self.leader:
            log.info("scheduler lease %s by %s", "taken" if value else "not held", self.holder)
        self.leader = value
        metrics.SCHEDULER_LEADER.set(1 if value else 0)

    async def _claim(self, now: datetime) -> list:
        t = Job.__table__
        due = (
            select(t.c.id)
            .where(t.c.done_at.is_(None), t.c.due_at <= now)
            .where(or_(t.c.claimed_until.is_(None), t.c.claimed_until < now))
            .order_by(t.c.due_at, t.c.id)
            .limit(self.settings.scheduler_batch_size)
        )
        if not self._sqlite:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(t)
            .where(t.c.id.in_(due.scalar_subquery()))
            .values(claimed_until=now + timedelta(seconds=self.settings.scheduler_lease_seconds))
            .returning(*t.c)
        )
        async with self.sessions() as s:
            rows = list((await s.exec(stmt)).all())
            await s.commit()
        return sorted(rows, key=lambda r: (r.due_at, r.id))

    async def _run_job(self, job, ctx, now: datetime) -> int:
        t = Job.__table__
        try:
            async with self.sessions() as s:
                done = await s.exec(
                    update(t)
                    .where(t.c.id == job.id, t.c.done_at.is_(None))
                    .values(done_at=now, claimed_until=None)
                )
                if done.rowcount != 1:  # another replica did it (or it was ended meanwhile)
                    await s.rollback()
                    return 0
                outcome = await self._do(s, job, ctx, now)
                await s.exec(update(t).where(t.c.id == job.id).values(outcome=outcome[:32]))
                await s.commit()
            return 1
        except Exception as exc:
            log.exception("job %s (%s) failed; it will be retried", job.key, job.kind)
            async with self.sessions() as s:
                await s.exec(
                    update(t)
                    .where(t.c.id == job.id)
                    .values(
                        claimed_until=None,
                        attempts=t.c.attempts + 1,
                        due_at=now + timedelta(seconds=min(600, 5 * 2 ** min(job.attempts, 7))),
                        last_error=repr(exc)[:1000],
                    )
                )
                await s.commit()
            return 0

    async def _do(self, s, job, ctx, now: datetime) -> str:
        payload = job.payload or {}
        if job.kind == "escalate":
            return await service.escalate(
                session=s, ctx=ctx, alert_id=job.subject, step=int(payload["step"]), now=now
            )
        if job.kind == "follow_up":
            return await service.follow_up(
                session=s, ctx=ctx, incident_id=job.subject, seq=int(payload.get("seq", 1)), now=now
            )
        if job.kind == "digest":
            since = (
                datetime.fromisoformat(payload["since"])
                if payload.get("since")
                else job.due_at - timedelta(days=1)
            )
            return await service.digest(session=s, ctx=ctx, due_at=job.due_at, since=since, now=now)
        return f"unknown kind {job.kind}"
