"""Data shapes that cross service boundaries (inside events, internal look-ups and the principal)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schema.enums import (
    Channel,
    CitizenStatus,
    IncidentStatus,
    Level,
    PrincipalKind,
    RequestType,
    ResponseType,
    Role,
    Satisfaction,
    WarningClass,
)


class Contract(BaseModel):
    """Base of every contract model: unknown fields from a newer sender are ignored, not fatal."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class UnitRef(Contract):
    """A unit of the organisation directory."""

    code: str
    name: str


class Location(Contract):
    """Where the matter happens."""

    text: str | None = Field(default=None, max_length=500)
    district_code: str | None = Field(default=None, max_length=32)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lng: float | None = Field(default=None, ge=-180, le=180)


class Metrics(Contract):
    """Spread figures of an online item."""

    views: int = Field(default=0, ge=0)
    reposts: int = Field(default=0, ge=0)
    comments: int = Field(default=0, ge=0)
    likes: int = Field(default=0, ge=0)
    dislikes: int = Field(default=0, ge=0)


class Superior(Contract):
    """A superior office's forward (上级转办)."""

    issuer: str = Field(min_length=1, max_length=200)
    doc_no: str | None = Field(default=None, max_length=100)
    deadline: datetime | None = None
    unit_code: str | None = Field(default=None, max_length=64, description="unit the forward names, if any")


class ReporterFlags(Contract):
    """What may be known about the reporter outside intake (never the identity itself)."""

    anonymous: bool = False
    wants_reply: bool = True
    confidential: bool = False


class Category(Contract):
    """A place in the three-level category taxonomy."""

    level1: str
    level2: str | None = None
    level3: str | None = None
    confidence: float = Field(default=0.0, ge=0, le=1)


class Factor(Contract):
    """One contribution to an incident's score."""

    name: str
    points: float
    detail: str = ""


class Deadlines(Contract):
    """The clocks of an incident (DESIGN §2 "Deadlines")."""

    report_due: datetime | None = None
    first_release_due: datetime | None = None
    response_due: datetime | None = None
    reply_due: datetime | None = None


class TimelineEntry(Contract):
    """One step in a matter's history."""

    at: datetime
    action: str
    status: str | None = None
    actor: str | None = None
    note: str | None = None
    public: bool = False


class PublishedReply(Contract):
    """The official reply as the citizen sees it."""

    text: str
    unit: UnitRef | None = None
    finding: str | None = None
    published_at: datetime


class IncidentSummary(Contract):
    """What other services need to know about an incident."""

    id: str
    code: str
    title: str
    status: IncidentStatus
    level: Level
    score: float
    factors: list[Factor] = Field(default_factory=list)
    category: Category | None = None
    request_type: RequestType | None = None
    response_type: ResponseType | None = None
    warning_class: WarningClass | None = None
    lead_unit: UnitRef | None = None
    co_units: list[UnitRef] = Field(default_factory=list)
    deadlines: Deadlines = Field(default_factory=Deadlines)
    message_ids: list[str] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=list)
    received_at: datetime
    heat: float = 0.0
    district: str | None = None
    excerpt: str = ""
    policy_version: str | None = None


class IncidentDossier(IncidentSummary):
    """Everything grading knows about a closed incident, for the archive."""

    closed_at: datetime
    closed_by: str | None = None
    close_summary: dict[str, Any] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    assignments: list[dict[str, Any]] = Field(default_factory=list)
    reviews: list[dict[str, Any]] = Field(default_factory=list)
    reply: dict[str, Any] | None = None
    public_response: dict[str, Any] | None = None
    feedback: list[dict[str, Any]] = Field(default_factory=list)
    close_count: int = 1
    instructions: list[dict[str, Any]] = Field(
        default_factory=list, description="leaders' 批示 and analysts' 交办意见: {at, by, role, kind, text}"
    )


class MessageRecord(Contract):
    """A message as intake holds it, for the archive (reporter identity stays encrypted)."""

    id: str
    tracking_code: str
    channel: Channel
    external_id: str | None = None
    title: str | None = None
    content_original: str
    content_normalized: str
    request_type: RequestType | None = None
    occurred_at: datetime | None = None
    published_at: datetime | None = None
    received_at: datetime
    source_name: str | None = None
    source_url: str | None = None
    location: Location | None = None
    metrics: Metrics | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    superior: Superior | None = None
    reporter_encrypted: str | None = None
    citizen_status: CitizenStatus
    feedback: list[dict[str, Any]] = Field(default_factory=list)


class NotificationRecord(Contract):
    """A notification delivery as notify holds it, for the archive."""

    id: str
    incident_id: str | None = None
    event: str
    recipient: str
    channel: str
    status: str
    attempts: int = 0
    created_at: datetime
    sent_at: datetime | None = None
    acked_at: datetime | None = None
    acked_by: str | None = None


class FeedbackIn(Contract):
    """A citizen's satisfaction with the reply."""

    satisfaction: Satisfaction
    comment: str | None = Field(default=None, max_length=2000)


class Principal(Contract):
    """Who the gateway authenticated; services trust it only when signed with the service secret."""

    kind: PrincipalKind
    sub: str
    roles: list[Role] = Field(default_factory=list)
    unit_code: str | None = None
    client_id: str | None = None
    client_ip: str | None = None

    def has_any(self, *roles: Role) -> bool:
        """True when the principal holds at least one of the roles."""
        return any(r in self.roles for r in roles)
