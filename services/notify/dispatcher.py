"""The dispatcher: sends queued deliveries through the providers, with retry, failover and rate limits.

Every replica runs one. It leases a batch of due deliveries (FOR UPDATE SKIP LOCKED on PostgreSQL, so
replicas never take the same row), calls the providers concurrently outside any transaction, and
writes back each delivery's state and every attempt in one transaction. SMS goes to the providers in
the policy's order: one that throttles us, refuses our credentials or fails is skipped for the next
(failover) and left alone for a while; what a provider calls permanent (a bad number) is not retried.
"""

import asyncio
import logging
import re
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, insert, or_, select, update
from sqlalchemy.orm import Session

from kit.db import is_sqlite
from kit.ratelimit import RateLimiter
from kit.worker import BackgroundWorker
from services.notify import metrics
from services.notify.clients.base import Message, Outcome
from services.notify.models import Delivery, DeliveryAttempt
from services.notify.service import KIND_TEXT

log = logging.getLogger("minsheng.notify.dispatcher")

_ACTIVE: "weakref.WeakSet[Dispatcher]" = weakref.WeakSet()


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop("notify_dispatch", None):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        for d in list(_ACTIVE):
            if d.loop is loop:  # the app that committed (a process may run several, as tests do)
                d.wake()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("notify_dispatch", None)


@dataclass
class Result:
    """What became of one delivery in one round."""

    id: str
    channel: str
    values: dict[str, Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    final_status: str | None = None


class Scrubber:
    """Removes credentials from any text before it is logged or stored: the configured secrets, and
    whatever stands in a credential query parameter (WeCom's access_token, a robot key, a sign)."""

    _QUERY = re.compile(r"(?i)\b(access_token|corpsecret|key|sign|signature|accesskeyid)=[^&\s\"'<>]+")

    def __init__(self, secrets: list[str]):
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        for s in self.secrets:
            text = text.replace(s, "***")
        return self._QUERY.sub(r"\1=***", text)


class Dispatcher(BackgroundWorker):
    """Sends due deliveries."""

    worker_name = "notify-dispatcher"

    def __init__(self, *, state, providers: dict[str, list], limiter: RateLimiter, scrub: Scrubber):
        self.state = state
        self.settings = state.settings
        self.sessions = state.sessions
        self.clock = state.clock
        self.providers = providers
        self.limiter = limiter
        self.scrub = scrub
        self._paused: dict[str, datetime] = {}
        super().__init__()
        self._sqlite = is_sqlite(self.sessions.kw["bind"])
        self._sem = asyncio.Semaphore(self.settings.dispatch_concurrency)
        self.loop = asyncio.get_running_loop()
        _ACTIVE.add(self)

    @property
    def poll_seconds(self) -> float:
        return self.settings.dispatch_poll_seconds

    async def run_round(self) -> None:
        """Send everything due, in batches."""
        while await self.drain_once() >= self.settings.dispatch_batch_size:
            pass

    async def stop(self) -> None:
        """Stop the background loop."""
        _ACTIVE.discard(self)
        await super().stop()

    async def drain_once(self) -> int:
        """Claim one batch of due deliveries, send them, record the outcome; returns how many."""
        now = self.clock.now()
        rows = await self._claim(now)
        if not rows:
            return 0
        results = await asyncio.gather(*(self._guarded(r, now) for r in rows))
        await self._record(results)
        return len(rows)

    async def _claim(self, now: datetime) -> list[Any]:
        t = Delivery.__table__
        due = (
            select(t.c.id)
            .where(t.c.status == "queued", t.c.next_attempt_at <= now)
            .where(or_(t.c.claimed_until.is_(None), t.c.claimed_until < now))
            .order_by(t.c.next_attempt_at)
            .limit(self.settings.dispatch_batch_size)
        )
        if not self._sqlite:
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(t)
            .where(t.c.id.in_(due.scalar_subquery()))
            .values(claimed_until=now + timedelta(seconds=self.settings.dispatch_lease_seconds))
            .returning(*t.c)
        )
        async with self.sessions() as s:
            rows = list((await s.exec(stmt)).all())
            await s.commit()
        return rows

    async def _guarded(self, row, now: datetime) -> Result:
        async with self._sem:
            try:
                return await self._deliver(row, now)
            except Exception as exc:  # a bug in an adapter must not lose the delivery
                log.exception("delivery %s failed unexpectedly", row.id)
                return Result(
                    row.id,
                    row.channel,
                    {
                        "next_attempt_at": now + timedelta(seconds=30),
                        "last_error": self.scrub(repr(exc))[:1000],
                    },
                )

    def _message(self, row, recipient) -> Message:
        policy = self.state.directory.policy
        template = policy.templates.get(row.template)
        kind = KIND_TEXT.get(row.event, row.event)
        return Message(
            delivery_id=row.id,
            channel=row.channel,
            address=recipient.address(row.channel) or "",
            text=row.content,
            subject=f"【{policy.sms_sign}】{kind} {row.incident_code or ''}".strip(),
            template=template,
            params={k: str(v) for k, v in (row.params or {}).items()},
            sign=policy.sms_sign,
            recipient_name=row.recipient_name,
        )

    def _available(self, channel: str) -> list:
        providers = [p for p in self.providers.get(channel, []) if p.configured]
        if channel == "sms":
            order = list(self.state.directory.policy.sms_provider_order)
            providers.sort(key=lambda p: order.index(p.name) if p.name in order else len(order))
        return providers

    async def _deliver(self, row, now: datetime) -> Result:
        policy = self.state.directory.policy
        res = Result(row.id, row.channel, {})
        recipient = self.state.directory.find(row.recipient_id)
        if recipient is None or not recipient.address(row.channel):
            return self._fail(res, now, "no_address", "the recipient is no longer reachable on this channel")
        providers = self._available(row.channel)
        if not providers:
            return self._fail(res, now, "no_provider", f"no provider is configured for {row.channel}")
        msg = self._message(row, recipient)
        attempts = row.attempts
        wait_until: datetime | None = None
        unknown = False
        tried_before: str | None = None
        for provider in providers:
            key = self._pause_key(provider, msg)
            paused = self._paused.get(key)
            if paused and paused > now:
                wait_until = min(wait_until or paused, paused)
                continue
            retry_after = await self._rate_check(provider, msg)
            if retry_after:
                at = now + timedelta(seconds=retry_after)
                wait_until = min(wait_until or at, at)
                continue
            started = time.perf_counter()
            out = await provider.send(msg)
            elapsed = time.perf_counter() - started
            metrics.PROVIDER_LATENCY.labels(provider.name).observe(elapsed)
            attempts += 1
            res.attempts.append(self._attempt(row.id, attempts, provider.name, now, elapsed, out))
            if out.verdict == "ok":
                if tried_before:
                    metrics.FAILOVERS.inc()
                status = "delivered" if out.delivered else "sent"
                res.values.update(
                    status=status,
                    attempts=attempts,
                    provider=provider.name,
                    provider_message_id=(out.message_id or None) and str(out.message_id)[:100],
                    sent_at=now,
                    delivered_at=now if out.delivered else None,
                    claimed_until=None,
                    last_error=self._error(out) if unknown else None,
                )
                res.final_status = status
                return res
            metrics.FAILURES.labels(provider.name, out.verdict).inc()
            log.warning(
                "delivery %s via %s: %s %s %s",
                row.id,
                provider.name,
                out.verdict,
                out.code,
                self.scrub(out.detail) or "",
            )
            res.values["last_error"] = self._error(out, provider.name)
            if out.verdict == "permanent":
                res.values.update(attempts=attempts, provider=provider.name)
                return self._fail(res, now, out.code, out.detail, keep_error=True)
            if out.verdict == "throttled":
                self._pause(out.pause_key or key, now + policy.throttle_pause)
            elif out.verdict == "provider_down":
                self._pause(out.pause_key or key, now + policy.auth_pause)
            elif out.verdict == "unknown":
                unknown = True
            tried_before = provider.name
        res.values["attempts"] = attempts
        if unknown:
            # Every provider we reached may have sent it: do not send it again (no duplicate SMS);
            # the escalation chain repeats the alert if nobody acknowledges.
            res.values.update(
                status="sent", sent_at=now, claimed_until=None, provider=res.attempts[-1]["provider"]
            )
            res.final_status = "sent"
            return res
        if attempts >= policy.max_attempts:
            return self._fail(
                res, now, "exhausted", res.values.get("last_error") or "every attempt failed", keep_error=True
            )
        backoff = now + policy.backoff_for(max(1, attempts))
        if not res.attempts:  # nobody was asked (paused, rate-limited): try when the first is free
            nxt = wait_until or backoff
        else:
            nxt = max(backoff, wait_until) if wait_until else backoff
        res.values.update(next_attempt_at=nxt, claimed_until=None)
        return res

    def _fail(self, res: Result, now: datetime, code, detail, keep_error: bool = False) -> Result:
        res.values.update(status="failed", failed_at=now, claimed_until=None)
        if not keep_error or not res.values.get("last_error"):
            res.values["last_error"] = self.scrub(f"{code}: {detail}")[:1000]
        res.final_status = "failed"
        log.error("delivery %s failed for good: %s", res.id, res.values["last_error"])
        return res

    def _error(self, out: Outcome, provider: str | None = None) -> str:
        text = (
            f"{provider + ' ' if provider else ''}{out.verdict} {out.code or ''}: {out.detail or ''}".strip()
        )
        return self.scrub(text)[:1000]

    def _attempt(self, delivery_id, number, provider, now, elapsed, out: Outcome) -> dict[str, Any]:
        return {
            "delivery_id": delivery_id,
            "number": number,
            "provider": provider,
            "at": now,
            "duration_ms": round(elapsed * 1000, 2),
            "outcome": out.verdict,
            "code": (out.code or "")[:100] or None,
            "detail": (self.scrub(out.detail) or "")[:500] or None,
            "provider_message_id": (str(out.message_id)[:100] if out.message_id else None),
        }

    @staticmethod
    def _pause_key(provider, msg: Message) -> str:
        if provider.name in ("wecom_robot", "dingtalk"):
            return f"{provider.name}:{msg.address}"
        return provider.name

    def _pause(self, key: str, until: datetime) -> None:
        self._paused[key] = max(until, self._paused.get(key, until))
        log.warning("leaving %s alone until %s", key, until.isoformat())

    async def _rate_check(self, provider, msg: Message) -> int:
        for rule, key in provider.rate_rules(msg):
            d = await self.limiter.hit(rule, "provider", key)
            if not d.allowed:
                return d.retry_after
        return 0

    async def _record(self, results: list[Result]) -> None:
        t = Delivery.__table__
        attempts = [a for r in results for a in r.attempts]
        async with self.sessions() as s:
            if attempts:
                await s.exec(insert(DeliveryAttempt.__table__), params=attempts)
            # One executemany per shape of change (most of a round is "sent"), not a statement per row.
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for r in results:
                if r.values:
                    shapes.setdefault(tuple(sorted(r.values)), []).append({"delivery_id": r.id, **r.values})
            for keys, params in shapes.items():
                stmt = (
                    update(t)
                    .where(t.c.id == bindparam("delivery_id"))
                    .values({k: bindparam(k) for k in keys})
                )
                await s.exec(stmt, params=params)
            await s.commit()
        for r in results:
            if r.final_status:
                metrics.DELIVERIES.labels(r.channel, r.final_status).inc()
