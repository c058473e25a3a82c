"""Heat index (0–100) and lifecycle stage (潜伏, 形成, 爆发, 衰退) of an incident, from the policy."""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from schema.enums import Channel
from services.grading.policy import Policy

STAGE_TEXT = {"latent": "潜伏", "forming": "形成", "outbreak": "爆发", "declining": "衰退"}


@dataclass
class HeatInput:
    """What heat reads about an incident."""

    messages: int
    interactions: int  # likes + dislikes + comments + reposts (+ views / 100)
    channels: list[str]
    recent: int  # messages in the policy's heat window
    previous: int  # messages in the window before it
    last_message_at: datetime | None
    now: datetime


def interactions_of(metrics: dict[str, int]) -> int:
    """One interaction figure from spread metrics (a view counts a hundredth of a comment)."""
    m = metrics or {}
    return int(
        m.get("likes", 0)
        + m.get("dislikes", 0)
        + m.get("comments", 0)
        + m.get("reposts", 0)
        + m.get("views", 0) / 100
    )


def heat_of(policy: Policy, h: HeatInput) -> tuple[float, str, dict[str, float]]:
    """The heat index, the stage and each part of the index."""
    p = policy.heat
    media = max((policy.media_channels.get(Channel(c), 0.0) for c in h.channels), default=0.0)
    parts = {
        "volume": p.volume_weight * math.log1p(h.messages),
        "interaction": p.interaction_weight * math.log1p(h.interactions),
        "media": p.media_weight * media,
        "growth": p.growth_weight * math.log1p(h.recent),
    }
    heat = round(min(p.scale, sum(parts.values())), 2)
    quiet = (h.now - h.last_message_at) if h.last_message_at else timedelta(0)
    if h.messages >= p.forming_messages and (
        quiet >= timedelta(hours=p.decline_quiet_hours) or (h.previous > 0 and h.recent < h.previous / 2)
    ):
        stage = "declining"
    elif h.recent >= p.outbreak_growth:
        stage = "outbreak"
    elif h.messages >= p.forming_messages:
        stage = "forming"
    else:
        stage = "latent"
    return heat, stage, {k: round(v, 2) for k, v in parts.items()}
