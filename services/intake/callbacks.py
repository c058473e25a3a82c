"""Reply callbacks: when a reply is published, the channel client's callback URL receives it.

A callback is a row in the `callback` table, written in the same transaction as the status change
that published the reply, so a restart never loses one. The sender (a background task of each
replica) claims due rows — FOR UPDATE SKIP LOCKED plus a lease on PostgreSQL — POSTs them, and
retries with jittered exponential backoff until the client answers 2xx.

Each POST carries (see services/intake/README.md):
    Content-Type: application/json
    X-Minsheng-Event: message.replied
    X-Minsheng-Delivery: <callback id>          (the same on every retry: deduplicate on it)
    X-Minsheng-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
"""

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import event, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlmodel import select

from kit.db import is_sqlite
from kit.worker import BackgroundWorker
from schema.enums import CITIZEN_STATUS_TEXT, CitizenStatus
from services.intake import metrics
from services.intake.config import IntakeConfig
from services.intake.models import Callback, Message

log = logging.getLogger("minsheng.intake.callbacks")

EVENT_REPLIED = "message.replied"
SIGNATURE_HEADER = "X-Minsheng-Signature"
LEASE = timedelta(seconds=60)


def sign(secret: str, body: bytes, *, now: int | None = None) -> str:
    """The X-Minsheng-Signature value for a callback body."""
    ts = int(time.time()) if now is None else now
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, window: int = 300) -> bool:
    """How a portal checks a callback (also used by the tests' fake portal)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - ts) > window:
        return False
    return hmac.compare_digest(sign(secret, body, now=ts), header)


def reply_payload(message: Message, delivery_id: str, now: datetime) -> dict[str, Any]:
    """The JSON a channel client receives for a published reply."""
    status = CitizenStatus(message.citizen_status)
    return {
        "event": EVENT_REPLIED,
        "delivery_id": delivery_id,
        "occurred_at": now.isoformat(),
        "message": {
            "id": message.id,
            "tracking_code": message.tracking_code,
            "channel": message.channel,
            "external_id": message.external_id,
            "status": status.value,
            "status_text": CITIZEN_STATUS_TEXT[status],
            "handling_unit": message.handling_unit,
        },
        "reply": message.reply,
    }


async def enqueue_reply(*, session, message: Message, config: IntakeConfig, now: datetime) -> bool:
    """Queue the reply for the client's callback URL (once per reply); False when the client has none."""
    client = config.clients.get(message.client_id or "")
    if client is None or not client.callback_url:
        return False
    delivery_id = str(uuid.uuid4())
    dedupe = f"{EVENT_REPLIED}:{message.id}:{(message.reply or {}).get('published_at')}"[:200]
    table = Callback.__table__
    dialect = session.bind.dialect.name
    stmt = (
        postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    ).on_conflict_do_nothing()
    await (await session.connection()).execute(
        stmt,
        [
            {
                "id": delivery_id,
                "dedupe_key": dedupe,
                "client_id": message.client_id,
                "message_id": message.id,
                "event": EVENT_REPLIED,
                "payload": reply_payload(message, delivery_id, now),
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
            }
        ],
    )
    session.info["callbacks"] = True
    return True


# Wake every sender in this process after a transaction that queued a callback commits.
_SENDERS: list["CallbackSender"] = []


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop("callbacks", None):
        for sender in _SENDERS:
            sender.wake()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("callbacks", None)


class CallbackSender(BackgroundWorker):
    """Delivers queued callbacks until each answers 2xx."""

    worker_name = "callback-sender"

    def __init__(
        self, *, sessions, http: httpx.AsyncClient, config: IntakeConfig, secrets: dict[str, str], clock
    ):
        self.sessions = sessions
        self.http = http
        self.config = config
        self.secrets = secrets
        self.clock = clock
        super().__init__()
        self._sqlite = is_sqlite(sessions.kw["bind"])
        self.housekeeping = None  # optional coroutine function run now and then (expired idempotency keys)
        self.housekeeping_seconds = 300.0
        self._last_housekeeping = 0.0
        self._inflight: set[str] = set()
        self._lease_until: datetime | None = None

    @property
    def poll_seconds(self) -> float:
        return self.config.callbacks.poll_seconds

    def start(self) -> None:
        """Start sending in the background."""
        if self._task is None:
            _SENDERS.append(self)
        super().start()

    async def stop(self) -> None:
        """Stop sending."""
        if self in _SENDERS:
            _SENDERS.remove(self)
        await super().stop()
        if self._inflight:  # a graceful stop hands its claims back at once instead of after the lease
            try:
                async with self.sessions() as s:
                    await s.exec(
                        update(Callback)
                        .where(
                            Callback.id.in_(self._inflight),
                            Callback.delivered_at.is_(None),
                            Callback.claimed_until == self._lease_until,  # ours, not another replica's
                        )
                        .values(claimed_until=None)
                    )
                    await s.commit()
            except Exception:
                log.warning(
                    "could not release claimed callbacks; they are retried after the lease", exc_info=True
                )
            self._inflight.clear()

    async def run_round(self) -> None:
        """Send what is due, and now and then the housekeeping."""
        while await self.drain_once() >= self.config.callbacks.batch_size:
            pass
        if (
            self.housekeeping is not None
            and time.monotonic() - self._last_housekeeping > self.housekeeping_seconds
        ):
            self._last_housekeeping = time.monotonic()
            await self.housekeeping()

    async def drain_once(self) -> int:
        """Claim and send one batch of due callbacks; returns how many were claimed."""
        now = self.clock()
        async with self.sessions() as s:
            q = (
                select(Callback)
                .where(Callback.delivered_at.is_(None), Callback.next_attempt_at <= now)
                .where(or_(Callback.claimed_until.is_(None), Callback.claimed_until < now))
                .order_by(Callback.next_attempt_at)
                .limit(self.config.callbacks.batch_size)
            )
            if not self._sqlite:
                q = q.with_for_update(skip_locked=True)
            rows = list((await s.exec(q)).all())
            self._lease_until = now + LEASE
            for r in rows:
                r.claimed_until = self._lease_until
                s.add(r)
            # Known before the commit: a stop that lands in the commit or the session's close (the
            # claim stored, this coroutine not resumed) still hands the claims back.
            self._inflight = {r.id for r in rows}
            await s.commit()
        if not rows:
            return 0
        results = await asyncio.gather(*(self._send(r) for r in rows))
        async with self.sessions() as s:
            done = self.clock()
            for row, (status, error) in zip(rows, results, strict=True):
                row.attempts += 1
                row.claimed_until = None
                row.last_status = status
                if error is None:
                    row.delivered_at = done
                    row.last_error = None
                    metrics.CALLBACKS_DELIVERED.inc()
                else:
                    row.last_error = error[:1000]
                    row.next_attempt_at = done + timedelta(seconds=self._backoff(row.attempts))
                    metrics.CALLBACK_FAILURES.labels(row.client_id).inc()
                    log.warning(
                        "callback %s to %s failed (attempt %s): %s",
                        row.id,
                        row.client_id,
                        row.attempts,
                        error,
                    )
                s.add(row)
            await s.commit()
        self._inflight = set()
        return len(rows)

    def _backoff(self, attempts: int) -> float:
        cfg = self.config.callbacks
        base = cfg.backoff_base_seconds * (2 ** min(attempts - 1, 30))
        return min(cfg.backoff_max_seconds, base) * random.uniform(0.5, 1.0)

    async def _send(self, row: Callback) -> tuple[int | None, str | None]:
        client = self.config.clients.get(row.client_id)
        url = client.callback_url if client else None
        secret = self.secrets.get(row.client_id)
        if not url:
            return None, "no callback URL is configured for this client"
        if not secret:
            return None, "no callback secret is configured for this client (INTAKE_CALLBACK_SECRETS)"
        body = json.dumps(row.payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Minsheng-Event": row.event,
            "X-Minsheng-Delivery": row.id,
            SIGNATURE_HEADER: sign(secret, body),
        }
        try:
            resp = await self.http.post(
                url, content=body, headers=headers, timeout=self.config.callbacks.timeout_seconds
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if 200 <= resp.status_code < 300:
            return resp.status_code, None
        return resp.status_code, f"answered {resp.status_code}: {resp.text[:200]}"
