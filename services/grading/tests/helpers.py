"""Helpers for grading's tests: a bundle copy to break, events and staff headers for in-process apps."""

import json
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kit.security import PRINCIPAL_HEADER, SIGNATURE_HEADER, encode_principal, sign_request
from schema.dto import Principal
from schema.events import MessageReceived, MessageReceivedData
from tests.support import DEMO_SECRET

REPO = Path(__file__).resolve().parents[3]
BUNDLE = REPO / "deploy" / "bundles" / "a-city"
DATA = REPO.parent / "shared" / "data"


def bundle_copy(tmp: Path) -> Path:
    """A copy of the sample bundle that a test may change."""
    dst = tmp / "bundle"
    shutil.copytree(BUNDLE, dst)
    return dst


def replace_in(path: Path, old: str, new: str) -> None:
    """Change one occurrence of a text in a file (the test fails if it is not there)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the first occurrence of a text."""
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path.name}")


def received(*, title: str, content: str, at: datetime | None = None, **extra) -> dict:
    """A message.received event as JSON."""
    data = MessageReceivedData(
        message_id=str(uuid.uuid4()),
        tracking_code=f"T-{uuid.uuid4().hex[:8]}",
        channel=extra.pop("channel", "portal"),
        title=title,
        content=content,
        received_at=at or datetime.now(UTC),
        **extra,
    )
    return MessageReceived.build(source="intake", data=data).model_dump(mode="json")


def deliver(client, *events: dict) -> list[dict]:
    """POST events to an in-process service's /internal/events, signed like a relay."""
    body = json.dumps({"events": list(events)}).encode()
    headers = {
        SIGNATURE_HEADER: sign_request(DEMO_SECRET, "POST", "/internal/events", body),
        "content-type": "application/json",
    }
    resp = client.post("/internal/events", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()["results"]


def staff(role: str, sub: str | None = None, unit: str | None = None) -> dict[str, str]:
    """The signed principal header of a staff member (what the gateway forwards)."""
    p = Principal(kind="staff", sub=sub or role, roles=[role], unit_code=unit)
    return {PRINCIPAL_HEADER: encode_principal(p, DEMO_SECRET)}
