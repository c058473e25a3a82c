"""Fake notification providers on loopback, for notify's tests and benchmarks.

Each fake verifies requests the way the real service does (signature recomputed, timestamp window,
token) and can be told to answer with rate limits, authentication failures, timeouts and partial
failures, as the real service sends them. `Providers` starts them all and gives the settings (or
environment) that point notify at them.
"""

import json

from tests.fakes import aliyun, dingtalk, tencent, wecom
from tests.fakes.smtp import FakeSmtp


class Providers:
    """Every fake provider, started together."""

    def __init__(self, *, wecom_members: set[str] | None = None, wecom_expires_in: int = 7200):
        self.tencent = tencent.server()
        self.aliyun = aliyun.server()
        self.wecom = wecom.server(members=wecom_members, expires_in=wecom_expires_in)
        self.dingtalk = dingtalk.server()
        self.smtp = FakeSmtp()

    def start(self) -> "Providers":
        """Start every fake."""
        for s in (self.tencent, self.aliyun, self.wecom, self.dingtalk, self.smtp):
            s.start()
        return self

    def stop(self) -> None:
        """Stop every fake."""
        for s in (self.tencent, self.aliyun, self.wecom, self.dingtalk, self.smtp):
            s.stop()

    def __enter__(self) -> "Providers":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget what each fake received and was told."""
        for f in (self.tencent.fake, self.aliyun.fake, self.wecom.fake, self.dingtalk.fake, self.smtp.fake):
            f.reset()

    def settings(self) -> dict:
        """NotifySettings keyword arguments pointing at the fakes, with their credentials."""
        t, a, w, d, m = (
            self.tencent.credentials,
            self.aliyun.credentials,
            self.wecom.credentials,
            self.dingtalk.credentials,
            self.smtp.credentials,
        )
        return {
            "tencent_sms_url": self.tencent.url + "/",
            "tencent_secret_id": t["secret_id"],
            "tencent_secret_key": t["secret_key"],
            "tencent_sms_app_id": t["sdk_app_id"],
            "aliyun_sms_url": self.aliyun.url + "/",
            "aliyun_access_key_id": a["access_key_id"],
            "aliyun_access_key_secret": a["secret"],
            "wecom_api_url": self.wecom.url,
            "wecom_corp_id": w["corp_id"],
            "wecom_corp_secret": w["corp_secret"],
            "wecom_agent_id": w["agent_id"],
            "wecom_robot_keys": dict(w["robot_keys"]),
            "dingtalk_url": self.dingtalk.url + "/robot/send",
            "dingtalk_robots": {
                n: {"access_token": tok, "secret": sec} for n, (tok, sec) in d["robots"].items()
            },
            "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp.port,
            "smtp_security": "none",
            "smtp_username": m["username"],
            "smtp_password": m["password"],
        }

    def env(self) -> dict[str, str]:
        """The same as NOTIFY_* environment variables (for a platform of separate processes)."""
        out = {}
        for k, v in self.settings().items():
            out[f"NOTIFY_{k.upper()}"] = json.dumps(v) if isinstance(v, dict) else str(v)
        return out
