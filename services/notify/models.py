"""Notify's tables: alerts and their escalation state, deliveries and attempts, scheduled jobs, the
scheduler's lease, the incidents notify follows (for 续报 and the daily digest), outbox, inbox."""

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, Text, text
from sqlmodel import Field

from kit.db import JSONType, UTCDateTime, new_dict, new_list
from kit.inbox import InboxFields
from kit.outbox import OutboxFields, outbox_table_args
from services.notify.db import NotifyTable

_QUEUED = text("status = 'queued'")
_PENDING = text("done_at IS NULL")


class Alert(NotifyTable, table=True):
    """One matter to tell people about (an incident graded, a 催办 …) and its escalation chain."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_incident", "incident_id"),
        Index("ux_alert_dedupe", "dedupe_key", unique=True),
    )

    id: str = Field(primary_key=True, max_length=36)
    incident_id: str | None = Field(default=None, max_length=36)
    incident_code: str | None = Field(default=None, max_length=32)
    kind: str = Field(max_length=32)
    level: str | None = Field(default=None, max_length=4)
    policy: str = Field(max_length=200)
    # open (chain running) · acked · unacknowledged (chain ran out) · closed (incident closed) ·
    # superseded (a newer alert of the incident replaced it) · info (no acknowledgement asked)
    status: str = Field(max_length=16)
    step: int = 0
    chain: list[dict[str, Any]] = Field(default_factory=new_list, sa_type=JSONType)
    rounds: int = 1
    context: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)
    dedupe_key: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_step_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acked_by: str | None = Field(default=None, max_length=64)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Delivery(NotifyTable, table=True):
    """One notification to one recipient on one channel."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_incident", "incident_id"),
        Index("ix_delivery_created", "created_at"),
        Index("ux_delivery_dedupe", "dedupe_key", unique=True),
        Index("ux_delivery_ack_ref", "ack_ref", unique=True),
        Index("ix_delivery_alert", "alert_id"),
        Index("ix_delivery_group", "incident_id", "recipient_id", "channel", "sent_at"),
        Index("ix_delivery_due", "next_attempt_at", postgresql_where=_QUEUED, sqlite_where=_QUEUED),
        Index("ix_delivery_provider_msg", "provider_message_id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    alert_id: str | None = Field(default=None, max_length=36)
    step: int = 0
    incident_id: str | None = Field(default=None, max_length=36)
    incident_code: str | None = Field(default=None, max_length=32)
    event: str = Field(max_length=32)
    level: str | None = Field(default=None, max_length=4)
    recipient_id: str = Field(max_length=64)
    recipient_name: str = Field(max_length=100)
    channel: str = Field(max_length=16)
    address_masked: str | None = Field(default=None, max_length=100)
    template: str = Field(default="graded", max_length=32)
    params: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)
    # Alerts merged into this one while it waited for the repeat interval (grouping).
    items: list[dict[str, Any]] = Field(default_factory=new_list, sa_type=JSONType)
    content: str = Field(sa_type=Text)
    segments: int = 1
    status: str = Field(max_length=16)  # queued, sent, delivered, failed, cancelled
    attempts: int = 0
    provider: str | None = Field(default=None, max_length=16)
    provider_message_id: str | None = Field(default=None, max_length=100)
    ack_ref: str = Field(max_length=16)
    dedupe_key: str = Field(max_length=200)
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acked_by: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, max_length=1000)


class DeliveryAttempt(NotifyTable, table=True):
    """One call to a provider for a delivery, and what it answered."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (Index("ix_attempt_delivery", "delivery_id"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    delivery_id: str = Field(max_length=36)
    number: int
    provider: str = Field(max_length=16)
    at: datetime = Field(sa_type=UTCDateTime)
    duration_ms: float = 0.0
    # ok · retry · throttled · permanent · provider_down · unknown
    outcome: str = Field(max_length=16)
    code: str | None = Field(default=None, max_length=100)
    detail: str | None = Field(default=None, max_length=500)
    provider_message_id: str | None = Field(default=None, max_length=100)


class Job(NotifyTable, table=True):
    """A scheduled piece of work: an escalation step, a 续报, a daily digest. Done exactly once."""

    __tablename__ = "job"
    __table_args__ = (
        Index("ux_job_key", "key", unique=True),
        Index("ix_job_due", "due_at", postgresql_where=_PENDING, sqlite_where=_PENDING),
        Index("ix_job_subject", "subject"),
    )

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True, autoincrement=True))
    kind: str = Field(max_length=16)  # escalate · follow_up · digest
    key: str = Field(max_length=200)
    subject: str | None = Field(default=None, max_length=64)  # the alert or incident it is about
    due_at: datetime = Field(sa_type=UTCDateTime)
    payload: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)
    created_at: datetime = Field(sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=32)
    last_error: str | None = Field(default=None, max_length=1000)


class Lease(NotifyTable, table=True):
    """Who runs a singleton worker (the scheduler) until when."""

    __tablename__ = "lease"

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=64)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class TrackedIncident(NotifyTable, table=True):
    """What notify knows of an incident from the events it received (for 续报 and the digest)."""

    __tablename__ = "tracked_incident"
    __table_args__ = (
        Index("ix_tracked_status", "status", "level"),
        Index("ix_tracked_seen", "first_seen_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    code: str = Field(max_length=32)
    title: str = Field(max_length=500)
    level: str = Field(max_length=4)
    warning_class: str | None = Field(default=None, max_length=32)
    lead_unit_code: str | None = Field(default=None, max_length=64)
    lead_unit_name: str | None = Field(default=None, max_length=200)
    status: str = Field(max_length=16)  # open · closed
    received_at: datetime = Field(sa_type=UTCDateTime)
    first_seen_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    summary: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)  # the latest IncidentSummary


class OutboxEvent(OutboxFields, NotifyTable, table=True):
    """Events notify owes other services."""

    __tablename__ = "outbox"
    __table_args__ = outbox_table_args()


class InboxEvent(InboxFields, NotifyTable, table=True):
    """Events notify has applied."""

    __tablename__ = "inbox"
