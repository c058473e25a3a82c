"""The grading policy (policy.yaml) as a typed, validated model: every number of the domain lives here."""

import itertools
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schema.enums import Channel, Level, RequestType, ResponseType, WarningClass

LEVELS = (Level.I, Level.II, Level.III, Level.IV)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskFamily(_Model):
    """A content family (DESIGN §2): points when any of its terms appears."""

    label: str
    points: float = Field(ge=0)
    terms: list[str] = Field(min_length=1)


class RiskTopic(_Model):
    """A configured 风险点: points when all of `all_terms` and any of `any_terms` appear, while active."""

    name: str
    points: float = Field(ge=0)
    any_terms: list[str] = Field(default_factory=list)
    all_terms: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list, description="gazetteer codes; empty: anywhere")
    active_from: date | None = None
    active_until: date | None = None

    @model_validator(mode="after")
    def _has_terms(self):
        if not self.any_terms and not self.all_terms:
            raise ValueError("a risk topic needs any_terms or all_terms")
        if self.active_from and self.active_until and self.active_until < self.active_from:
            raise ValueError("active_until is before active_from")
        return self


class SensitivePeriod(_Model):
    """A window (major meeting, anniversary, holiday) in which every matter weighs more."""

    name: str
    start: date
    end: date
    points: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.end < self.start:
            raise ValueError(f"sensitive period {self.name!r} ends before it starts")
        return self


class Spread(_Model):
    """Spread points: Σ weight × log10(1 + figure) over the incident's messages, capped."""

    weights: dict[Literal["views", "reposts", "comments", "likes", "dislikes"], float]
    cap: float = Field(ge=0)


class ClusterPoints(_Model):
    """Points for how many messages and channels an incident has and how fast it grows."""

    size_steps: list[tuple[int, float]] = Field(description="[messages, points]: the highest step reached")
    extra_channel_points: float = Field(ge=0)
    channel_cap: float = Field(ge=0)
    growth_window_hours: float = Field(gt=0)
    growth_steps: list[tuple[int, float]] = Field(description="[messages in the last window, points]")

    @field_validator("size_steps", "growth_steps")
    @classmethod
    def _ascending(cls, v):
        counts = [c for c, _ in v]
        if counts != sorted(counts) or len(set(counts)) != len(counts):
            raise ValueError("steps must be in ascending order of count, each count once")
        return v


class Deadlines(_Model):
    """The clocks of DESIGN §2."""

    report_hours: dict[Level, float]
    first_release_hours: dict[Level, float] = Field(default_factory=dict)
    response_hours: dict[Level, float]
    reply_days: float = Field(gt=0)
    reply_working_days: bool = True
    reply_extension_cap_days: float = Field(gt=0)
    police_liaison_hours: float = Field(gt=0)
    day_ends_at: str = Field(default="24:00", pattern=r"^(24:00|[01]\d:[0-5]\d|2[0-3]:[0-5]\d)$")

    @model_validator(mode="after")
    def _cap_after_reply(self):
        if self.reply_extension_cap_days < self.reply_days:
            raise ValueError("reply_extension_cap_days is shorter than reply_days")
        return self


class Calendar(_Model):
    """Working days: the statutory calendar (chinese-calendar) plus local corrections."""

    extra_holidays: list[date] = Field(default_factory=list)
    extra_workdays: list[date] = Field(default_factory=list)


class Classifier(_Model):
    """Category classifier settings."""

    low_confidence: float = Field(ge=0, le=1, description="below this a person checks the category")
    runners_up: int = Field(default=3, ge=0, le=10)
    cold_start_min_hits: float = Field(default=1.0, gt=0)


class Clustering(_Model):
    """Same-matter detection: near-duplicates by MinHash LSH, same matter by shared rare words."""

    window_days: float = Field(gt=0, description="a message joins only incidents active this recently")
    shingle_size: int = Field(ge=2, le=8)
    num_perm: int = Field(ge=16, le=512)
    near_duplicate_jaccard: float = Field(gt=0, le=1)
    same_matter_similarity: float = Field(gt=0, le=1)
    title_weight: float = Field(gt=0)
    key_terms: int = Field(ge=1, le=20)
    posting_limit: int = Field(ge=10)
    candidates: int = Field(default=30, ge=1, description="incidents scored exactly per lookup")
    stopwords: list[str] = Field(default_factory=list)


class Heat(_Model):
    """Heat index (0–100) from volume, interaction, media weight and growth; lifecycle stages."""

    volume_weight: float
    interaction_weight: float
    media_weight: float
    growth_weight: float
    growth_window_hours: float = Field(gt=0)
    scale: float = Field(gt=0)
    outbreak_growth: int = Field(ge=1, description="messages in the last window that mean 爆发")
    forming_messages: int = Field(ge=2, description="messages that make a latent matter 形成")
    decline_quiet_hours: float = Field(gt=0, description="no new message for this long: 衰退")


class WarningRule(_Model):
    """Warning class when the level is one of `levels` or any factor prefix of `factors` is present."""

    warning_class: WarningClass
    levels: list[Level] = Field(default_factory=list)
    factors: list[str] = Field(default_factory=list)
    min_messages: int | None = None


class ResponseRule(_Model):
    """Response type when any term appears or the request type is one of `request_types`."""

    response_type: ResponseType
    terms: list[str] = Field(default_factory=list)
    request_types: list[RequestType] = Field(default_factory=list)


class CityLevelRule(_Model):
    """A category the city's department handles itself for some districts (e.g. bus lines)."""

    category: str = Field(description="a taxonomy path or its start, level names joined by '/'")
    districts: list[str] = Field(description="gazetteer codes of the districts the city handles it for")


class Routing(_Model):
    """Routing knobs (DESIGN §2)."""

    street_lead_types: list[str] = Field(
        default_factory=list, description="department types a named street's office leads (属地)"
    )
    co_department_min_score: float = Field(default=2.0, gt=0)
    history_min_confidence: float = Field(
        default=0.5, ge=0, le=1, description="the learned routing decides only when at least this sure"
    )
    max_co_units: int = Field(default=4, ge=0)
    term_department_min_score: float = Field(
        default=0.0,
        ge=0,
        description="taxonomy-term weight of another department type that makes it the competent one "
        "for routing (0: the category's department type always decides)",
    )
    term_department_margin: float = Field(
        default=1.5, ge=1, description="…and how many times the category's own type's weight it must reach"
    )
    city_level: list[CityLevelRule] = Field(
        default_factory=list, description="categories handled at city level for the districts listed"
    )


class Workflow(_Model):
    """The handling workflow (DESIGN §2 "Workflow", seed 003): clocks, reasons, what closes and reopens."""

    auto_assign_confident_only: bool = Field(
        default=True,
        description="auto-assign only confident routes (category sure, a unit found); the rest wait for 批办",
    )
    sign_hours: float = Field(default=2, gt=0, description="签收: hours from assignment")
    clocks: list[Literal["sign", "reply", "response"]] = Field(
        default_factory=lambda: ["sign", "reply", "response"], description="clocks the scheduler keeps"
    )
    return_reasons: dict[str, str] = Field(
        default_factory=lambda: {
            "territory": "属地不符",
            "overlap": "职能交叉",
            "ownership": "权属不清",
            "not_ours": "非本单位职责",
            "other": "其他",
        },
        min_length=1,
    )
    report_levels: list[Level] = Field(
        default_factory=lambda: [Level.I, Level.II, Level.III],
        description="levels whose 办结 after handling needs the fields of a 总结报告",
    )
    auto_close_on: list[Literal["satisfied", "basically_satisfied"]] = Field(
        default_factory=lambda: ["satisfied", "basically_satisfied"],
        description="feedback that closes a published matter of a level outside report_levels",
    )
    reopen_reply_days: float = Field(
        default=3, gt=0, description="重办: the new reply deadline (days), from reopening"
    )
    follow_up_levels: list[Level] = Field(
        default_factory=lambda: [Level.I, Level.II],
        description="progress notes of these levels go out as 续报",
    )
    notice_grace_hours: float = Field(
        default=0, ge=0, description="overdue this long with no explanation: listed for 通报"
    )
    max_progress_notes: int = Field(default=200, ge=1)


class Policy(_Model):
    """Everything of policy.yaml."""

    version: str = Field(min_length=1)
    level_thresholds: dict[Level, float]
    risk_families: dict[str, RiskFamily]
    risk_topics: list[RiskTopic] = Field(default_factory=list)
    sensitive_periods: list[SensitivePeriod] = Field(default_factory=list)
    statutory_holiday_points: float = Field(default=0, ge=0)
    spread: Spread
    media_channels: dict[Channel, float]
    superior_forward_points: float = Field(ge=0)
    cluster: ClusterPoints
    deadlines: Deadlines
    reminder_fractions: list[float]
    calendar: Calendar = Field(default_factory=Calendar)
    classifier: Classifier
    request_types: dict[RequestType, list[str]]
    request_type_default: RequestType = RequestType.other
    warning_rules: list[WarningRule]
    response_rules: list[ResponseRule]
    clustering: Clustering
    heat: Heat
    routing: Routing = Field(default_factory=Routing)
    auto_assign: bool = True
    dispatch_unit: str
    workflow: Workflow = Field(default_factory=Workflow)

    @field_validator("level_thresholds")
    @classmethod
    def _thresholds(cls, v: dict[Level, float]):
        missing = [lv.value for lv in LEVELS if lv not in v]
        if missing:
            raise ValueError(f"level_thresholds lacks {', '.join(missing)}")
        values = [v[lv] for lv in LEVELS]
        if any(a <= b for a, b in itertools.pairwise(values)):
            raise ValueError(
                "level_thresholds overlap or are out of order: need I > II > III > IV, got "
                + ", ".join(f"{lv.value}={v[lv]:g}" for lv in LEVELS)
            )
        if v[Level.IV] != 0:
            raise ValueError("level_thresholds: IV must be 0 so that every score has a level")
        return v

    @field_validator("reminder_fractions")
    @classmethod
    def _fractions(cls, v: list[float]):
        if any(not 0 < f < 1 for f in v) or v != sorted(v):
            raise ValueError("reminder_fractions must be ascending fractions between 0 and 1")
        return v

    @model_validator(mode="after")
    def _deadline_levels(self):
        for name in ("report_hours", "response_hours"):
            table = getattr(self.deadlines, name)
            missing = [lv.value for lv in LEVELS if lv not in table]
            if missing:
                raise ValueError(f"deadlines.{name} lacks {', '.join(missing)}")
        return self

    def level_for(self, score: float) -> Level:
        """The most serious level whose threshold the score reaches."""
        for lv in LEVELS:
            if score >= self.level_thresholds[lv]:
                return lv
        return Level.IV

    def active_periods(self, at: datetime) -> list[SensitivePeriod]:
        """Sensitive periods that contain a moment (by its date)."""
        d = at.date()
        return [p for p in self.sensitive_periods if p.start <= d <= p.end]
