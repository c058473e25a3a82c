"""Archive's logic: seal dossiers on a hash chain, check the chain, search, retention. No FastAPI here."""

import asyncio
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import column, func, insert, literal_column, table, text, update
from sqlalchemy import select as sa_select
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from kit.db import is_sqlite
from kit.errors import not_found
from schema.dto import IncidentDossier, MessageRecord, NotificationRecord
from services.archive import metrics, segment
from services.archive.models import ChainHead, Dossier, DossierFacet

GENESIS = "0" * 64
SCHEMA = "minsheng.dossier/2"
SEAL_VERSION = 2
# The sealed columns beside the content, in the order they are hashed (seal version 2).
HEADER_FIELDS = (
    "id",
    "incident_id",
    "incident_code",
    "version",
    "supersedes",
    "title",
    "level",
    "category",
    "lead_unit_code",
    "lead_unit_name",
    "channels",
    "district",
    "request_type",
    "message_count",
    "received_at",
    "closed_at",
    "sealed_at",
    "retention_until",
    "reply_due",
    "replied_at",
    "response_due",
    "responded_at",
    "satisfaction",
    "heat",
    "seal_version",
)
_PUBLISH_ACTIONS = {"published", "publish", "reply_published"}
_RESPONSE_ACTIONS = {"public_response", "responded", "response_published"}
_NOT_TEXT = re.compile(r"^(\d{4}-\d{2}-\d{2}T[\d:.]+([+-]\d{2}:\d{2}|Z)?|[0-9a-f-]{32,36}|https?://\S+)$")


# ---------------------------------------------------------------- hashing


def canonical_json(data: Any) -> str:
    """The one byte-exact JSON form that is hashed: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def header_of(row: Any) -> dict[str, Any]:
    """The sealed header of a dossier row (object or mapping), JSON-ready."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    out = {}
    for name in HEADER_FIELDS:
        value = get(name)
        out[name] = _iso(value) if isinstance(value, datetime) else value
    return out


def chain_hash(
    *, prev: str, seq: int, content_sha256: str, dossier_id: str, header_sha256: str | None = None
) -> str:
    """The link hash: binds a dossier's content (and header) to its position and everything before it."""
    base = f"{prev}|{seq}|{dossier_id}|{content_sha256}"
    return sha256_hex(base if header_sha256 is None else f"{base}|{header_sha256}")


def seal_mac(key: str, link: str) -> str:
    """HMAC-SHA256 of a link with the archive's seal key: only the key holder can re-seal a chain."""
    return hmac.new(key.encode(), link.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- retention


def retention_until(
    *, level: str, closed_at: datetime, policy: dict[str, Any], tz: str = "Asia/Shanghai"
) -> datetime | None:
    """When the dossier may be disposed of; None keeps it permanently."""
    years = (policy.get("retention_years") or {}).get(level)
    if years is None:
        return None
    if policy.get("retention_starts", "closed") == "next_year":
        local_year = closed_at.astimezone(ZoneInfo(tz)).year
        start = datetime(local_year + 1, 1, 1, tzinfo=ZoneInfo(tz))
        return start.replace(year=start.year + int(years)).astimezone(UTC)
    try:
        return closed_at.replace(year=closed_at.year + int(years))
    except ValueError:  # 29 February
        return closed_at.replace(year=closed_at.year + int(years), day=28)


# ---------------------------------------------------------------- building a dossier


def _strings(value: Any) -> list[str]:
    """Every free-text string inside a JSON value (ids, times and URLs left out)."""
    if isinstance(value, str):
        return [value] if len(value) > 1 and not _NOT_TEXT.match(value) else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def answered_at(incident: IncidentDossier) -> datetime:
    """When the citizen got the answer: the reply's publication, else closing (直接办结 answers at once)."""
    reply = incident.reply or {}
    candidates = [_time(reply.get("published_at"))]
    candidates += [e.at for e in incident.timeline if e.action in _PUBLISH_ACTIONS or e.status == "published"]
    found = [c for c in candidates if c is not None]
    return min(found) if found else incident.closed_at


def responded_at(incident: IncidentDossier) -> datetime | None:
    """When the public response (公开回应) went out, if one did."""
    pr = incident.public_response or {}
    candidates = [_time(pr.get("published_at")), _time(pr.get("at"))]
    candidates += [e.at for e in incident.timeline if e.action in _RESPONSE_ACTIONS]
    found = [c for c in candidates if c is not None]
    return min(found) if found else None


def satisfaction_of(incident: IncidentDossier, messages: list[MessageRecord]) -> str | None:
    """The citizen's last word on the reply (回访), if any."""
    entries = list(incident.feedback) + [f for m in messages for f in m.feedback]
    dated = [(str(f.get("at") or f.get("created_at") or ""), f.get("satisfaction")) for f in entries]
    dated = [d for d in dated if d[1]]
    return sorted(dated)[-1][1] if dated else None


@dataclass
class Prepared:
    """A dossier ready to be put on the chain: everything but its position."""

    row: dict[str, Any]
    content: str
    facets: list[str] = field(default_factory=list)


def prepare_dossier(
    *,
    incident: IncidentDossier,
    messages: list[MessageRecord],
    notifications: list[NotificationRecord],
    version: int,
    supersedes: str | None,
    policy: dict[str, Any],
    tz: str,
    now: datetime,
) -> Prepared:
    """Build the sealed content, its header columns and filter tags (CPU work, no I/O)."""
    dossier_id = str(uuid.uuid4())
    messages = sorted(messages, key=lambda m: (m.received_at, m.id))
    notifications = sorted(notifications, key=lambda n: (n.created_at, n.id))
    level = incident.level.value
    until = retention_until(level=level, closed_at=incident.closed_at, policy=policy, tz=tz)
    years = (policy.get("retention_years") or {}).get(level)
    attachments = [
        {"message_id": m.id, "tracking_code": m.tracking_code, **a} for m in messages for a in m.attachments
    ]
    content = {
        "schema": SCHEMA,
        "dossier": {
            "id": dossier_id,
            "incident_id": incident.id,
            "incident_code": incident.code,
            "version": version,
            "supersedes": supersedes,
            "sealed_at": _iso(now),
            "retention": {
                "years": years,
                "starts": policy.get("retention_starts", "closed"),
                "until": _iso(until),
            },
        },
        "incident": incident.model_dump(mode="json"),
        "messages": [m.model_dump(mode="json") for m in messages],
        "notifications": [n.model_dump(mode="json") for n in notifications],
        "attachments": attachments,
    }
    text_ = canonical_json(content)
    channels = sorted({c.value for c in incident.channels} | {m.channel.value for m in messages})
    cat = incident.category
    row = {
        "id": dossier_id,
        "incident_id": incident.id,
        "incident_code": incident.code,
        "version": version,
        "supersedes": supersedes,
        "title": incident.title[:500],
        "level": level,
        "category": cat.level1 if cat else None,
        "lead_unit_code": incident.lead_unit.code if incident.lead_unit else None,
        "lead_unit_name": incident.lead_unit.name[:200] if incident.lead_unit else None,
        "channels": ",".join(channels)[:200],
        "district": incident.district,
        "request_type": incident.request_type.value if incident.request_type else None,
        "message_count": len(messages),
        "received_at": incident.received_at,
        "closed_at": incident.closed_at,
        "sealed_at": now,
        "retention_until": until,
        "reply_due": incident.deadlines.reply_due,
        "replied_at": answered_at(incident),
        "response_due": incident.deadlines.response_due,
        "responded_at": responded_at(incident),
        "satisfaction": satisfaction_of(incident, messages),
        "heat": round(float(incident.heat), 3),
        "seal_version": SEAL_VERSION,
        "content": text_,
        "content_sha256": sha256_hex(text_),
    }
    return Prepared(row=row, content=text_, facets=facets_of(content))


def facets_of(content: dict[str, Any]) -> list[str]:
    """The filter tags of a dossier: unit:…, channel:…, category:… (every level), district:…."""
    inc = content.get("incident") or {}
    units = [inc.get("lead_unit"), *(inc.get("co_units") or [])]
    channels = set(inc.get("channels") or []) | {m.get("channel") for m in content.get("messages") or []}
    cat = inc.get("category") or {}
    tags = {f"unit:{u['code']}" for u in units if u} | {f"channel:{c}" for c in channels if c}
    tags |= {f"category:{cat[k]}" for k in ("level1", "level2", "level3") if cat.get(k)}
    if inc.get("district"):
        tags.add(f"district:{inc['district']}")
    return sorted(t[:160] for t in tags)


def search_parts(content: dict[str, Any]) -> list[str]:
    """The texts of a sealed dossier that full-text search covers (the index is rebuilt from these)."""
    inc = content.get("incident") or {}
    units = [inc.get("lead_unit"), *(inc.get("co_units") or [])]
    cat = inc.get("category") or {}
    parts = [inc.get("code"), inc.get("title"), inc.get("excerpt"), inc.get("district")]
    parts += [u.get("name") for u in units if u]
    parts += [cat.get("level1"), cat.get("level2"), cat.get("level3")]
    for m in content.get("messages") or []:
        parts += [m.get("tracking_code"), m.get("title"), m.get("content_normalized")]
        if m.get("content_original") != m.get("content_normalized"):
            parts.append(m.get("content_original"))
        parts += [m.get("source_name"), (m.get("location") or {}).get("text")]
    for key in ("close_summary", "reply", "public_response", "assignments", "reviews"):
        parts += _strings(inc.get(key))
    parts += [e.get("note") for e in inc.get("timeline") or []]
    return [p for p in parts if isinstance(p, str) and p]


_DOSSIER = Dossier.__table__
_FACET = DossierFacet.__table__
_HEAD = ChainHead.__table__
_DOSSIER_COLUMNS = [c.name for c in _DOSSIER.columns]
_PG_INSERT = (
    f"INSERT INTO dossier ({', '.join(_DOSSIER_COLUMNS)}) "  # noqa: S608 — the table's own column names
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_DOSSIER_COLUMNS) + 1))})"
)


async def seal_dossier(
    *,
    session: AsyncSession,
    incident: IncidentDossier,
    messages: list[MessageRecord],
    notifications: list[NotificationRecord],
    policy: dict[str, Any],
    settings: Any,
    now: datetime,
) -> dict[str, Any]:
    """Seal a new version of the incident's dossier at the end of the chain (head locked while appending)."""
    [row] = await seal_many(
        session=session,
        items=[(incident, messages, notifications)],
        policy=policy,
        settings=settings,
        now=now,
    )
    return row


async def latest_versions(
    *, session: AsyncSession, incident_ids: list[str]
) -> dict[str, tuple[int, str | None]]:
    """The newest version number (0 when none) and dossier id of each incident's dossier, in one query."""
    if not incident_ids:
        return {}
    q = sa_select(_DOSSIER.c.incident_id, _DOSSIER.c.version, _DOSSIER.c.id).where(
        _DOSSIER.c.incident_id.in_(incident_ids)
    )
    out: dict[str, tuple[int, str | None]] = {}
    for incident_id, version, dossier_id in (await (await session.connection()).execute(q)).all():
        if version > out.get(incident_id, (0, None))[0]:
            out[incident_id] = (version, dossier_id)
    return out


async def seal_many(
    *,
    session: AsyncSession,
    items: list[tuple[IncidentDossier, list[MessageRecord], list[NotificationRecord]]],
    policy: dict[str, Any],
    settings: Any,
    now: datetime,
) -> list[dict[str, Any]]:
    """Seal several closings in order in one transaction (a relay batch): one head lock, one commit.

    An incident closed twice in the batch (closed, reopened, closed) gets two consecutive versions.
    """
    started = time.perf_counter()
    latest = await latest_versions(session=session, incident_ids=list({i.id for i, _, _ in items}))

    def build() -> list[Prepared]:
        out = []
        for incident, messages, notifications in items:
            version, previous = latest.get(incident.id, (0, None))
            p = prepare_dossier(
                incident=incident,
                messages=messages,
                notifications=notifications,
                version=version + 1,
                supersedes=previous,
                policy=policy,
                tz=settings.timezone,
                now=now,
            )
            latest[incident.id] = (version + 1, p.row["id"])
            out.append(p)
        return out

    # Building and hashing takes about 0.2 ms for a usual dossier: one is done in place (cheaper than a
    # thread hop), a batch or a large one (many messages, long texts) off the event loop. Word
    # segmentation for search is slower still and is left to the search indexer, after the commit.
    size = sum(
        sum(len(m.content_original) + len(m.content_normalized) for m in messages) + len(i.timeline) * 200
        for i, messages, _ in items
    )
    if len(items) == 1 and size <= settings.seal_inline_max_chars:
        prepared = build()
    else:
        prepared = await asyncio.to_thread(build)
    rows = await append_many(session=session, prepared=prepared, settings=settings)
    each = (time.perf_counter() - started) / len(rows)
    for row in rows:
        metrics.SEALED.labels(row["level"]).inc()
        metrics.SEAL_SECONDS.observe(each)
    return rows


async def append(*, session: AsyncSession, prepared: Prepared, settings: Any) -> dict[str, Any]:
    """Put a prepared dossier on the chain with its filter tags (caller commits); the sealed row."""
    [row] = await append_many(session=session, prepared=[prepared], settings=settings)
    return row


async def append_many(
    *, session: AsyncSession, prepared: list[Prepared], settings: Any
) -> list[dict[str, Any]]:
    """Put prepared dossiers on the chain in order under one lock of the head (a bulk import uses it).

    Plain SQL statements on the session's connection: this is the hot path of sealing, and the ORM's
    unit of work would cost more than the hashing.
    """
    conn = await session.connection()
    sqlite = is_sqlite(session.bind)
    # On PostgreSQL the statements go straight through asyncpg (same connection and transaction):
    # sealing is a handful of small statements, and SQLAlchemy's per-statement cost would be most of it.
    # The head is locked through SQLAlchemy, which opens the transaction (asyncpg's own calls would run
    # outside it until then).
    q = sa_select(_HEAD.c.seq, _HEAD.c.chain_hash).where(_HEAD.c.id == 1)
    head = (await conn.execute(q if sqlite else q.with_for_update())).first()
    raw = None if sqlite else (await conn.get_raw_connection()).driver_connection
    if head is None:  # a database migrated before the genesis row existed
        await conn.execute(insert(_HEAD).values(id=1, seq=0, chain_hash=GENESIS))
        head = (0, GENESIS)
    seq, prev = head
    key_id = settings.seal_key_id
    key = settings.seal_keys[key_id]
    rows, facets = [], []
    for p in prepared:
        seq += 1
        row = dict(p.row)
        header_sha = sha256_hex(canonical_json(header_of(row)))
        link = chain_hash(
            prev=prev,
            seq=seq,
            content_sha256=row["content_sha256"],
            dossier_id=row["id"],
            header_sha256=header_sha,
        )
        row.update(
            seq=seq,
            prev_chain_hash=prev,
            chain_hash=link,
            header_sha256=header_sha,
            seal_key_id=key_id,
            seal_mac=seal_mac(key, link),
        )
        rows.append(row)
        facets += [{"tag": t, "seq": seq} for t in p.facets]
        prev = link
    if raw is not None:
        await raw.execute("UPDATE chain_head SET seq = $1, chain_hash = $2 WHERE id = 1", seq, prev)
        await raw.executemany(_PG_INSERT, [[r[c] for c in _DOSSIER_COLUMNS] for r in rows])
        if facets:
            await raw.executemany(
                "INSERT INTO dossier_facet (tag, seq) VALUES ($1, $2)", [(f["tag"], f["seq"]) for f in facets]
            )
        return rows
    await conn.execute(update(_HEAD).where(_HEAD.c.id == 1).values(seq=seq, chain_hash=prev))
    await conn.execute(insert(_DOSSIER), rows)
    if facets:
        await conn.execute(insert(_FACET), facets)
    return rows


# ---------------------------------------------------------------- verification

_HEADER_COLUMNS = [c for c in Dossier.__table__.columns if c.name != "content"]
# PostgreSQL hashes the content where it lies (pg_catalog's own sha256, which no user function can
# shadow), so only digests cross the wire; SQLite reads the content locally and Python hashes it.
_PG_DIGEST = "encode(pg_catalog.sha256(convert_to(dossier.content, 'UTF8')), 'hex')"
_PG_VERIFY_SQL = (
    f"SELECT {', '.join(c.name for c in _HEADER_COLUMNS)}, {_PG_DIGEST} AS content_digest "  # noqa: S608 — constants
    "FROM dossier WHERE seq > $1 ORDER BY seq LIMIT $2"
)


def check_rows(
    rows: list[dict[str, Any]], *, prev: str, expected_seq: int, keys: dict[str, str]
) -> tuple[list[dict[str, Any]], str, int]:
    """Check a run of consecutive dossiers; returns the problems, the last link and the next seq expected."""
    problems: list[dict[str, Any]] = []

    def problem(d: dict[str, Any], code: str, message: str) -> None:
        problems.append(
            {
                "dossier_id": d["id"],
                "seq": d["seq"],
                "incident_id": d["incident_id"],
                "incident_code": d["incident_code"],
                "version": d["version"],
                "problem": code,
                "message": message,
            }
        )

    for d in rows:
        if d["seq"] != expected_seq:
            problem(d, "gap", f"expected seq {expected_seq}, found {d['seq']}: dossiers are missing")
        digest = d["content_digest"] if "content_digest" in d else sha256_hex(d["content"])
        if digest != d["content_sha256"]:
            problem(d, "content_altered", "the content does not match its sealed SHA-256")
        header_sha = None
        if d["seal_version"] >= 2:
            header_sha = sha256_hex(canonical_json(header_of(d)))
            if header_sha != d["header_sha256"]:
                problem(d, "header_altered", "the indexed columns do not match the sealed header")
        if d["prev_chain_hash"] != prev:
            problem(d, "link_broken", "the previous link does not match the dossier before it")
        link = chain_hash(
            prev=d["prev_chain_hash"],
            seq=d["seq"],
            content_sha256=d["content_sha256"],
            dossier_id=d["id"],
            header_sha256=d["header_sha256"] if d["seal_version"] >= 2 else None,
        )
        if link != d["chain_hash"]:
            problem(d, "link_altered", "the link hash does not match the dossier's hashes")
        if d["seal_version"] >= 2:
            key = keys.get(d["seal_key_id"] or "")
            if key is None:
                problem(d, "unknown_seal_key", f"no seal key {d['seal_key_id']!r} is configured")
            elif not hmac.compare_digest(seal_mac(key, d["chain_hash"]), d["seal_mac"] or ""):
                problem(
                    d, "seal_invalid", "the seal (HMAC of the link) does not match: the chain was re-sealed"
                )
        prev = d["chain_hash"]
        expected_seq = d["seq"] + 1
    return problems, prev, expected_seq


async def verify_chain(*, session: AsyncSession, settings: Any, batch: int | None = None) -> dict[str, Any]:
    """Walk the chain from the start; name every dossier whose content, header, link or seal fails."""
    started = time.perf_counter()
    batch = batch or settings.verify_batch_size
    if is_sqlite(session.bind):
        columns = [*_HEADER_COLUMNS, Dossier.content]

        async def fetch(after: int) -> list[dict[str, Any]]:
            q = select(*columns).where(Dossier.seq > after).order_by(Dossier.seq).limit(batch)
            return [dict(r._mapping) for r in (await session.exec(q)).all()]

    else:
        # Straight through asyncpg: a hundred thousand rows of thirty columns cost more in the ORM's
        # result processing than in hashing (timestamptz arrives aware and in UTC, as sealed).
        conn = await session.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        sql = _PG_VERIFY_SQL

        async def fetch(after: int) -> list[dict[str, Any]]:
            return [dict(r) for r in await raw.fetch(sql, after, batch)]

    problems: list[dict[str, Any]] = []
    prev, expected_seq, last_seq, checked = GENESIS, 1, 0, 0
    pending = asyncio.ensure_future(fetch(0))
    while rows := await pending:
        last_seq = rows[-1]["seq"]
        pending = asyncio.ensure_future(fetch(last_seq))  # the next batch loads while this one is checked
        found, prev, expected_seq = await asyncio.to_thread(
            check_rows, rows, prev=prev, expected_seq=expected_seq, keys=settings.seal_keys
        )
        problems += found
        checked += len(rows)
    head = await session.get(ChainHead, 1)
    if head is not None and (head.seq != last_seq or head.chain_hash != prev):
        problems.append(
            {
                "dossier_id": None,
                "seq": head.seq,
                "problem": "head_mismatch",
                "message": f"the chain head (seq {head.seq}) does not match the last dossier "
                f"(seq {last_seq}): dossiers were removed or the head was altered",
            }
        )
    altered = sorted({p["dossier_id"] for p in problems if p["dossier_id"]})
    metrics.VERIFICATIONS.labels("ok" if not problems else "failed").inc()
    metrics.VERIFICATION_FAILURES.inc(len(altered) + (1 if any(not p["dossier_id"] for p in problems) else 0))
    metrics.LAST_VERIFICATION_PROBLEMS.set(len(problems))
    metrics.CHAIN_LENGTH.set(last_seq)
    return {
        "ok": not problems,
        "checked": checked,
        "head": {"seq": last_seq, "chain_hash": prev},
        "altered": altered,
        "problems": problems,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }


# ---------------------------------------------------------------- reading and searching


async def get_dossier(*, session: AsyncSession, dossier_id: str) -> Dossier:
    """A dossier by id, or 404."""
    d = await session.get(Dossier, dossier_id)
    if d is None:
        raise not_found("dossier", dossier_id)
    return d


@dataclass
class SearchFilters:
    """What a search asks for (every given filter must hold)."""

    q: str | None = None
    incident_id: str | None = None
    level: str | None = None
    unit: str | None = None
    category: str | None = None
    channel: str | None = None
    district: str | None = None
    closed_from: datetime | None = None
    closed_to: datetime | None = None
    latest_only: bool = False


def _local_bound(value: date | datetime | None, tz: str, *, end: bool) -> datetime | None:
    """A date filter as an instant: a bare date means the local day (its start, or the next day's start)."""
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo else value
    start = datetime.combine(value, dtime(0), tzinfo=ZoneInfo(tz))
    if end:
        start = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=ZoneInfo(tz))
    return start.astimezone(UTC)


def date_bounds(
    closed_from: date | datetime | None, closed_to: date | datetime | None, tz: str
) -> tuple[datetime | None, datetime | None]:
    """[from, to) as instants; a date `to` includes that whole local day."""
    return _local_bound(closed_from, tz, end=False), _local_bound(closed_to, tz, end=True)


_SEARCH = table("dossier_search", column("seq"), column("closed_at"))


def _tsquery_lexemes(lexemes: list[str]) -> str:
    """A tsquery literal requiring every lexeme as it is (quoted: no parser, no syntax inside)."""
    return " & ".join("'" + x.replace("\\", "\\\\").replace("'", "''") + "'" for x in lexemes)


def filter_lexemes(filters: "SearchFilters") -> list[str]:
    """The filters that PostgreSQL's index holds as lexemes beside the words (see indexer.py)."""
    out = [f"~level:{filters.level}"] if filters.level else []
    for prefix, value in (
        ("unit", filters.unit),
        ("category", filters.category),
        ("channel", filters.channel),
        ("district", filters.district),
    ):
        if value:
            out.append(f"~{prefix}:{value}"[:161])
    return out


async def _search_pg_index(
    *, session: AsyncSession, terms: list[str], filters: "SearchFilters", limit: int, offset: int
) -> tuple[list[Dossier], int]:
    """Words and filters answered by the GIN index alone: the count never reads a row, and the page
    looks only at the newest part of the chain that can hold it (dossier_search is append-only in seq
    order, so the density of hits tells how far back to look)."""
    lexemes = filter_lexemes(filters)
    words = " ".join(terms)
    if terms and lexemes:
        match = text("vector @@ (plainto_tsquery('simple', :words) && CAST(:lexemes AS tsquery))")
        match = match.bindparams(words=words, lexemes=_tsquery_lexemes(lexemes))
    elif terms:
        match = text("vector @@ plainto_tsquery('simple', :words)").bindparams(words=words)
    else:
        match = text("vector @@ CAST(:lexemes AS tsquery)").bindparams(lexemes=_tsquery_lexemes(lexemes))
    conds = [match]
    if filters.closed_from:
        conds.append(_SEARCH.c.closed_at >= filters.closed_from)
    if filters.closed_to:
        conds.append(_SEARCH.c.closed_at < filters.closed_to)
    conn = await session.connection()
    # The GIN index alone finds every hit; for a word in most dossiers the planner would rather read the
    # whole table and test each vector, which is several times slower (for this transaction only).
    await conn.execute(text("SET LOCAL enable_seqscan = off"))
    total = (await conn.execute(sa_select(func.count()).select_from(_SEARCH).where(*conds))).scalar_one()
    need = offset + limit
    if total == 0 or offset >= total:
        return [], total
    head = (await conn.execute(sa_select(func.max(_SEARCH.c.seq)))).scalar_one() or 0
    # Expected span of the chain holding `need` hits, doubled; widened until it holds them.
    span = max(1024, int(need * head / total * 2))
    while True:
        lo = max(0, head - span)
        q = (
            sa_select(_SEARCH.c.seq)
            .where(*conds, _SEARCH.c.seq > lo)
            .order_by(_SEARCH.c.seq.desc())
            .limit(need)
        )
        seqs = [r[0] for r in await conn.execute(q)]
        if len(seqs) >= need or lo == 0:
            break
        span *= 8
    page = seqs[offset:need]
    rows = (
        await session.exec(select(Dossier).where(Dossier.seq.in_(page)).order_by(Dossier.seq.desc()))
    ).all()
    return list(rows), total


async def search_dossiers(
    *, session: AsyncSession, filters: SearchFilters, limit: int, offset: int
) -> tuple[list[Dossier], int, list[str]]:
    """Dossiers matching the filters (newest first), the total, and the query's words (for highlights)."""
    query = select(Dossier)
    terms = segment.query_terms(filters.q) if filters.q and filters.q.strip() else []
    if (
        not is_sqlite(session.bind)
        and (terms or filter_lexemes(filters))
        and not filters.incident_id
        and not filters.latest_only
    ):
        rows, total = await _search_pg_index(
            session=session, terms=terms, filters=filters, limit=limit, offset=offset
        )
        return rows, total, terms
    if terms:
        if is_sqlite(session.bind):
            hits = (
                select(literal_column("rowid"))
                .select_from(table("dossier_fts"))
                .where(text("dossier_fts MATCH :m").bindparams(m=segment.fts5_match(terms)))
            )
        else:
            hits = (
                select(literal_column("seq"))
                .select_from(table("dossier_search"))
                .where(text("vector @@ plainto_tsquery('simple', :q)").bindparams(q=" ".join(terms)))
            )
        query = query.where(Dossier.seq.in_(hits))
    elif filters.q and filters.q.strip():
        return [], 0, []  # only punctuation: nothing can match
    if filters.incident_id:
        query = query.where(Dossier.incident_id == filters.incident_id)
    if filters.level:
        query = query.where(Dossier.level == filters.level)
    for prefix, value in (
        ("unit", filters.unit),
        ("category", filters.category),
        ("channel", filters.channel),
        ("district", filters.district),
    ):
        if value:
            tagged = select(DossierFacet.seq).where(DossierFacet.tag == f"{prefix}:{value}")
            query = query.where(Dossier.seq.in_(tagged))
    if filters.closed_from:
        query = query.where(Dossier.closed_at >= filters.closed_from)
    if filters.closed_to:
        query = query.where(Dossier.closed_at < filters.closed_to)
    if filters.latest_only:
        superseded = select(Dossier.supersedes).where(Dossier.supersedes.is_not(None))
        query = query.where(~Dossier.id.in_(superseded))
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = (await session.exec(query.order_by(Dossier.seq.desc()).limit(limit).offset(offset))).all()
    return list(rows), total, terms


def highlights(d: Dossier, terms: list[str]) -> dict[str, str | None]:
    """Highlighted title and snippet of a hit (HTML-escaped, hits in <em>)."""
    if not terms:
        return {"title": None, "snippet": None}
    content = json.loads(d.content)
    incident = content.get("incident", {})
    bodies = [m.get("content_normalized") or "" for m in content.get("messages", [])]
    reply = incident.get("reply") or {}
    bodies += [str(reply.get("reply_text") or reply.get("text") or "")]
    bodies += [str((incident.get("close_summary") or {}).get("summary") or "")]
    snippet = None
    for body in bodies:
        snippet = segment.highlight(body, terms)
        if snippet:
            break
    return {"title": segment.highlight(d.title, terms, width=500), "snippet": snippet}


async def disposal_list(
    *, session: AsyncSession, as_of: datetime, limit: int, offset: int
) -> tuple[list[Dossier], int]:
    """Dossiers whose retention period has ended by `as_of` (permanent ones never appear), oldest first."""
    query = select(Dossier).where(Dossier.retention_until.is_not(None), Dossier.retention_until <= as_of)
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    rows = (
        await session.exec(query.order_by(Dossier.retention_until, Dossier.seq).limit(limit).offset(offset))
    ).all()
    return list(rows), total
