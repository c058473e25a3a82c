"""How serious a matter is: a score whose every factor is kept with its points and why, then the level,
the warning class and the response type. Everything from the policy."""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schema.dto import Factor
from schema.enums import REQUEST_TYPE_TEXT, Channel, Level, RequestType, ResponseType, WarningClass
from services.grading.policy import Policy
from services.grading.text import TermMatcher
from services.grading.workdays import WorkCalendar

METRIC_NAMES = ("views", "reposts", "comments", "likes", "dislikes")
METRIC_TEXT = {"views": "阅读", "reposts": "转发", "comments": "评论", "likes": "点赞", "dislikes": "踩"}


@dataclass
class Facts:
    """What scoring reads about an incident (one message or many)."""

    text: str
    received_at: datetime
    now: datetime
    message_count: int = 1
    channels: list[str] = field(default_factory=list)
    metrics: dict[str, int] = field(default_factory=dict)
    recent_messages: int = 1  # in the policy's growth window
    superior_issuers: list[str] = field(default_factory=list)
    districts: list[str] = field(default_factory=list)
    request_type: RequestType | None = None


@dataclass
class Score:
    """The outcome of scoring."""

    score: float
    level: Level
    factors: list[Factor]
    warning_class: WarningClass
    response_type: ResponseType


class Scorer:
    """Scores facts by a policy (matchers compiled once per bundle)."""

    def __init__(self, policy: Policy, calendar: WorkCalendar):
        self.policy = policy
        self.calendar = calendar
        self.families = {name: TermMatcher(f.terms) for name, f in policy.risk_families.items()}
        self.response_terms = [TermMatcher(r.terms) for r in policy.response_rules]

    def factors(self, facts: Facts) -> list[Factor]:
        """Every contribution with its points and the reason, in a stable order."""
        p = self.policy
        out: list[Factor] = []
        for name, family in p.risk_families.items():
            hits = list(dict.fromkeys(self.families[name].find(facts.text)))
            if hits:
                out.append(
                    Factor(
                        name=f"content:{name}",
                        points=family.points,
                        detail=f"{family.label}：{'、'.join(hits[:5])}",
                    )
                )
        spread_pts = sum(
            w * math.log10(1 + max(0, facts.metrics.get(k, 0))) for k, w in p.spread.weights.items()
        )
        spread_pts = round(min(p.spread.cap, spread_pts), 2)
        if spread_pts > 0:
            shown = "，".join(
                f"{METRIC_TEXT[k]} {facts.metrics[k]}" for k in METRIC_NAMES if facts.metrics.get(k)
            )
            out.append(Factor(name="spread", points=spread_pts, detail=f"传播：{shown}"))
        size_pts = _step(p.cluster.size_steps, facts.message_count)
        if size_pts:
            out.append(
                Factor(name="cluster_size", points=size_pts, detail=f"同一事项 {facts.message_count} 条留言")
            )
        channels = sorted(set(facts.channels))
        if len(channels) > 1:
            pts = min(p.cluster.channel_cap, p.cluster.extra_channel_points * (len(channels) - 1))
            out.append(
                Factor(name="channels", points=pts, detail=f"{len(channels)} 个渠道：{'、'.join(channels)}")
            )
        growth_pts = _step(p.cluster.growth_steps, facts.recent_messages)
        if growth_pts:
            out.append(
                Factor(
                    name="growth",
                    points=growth_pts,
                    detail=f"近 {p.cluster.growth_window_hours:g} 小时新增 {facts.recent_messages} 条",
                )
            )
        media = [(p.media_channels[Channel(c)], c) for c in channels if Channel(c) in p.media_channels]
        if media:
            pts, ch = max(media)
            out.append(Factor(name="media", points=pts, detail=f"媒体/网络平台介入：{ch}"))
        if facts.superior_issuers:
            out.append(
                Factor(
                    name="superior_forward",
                    points=p.superior_forward_points,
                    detail="上级转办：" + "、".join(dict.fromkeys(facts.superior_issuers)),
                )
            )
        day = facts.received_at.date()
        for topic in p.risk_topics:
            if (topic.active_from and day < topic.active_from) or (
                topic.active_until and day > topic.active_until
            ):
                continue
            if topic.districts and not set(topic.districts) & set(facts.districts):
                continue
            if all(t in facts.text for t in topic.all_terms) and (
                not topic.any_terms or any(t in facts.text for t in topic.any_terms)
            ):
                out.append(
                    Factor(
                        name=f"risk_topic:{topic.name}", points=topic.points, detail=f"风险点：{topic.name}"
                    )
                )
        for period in p.active_periods(self.calendar.local(facts.received_at)):
            out.append(
                Factor(
                    name=f"sensitive_period:{period.name}",
                    points=period.points,
                    detail=f"敏感时期：{period.name}",
                )
            )
        if p.statutory_holiday_points and self.calendar.is_statutory_holiday(facts.received_at):
            out.append(
                Factor(
                    name="sensitive_period:holiday",
                    points=p.statutory_holiday_points,
                    detail="敏感时期：法定节假日",
                )
            )
        return out

    def score(self, facts: Facts) -> Score:
        """Factors, their sum, the level, warning class and response type."""
        factors = self.factors(facts)
        total = round(sum(f.points for f in factors), 2)
        level = self.policy.level_for(total)
        return Score(
            score=total,
            level=level,
            factors=factors,
            warning_class=self.warning_class(level, factors, facts.message_count),
            response_type=self.response_type(facts.text, facts.request_type),
        )

    def warning_class(self, level: Level, factors: list[Factor], messages: int) -> WarningClass:
        """The first warning rule that matches."""
        names = {f.name for f in factors}
        for rule in self.policy.warning_rules:
            checks = []
            if rule.levels:
                checks.append(level in rule.levels)
            if rule.factors:
                checks.append(any(n in names for n in rule.factors))
            if rule.min_messages is not None:
                checks.append(messages >= rule.min_messages)
            if all(checks):
                return rule.warning_class
        return WarningClass.general

    def response_type(self, text: str, request_type: RequestType | None) -> ResponseType:
        """The first response rule that matches."""
        for rule, matcher in zip(self.policy.response_rules, self.response_terms, strict=True):
            checks = []
            if rule.terms:
                checks.append(bool(matcher.find(text)))
            if rule.request_types:
                checks.append(request_type in rule.request_types)
            if all(checks):
                return rule.response_type
        return ResponseType.inquiry


def _step(steps: list[tuple[int, float]], value: int) -> float:
    pts = 0.0
    for count, points in steps:
        if value >= count:
            pts = points
    return pts


def growth_window(policy: Policy) -> timedelta:
    """The window in which new messages count as growth."""
    return timedelta(hours=policy.cluster.growth_window_hours)


def request_type_text(rt: RequestType | None) -> str:
    """咨询, 投诉 …"""
    return REQUEST_TYPE_TEXT.get(rt, "") if rt else ""
