"""Helpers for intake's own tests: callers as the gateway vouches for them, real data, signed events."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kit.security import PRINCIPAL_HEADER, encode_principal
from schema.dto import Principal
from schema.enums import PrincipalKind, Role
from tests.support import DEMO_SECRET

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data"
SEEDS = REPO.parent / "shared" / "seeds"


def as_client(client_id: str = "demo-portal", ip: str = "203.0.113.7") -> dict[str, str]:
    """Headers of a channel client, as the gateway forwards them."""
    p = Principal(kind=PrincipalKind.client, sub=client_id, client_id=client_id, client_ip=ip)
    return {PRINCIPAL_HEADER: encode_principal(p, DEMO_SECRET)}


def as_staff(role: str, sub: str | None = None) -> dict[str, str]:
    """Headers of a staff member with one role."""
    p = Principal(kind=PrincipalKind.staff, sub=sub or role, roles=[Role(role)])
    return {PRINCIPAL_HEADER: encode_principal(p, DEMO_SECRET)}


def as_citizen(ip: str) -> dict[str, str]:
    """Headers of an anonymous caller at an address."""
    p = Principal(kind=PrincipalKind.anonymous, sub="anonymous", client_ip=ip)
    return {PRINCIPAL_HEADER: encode_principal(p, DEMO_SECRET)}


def real_messages(*names: str) -> list[dict[str, Any]]:
    """Rows of the shared data set (read by path, never copied into the repository)."""
    rows = []
    for name in names:
        with (DATA / name).open(encoding="utf-8") as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def portal_item(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A data-set row as a portal would submit it (its message id as the external id)."""
    item = {
        "channel": "portal",
        "external_id": f"{prefix}{row['id']}",
        "title": row["title"],
        "content": row["body"],
        "occurred_at": row["time"],
    }
    if "likes" in row:
        item["metrics"] = {"likes": row["likes"], "dislikes": row["dislikes"]}
    return item


def status_event(
    message_ids: list[str], *, sequence: int, citizen_status: str, incident_status: str, **data
) -> dict:
    """A message.status_changed event as grading would send it."""
    return {
        "id": str(uuid.uuid4()),
        "type": "message.status_changed",
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "grading",
        "data": {
            "message_ids": message_ids,
            "incident_id": data.pop("incident_id", str(uuid.uuid4())),
            "incident_status": incident_status,
            "citizen_status": citizen_status,
            "sequence": sequence,
            **data,
        },
    }
