"""Grading's tables: incidents, the messages they hold, their timeline, the handling workflow
(assignments, extensions, replies, instructions, feedback), the supervision clocks, the daily
statistics, outbox and inbox."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Index, LargeBinary, Text, false, text
from sqlmodel import Field

from kit.db import JSONType, UTCDateTime, new_dict, new_list
from kit.inbox import InboxFields
from kit.lease import LeaseFields
from kit.outbox import OutboxFields, outbox_table_args
from services.grading.db import GradingTable


class Incident(GradingTable, table=True):
    """A matter: one or more messages about the same thing, graded, routed and on the clock."""

    __tablename__ = "incident"
    __table_args__ = (
        Index("ix_incident_status", "status"),
        Index("ix_incident_level", "level"),
        Index("ix_incident_lead_unit", "lead_unit_code"),
        Index("ix_incident_received", "received_at"),
    )

    id: str = Field(primary_key=True, max_length=36)
    code: str = Field(max_length=32, unique=True)
    title: str = Field(max_length=500)
    excerpt: str = Field(default="", max_length=500)
    status: str = Field(max_length=16)
    status_sequence: int = 0
    level: str = Field(max_length=4)
    score: float = 0.0
    factors: list[dict[str, Any]] = Field(default_factory=new_list, sa_type=JSONType)
    category: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    request_type: str | None = Field(default=None, max_length=16)
    response_type: str | None = Field(default=None, max_length=16)
    warning_class: str | None = Field(default=None, max_length=24)
    lead_unit_code: str | None = Field(default=None, max_length=64)
    lead_unit_name: str | None = Field(default=None, max_length=200)
    co_units: list[dict[str, Any]] = Field(default_factory=new_list, sa_type=JSONType)
    route_reason: str | None = Field(default=None, max_length=500)
    district: str | None = Field(default=None, max_length=32)
    channels: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    message_count: int = 1
    heat: float = 0.0
    report_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    first_release_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    response_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reply_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    policy_version: str | None = Field(default=None, max_length=64)
    received_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: str | None = Field(default=None, max_length=64)
    close_summary: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    close_count: int = 0
    # Grading detail (issue 4): what the engine decided and why, the original kept beside reviews.
    department_type: str | None = Field(default=None, max_length=32)
    districts: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    streets: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    classification: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    low_confidence: bool = False
    request_type_inferred: bool = False
    machine_level: str | None = Field(default=None, max_length=4)
    original_grading: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    reviewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    review_pins: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    machine_level_at_review: str | None = Field(default=None, max_length=4)
    # Incident aggregates, kept up to date as messages join (regrading never rereads every message).
    stage: str = Field(default="latent", max_length=16)
    heat_detail: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    metrics_total: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)
    superior_issuers: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    digest_text: str = Field(default="", sa_type=Text)
    first_message_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_message_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    merged_into: str | None = Field(default=None, max_length=36)
    # The handling workflow (issue 5).
    assign_round: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    reply_started_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="the reply clock's start: receipt, or the 重办"
    )
    published_reply: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    replied_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    public_response: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reopen_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class IncidentMessage(GradingTable, table=True):
    """A message grading received, as it needs it (normalised text, no reporter identity)."""

    __tablename__ = "incident_message"
    __table_args__ = (
        Index("ix_incident_message_incident", "incident_id"),
        Index("ix_incident_message_tracking", "tracking_code"),
        Index(
            "ix_incident_message_uncounted",
            "received_at",
            postgresql_where=text("NOT stat_counted"),
            sqlite_where=text("NOT stat_counted"),
        ),
    )

    message_id: str = Field(primary_key=True, max_length=36)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    tracking_code: str = Field(max_length=32)
    channel: str = Field(max_length=16)
    title: str | None = Field(default=None, max_length=500)
    content: str = Field(sa_type=Text)
    request_type: str | None = Field(default=None, max_length=16)
    metrics: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    received_at: datetime = Field(sa_type=UTCDateTime)
    # How the message was graded on its own and how it came into its incident.
    grading: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    superior_issuer: str | None = Field(default=None, max_length=200)
    joined_by: str | None = Field(default=None, max_length=16)
    similarity: float | None = None
    graded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Counted into the daily statistics (the scheduler rolls new messages up in batches).
    stat_counted: bool = Field(default=False, sa_column_kwargs={"server_default": false()})


class MatterSignature(GradingTable, table=True):
    """A message's same-matter features; every replica rebuilds its in-memory index from these rows."""

    __tablename__ = "matter_signature"
    __table_args__ = (Index("ix_matter_signature_received", "received_at"),)

    seq: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=36, unique=True)
    received_at: datetime = Field(sa_type=UTCDateTime)
    hashvalues: bytes = Field(sa_type=LargeBinary)
    title_words: list[str] = Field(default_factory=new_list, sa_type=JSONType)
    tf: dict[str, float] = Field(default_factory=new_dict, sa_type=JSONType)


class IncidentReview(GradingTable, table=True):
    """An analyst's change of level, category or units, with the reason and what it was before."""

    __tablename__ = "incident_review"
    __table_args__ = (Index("ix_incident_review_incident", "incident_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    at: datetime = Field(sa_type=UTCDateTime)
    actor: str = Field(max_length=64)
    reason: str = Field(sa_type=Text)
    before: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)
    after: dict[str, Any] = Field(default_factory=new_dict, sa_type=JSONType)


class IncidentEvent(GradingTable, table=True):
    """One step of an incident's timeline: who, when, what, why."""

    __tablename__ = "incident_event"
    __table_args__ = (Index("ix_incident_event_incident", "incident_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    at: datetime = Field(sa_type=UTCDateTime)
    action: str = Field(max_length=32)
    status: str | None = Field(default=None, max_length=16)
    actor: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, sa_type=Text)
    public: bool = False


class Assignment(GradingTable, table=True):
    """批办 of one unit in one round: lead (主办) or co (协办), and what the unit did with it."""

    __tablename__ = "assignment"
    __table_args__ = (
        Index("ix_assignment_incident", "incident_id", "round"),
        Index("ix_assignment_unit", "unit_code", "status"),
    )

    id: str = Field(primary_key=True, max_length=36)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    round: int
    unit_code: str = Field(max_length=64)
    unit_name: str = Field(max_length=200)
    role: str = Field(max_length=8, description="lead | co")
    instruction: str | None = Field(default=None, sa_type=Text)
    assigned_by: str = Field(max_length=64)
    assigned_at: datetime = Field(sa_type=UTCDateTime)
    sign_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: str = Field(max_length=16, description="assigned|signed|replied|returned|done|withdrawn")
    signed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    signed_by: str | None = Field(default=None, max_length=64)
    returned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    returned_by: str | None = Field(default=None, max_length=64)
    return_reason: str | None = Field(default=None, max_length=32)
    return_note: str | None = Field(default=None, sa_type=Text)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end_note: str | None = Field(default=None, max_length=200)
    progress: list[dict[str, Any]] = Field(default_factory=new_list, sa_type=JSONType)
    explained_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class ExtensionRequest(GradingTable, table=True):
    """延期申请 of a unit, and the leader's decision."""

    __tablename__ = "extension_request"
    __table_args__ = (
        Index("ix_extension_incident", "incident_id"),
        Index(
            "ix_extension_pending",
            "requested_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    assignment_id: str = Field(max_length=36, foreign_key="assignment.id")
    unit_code: str = Field(max_length=64)
    previous_due: datetime = Field(sa_type=UTCDateTime)
    requested_due: datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(sa_type=Text)
    requested_by: str = Field(max_length=64)
    requested_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(max_length=16, description="pending | approved | rejected | withdrawn")
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    approved_due: datetime | None = Field(default=None, sa_type=UTCDateTime)
    comment: str | None = Field(default=None, sa_type=Text)


class IncidentReply(GradingTable, table=True):
    """答复 of the lead unit (统一口径), its 审定 and its publication; a sent-back draft stays beside."""

    __tablename__ = "incident_reply"
    __table_args__ = (Index("ix_incident_reply_incident", "incident_id", "replied_at"),)

    id: str = Field(primary_key=True, max_length=36)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    assignment_id: str = Field(max_length=36, foreign_key="assignment.id")
    unit_code: str = Field(max_length=64)
    unit_name: str = Field(max_length=200)
    finding: str = Field(max_length=8)
    reply_text: str = Field(sa_type=Text)
    measures: str | None = Field(default=None, sa_type=Text)
    replied_by: str = Field(max_length=64)
    replied_at: datetime = Field(sa_type=UTCDateTime)
    status: str = Field(max_length=16, description="submitted|approved|sent_back|published|superseded")
    decided_by: str | None = Field(default=None, max_length=64)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    comment: str | None = Field(default=None, sa_type=Text)
    edited_text: str | None = Field(default=None, sa_type=Text)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    published_by: str | None = Field(default=None, max_length=64)


class Instruction(GradingTable, table=True):
    """A leader's 批示 or an analyst's 交办意见 on an incident."""

    __tablename__ = "instruction"
    __table_args__ = (Index("ix_instruction_incident", "incident_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    at: datetime = Field(sa_type=UTCDateTime)
    by: str = Field(max_length=64)
    role: str = Field(max_length=16)
    kind: str = Field(max_length=16, description="批示 (a leader's) | 交办意见")
    text: str = Field(sa_type=Text)
    round: int | None = None


class IncidentFeedback(GradingTable, table=True):
    """A citizen's satisfaction with a published reply (回访), as intake passed it on."""

    __tablename__ = "incident_feedback"
    __table_args__ = (Index("ix_incident_feedback_incident", "incident_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    message_id: str = Field(max_length=36)
    satisfaction: str = Field(max_length=24)
    comment: str | None = Field(default=None, sa_type=Text)
    at: datetime = Field(sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=16, description="closed | reopened | recorded")


class WorkflowClock(GradingTable, table=True):
    """One clock (签收 of an assignment, 答复 or 公开回应 of an incident) and where supervision is with it.

    `next_at` is when the scheduler must next look at it (the next reminder fraction or the breach);
    NULL once nothing more is due, so a sweep reads only due rows through the partial index.
    """

    __tablename__ = "workflow_clock"
    __table_args__ = (
        Index(
            "ix_clock_next",
            "next_at",
            postgresql_where=text("next_at IS NOT NULL"),
            sqlite_where=text("next_at IS NOT NULL"),
        ),
        Index(
            "ix_clock_running_due",
            "due_at",
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
        Index("ix_clock_incident", "incident_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: str = Field(max_length=36, foreign_key="incident.id")
    assignment_id: str | None = Field(default=None, max_length=36)
    kind: str = Field(max_length=16, description="sign | reply | response")
    unit_code: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(sa_type=UTCDateTime)
    due_at: datetime = Field(sa_type=UTCDateTime)
    stage: int = 0
    next_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    breached_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=16, description="met | late | cancelled")
    explained_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SupervisionNotice(GradingTable, table=True):
    """A 催办 or 督办 the scheduler sent (once: the dedupe key is unique)."""

    __tablename__ = "supervision_notice"
    __table_args__ = (
        Index("ux_supervision_notice_key", "dedupe_key", unique=True),
        Index("ix_supervision_notice_incident", "incident_id", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    clock_id: int = Field(foreign_key="workflow_clock.id")
    incident_id: str = Field(max_length=36)
    unit_code: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=16, description="reminder | supervision")
    clock_kind: str = Field(max_length=16)
    fraction: float | None = None
    due_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime = Field(sa_type=UTCDateTime)
    dedupe_key: str = Field(max_length=200)


STAT_COUNTERS = (
    "received",
    "assigned",
    "signed",
    "signed_on_time",
    "returned",
    "extended",
    "replied",
    "replied_on_time",
    "overdue",
    "reopened",
    "closed",
    "satisfied",
    "basically_satisfied",
    "unsatisfied",
)


def _counter() -> Any:
    return Field(default=0, sa_column_kwargs={"server_default": "0"})


class StatDaily(GradingTable, table=True):
    """Counts per local day, unit, channel, category (level 1) and level, kept up as things happen."""

    __tablename__ = "stat_daily"
    __table_args__ = (
        Index("ux_stat_daily_key", "day", "unit_code", "channel", "category", "level", unique=True),
        Index("ix_stat_daily_unit", "unit_code", "day"),
    )

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(sa_type=Date)
    unit_code: str = Field(default="", max_length=64)
    channel: str = Field(default="", max_length=16)
    category: str = Field(default="", max_length=50)
    level: str = Field(default="", max_length=4)
    received: int = _counter()
    assigned: int = _counter()
    signed: int = _counter()
    signed_on_time: int = _counter()
    returned: int = _counter()
    extended: int = _counter()
    replied: int = _counter()
    replied_on_time: int = _counter()
    overdue: int = _counter()
    reopened: int = _counter()
    closed: int = _counter()
    satisfied: int = _counter()
    basically_satisfied: int = _counter()
    unsatisfied: int = _counter()


class StatEvent(GradingTable, table=True):
    """A count as it happened, waiting to be rolled up into stat_daily (appends: no hot-row updates)."""

    __tablename__ = "stat_event"

    id: int | None = Field(default=None, primary_key=True)
    day: date = Field(sa_type=Date)
    unit_code: str = Field(default="", max_length=64)
    channel: str = Field(default="", max_length=16)
    category: str = Field(default="", max_length=50)
    level: str = Field(default="", max_length=4)
    counter: str = Field(max_length=24)
    n: int = 1


class Lease(LeaseFields, GradingTable, table=True):
    """Who runs the supervision scheduler until when."""

    __tablename__ = "lease"


class OutboxEvent(OutboxFields, GradingTable, table=True):
    """Events grading owes other services."""

    __tablename__ = "outbox"
    __table_args__ = outbox_table_args()


class InboxEvent(InboxFields, GradingTable, table=True):
    """Events grading has applied."""

    __tablename__ = "inbox"
