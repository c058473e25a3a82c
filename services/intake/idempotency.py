"""Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-header) for POSTs that create messages.

- The key is scoped to the caller (channel client, or staff user) and remembered for the configured time.
- The first request with a key records it as in flight (committed at once, so concurrent twins see it);
  its answer is stored in the same transaction as the messages it created.
- The same key with the same request (method, path, body: SHA-256 fingerprint) gets the stored
  answer again, status and body; with a different request 422; while the first is in flight 409.
- A request that fails (any error) forgets its key, so the client may retry with it.
- An in-flight record older than the lease (a crashed replica) is taken over by the next request.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.errors import AppError
from services.intake.config import Idempotency
from services.intake.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredAnswer:
    """The answer a key got the first time."""

    status_code: int
    body: bytes


def parse_key(raw: str | None) -> str | None:
    """The key of an Idempotency-Key header (an RFC 8941 string, quotes optional), or None when absent."""
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_KEY_LENGTH or any(not (0x20 <= ord(c) < 0x7F) or c in '"\\' for c in key):
        raise AppError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1–{MAX_KEY_LENGTH} printable ASCII characters",
        )
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of the request as the key's owner sent it."""
    h = hashlib.sha256(f"{method.upper()} {path}\n".encode())
    h.update(body)
    return h.hexdigest()


class IdempotencyKeys:
    """Records keys and their answers in intake's database."""

    def __init__(self, *, sessions, rules: Idempotency, clock):
        self.sessions = sessions
        self.rules = rules
        self.clock = clock

    async def begin(self, *, scope: str, key: str, print_: str) -> StoredAnswer | None:
        """Claim the key for this request, or return the stored answer; raises 409/422 per the draft."""
        for _ in range(5):
            now = self.clock()
            async with self.sessions() as s:
                s.add(
                    IdempotencyRecord(
                        scope=scope,
                        key=key,
                        fingerprint=print_,
                        state="in_flight",
                        locked_until=now + timedelta(seconds=self.rules.lease_seconds),
                        created_at=now,
                        expires_at=now + timedelta(seconds=self.rules.ttl_seconds),
                    )
                )
                try:
                    await s.commit()
                    return None
                except IntegrityError:
                    await s.rollback()
                rec = await s.get(IdempotencyRecord, (scope, key))
                if rec is None:
                    continue  # forgotten in between: try again
                if rec.expires_at <= now or (rec.state == "in_flight" and rec.locked_until <= now):
                    if await self._take_over(s, rec, print_, now):
                        return None
                    continue
                if rec.fingerprint != print_:
                    raise AppError(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used for a different request",
                    )
                if rec.state == "in_flight":
                    raise AppError(
                        409,
                        "idempotency_request_in_flight",
                        "a request with this Idempotency-Key is still being processed",
                        headers={"Retry-After": "1"},
                    )
                return StoredAnswer(rec.status_code or 200, (rec.response or "").encode())
        raise AppError(409, "idempotency_request_in_flight", "the Idempotency-Key is contended; retry")

    async def _take_over(self, s: AsyncSession, rec: IdempotencyRecord, print_: str, now: datetime) -> bool:
        result = await s.exec(
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.scope == rec.scope,
                IdempotencyRecord.key == rec.key,
                IdempotencyRecord.created_at == rec.created_at,
                IdempotencyRecord.state == rec.state,
            )
            .values(
                fingerprint=print_,
                state="in_flight",
                locked_until=now + timedelta(seconds=self.rules.lease_seconds),
                created_at=now,
                expires_at=now + timedelta(seconds=self.rules.ttl_seconds),
                status_code=None,
                response=None,
            )
        )
        await s.commit()
        return result.rowcount == 1

    async def complete(self, session: AsyncSession, *, scope: str, key: str, status_code: int, body) -> None:
        """Store the answer in the caller's transaction (the one that creates the messages)."""
        text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        await session.exec(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
            .values(state="done", status_code=status_code, response=text, locked_until=self.clock())
        )

    async def forget(self, *, scope: str, key: str) -> None:
        """Drop the key after a failed request, so the client can retry with it."""
        async with self.sessions() as s:
            await s.exec(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.scope == scope,
                    IdempotencyRecord.key == key,
                    IdempotencyRecord.state == "in_flight",
                )
            )
            await s.commit()

    async def purge_expired(self) -> int:
        """Delete keys past their expiry; returns how many."""
        async with self.sessions() as s:
            result = await s.exec(
                delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < self.clock())
            )
            await s.commit()
        return result.rowcount or 0
