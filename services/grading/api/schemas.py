"""Request and response bodies of grading's public API (DESIGN §3)."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schema.dto import Category, Deadlines, Factor, Metrics, PublishedReply, Superior, UnitRef
from schema.enums import Channel, IncidentStatus, Level, RequestType, ResponseType, WarningClass
from services.grading.api.workflow_schemas import (
    AssignmentOut,
    ClockOut,
    FeedbackOut,
    InstructionOut,
    ReplyOut,
)


class TimelineOut(BaseModel):
    """A step of an incident's history."""

    at: datetime
    action: str
    status: str | None
    actor: str | None
    note: str | None
    public: bool


class ReviewOut(BaseModel):
    """An analyst's change, with what it was before."""

    at: datetime
    actor: str
    reason: str
    before: dict[str, Any]
    after: dict[str, Any]


class IncidentOut(BaseModel):
    """An incident as staff see it."""

    id: str
    code: str
    title: str
    status: IncidentStatus
    level: Level
    level_text: str = ""
    score: float
    factors: list[Factor]
    category: Category | None
    classification: dict[str, Any] | None = None
    low_confidence: bool = False
    request_type: RequestType | None
    request_type_inferred: bool = False
    response_type: ResponseType | None
    warning_class: WarningClass | None
    lead_unit: UnitRef | None
    co_units: list[UnitRef]
    route_reason: str | None
    districts: list[str] = Field(default_factory=list)
    streets: list[str] = Field(default_factory=list)
    deadlines: Deadlines
    message_ids: list[str]
    message_count: int = 0
    channels: list[str]
    received_at: datetime
    last_message_at: datetime | None = None
    heat: float
    heat_detail: dict[str, Any] | None = None
    stage: str = "latent"
    stage_text: str = ""
    policy_version: str | None
    merged_into: str | None = None
    original_grading: dict[str, Any] | None = None
    review_pins: list[str] = Field(default_factory=list)
    reviews: list[ReviewOut] = Field(default_factory=list)
    timeline: list[TimelineOut] = Field(default_factory=list)
    # The handling workflow (the one-incident view carries the detail).
    allowed_actions: list[str] = Field(default_factory=list, description="staff actions the status allows")
    reopen_count: int = 0
    assignments: list[AssignmentOut] = Field(default_factory=list, description="the assignments in hand")
    reply: ReplyOut | None = None
    published_reply: PublishedReply | None = None
    public_response: dict[str, Any] | None = None
    instructions: list[InstructionOut] = Field(default_factory=list)
    feedback: list[FeedbackOut] = Field(default_factory=list)
    clocks: list[ClockOut] = Field(default_factory=list)
    close_summary: dict[str, Any] | None = None


class IncidentPage(BaseModel):
    """A page of incidents."""

    items: list[IncidentOut]
    total: int


class CloseIn(BaseModel):
    """办结: how the matter ended. Closing a level I–III matter after handling needs the 总结报告's
    fields too (how it arose and spread, what verification found, what was done, the effect)."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=5000)
    origin_and_spread: str | None = Field(default=None, max_length=5000, description="舆情发生衍变情况")
    verification: str | None = Field(default=None, max_length=5000, description="调查核实情况")
    measures: str | None = Field(default=None, max_length=5000, description="采取措施情况")
    effect: str | None = Field(default=None, max_length=5000, description="处置效果")


class CategoryIn(BaseModel):
    """A taxonomy entry by its names (level 2 and 3 optional)."""

    model_config = ConfigDict(extra="forbid")

    level1: str = Field(min_length=1, max_length=50)
    level2: str | None = Field(default=None, max_length=50)
    level3: str | None = Field(default=None, max_length=50)


class ReviewIn(BaseModel):
    """研判调整: change level, category or units, with the reason."""

    model_config = ConfigDict(extra="forbid")

    level: Level | None = None
    category: CategoryIn | None = None
    lead_unit: str | None = Field(default=None, max_length=64)
    co_units: list[str] | None = Field(default=None, max_length=20)
    reason: str = Field(min_length=2, max_length=2000)

    @model_validator(mode="after")
    def _something(self):
        if self.level is None and self.category is None and self.lead_unit is None and self.co_units is None:
            raise ValueError("give at least one of level, category, lead_unit, co_units")
        return self


class MergeIn(BaseModel):
    """Merge other incidents into this one."""

    model_config = ConfigDict(extra="forbid")

    incident_ids: list[str] = Field(min_length=1, max_length=50)
    reason: str = Field(min_length=2, max_length=2000)


class SplitIn(BaseModel):
    """Move some messages into a new incident."""

    model_config = ConfigDict(extra="forbid")

    message_ids: list[str] = Field(min_length=1, max_length=1000)
    reason: str = Field(min_length=2, max_length=2000)


class BundleStatus(BaseModel):
    """The bundle and model in use on this replica."""

    bundle: dict[str, Any]
    last_reload_at: datetime | None
    last_reload_problems: list[str]
    classifier: dict[str, Any]
    index: dict[str, Any]


class DryRunIn(BaseModel):
    """A message to grade without storing it."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=500)
    content: str = Field(min_length=1, max_length=20000)
    channel: Channel | None = None
    request_type: RequestType | None = None
    received_at: datetime | None = None
    metrics: Metrics | None = None
    superior: Superior | None = None
