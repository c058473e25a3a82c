"""Notification policy from the bundle's notify.yaml: who is told of what, how, how often, in which words."""

from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import yaml

EVENTS = ("graded", "escalated", "reminder", "supervision", "follow_up", "reply_published", "challenge")
CHANNELS = ("sms", "wecom_app", "wecom_robot", "dingtalk", "email", "console")
SMS_PROVIDERS = ("tencent", "aliyun")


class PolicyError(ValueError):
    """A notification policy that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Step:
    """One step of an escalation chain (or the copy list): these roles on these channels."""

    roles: tuple[str, ...]
    channels: tuple[str, ...]
    wait: timedelta = timedelta(0)


@dataclass(frozen=True)
class Policy:
    """Which alerts a matching event raises."""

    name: str
    events: tuple[str, ...]
    levels: tuple[str, ...] | None = None
    warning_classes: tuple[str, ...] | None = None
    response_types: tuple[str, ...] | None = None
    chain: tuple[Step, ...] = ()
    repeat: int = 0
    cc: Step | None = None
    immediate: bool = False

    def matches(
        self, event: str, level: str | None, warning_class: str | None, response_type: str | None
    ) -> bool:
        """True when the policy applies to this event of an incident like this."""
        return (
            event in self.events
            and (self.levels is None or level in self.levels)
            and (self.warning_classes is None or warning_class in self.warning_classes)
            and (self.response_types is None or response_type in self.response_types)
        )


@dataclass(frozen=True)
class Template:
    """The words of one event: the text (with {placeholders}) and the providers' approved templates."""

    text: str
    params: tuple[str, ...]
    tencent_template_id: str | None = None
    aliyun_template_code: str | None = None


@dataclass(frozen=True)
class Periodic:
    """续报 or digest settings."""

    roles: tuple[str, ...]
    channels: tuple[str, ...]
    levels: tuple[str, ...] = ()
    intervals: dict[str, timedelta] = field(default_factory=dict)
    at: time | None = None
    list_open_max: int = 10


@dataclass
class NotifyPolicy:
    """The whole notify.yaml."""

    version: str
    repeat_interval: timedelta
    ack_link_ttl: timedelta
    sms_sign: str
    sms_max_segments: int
    sms_provider_order: tuple[str, ...]
    max_attempts: int
    backoff: tuple[float, ...]
    throttle_pause: timedelta
    auth_pause: timedelta
    follow_up: Periodic
    digest: Periodic
    policies: list[Policy]
    templates: dict[str, Template]

    def matching(self, event: str, level=None, warning_class=None, response_type=None) -> list[Policy]:
        """The policies an event raises alerts under."""
        return [p for p in self.policies if p.matches(event, level, warning_class, response_type)]

    def backoff_for(self, attempts: int) -> timedelta:
        """How long to wait before attempt number attempts+1."""
        seq = self.backoff or (30.0,)
        return timedelta(seconds=seq[min(attempts - 1, len(seq) - 1)])


def _tuple(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in (v or ()))


def _channels(v: Any, where: str) -> tuple[str, ...]:
    chans = _tuple(v)
    bad = [c for c in chans if c not in CHANNELS]
    if bad or not chans:
        raise PolicyError(f"notify.yaml: {where}: channels must be some of {CHANNELS}, not {list(chans)}")
    return chans


def _step(raw: dict[str, Any], where: str) -> Step:
    if not raw.get("roles"):
        raise PolicyError(f"notify.yaml: {where}: a step needs roles")
    return Step(
        roles=_tuple(raw["roles"]),
        channels=_channels(raw.get("channels"), where),
        wait=timedelta(minutes=float(raw.get("wait_minutes", 0))),
    )


def _policy(raw: dict[str, Any], i: int) -> Policy:
    name = str(raw.get("name") or f"policy {i + 1}")
    events = _tuple(raw.get("events"))
    bad = [e for e in events if e not in EVENTS]
    if not events or bad:
        raise PolicyError(f"notify.yaml: {name}: events must be some of {EVENTS}, not {list(events)}")
    chain = tuple(_step(s, f"{name} chain step {j + 1}") for j, s in enumerate(raw.get("chain") or []))
    if any(s.wait <= timedelta(0) for s in chain):
        raise PolicyError(f"notify.yaml: {name}: every chain step needs wait_minutes > 0")
    cc = _step(raw["cc"], f"{name} cc") if raw.get("cc") else None
    if not chain and cc is None:
        raise PolicyError(f"notify.yaml: {name}: a policy needs a chain or cc")

    def opt(key):
        return _tuple(raw[key]) if raw.get(key) is not None else None

    return Policy(
        name=name,
        events=events,
        levels=opt("levels"),
        warning_classes=opt("warning_classes"),
        response_types=opt("response_types"),
        chain=chain,
        repeat=int(raw.get("repeat", 0)),
        cc=cc,
        immediate=bool(raw.get("immediate", False)),
    )


def load_policy(path: Path) -> NotifyPolicy:
    """Read and check notify.yaml."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise PolicyError(f"{path.name}: file is missing") from exc
    sms = raw.get("sms") or {}
    delivery = raw.get("delivery") or {}
    fu = raw.get("follow_up") or {}
    dg = raw.get("digest") or {}
    order = _tuple(sms.get("provider_order") or SMS_PROVIDERS)
    if any(p not in SMS_PROVIDERS for p in order):
        raise PolicyError(f"notify.yaml: sms.provider_order must be some of {SMS_PROVIDERS}")
    templates = {
        name: Template(
            text=str(t["text"]),
            params=_tuple(t.get("params")),
            tencent_template_id=str(t["tencent_template_id"]) if t.get("tencent_template_id") else None,
            aliyun_template_code=str(t["aliyun_template_code"]) if t.get("aliyun_template_code") else None,
        )
        for name, t in (raw.get("templates") or {}).items()
    }
    missing = [e for e in (*EVENTS, "grouped", "digest") if e not in templates]
    if missing:
        raise PolicyError(f"notify.yaml: templates missing for {missing}")
    try:
        digest_at = time.fromisoformat(str(dg.get("time", "08:00")))
    except ValueError as exc:
        raise PolicyError("notify.yaml: digest.time must be HH:MM") from exc
    return NotifyPolicy(
        version=str(raw.get("version", "")),
        repeat_interval=timedelta(minutes=float(raw.get("repeat_interval_minutes", 30))),
        ack_link_ttl=timedelta(hours=float(raw.get("ack_link_ttl_hours", 72))),
        sms_sign=str(sms.get("sign_name", "")),
        sms_max_segments=int(sms.get("max_segments", 2)),
        sms_provider_order=order,
        max_attempts=int(delivery.get("max_attempts", 6)),
        backoff=tuple(float(x) for x in delivery.get("backoff_seconds", [2, 10, 30, 120, 600])),
        throttle_pause=timedelta(seconds=float(delivery.get("throttle_pause_seconds", 60))),
        auth_pause=timedelta(seconds=float(delivery.get("auth_pause_seconds", 600))),
        follow_up=Periodic(
            roles=_tuple(fu.get("roles")),
            channels=_channels(fu.get("channels", ["console"]), "follow_up"),
            levels=_tuple(fu.get("levels")),
            intervals={
                str(k): timedelta(minutes=float(v)) for k, v in (fu.get("interval_minutes") or {}).items()
            },
        ),
        digest=Periodic(
            roles=_tuple(dg.get("roles")),
            channels=_channels(dg.get("channels", ["console"]), "digest"),
            at=digest_at,
            list_open_max=int(dg.get("list_open_max", 10)),
        ),
        policies=[_policy(p, i) for i, p in enumerate(raw.get("policies") or [])],
        templates=templates,
    )
