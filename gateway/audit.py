"""The staff audit log: who called what, on which ids, when, with what outcome.

The gateway sees every staff call, so it records them all (and every sign-in attempt) in its own
`audit_event` table. Rows are hash-chained (each hash covers the row and the previous hash) and the
database refuses UPDATE, DELETE and TRUNCATE on the table (triggers from the migration), so neither
staff nor the gateway's own code can rewrite history unnoticed; `verify_chain` proves it.

A row is written when the response starts, before the caller sees the outcome: a staff action that
was answered is an audited action. Writers are serialised (an asyncio lock in the process plus a
transaction-scoped advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite) so the chain stays linear
across replicas.
"""

import asyncio
import hashlib
import logging
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import Counter
from sqlalchemy import func, text
from sqlmodel import select

from gateway.models import AuditEvent
from kit.context import request_id_var, trace_var
from kit.db import is_sqlite
from schema.dto import Principal
from schema.enums import PrincipalKind

log = logging.getLogger("minsheng.gateway.audit")

AUDITED = Counter(
    "minsheng_gateway_audit_events_total", "Staff actions written to the audit log", ["outcome"]
)
AUDIT_FAILURES = Counter("minsheng_gateway_audit_failures_total", "Audit rows that could not be written")

GENESIS = "0" * 64
_ADVISORY_KEY = 0x4D53_4155  # "MSAU": one lock for the whole chain
_HASHED = (
    "seq",
    "at",
    "actor",
    "roles",
    "unit_code",
    "action",
    "method",
    "route",
    "path",
    "target_ids",
    "query",
    "status",
    "outcome",
    "request_id",
    "trace_id",
    "client_ip",
)


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the row's content in canonical JSON."""
    content = {k: fields.get(k) for k in _HASHED}
    if isinstance(content["at"], datetime):
        content["at"] = content["at"].isoformat()
    blob = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + blob).hexdigest()


def outcome_of(status: int) -> str:
    """ok (2xx/3xx), refused (401/403/429), rejected (other 4xx) or failed (5xx)."""
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "refused"
    return "rejected" if status < 500 else "failed"


def path_ids(template: str | None, path: str) -> dict[str, str]:
    """The path parameters of a request: /incidents/{incident_id} + /incidents/42 → {incident_id: 42}."""
    if not template:
        return {}
    names = template.strip("/").split("/")
    values = path.strip("/").split("/")
    out: dict[str, str] = {}
    for i, name in enumerate(names):
        if name.startswith("{") and name.endswith("}") and i < len(values):
            key = name[1:-1].split(":", 1)[0]
            out[key] = "/".join(values[i:]) if name.endswith(":path}") else values[i]
    return out


class AuditLog:
    """Appends rows to the chain; one per gateway process."""

    def __init__(self, session_factory):
        self.sessions = session_factory
        self._lock = asyncio.Lock()
        self._sqlite = is_sqlite(session_factory.kw["bind"])

    async def append(self, **fields: Any) -> AuditEvent:
        """Write one row at the end of the chain."""
        async with self._lock, self.sessions() as s:
            if not self._sqlite:
                await s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_ADVISORY_KEY))
            last = (
                await s.exec(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1))
            ).first()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            fields.update(seq=seq)
            row = AuditEvent(**fields, prev_hash=prev, hash=row_hash(prev, fields))
            s.add(row)
            await s.commit()
        AUDITED.labels(fields["outcome"]).inc()
        return row

    async def record(
        self,
        *,
        now: datetime,
        actor: str,
        action: str,
        method: str,
        route: str,
        path: str,
        status: int,
        principal: Principal | None = None,
        target_ids: dict[str, str] | None = None,
        query: str | None = None,
        client_ip: str | None = None,
    ) -> None:
        """Append a row for a call; a failure is logged and counted, never raised at the caller."""
        trace = trace_var.get()
        try:
            await self.append(
                at=now,
                actor=actor[:64],
                roles=[str(r) for r in (principal.roles if principal else [])],
                unit_code=principal.unit_code if principal else None,
                action=action,
                method=method,
                route=route[:300],
                path=path[:1000],
                target_ids={k: str(v)[:200] for k, v in (target_ids or {}).items()},
                query=(query or None) and query[:1000],
                status=status,
                outcome=outcome_of(status),
                request_id=request_id_var.get() or "-",
                trace_id=trace.trace_id if trace else None,
                client_ip=client_ip,
            )
        except Exception:
            AUDIT_FAILURES.inc()
            log.exception("could not write the audit row for %s %s by %s", method, path, actor)


async def verify_chain(session, *, page: int = 1000) -> dict[str, Any]:
    """Recompute the chain from the first row: ok, how many rows, and the first bad seq if any."""
    prev, checked, after = GENESIS, 0, 0
    expected_seq = 1
    while True:
        rows = (
            await session.exec(
                select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(page)
            )
        ).all()
        if not rows:
            break
        for r in rows:
            fields = r.model_dump()
            if r.seq != expected_seq or r.prev_hash != prev or row_hash(prev, fields) != r.hash:
                return {"ok": False, "checked": checked, "broken_at": r.seq, "last_hash": prev}
            prev, checked, expected_seq, after = r.hash, checked + 1, expected_seq + 1, r.seq
    return {"ok": True, "checked": checked, "broken_at": None, "last_hash": prev}


async def count_events(session, conditions: list) -> int:
    """How many rows match."""
    return (await session.exec(select(func.count()).select_from(AuditEvent).where(*conditions))).one()


class AuditMiddleware:
    """Writes the audit row of a staff call (or sign-in) when its response starts.

    Whoever handles the request leaves `scope["minsheng_audit"]` = {principal | actor, action,
    route, target_ids}; requests without it (channel clients, citizens, probes) are not audited.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                info = scope.get("minsheng_audit")
                if info is not None:
                    await _write(scope, info, message["status"])
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def _write(scope, info: dict[str, Any], status: int) -> None:
    state = scope["app"].state
    audit = getattr(state, "audit", None)
    if audit is None:
        return
    principal: Principal | None = info.get("principal")
    if principal is not None and principal.kind != PrincipalKind.staff:
        return
    actor = principal.sub if principal is not None else info.get("actor")
    if not actor:
        return
    await audit.record(
        now=state.clock.now(),
        actor=actor,
        action=info.get("action", "call"),
        method=scope["method"],
        route=info.get("route") or scope.get("path", ""),
        path=scope.get("path", ""),
        status=status,
        principal=principal,
        target_ids={**path_ids(info.get("route"), scope.get("path", "")), **info.get("target_ids", {})},
        query=scope.get("query_string", b"").decode("latin-1"),
        client_ip=info.get("client_ip") or (principal.client_ip if principal else None),
    )
