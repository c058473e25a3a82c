"""Settings every service shares. Each service subclasses `ServiceSettings` with its own env prefix.

Platform-wide values (mode, service secret, service URLs, bundle) are read from `MINSHENG_*`
whatever the prefix, so one environment configures every process alike.
"""

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets shipped for the embedded demo; production mode refuses to start with any of them.
DEMO_SECRETS = frozenset(
    {
        "demo",
        "demo-portal-key",
        "demo-service-secret",
        "demo-jwt-key",
        "demo-callback-secret",
        "demo-ack-secret",
        # the demo PII key (Fernet, urlsafe base64 of 32 bytes "minsheng-demo-pii-key-0123456789")
        "bWluc2hlbmctZGVtby1waWkta2V5LTAxMjM0NTY3ODk=",
    }
)
REPO_ROOT = Path(__file__).resolve().parent.parent


def platform(name: str, *extra: str) -> AliasChoices:
    """An env alias shared by every service: MINSHENG_<NAME> (plus any given extra names)."""
    return AliasChoices(f"MINSHENG_{name.upper()}", name, *extra)


class ServiceSettings(BaseSettings):
    """Common settings; subclasses add their own fields and set `env_prefix`."""

    model_config = SettingsConfigDict(env_prefix="MINSHENG_", extra="ignore", populate_by_name=True)

    # Names of fields holding secrets: checked against DEMO_SECRETS in production, never logged.
    secret_fields: ClassVar[tuple[str, ...]] = ("service_secret",)
    service_name: ClassVar[str] = "service"

    mode: Literal["demo", "production", "test"] = Field(default="demo", validation_alias=platform("mode"))
    service_secret: str = Field(
        default="demo-service-secret-not-for-production", validation_alias=platform("service_secret")
    )
    # During a rotation of the service secret: the secrets still accepted (signing always uses the new).
    previous_service_secrets: list[str] = Field(
        default_factory=list, validation_alias=platform("previous_service_secrets")
    )
    log_level: str = Field(default="INFO", validation_alias=platform("log_level"))
    log_json: bool = Field(default=True, validation_alias=platform("log_json"))
    var_dir: Path = Field(default=REPO_ROOT / "var", validation_alias=platform("var_dir"))
    bundle_dir: Path = Field(
        default=REPO_ROOT / "deploy" / "bundles" / "a-city", validation_alias=platform("bundle_dir")
    )
    timezone: str = Field(default="Asia/Shanghai", validation_alias=platform("timezone"))

    intake_url: str = Field(default="http://127.0.0.1:8001", validation_alias=platform("intake_url"))
    grading_url: str = Field(default="http://127.0.0.1:8002", validation_alias=platform("grading_url"))
    notify_url: str = Field(default="http://127.0.0.1:8003", validation_alias=platform("notify_url"))
    archive_url: str = Field(default="http://127.0.0.1:8004", validation_alias=platform("archive_url"))

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; SQLite under var/ if unset"
    )
    # Connections kept open. No overflow by default: SQLAlchemy closes an overflow connection when it is
    # given back, so a load hovering around the pool's size opened a new PostgreSQL session several
    # times a second (175 in 20 s at 100 msg/s in intake), each a server backend started and a TLS
    # negotiation tried. The upper bound per process stays 20, as with 10 + 10; idle ones are only
    # opened when once needed.
    db_pool_size: int = 20
    db_max_overflow: int = 0
    # The parameters of the prepared statements a connection keeps, in all (see kit.db.StatementCache).
    db_statement_cache_params: int = Field(default=20_000, ge=0)
    # A start-up step that needs the database (seeding, index rebuild) waits this long for it to come
    # back (a database restart) before the process gives up and its supervisor restarts it.
    startup_db_wait_seconds: float = Field(default=60.0, ge=0)

    # Outbound HTTP (event relay, look-ups).
    http_connect_timeout: float = 2.0
    http_read_timeout: float = 10.0
    http_max_connections: int = 100
    # Event relay.
    relay_poll_seconds: float = 0.5
    relay_batch_size: int = 200
    relay_linger_seconds: float = 0.005
    relay_backoff_base_seconds: float = 0.5
    relay_backoff_max_seconds: float = 60.0
    # How long a delivery may take to be answered. A busy consumer works through a batch of 200 for
    # seconds; giving up sooner only sends the same batch again while the first is still being applied.
    # A claim lasts this + 5 s, which is also how long a killed relay's claims hold up the others.
    relay_timeout_seconds: float = 25.0
    internal_signature_window_seconds: int = 300
    # glibc: allocations of at least this many bytes get a mapping of their own, given back when freed
    # (0 leaves glibc's sliding threshold; see kit.app.pin_malloc_mmap_threshold).
    malloc_mmap_threshold_bytes: int = Field(
        default=128 * 1024, ge=0, validation_alias=platform("malloc_mmap_threshold_bytes")
    )

    @property
    def demo(self) -> bool:
        """True in the embedded demo (and tests), where demo credentials are allowed."""
        return self.mode != "production"

    @property
    def service_urls(self) -> dict[str, str]:
        """Base URLs of the platform's services by name."""
        return {
            "intake": self.intake_url,
            "grading": self.grading_url,
            "notify": self.notify_url,
            "archive": self.archive_url,
        }

    def resolved_database_url(self) -> str:
        """The configured database URL, or this service's SQLite file under var/."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.var_dir / (self.service_name + '.db')}"

    @model_validator(mode="after")
    def _refuse_demo_secrets(self):
        if self.mode == "production":
            bad = [name for name in self.secret_fields if _is_demo(getattr(self, name, None))]
            if bad:
                raise ValueError(
                    f"production mode refuses demo secrets in: {', '.join(bad)}; set real values"
                )
        return self


def _is_demo(value) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return any(_is_demo(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_is_demo(v) for v in value)
    return str(value) in DEMO_SECRETS or str(value).startswith("demo-")
