"""Open311 GeoReport v2: the service catalogue (from the category taxonomy), request views and rendering.

Formats: XML (required by the spec) and JSON, chosen by the path's extension. Errors are the spec's
list of {code, description} in the same format, with the HTTP status as the code.
"""

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.responses import Response

from schema.enums import REQUEST_TYPE_TEXT, CitizenStatus
from services.intake.config import IntakeConfig
from services.intake.models import Message
from services.intake.pii import mask_text

FORMATS = ("json", "xml")
_MEDIA = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}
CLOSED = {CitizenStatus.closed.value, CitizenStatus.screened_out.value}


class Open311Error(Exception):
    """An error the facade answers in the spec's shape."""

    def __init__(self, status: int, description: str, fmt: str = "json"):
        super().__init__(description)
        self.status = status
        self.description = description
        self.fmt = fmt if fmt in FORMATS else "json"


def service_code_for(level1: str, level2: str | None, level3: str | None) -> str:
    """A category's stable service code: the first 8 hex digits of SHA-1 of its path (survives reordering)."""
    path = "/".join(p for p in (level1, level2, level3) if p)
    return hashlib.sha1(path.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    group: str
    path: tuple[str, ...]

    @property
    def description(self) -> str:
        return " / ".join(self.path)

    @property
    def hint(self) -> str:
        return "/".join(self.path)


ATTRIBUTES = [
    {
        "variable": True,
        "code": "request_type",
        "datatype": "singlevaluelist",
        "required": False,
        "datatype_description": None,
        "order": 1,
        "description": "诉求类型",
        "values": [{"key": k.value, "name": v} for k, v in REQUEST_TYPE_TEXT.items()],
    },
    {
        "variable": True,
        "code": "wants_reply",
        "datatype": "singlevaluelist",
        "required": False,
        "datatype_description": None,
        "order": 2,
        "description": "是否需要答复",
        "values": [{"key": "true", "name": "需要"}, {"key": "false", "name": "不需要"}],
    },
    {
        "variable": True,
        "code": "confidential",
        "datatype": "singlevaluelist",
        "required": False,
        "datatype_description": None,
        "order": 3,
        "description": "是否要求保密（保密的诉求不公开列出）",
        "values": [{"key": "true", "name": "保密"}, {"key": "false", "name": "不保密"}],
    },
]


class Catalogue:
    """The services of the taxonomy: one per level-3 category (or level-2 without children)."""

    def __init__(self, config: IntakeConfig):
        self.config = config
        self.services: dict[str, Service] = {}
        for l1 in config.taxonomy:
            for l2 in l1.get("children", []) or []:
                l2_name = l2["name"] if isinstance(l2, dict) else str(l2)
                children = (l2.get("children") if isinstance(l2, dict) else None) or []
                if not children:
                    self._add(l1["name"], l2_name, None)
                for l3 in children:
                    self._add(l1["name"], l2_name, l3["name"] if isinstance(l3, dict) else str(l3))

    def _add(self, l1: str, l2: str, l3: str | None) -> None:
        code = service_code_for(l1, l2, l3)
        name = l3 or l2
        if name == "其他":
            name = f"{l2}·其他"
        path = tuple(p for p in (l1, l2, l3) if p)
        self.services[code] = Service(code=code, name=name, group=l1, path=path)

    def for_category(self, category: dict | None) -> Service | None:
        """The service of a category grading reported, if the taxonomy has it."""
        if not category:
            return None
        return self.services.get(
            service_code_for(category.get("level1"), category.get("level2"), category.get("level3"))
        )

    def service_list(self) -> list[dict[str, Any]]:
        """GET services."""
        return [
            {
                "service_code": s.code,
                "service_name": s.name,
                "description": s.description,
                "metadata": True,
                "type": self.config.open311.service_type,
                "keywords": ", ".join(s.path[:-1]),
                "group": s.group,
            }
            for s in self.services.values()
        ]

    def definition(self, code: str) -> dict[str, Any]:
        """GET service definition."""
        return {"service_code": code, "attributes": ATTRIBUTES}


def _time(value: datetime | None, tz: ZoneInfo) -> str | None:
    return value.astimezone(tz).isoformat(timespec="seconds") if value else None


def request_view(m: Message, *, catalogue: Catalogue, notes: str | None, tz: ZoneInfo) -> dict[str, Any]:
    """A message as an Open311 service request (phone and ID numbers in the text masked)."""
    service = catalogue.services.get(m.service_code or "") or catalogue.for_category(m.category)
    location = m.location or {}
    text = m.content_normalized if not m.title else f"{m.title}\n{m.content_normalized}"
    media = next((a.get("url") for a in m.attachments or [] if a.get("url")), None)
    screened = m.citizen_status == CitizenStatus.screened_out
    return {
        "service_request_id": m.id,
        "status": "closed" if m.citizen_status in CLOSED else "open",
        "status_notes": notes,
        "service_name": service.name if service else None,
        "service_code": service.code if service else None,
        "description": None if screened else mask_text(text),
        "agency_responsible": (m.handling_unit or {}).get("name"),
        "service_notice": "不予受理" if screened else None,
        "requested_datetime": _time(m.received_at, tz),
        "updated_datetime": _time(m.updated_at, tz),
        "expected_datetime": _time(m.reply_due, tz),
        "address": None if screened else location.get("text"),
        "address_id": None,
        "zipcode": None,
        "lat": location.get("lat"),
        "long": location.get("lng"),
        "media_url": None if screened else media,
    }


# --- rendering ---------------------------------------------------------------------------------------


def _xml_value(parent: ET.Element, tag: str, value: Any) -> None:
    el = ET.SubElement(parent, tag)
    if value is None:
        return
    if isinstance(value, bool):
        el.text = "true" if value else "false"
    elif isinstance(value, dict):
        for k, v in value.items():
            _xml_value(el, k, v)
    elif isinstance(value, list):
        child = {"attributes": "attribute", "values": "value"}.get(tag, "item")
        for item in value:
            _xml_value(el, child, item)
    else:
        el.text = str(value)


def to_xml(root: str, item: str | None, data: Any) -> bytes:
    """The spec's XML: a list under <root><item>…</item></root>, or one object as <root>…</root>."""
    top = ET.Element(root)
    if item is None:
        for k, v in data.items():
            _xml_value(top, k, v)
    else:
        for obj in data:
            _xml_value(top, item, obj)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(
        top, encoding="utf-8", xml_declaration=False
    )


def render(fmt: str, data: Any, *, root: str, item: str | None, status: int = 200) -> Response:
    """A JSON or XML answer."""
    if fmt == "xml":
        body = to_xml(root, item, data)
    else:
        import json

        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=_MEDIA[fmt])


def error_response(exc: Open311Error) -> Response:
    """[{code, description}] (JSON) or <errors><error>…</error></errors> (XML)."""
    return render(
        exc.fmt,
        [{"code": exc.status, "description": exc.description}],
        root="errors",
        item="error",
        status=exc.status,
    )
