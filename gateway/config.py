"""Gateway settings (env prefix GATEWAY_; platform-wide values from MINSHENG_*)."""

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings, platform


class GatewaySettings(ServiceSettings):
    """Everything the gateway reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = "gateway"
    secret_fields: ClassVar[tuple[str, ...]] = ("service_secret", "jwt_keys")

    port: int = 8000
    # Staff tokens: HS256 keys by key id; the active one signs, all of them verify (rotation).
    jwt_keys: dict[str, str] = Field(default_factory=lambda: {"demo": "demo-jwt-key-not-for-production-use"})
    jwt_active_kid: str = "demo"
    token_ttl_seconds: int = 1800
    # Proxying.
    max_body_bytes: int = 25 * 1024 * 1024
    http_read_timeout: float = 30.0  # a slower upstream answers 504
    http_max_connections: int = 200
    trusted_proxies: list[str] = Field(
        default_factory=list, description="peers whose X-Forwarded-For is believed (an ingress)"
    )
    spec_refresh_seconds: float = 30.0
    health_timeout_seconds: float = 2.0
    api_key_cache_seconds: float = 30.0
    # The services whose public routes the gateway serves, in this order.
    services: list[str] = Field(default_factory=lambda: ["intake", "grading", "notify", "archive"])
    # Rate limits: "N/second|minute|hour", several joined with ';' (the strictest decides), empty to
    # switch one off. Channel clients are counted per API key, staff per user, everyone else (and
    # every failed authentication) per client address; sign-in per address and per username.
    redis_url: str | None = Field(
        default=None,
        validation_alias=platform("redis_url", "GATEWAY_REDIS_URL"),
        description="redis://host:6379/0 to share the limits between replicas; in memory when unset",
    )
    rate_limit_namespace: str = "minsheng-gateway"
    # A channel client is one backend relaying a whole city (the 12345 centre, a portal): allow bursts.
    rate_limit_per_client: str = "1000/second;60000/minute"
    rate_limit_per_staff: str = "1200/minute"
    rate_limit_per_address: str = "600/minute"  # carriers put many phones behind one address
    rate_limit_sign_in: str = "20/minute;200/hour"
    # Browsers: only these origins may call the API from a page (exact scheme://host[:port]).
    cors_origins: list[str] = Field(default_factory=list)
    cors_max_age_seconds: int = 600
    hsts_seconds: int = 31536000

    @model_validator(mode="after")
    def _active_key_exists(self):
        if self.jwt_active_kid not in self.jwt_keys:
            raise ValueError(f"jwt_active_kid {self.jwt_active_kid!r} is not among jwt_keys")
        if any(o == "*" or not o.startswith(("https://", "http://")) for o in self.cors_origins):
            raise ValueError("cors_origins lists exact origins such as https://portal.example.gov.cn; no '*'")
        if self.mode == "production":
            weak = [kid for kid, key in self.jwt_keys.items() if len(key) < 32]
            if weak:
                raise ValueError(f"JWT keys need at least 32 characters: {', '.join(weak)}")
            if not 60 <= self.token_ttl_seconds <= 3600:
                raise ValueError("staff tokens live between 60 s and one hour in production")
        return self
