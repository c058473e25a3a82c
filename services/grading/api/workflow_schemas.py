"""Request and response bodies of the handling workflow, supervision and statistics (DESIGN §3)."""

from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schema.dto import UnitRef
from schema.enums import Finding, IncidentStatus, Level

Text = Field(min_length=1, max_length=5000)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- in ----------------------------------------------------------------------------------------------


class AssignIn(_In):
    """批办: the lead unit, co-units and the instruction (a leader's is recorded as 批示)."""

    lead_unit: str = Field(min_length=1, max_length=64)
    co_units: list[str] = Field(default_factory=list, max_length=20)
    instruction: str | None = Field(default=None, max_length=5000)


class ReturnIn(_In):
    """退回: a reason code of the policy (territory 属地不符, overlap 职能交叉, ownership 权属不清 …)."""

    reason: str = Field(min_length=1, max_length=32)
    note: str | None = Field(default=None, max_length=2000)


class ExtensionIn(_In):
    """延期申请: the due time asked for (with its zone) and why."""

    requested_due: AwareDatetime
    reason: str = Field(min_length=2, max_length=2000)


class ExtensionDecisionIn(_In):
    """A leader's decision on an extension (approve with the requested or an earlier due time)."""

    approve: bool
    due: AwareDatetime | None = None
    comment: str | None = Field(default=None, max_length=2000)


class ProgressIn(_In):
    """进展: the lead's progress, a co-unit's input, or an explanation of lateness (情况说明)."""

    note: str = Text
    kind: Literal["progress", "input", "explanation"] | None = None


class ReplyIn(_In):
    """答复: the finding after verification, the reply text and the measures taken."""

    finding: Finding
    reply_text: str = Field(min_length=1, max_length=20000)
    measures: str | None = Field(default=None, max_length=20000)


class DecisionIn(_In):
    """审定: approve (optionally with an edited text) or send back with a comment."""

    approve: bool
    comment: str | None = Field(default=None, max_length=5000)
    edited_text: str | None = Field(default=None, min_length=1, max_length=20000)


class PublicResponseIn(_In):
    """公开回应 of an online matter: where, when and the link."""

    channel: str = Field(min_length=1, max_length=32, description="e.g. weibo, wechat, portal, press")
    url: str | None = Field(default=None, max_length=2000)
    text: str = Text
    published_at: AwareDatetime | None = None


class PublishIn(_In):
    """公开; for an online matter the public response can be recorded with it."""

    public_response: PublicResponseIn | None = None


class ReasonIn(_In):
    """重办, 甄别 or 恢复 with the reason."""

    reason: str = Field(min_length=2, max_length=2000)


class InstructionIn(_In):
    """A leader's 批示."""

    text: str = Text


# --- out ---------------------------------------------------------------------------------------------


class ProgressNote(BaseModel):
    """A progress note, co-unit input or explanation."""

    at: datetime
    by: str
    unit: str
    kind: str
    note: str


class ExtensionOut(BaseModel):
    """An extension request and its decision."""

    id: str
    assignment_id: str
    incident_id: str
    unit_code: str
    previous_due: datetime
    requested_due: datetime
    reason: str
    requested_by: str
    requested_at: datetime
    status: Literal["pending", "approved", "rejected", "withdrawn"]
    decided_by: str | None = None
    decided_at: datetime | None = None
    approved_due: datetime | None = None
    comment: str | None = None


class AssignmentOut(BaseModel):
    """One unit's assignment and what it may do with it now."""

    id: str
    incident_id: str
    incident_code: str
    incident_title: str
    incident_status: IncidentStatus
    level: Level
    round: int
    unit: UnitRef
    role: Literal["lead", "co"]
    instruction: str | None = None
    assigned_by: str
    assigned_at: datetime
    sign_due: datetime | None = None
    reply_due: datetime | None = None
    status: Literal["assigned", "signed", "replied", "returned", "done", "withdrawn"]
    signed_at: datetime | None = None
    signed_by: str | None = None
    returned_at: datetime | None = None
    return_reason: str | None = None
    return_reason_text: str | None = None
    return_note: str | None = None
    ended_at: datetime | None = None
    progress: list[ProgressNote] = Field(default_factory=list)
    extension: ExtensionOut | None = Field(default=None, description="the latest extension request")
    allowed_actions: list[str] = Field(default_factory=list)


class RoundOut(BaseModel):
    """A round of 批办: `id` is the lead unit's assignment."""

    id: str
    incident_id: str
    round: int
    instruction: str | None = None
    assigned_by: str
    assigned_at: datetime
    assignments: list[AssignmentOut]


class AssignmentPage(BaseModel):
    """A page of assignments."""

    items: list[AssignmentOut]
    total: int


class ReplyOut(BaseModel):
    """The lead unit's reply and its 审定."""

    id: str
    incident_id: str
    assignment_id: str
    unit: UnitRef
    finding: Finding
    finding_text: str
    reply_text: str
    measures: str | None = None
    replied_by: str
    replied_at: datetime
    status: Literal["submitted", "approved", "sent_back", "published", "superseded"]
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None
    edited_text: str | None = None
    published_at: datetime | None = None
    published_by: str | None = None


class InstructionOut(BaseModel):
    """A 批示 or 交办意见."""

    at: datetime
    by: str
    role: str
    kind: str
    text: str
    round: int | None = None


class ClockOut(BaseModel):
    """A clock and where supervision is with it."""

    id: int
    kind: Literal["sign", "reply", "response"]
    kind_text: str
    unit_code: str | None = None
    assignment_id: str | None = None
    started_at: datetime
    due_at: datetime
    reminders_sent: int
    next_at: datetime | None = None
    breached_at: datetime | None = None
    stopped_at: datetime | None = None
    outcome: str | None = None
    explained_at: datetime | None = None


class FeedbackOut(BaseModel):
    """A citizen's rating of the reply."""

    satisfaction: str
    comment: str | None = None
    at: datetime
    outcome: str | None = None


class OverdueIncident(BaseModel):
    """The incident an overdue clock belongs to."""

    id: str
    code: str
    title: str
    level: Level
    status: IncidentStatus


class OverdueItem(BaseModel):
    """A running clock past its due time."""

    clock_id: int
    kind: Literal["sign", "reply", "response"]
    kind_text: str
    incident: OverdueIncident
    unit: UnitRef | None = None
    started_at: datetime
    due_at: datetime
    overdue_hours: float
    supervised: bool = Field(description="the 督办 went out")
    explained: bool
    explained_at: datetime | None = None


class OverduePage(BaseModel):
    """The overdue list."""

    items: list[OverdueItem]
    total: int


class NoticeUnit(BaseModel):
    """A unit listed for 通报: overdue with no explanation."""

    unit: UnitRef
    overdue: int
    oldest_due: datetime
    items: list[OverdueItem]


class NoticeList(BaseModel):
    """The 通报 list."""

    items: list[NoticeUnit]
    total: int
    grace_hours: float


class SweepOut(BaseModel):
    """What one supervision round did."""

    leader: bool
    clocks: int = 0
    reminder: int = 0
    supervision: int = 0
    rolled_up: int = 0
    seconds: float = 0.0


class StatCounts(BaseModel):
    """Counts of a period, unit, channel, category or level."""

    received: int
    assigned: int
    signed: int
    signed_on_time: int
    returned: int
    extended: int
    replied: int
    replied_on_time: int
    overdue: int
    reopened: int
    closed: int
    satisfied: int
    basically_satisfied: int
    unsatisfied: int


class StatRates(BaseModel):
    """响应率 (signed on time / assigned), 解决率 ((closed − reopened) / closed), 满意率 ((satisfied +
    basically satisfied) / rated), 按时办结率 (replied on time / replied); null when nothing to divide."""

    response_rate: float | None = None
    resolution_rate: float | None = None
    satisfaction_rate: float | None = None
    on_time_rate: float | None = None


class StatGroup(BaseModel):
    """One unit, channel, category or level."""

    key: str
    name: str
    counts: StatCounts
    rates: StatRates


class StatPoint(BaseModel):
    """One period of the time series."""

    period: date
    counts: StatCounts
    rates: StatRates


class StatsOut(BaseModel):
    """Statistics for supervision and assessment (考核)."""

    from_date: date
    to_date: date
    group_by: str | None
    period: str
    filters: dict[str, Any]
    totals: StatCounts
    rates: StatRates
    groups: list[StatGroup]
    series: list[StatPoint]
    complete: bool = Field(description="false while more waits to be rolled up than a query adds itself")
