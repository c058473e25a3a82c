"""Intake's tables: messages as received, their timeline, idempotency keys, uploads, feedback,
pending callbacks, outbox, inbox."""

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text
from sqlmodel import Field

from kit.db import JSONType, UTCDateTime, new_dict, new_list
from kit.inbox import InboxFields
from kit.outbox import OutboxFields, outbox_table_args
from services.intake.db import IntakeTable


class Message(IntakeTable, table=True):
    """A message as it arrived (original and normalised text), with its citizen-visible state."""

    __tablename__ = "message"
    __table_args__ = (
        Index("ux_message_channel_external", "channel", "external_id", unique=True),
        Index("ix_message_incident", "incident_id"),
        Index("ix_message_received", "received_at"),
        Index("ix_message_status", "citizen_status", "received_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    tracking_code: str = Field(max_length=32, unique=True)
    channel: str = Field(max_length=16)
    external_id: str | None = Field(default=None, max_length=200)
    client_id: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=500)
    title_original: str | None = Field(default=None, sa_type=Text)
    content_original: str = Field(sa_type=Text)
    content_normalized: str = Field(sa_type=Text)
    request_type: str | None = Field(default=None, max_length=16)
    occurred_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source_name: str | None = Field(default=None, max_length=200)
    source_url: str | None = Field(default=None, max_length=2000)
    location: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    metrics: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    attachments: list[dict[str, Any]] = Field(default_factory=new_list, sa_type=JSONType)
    superior: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    category_hint: str | None = Field(default=None, max_length=200)
    service_code: str | None = Field(default=None, max_length=32, description="Open311 service, if known")
    reporter_encrypted: str | None = Field(default=None, sa_type=Text)
    reporter_flags: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)
    confidential: bool = Field(
        default=False, description="the reporter asked for confidentiality: never listed publicly"
    )
    received_at: datetime = Field(sa_type=UTCDateTime)
    # Screening: why the message was screened out (or which spam lines were dropped), and who released it.
    screening: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    released_by: str | None = Field(default=None, max_length=64)
    # What the citizen sees, fed by grading's message.status_changed events.
    citizen_status: str = Field(default="received", max_length=16)
    status_sequence: int = 0
    incident_id: str | None = Field(default=None, max_length=36)
    handling_unit: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    reply: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    reply_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    category: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class MessageEvent(IntakeTable, table=True):
    """One step of a message's timeline; `public` steps show in the citizen view."""

    __tablename__ = "message_event"
    __table_args__ = (Index("ix_message_event_message", "message_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=36, foreign_key="message.id")
    at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(max_length=16)
    text: str = Field(max_length=500)
    public: bool = True
    actor: str | None = Field(default=None, max_length=64, description="staff member, for internal steps")


class IdempotencyRecord(IntakeTable, table=True):
    """An Idempotency-Key a client used, with the answer it got (IETF httpapi-idempotency-key-header)."""

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_expires", "expires_at"),)

    scope: str = Field(
        primary_key=True, max_length=80, description="the client (or staff user) the key belongs to"
    )
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64, description="SHA-256 of method, path and body")
    state: str = Field(max_length=16, description="in_flight | done")
    locked_until: datetime = Field(sa_type=UTCDateTime)
    status_code: int | None = None
    response: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class Upload(IntakeTable, table=True):
    """A file a channel client uploaded, stored under var/ by its SHA-256."""

    __tablename__ = "upload"
    __table_args__ = (Index("ux_upload_client_sha", "client_id", "sha256", unique=True),)

    id: str = Field(primary_key=True, max_length=36)
    client_id: str = Field(max_length=64)
    sha256: str = Field(max_length=64)
    size: int
    media_type: str = Field(max_length=100)
    name: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)


class Feedback(IntakeTable, table=True):
    """A citizen's satisfaction with a published reply (one per reply)."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ux_feedback_reply", "message_id", "reply_key", unique=True),)

    id: str = Field(primary_key=True, max_length=36)
    message_id: str = Field(max_length=36, foreign_key="message.id")
    reply_key: str = Field(max_length=64, description="which published reply this is about")
    satisfaction: str = Field(max_length=32)
    comment: str | None = Field(default=None, sa_type=Text)
    received_at: datetime = Field(sa_type=UTCDateTime)


class Callback(IntakeTable, table=True):
    """A reply owed to a channel client's callback URL; kept until it answers 2xx."""

    __tablename__ = "callback"
    __table_args__ = (
        Index("ux_callback_dedupe", "dedupe_key", unique=True),
        Index("ix_callback_due", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    dedupe_key: str = Field(max_length=200)
    client_id: str = Field(max_length=64)
    message_id: str = Field(max_length=36)
    event: str = Field(max_length=64)
    payload: dict[str, Any] = Field(sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = Field(default=None, max_length=1000)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboxEvent(OutboxFields, IntakeTable, table=True):
    """Events intake owes other services."""

    __tablename__ = "outbox"
    __table_args__ = outbox_table_args()


class InboxEvent(InboxFields, IntakeTable, table=True):
    """Events intake has applied."""

    __tablename__ = "inbox"
