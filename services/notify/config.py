"""Notify settings (env prefix NOTIFY_; platform-wide values from MINSHENG_*).

Provider endpoints default to the vendors' real URLs; credentials have no default, and a channel
whose provider has no credentials is not configured: in the demo its alerts go to the console
instead, in production they are recorded as failed. Credentials are secret fields: production
refuses demo values, and none of them is ever logged (see `secrets()`).
"""

from typing import ClassVar

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import SettingsConfigDict

from kit.settings import DEMO_SECRETS, ServiceSettings


class RobotCredentials(BaseModel):
    """A DingTalk group robot: its access token and signing secret."""

    access_token: str
    secret: str


class NotifySettings(ServiceSettings):
    """Everything notify reads from the environment."""

    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore", populate_by_name=True)
    service_name: ClassVar[str] = "notify"
    secret_fields: ClassVar[tuple[str, ...]] = (
        "service_secret",
        "ack_secret",
        "receipt_token",
        "tencent_secret_key",
        "aliyun_access_key_secret",
        "wecom_corp_secret",
        "wecom_robot_keys",
        "dingtalk_robots",
        "smtp_password",
    )

    port: int = 8003

    # Acknowledgement links: signed with this key, pointing at the public address of the gateway.
    ack_secret: str = "demo-ack-secret"
    public_url: str = "http://127.0.0.1:8000"
    # SMS delivery receipts (状态回执): the providers call back …/receipts/<provider>?token=<this>.
    receipt_token: str = "demo-receipt-token"

    # Tencent Cloud SMS (API 3.0).
    tencent_sms_url: str = "https://sms.tencentcloudapi.com/"
    tencent_region: str = "ap-guangzhou"
    tencent_secret_id: str | None = None
    tencent_secret_key: str | None = None
    tencent_sms_app_id: str | None = None
    tencent_rate: str = "1000/second"
    # Alibaba Cloud SMS (dysmsapi 2017-05-25).
    aliyun_sms_url: str = "https://dysmsapi.aliyuncs.com/"
    aliyun_region: str = "cn-hangzhou"
    aliyun_access_key_id: str | None = None
    aliyun_access_key_secret: str | None = None
    aliyun_rate: str = "1000/second"
    # WeCom (企业微信): application messages, and group robots by name (recipients.yaml names them).
    wecom_api_url: str = "https://qyapi.weixin.qq.com"
    wecom_corp_id: str | None = None
    wecom_corp_secret: str | None = None
    wecom_agent_id: int | None = None
    wecom_rate: str = "1000/minute"
    wecom_user_rate: str = "30/minute;1000/hour"
    wecom_token_refresh_margin_seconds: int = 300
    wecom_robot_keys: dict[str, str] = Field(default_factory=dict)
    wecom_robot_rate: str = "20/minute"
    # DingTalk group robots by name.
    dingtalk_url: str = "https://oapi.dingtalk.com/robot/send"
    dingtalk_robots: dict[str, RobotCredentials] = Field(default_factory=dict)
    dingtalk_rate: str = "20/minute"
    # E-mail.
    smtp_host: str | None = None
    smtp_port: int = 465
    smtp_security: str = Field(default="ssl", pattern="^(ssl|starttls|none)$")
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "minsheng-notify@localhost"
    smtp_rate: str = "100/minute"

    # Answer timeout for a provider call; connecting gets its own, so a slow answer (which may mean the
    # message went) is told apart from a provider that cannot be reached (safe to try the other one).
    provider_timeout_seconds: float = 5.0
    provider_connect_timeout_seconds: float = 3.0
    # A redis:// URL shares provider rate limits between replicas; in memory per replica otherwise.
    rate_limit_redis_url: str | None = None

    # Workers: the dispatcher sends queued deliveries; the scheduler drives escalation, 续报, digest.
    workers_enabled: bool = True
    dispatch_poll_seconds: float = 0.5
    dispatch_batch_size: int = 200
    dispatch_concurrency: int = 32  # provider calls in flight per replica
    dispatch_lease_seconds: int = 60
    scheduler_poll_seconds: float = 2.0
    scheduler_lease_seconds: int = 30
    scheduler_batch_size: int = 100

    @model_validator(mode="after")
    def _refuse_demo_robots(self):
        if self.mode == "production":
            for name, robot in self.dingtalk_robots.items():
                if any(
                    v in DEMO_SECRETS or v.startswith("demo-") for v in (robot.secret, robot.access_token)
                ):
                    raise ValueError(f"production mode refuses demo secrets in: dingtalk_robots ({name})")
        return self

    @property
    def fallback_to_console(self) -> bool:
        """In the demo (and tests), a channel with no provider configured goes to the console."""
        return self.demo

    def secrets(self) -> list[str]:
        """Every credential value, so that logs and stored errors can be scrubbed of them."""
        values: list[str] = []
        for name in self.secret_fields:
            v = getattr(self, name, None)
            if isinstance(v, dict):
                for item in v.values():
                    values.extend(
                        [item.access_token, item.secret] if isinstance(item, RobotCredentials) else [item]
                    )
            elif v:
                values.append(v)
        return [v for v in values if isinstance(v, str) and len(v) >= 4]
