"""Provider credentials come from settings and never appear in a log line, a stored error or the API."""

import logging

import pytest

from services.notify.tests.conftest import graded, incident

pytestmark = pytest.mark.once  # what is logged does not depend on the database


@pytest.fixture
def leaky_notify(notify_server, providers):
    """A notify whose providers refuse it (wrong secrets), so every error path runs."""
    providers.reset()
    s = providers.settings()
    s.update(
        tencent_secret_key="TENCENT-SECRET-must-not-leak",
        aliyun_access_key_secret="ALIYUN-SECRET-must-not-leak",
        wecom_corp_secret="WECOM-SECRET-must-not-leak",
        smtp_password="SMTP-PASSWORD-must-not-leak",
        dingtalk_robots={
            "leading-group": {"access_token": "ding-token-leading", "secret": "DING-SECRET-must-not-leak"}
        },
    )
    server = notify_server(workers_enabled=False, provider_timeout_seconds=2.0, **s)
    from services.notify.tests.conftest import Notify

    n = Notify(server)
    yield n, s
    n.http.close()


def test_no_credential_in_logs_errors_or_api(leaky_notify, providers, caplog):
    notify, s = leaky_notify
    secrets = [
        s["tencent_secret_key"],
        s["aliyun_access_key_secret"],
        s["wecom_corp_secret"],
        s["smtp_password"],
        s["dingtalk_robots"]["leading-group"]["secret"],
        s["dingtalk_robots"]["leading-group"]["access_token"],
        *s["wecom_robot_keys"].values(),
        s["tencent_secret_id"],
        s["aliyun_access_key_id"],
    ]
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "minsheng"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        notify.post_event(graded(incident("I")))
        notify.drain()
        # Log a request URL the way a debugging operator might: the query's credentials are scrubbed.
        key = s["wecom_robot_keys"]["duty"]
        logging.getLogger("minsheng.notify.test").warning(
            "calling %s", f"{providers.wecom.url}/cgi-bin/webhook/send?key={key}"
        )
        notify.tick()
        notify.clock.advance(__import__("datetime").timedelta(days=1))
        notify.tick()  # the digest: e-mail, robots
    finally:
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.INFO)
    failed = notify.deliveries(status="failed") + notify.deliveries(status="queued")
    assert failed, "the wrong secrets made deliveries fail"
    # The providers really were called with the credentials (the fakes refused them).
    assert (
        providers.tencent.fake.rejected and providers.aliyun.fake.rejected and providers.wecom.fake.rejected
    )
    assert "calling" in caplog.text and "key=***" in caplog.text
    stored = notify.http.get("/api/v1/notifications", params={"limit": 500}, headers=notify.headers()).text
    details = [
        notify.http.get(f"/api/v1/notifications/{d['id']}", headers=notify.headers()).text
        for d in failed[:10]
    ]
    for secret in secrets:
        assert secret not in caplog.text, f"{secret} in the log"
        assert secret not in stored and all(secret not in d for d in details), f"{secret} in the API"
