"""Intake settings (env prefix INTAKE_; platform-wide values from MINSHENG_*) and its bundle file."""

from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings

# Demo-only Fernet key (base64 of "minsheng-demo-pii-key-0123456789"); production refuses it.
DEMO_PII_KEY = "bWluc2hlbmctZGVtby1waWkta2V5LTAxMjM0NTY3ODk="


class IntakeSettings(ServiceSettings):
    """Everything intake reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = "intake"
    secret_fields: ClassVar[tuple[str, ...]] = ("service_secret", "pii_keys", "callback_secrets")

    port: int = 8001
    pii_keys: list[str] = Field(
        default_factory=lambda: [DEMO_PII_KEY],
        description="Fernet keys for reporter identity; the first encrypts, all decrypt (rotation)",
    )
    callback_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="HMAC secret per channel client id for signing reply callbacks (demo mode adds the "
        "demo portal's demo secret)",
    )
    callback_urls: dict[str, str] = Field(
        default_factory=dict, description="callback URL per client id; overrides the bundle's intake.yaml"
    )
    rate_limit_redis_url: str | None = Field(
        default=None, description="share rate limits between replicas through Redis (in memory if unset)"
    )
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="deep-merged over the bundle's intake.yaml (JSON in the env)"
    )
    workers: bool = Field(default=True, description="run the callback sender in this process")
    prepare_processes: int = Field(
        default=1, ge=0, description="worker processes that clean and screen large batches (0: a thread)"
    )
    prepare_chunk: int = Field(default=250, gt=0, description="batch items per worker task")

    @model_validator(mode="after")
    def _demo_callback_secret(self):
        if self.mode != "production":
            self.callback_secrets.setdefault("demo-portal", "demo-callback-secret")
        return self


class ChannelRule(BaseModel):
    """What one channel must send."""

    model_config = ConfigDict(extra="forbid")
    label: str
    required: list[str] = Field(default_factory=list)


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_title_chars: int = Field(gt=0)
    max_content_chars: int = Field(gt=0)
    max_attachments: int = Field(ge=0)
    batch_max_items: int = Field(gt=0)


class TermCategory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(gt=0)
    strong: list[str] = Field(default_factory=list)
    weak: list[str] = Field(default_factory=list)
    contact_bonus: float = 0.0


class Repetition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_chars: int = Field(gt=0)
    max_distinct_chars: int = Field(gt=0)


class LinkFarm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_segments: int = Field(gt=1)
    max_segment_chars: int = Field(gt=0)
    min_term_score: float = Field(ge=0)
    min_urls: int = Field(gt=0)


class Screening(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    min_meaningful_chars: int = Field(ge=0)
    repetition: Repetition
    max_chars_per_hit: float = Field(gt=0)
    categories: dict[str, TermCategory]
    link_farm: LinkFarm


class Pii(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reveal_roles: list[str] = Field(default_factory=list)
    accept_landlines: bool = True


class Idempotency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttl_seconds: int = Field(gt=0)
    lease_seconds: int = Field(gt=0)


class Uploads(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dir: str
    max_bytes: int = Field(gt=0)
    allowed_types: list[str]


class RateLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    citizen_lookup: str
    feedback: str
    exempt_addresses: list[str] = Field(default_factory=list)


class Callbacks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_seconds: float = Field(gt=0)
    backoff_base_seconds: float = Field(gt=0)
    backoff_max_seconds: float = Field(gt=0)
    poll_seconds: float = Field(gt=0)
    batch_size: int = Field(gt=0)


class ClientConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    callback_url: str | None = None


class Open311(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jurisdiction_id: str
    channel: str
    listed_channels: list[str]
    default_window_days: int = Field(gt=0)
    max_window_days: int = Field(gt=0)
    max_results: int = Field(gt=0)
    service_type: str = "realtime"


class IntakeConfig(BaseModel):
    """intake.yaml of the bundle, checked."""

    model_config = ConfigDict(extra="forbid")
    limits: Limits
    channels: dict[str, ChannelRule]
    screening: Screening
    reasons: dict[str, str]
    pii: Pii
    idempotency: Idempotency
    uploads: Uploads
    rate_limits: RateLimits
    callbacks: Callbacks
    clients: dict[str, ClientConfig] = Field(default_factory=dict)
    open311: Open311
    taxonomy: list[dict[str, Any]] = Field(default_factory=list, description="from taxonomy.yaml")


class IntakeConfigError(ValueError):
    """The bundle's intake configuration cannot be used; the message says what is wrong."""


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IntakeConfigError(f"{path}: file is missing") from exc
    except yaml.YAMLError as exc:
        raise IntakeConfigError(f"{path.name}: not valid YAML: {exc}") from exc


def load_config(settings: IntakeSettings) -> IntakeConfig:
    """The bundle's intake.yaml (plus its taxonomy), with the settings' overrides applied."""
    directory = Path(settings.bundle_dir)
    meta = _read_yaml(directory / "bundle.yaml") or {}
    files = meta.get("files", {})
    raw = _read_yaml(directory / files.get("intake", "intake.yaml")) or {}
    raw = _merge(raw, settings.config_overrides)
    taxonomy = _read_yaml(directory / files.get("taxonomy", "taxonomy.yaml")) or {}
    raw["taxonomy"] = taxonomy.get("categories", [])
    try:
        config = IntakeConfig.model_validate(raw)
    except ValidationError as exc:
        raise IntakeConfigError(f"intake.yaml: {exc}") from exc
    for client_id, url in settings.callback_urls.items():
        config.clients.setdefault(client_id, ClientConfig()).callback_url = url
    return config
