"""Synthetic closed incidents built from the real anonymised messages in ../shared/data (read by path).

Used by archive's tests and by bench/archive_*.py: each incident gets a real message's title, body and
official reply, a level, a lead unit from the sample bundle, deadlines and a timeline, so dossiers,
search and reports see realistic Chinese text.
"""

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kit.settings import REPO_ROOT
from schema.dto import (
    Category,
    Deadlines,
    Factor,
    IncidentDossier,
    MessageRecord,
    NotificationRecord,
    TimelineEntry,
    UnitRef,
)
from schema.enums import Channel, CitizenStatus, IncidentStatus, Level, RequestType

DATA_DIR = REPO_ROOT.parent / "shared" / "data"
LEVELS = [Level.I, Level.II, Level.III, Level.IV]
ONLINE = (Channel.weibo, Channel.wechat, Channel.forum, Channel.news, Channel.douyin)
CHANNELS = [Channel.portal, Channel.hotline, Channel.weibo, Channel.wechat, Channel.forum, Channel.news]


@cache
def real_messages() -> list[dict[str, Any]]:
    """The messages with official replies (and the labelled ones, which carry a category)."""
    out: list[dict[str, Any]] = []
    for name in ("messages_with_replies.jsonl", "messages_labeled_train.jsonl"):
        path = Path(DATA_DIR) / name
        with path.open(encoding="utf-8") as f:
            out += [json.loads(line) for line in f if line.strip()]
    return out


@cache
def units() -> list[UnitRef]:
    """The sample bundle's departments (district and city), as unit references."""
    org = yaml.safe_load(
        (REPO_ROOT / "deploy" / "bundles" / "a-city" / "org.yaml").read_text(encoding="utf-8")
    )
    found: list[UnitRef] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "code" in node and "name" in node and isinstance(node["name"], str):
                found.append(UnitRef(code=str(node["code"]), name=node["name"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(org)
    return [u for u in found if u.code not in ("city-gov", "city-dispatch")] or found


def build(
    i: int,
    *,
    rng: random.Random | None = None,
    msg: dict[str, Any] | None = None,
    level: Level | None = None,
    unit: UnitRef | None = None,
    channel: Channel | None = None,
    category: str | None = None,
    closed_at: datetime | None = None,
    reply_late: bool | None = None,
    incident_id: str | None = None,
    satisfaction: str | None = None,
    attachments: int = 0,
) -> tuple[IncidentDossier, list[MessageRecord], list[NotificationRecord]]:
    """One closed incident with its message and notifications; everything not given is drawn from `rng`."""
    rng = rng or random.Random(i)
    pool = real_messages()
    msg = msg or pool[i % len(pool)]
    level = level or rng.choice(LEVELS)
    unit = unit or rng.choice(units())
    channel = channel or rng.choice(CHANNELS)
    received = (
        closed_at - timedelta(days=4)
        if closed_at
        else datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=37 * i)
    )
    reply_due = received + timedelta(days=3)
    late = rng.random() < 0.15 if reply_late is None else reply_late
    published = (
        reply_due + timedelta(hours=5) if late else received + timedelta(days=1, hours=rng.randint(0, 40))
    )
    closed = closed_at or published + timedelta(hours=rng.randint(1, 30))
    published = min(published, closed)
    incident_id = incident_id or str(uuid.uuid4())
    message_id = str(uuid.uuid4())
    code = f"SJ{received:%Y%m%d}{i:06d}"
    cat = category or msg.get("category") or rng.choice(["城乡建设", "环境保护", "交通运输", "教育文体"])
    reply_text = msg.get("reply") or "经核查，反映的问题已处理完毕，感谢您对我们工作的支持。"
    timeline = [
        TimelineEntry(at=received, action="received", status="received", actor="system", public=True),
        TimelineEntry(at=received + timedelta(minutes=5), action="graded", status="graded", actor="system"),
        TimelineEntry(
            at=received + timedelta(minutes=9),
            action="assigned",
            status="assigned",
            actor="analyst",
            note=f"交办{unit.name}办理",
            public=True,
        ),
        TimelineEntry(at=published, action="published", status="published", actor="analyst", public=True),
        TimelineEntry(
            at=closed, action="closed", status="closed", actor="analyst", note="已办结", public=True
        ),
    ]
    incident = IncidentDossier(
        id=incident_id,
        code=code,
        title=msg["title"][:200],
        status=IncidentStatus.closed,
        level=level,
        score={Level.I: 92.0, Level.II: 75.0, Level.III: 52.0, Level.IV: 21.0}[level],
        factors=[
            Factor(name="content", points=20, detail="民生诉求"),
            Factor(name="spread", points=5, detail=""),
        ],
        category=Category(level1=cat, confidence=0.8),
        request_type=RequestType.complaint,
        lead_unit=unit,
        deadlines=Deadlines(
            reply_due=reply_due,
            response_due=received + timedelta(hours=24 if level in (Level.I, Level.II) else 48)
            if channel in ONLINE
            else None,
        ),
        message_ids=[message_id],
        channels=[channel],
        received_at=received,
        heat=round(rng.random() * 100, 2),
        district="A" + str(rng.randint(1, 6)) + "区",
        excerpt=msg["body"][:120],
        closed_at=closed,
        closed_by="analyst",
        close_summary={"summary": "已答复群众，事项办结。"},
        timeline=timeline,
        assignments=[{"unit": unit.model_dump(), "role": "lead", "instruction": "请依法依规办理并按时答复"}],
        reply={
            "finding": "true",
            "reply_text": reply_text,
            "unit": unit.model_dump(),
            "published_at": published.isoformat(),
        },
        feedback=[{"satisfaction": satisfaction, "at": closed.isoformat()}] if satisfaction else [],
        # Online items get a public response (公开回应), late when the reply is.
        public_response={"text": "我单位已关注并核查处理。", "published_at": published.isoformat()}
        if channel in ONLINE
        else None,
    )
    record = MessageRecord(
        id=message_id,
        tracking_code=f"K{i:04d}-TEST-{rng.randint(1000, 9999)}-S",
        channel=channel,
        external_id=f"data-{msg['id']}",
        title=msg["title"],
        content_original=msg["body"],
        content_normalized=msg["body"],
        received_at=received,
        reporter_encrypted="gAAAAABsynthetic-ciphertext-" + uuid.uuid4().hex,
        citizen_status=CitizenStatus.closed,
        attachments=[
            {
                "url": f"https://portal.example/files/{i}-{n}.jpg",
                "media_type": "image/jpeg",
                "name": f"现场照片{n}.jpg",
            }
            for n in range(attachments)
        ],
    )
    notes = [
        NotificationRecord(
            id=str(uuid.uuid4()),
            incident_id=incident_id,
            event="incident.graded",
            recipient="leader-1",
            channel="console",
            status="delivered",
            attempts=1,
            created_at=received + timedelta(minutes=6),
            sent_at=received + timedelta(minutes=6),
            acked_at=received + timedelta(minutes=20),
            acked_by="leader-1",
        )
    ]
    return incident, [record], notes
