"""Request and response bodies of intake's public API (DESIGN §3)."""

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from schema.dto import Category, Location, Metrics, PublishedReply, Superior, UnitRef
from schema.enums import Channel, CitizenStatus, RequestType, Satisfaction


class Reporter(BaseModel):
    """Who reports; identity is validated, encrypted at rest and masked on read."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(
        default=None, max_length=32, description="mainland mobile (or landline with area code)"
    )
    id_number: str | None = Field(default=None, max_length=32, description="18-character resident ID number")
    email: str | None = Field(default=None, max_length=254)
    anonymous: bool = False
    wants_reply: bool = True
    confidential: bool = False


class Attachment(BaseModel):
    """A file that goes with a message: by http(s) URL, or an earlier upload by its id."""

    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl | None = None
    upload_id: str | None = Field(default=None, max_length=36)
    media_type: str | None = Field(default=None, max_length=100)
    name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.url is None) == (self.upload_id is None):
            raise ValueError("give either url or upload_id")
        return self


class MessageIn(BaseModel):
    """A message as a channel client submits it (lengths and channel fields: the bundle's rules)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Channel
    external_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the channel's own id (12345: the work-order number)",
    )
    title: str | None = None
    content: str = Field(min_length=1)
    request_type: RequestType | None = None
    occurred_at: datetime | None = None
    published_at: datetime | None = Field(default=None, description="online items: first publication")
    source_name: str | None = Field(
        default=None, max_length=200, description="online items: first media or account"
    )
    source_url: AnyHttpUrl | None = None
    location: Location | None = None
    reporter: Reporter | None = None
    metrics: Metrics | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    category_hint: str | None = Field(default=None, max_length=200)
    superior: Superior | None = None

    @field_validator("occurred_at", "published_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("times need a zone (ISO 8601 with an offset)")
        return v


class MessageAccepted(BaseModel):
    """What a channel client gets back for a message."""

    id: str
    tracking_code: str
    status: CitizenStatus
    status_text: str
    received_at: datetime
    duplicate: bool = Field(default=False, description="true when this message had been received before")


class BatchIn(BaseModel):
    """Up to the configured number of messages (1000 in the sample bundle); each is checked on its own."""

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]] = Field(min_length=1)


class ItemError(BaseModel):
    code: str
    message: str
    details: list[Any] = Field(default_factory=list)


class BatchItemResult(BaseModel):
    """The outcome of one item of a batch."""

    index: int
    status: Literal["created", "duplicate", "rejected"]
    id: str | None = None
    tracking_code: str | None = None
    message_status: CitizenStatus | None = None
    error: ItemError | None = None


class BatchResult(BaseModel):
    """A result per item, in the order sent, and the counts."""

    results: list[BatchItemResult]
    created: int
    duplicate: int
    rejected: int


class ReporterView(BaseModel):
    """Reporter identity as a staff member may see it: masked unless the role needs it."""

    name: str | None = None
    phone: str | None = None
    id_number: str | None = None
    email: str | None = None
    anonymous: bool = False
    wants_reply: bool = True
    confidential: bool = False
    masked: bool = True


class TimelineEntry(BaseModel):
    at: datetime
    status: CitizenStatus
    text: str
    public: bool
    actor: str | None = None


class StaffMessage(BaseModel):
    """A message as staff see it."""

    id: str
    tracking_code: str
    channel: Channel
    external_id: str | None
    client_id: str | None
    title: str | None
    title_original: str | None = None
    content: str
    content_original: str | None = None
    request_type: RequestType | None
    occurred_at: datetime | None
    published_at: datetime | None
    received_at: datetime
    source_name: str | None
    source_url: str | None
    location: Location | None
    metrics: Metrics | None
    attachments: list[dict[str, Any]]
    superior: Superior | None
    category_hint: str | None
    status: CitizenStatus
    status_text: str
    screening: dict[str, Any] | None
    released_at: datetime | None = None
    released_by: str | None = None
    incident_id: str | None
    handling_unit: UnitRef | None
    reporter: ReporterView | None
    timeline: list[TimelineEntry] | None = None


class MessageList(BaseModel):
    items: list[StaffMessage]
    total: int


class ReleaseIn(BaseModel):
    """Why a screened-out message is taken back in."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(min_length=2, max_length=500)


class UploadOut(BaseModel):
    """A stored upload; attach it to a message with {"upload_id": id}."""

    id: str
    sha256: str
    size: int
    media_type: str
    name: str | None
    created_at: datetime
    duplicate: bool = False


class PublicTimelineEntry(BaseModel):
    """A step of the citizen view's timeline."""

    at: datetime
    status: CitizenStatus
    text: str


class CitizenView(BaseModel):
    """What anyone holding the tracking code may see: nothing private (phone and ID numbers masked)."""

    tracking_code: str
    title: str | None
    channel: Channel
    received_at: datetime
    status: CitizenStatus
    status_text: str
    handling_unit: UnitRef | None = None
    reply_due: datetime | None = None
    reply: PublishedReply | None = None
    category: Category | None = None
    feedback_open: bool = Field(
        default=False, description="a published reply awaits the citizen's satisfaction"
    )
    timeline: list[PublicTimelineEntry]


class FeedbackAccepted(BaseModel):
    id: str
    tracking_code: str
    satisfaction: Satisfaction
    received_at: datetime
