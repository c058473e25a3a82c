"""Events between services, version 1. Every event is an envelope with a typed `data` payload."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, TypeAdapter

from schema.dto import (
    Category,
    Contract,
    IncidentDossier,
    IncidentSummary,
    Location,
    Metrics,
    PublishedReply,
    ReporterFlags,
    Superior,
    TimelineEntry,
    UnitRef,
)
from schema.enums import Channel, CitizenStatus, IncidentStatus, Level, RequestType, Satisfaction

SCHEMA_VERSION = 1


class Event(Contract):
    """The envelope every event travels in."""

    type_name: ClassVar[str] = ""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: str
    version: int = SCHEMA_VERSION
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str
    trace: str | None = Field(default=None, description="W3C traceparent of the request that caused it")
    data: Any

    @classmethod
    def build(cls, *, source: str, data: Any, trace: str | None = None, occurred_at: datetime | None = None):
        """A new event of this type with a fresh id."""
        extra = {"occurred_at": occurred_at} if occurred_at else {}
        return cls(type=cls.type_name, source=source, data=data, trace=trace, **extra)


# --- message.received: intake → grading ------------------------------------------------------------


class MessageReceivedData(Contract):
    message_id: str
    tracking_code: str
    channel: Channel
    external_id: str | None = None
    title: str | None = None
    content: str = Field(description="normalised text; grading reads this")
    request_type: RequestType | None = None
    occurred_at: datetime | None = None
    published_at: datetime | None = None
    received_at: datetime
    source_name: str | None = None
    source_url: str | None = None
    location: Location | None = None
    metrics: Metrics | None = None
    category_hint: str | None = None
    superior: Superior | None = None
    reporter: ReporterFlags = Field(default_factory=ReporterFlags)
    attachment_count: int = 0
    client_id: str | None = None


class MessageReceived(Event):
    type_name: ClassVar[str] = "message.received"
    type: Literal["message.received"] = "message.received"
    data: MessageReceivedData


# --- message.status_changed: grading → intake (the citizen view) -----------------------------------


class MessageStatusChangedData(Contract):
    message_ids: list[str]
    incident_id: str
    incident_status: IncidentStatus
    citizen_status: CitizenStatus
    sequence: int = Field(description="grows with every change of the incident; stale ones are ignored")
    handling_unit: UnitRef | None = None
    public_note: str | None = None
    reply: PublishedReply | None = None
    reply_due: datetime | None = None
    category: Category | None = Field(
        default=None, description="the incident's category, when known (the Open311 facade shows it)"
    )


class MessageStatusChanged(Event):
    type_name: ClassVar[str] = "message.status_changed"
    type: Literal["message.status_changed"] = "message.status_changed"
    data: MessageStatusChangedData


# --- message.feedback: intake → grading ------------------------------------------------------------


class MessageFeedbackData(Contract):
    message_id: str
    tracking_code: str
    satisfaction: Satisfaction
    comment: str | None = None
    received_at: datetime


class MessageFeedback(Event):
    type_name: ClassVar[str] = "message.feedback"
    type: Literal["message.feedback"] = "message.feedback"
    data: MessageFeedbackData


# --- incident.*: grading → notify, archive ---------------------------------------------------------


class IncidentGraded(Event):
    type_name: ClassVar[str] = "incident.graded"
    type: Literal["incident.graded"] = "incident.graded"
    data: IncidentSummary


class IncidentEscalatedData(IncidentSummary):
    previous_level: Level


class IncidentEscalated(Event):
    type_name: ClassVar[str] = "incident.escalated"
    type: Literal["incident.escalated"] = "incident.escalated"
    data: IncidentEscalatedData


class IncidentClosed(Event):
    type_name: ClassVar[str] = "incident.closed"
    type: Literal["incident.closed"] = "incident.closed"
    data: IncidentDossier


# --- notification.requested: grading → notify (催办, 督办, reply published, 质疑跟帖 …) -------------


class NotificationRequestedData(Contract):
    kind: str = Field(description="reminder | supervision | reply_published | challenge | follow_up | …")
    incident: IncidentSummary
    unit_codes: list[str] = Field(default_factory=list)
    recipient_roles: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    dedupe_key: str | None = Field(default=None, description="the same key is sent once")
    timeline: list[TimelineEntry] = Field(default_factory=list)


class NotificationRequested(Event):
    type_name: ClassVar[str] = "notification.requested"
    type: Literal["notification.requested"] = "notification.requested"
    data: NotificationRequestedData


AnyEvent = Annotated[
    MessageReceived
    | MessageStatusChanged
    | MessageFeedback
    | IncidentGraded
    | IncidentEscalated
    | IncidentClosed
    | NotificationRequested,
    Field(discriminator="type"),
]
EVENT_TYPES: dict[str, type[Event]] = {
    cls.type_name: cls
    for cls in (
        MessageReceived,
        MessageStatusChanged,
        MessageFeedback,
        IncidentGraded,
        IncidentEscalated,
        IncidentClosed,
        NotificationRequested,
    )
}
_any_event = TypeAdapter(AnyEvent)


def parse_event(raw: dict[str, Any]) -> Event:
    """The typed event for a raw envelope; raises pydantic.ValidationError when it does not fit."""
    return _any_event.validate_python(raw)


class EventBatch(Contract):
    """What a relay POSTs to a consumer's /internal/events."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class EventResult(Contract):
    """A consumer's verdict on one event of a batch."""

    id: str
    status: Literal["applied", "duplicate", "rejected", "error"]
    detail: str | None = None
