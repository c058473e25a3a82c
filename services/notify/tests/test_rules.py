"""The rules notify reads from the bundle: SMS length, the duty roster, who a role is, the policy file;
masking; production refusing demo credentials."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from kit.settings import REPO_ROOT
from services.notify.config import NotifySettings
from services.notify.policy import PolicyError, Template, load_policy
from services.notify.recipients import load_directory
from services.notify.service import mask
from services.notify.templates import render, sms_segments, sms_text

pytestmark = pytest.mark.once
BUNDLE = REPO_ROOT / "deploy" / "bundles" / "a-city"


@pytest.fixture(scope="module")
def directory():
    return load_directory(BUNDLE)


def test_sms_segments_70_alone_67_per_part():
    assert [sms_segments("字" * n) for n in (1, 70, 71, 134, 135, 201, 202)] == [1, 1, 2, 2, 3, 3, 4]


def test_alert_text_is_shortened_to_its_segment_budget_keeping_code_and_link(directory):
    tpl = directory.policy.templates["graded"]
    link = "http://127.0.0.1:8000/api/v1/notifications/ack/AbCdEfGhIj.tp1dtv.7MV_VHW9YfAd4veJ"
    values = {
        "level_text": "特别重大",
        "level": "I",
        "code": "SJ261123-ABCDE",
        "title": "某区某街道某小区发生严重事故，" * 8,
        "unit": "A5区教育局",
        "link": link,
    }
    for budget in (2, 3):
        r = render(tpl, values, sign="民声舆情", max_segments=budget)
        assert r.segments <= budget and sms_segments(sms_text("民声舆情", r.text)) == r.segments
        assert "SJ261123-ABCDE" in r.text and r.text.endswith(link) and "…" in r.params["title"]
    short = render(tpl, {**values, "title": "道路坍塌"}, sign="民声舆情", max_segments=2)
    assert short.params["title"] == "道路坍塌"
    assert render(Template(text="{a}", params=("a",)), {"a": None}).text == ""


def test_duty_roster_day_night_across_midnight_and_overrides(directory):
    def on(y, m, d, h, mi=0):
        local = datetime(y, m, d, h, mi, tzinfo=directory.tz)
        r = directory.on_duty(local.astimezone(UTC))
        return r.id if r else None

    # Anchor 2026-11-02: day shift rotates officer 1, 2; night shift 3, 4.
    assert on(2026, 11, 2, 9) == "duty-officer-1"
    assert on(2026, 11, 3, 9) == "duty-officer-2"
    assert on(2026, 11, 2, 8, 29) is not None and on(2026, 11, 2, 8, 29) == on(
        2026, 11, 1, 23
    )  # night of the 1st
    assert on(2026, 11, 2, 17, 30) == "duty-officer-3"
    assert on(2026, 11, 3, 2) == "duty-officer-3"  # still the night shift that began on the 2nd
    assert on(2026, 11, 3, 18) == "duty-officer-4"
    assert on(2027, 1, 1, 10) == "duty-officer-3"  # the override for New Year's Day


def test_roles_resolve_to_people_leader_in_charge_by_unit_type(directory):
    now = datetime(2026, 11, 23, 2, tzinfo=UTC)

    def names(roles, **kw):
        return [r.name for r in directory.resolve(roles, now=now, **kw)]

    assert names(["leader_in_charge"], lead_unit="a5-education") == ["陈副市长"]
    assert names(["leader_in_charge"], lead_unit="a3-housing") == ["李副市长"]
    assert names(["leader_in_charge"], lead_unit="city-police") == ["周副市长"]
    assert names(["leader_in_charge"], lead_unit="no-such-unit") == ["李副市长"]  # the default one
    assert set(names(["main_leader"])) == {"张市长", "刘书记"}
    assert names(["unit:lead"], lead_unit="a3-housing") == ["A3区住房和城乡建设局联络员"]
    assert names(["unit:listed", "unit:co"], listed_units=["a1-gov"], co_units=["a2-gov"]) == [
        "A1区人民政府联络员",
        "A2区人民政府联络员",
    ]
    assert names(["main_leader", "leading_group"]).count("张市长") == 1  # each person once
    # Every unit of the organisation directory is reached: by its contact, or its parent unit's.
    assert all(directory.contacts_of(code) for code in directory.units)
    directory.units["a3-new-office"] = {"code": "a3-new-office", "parent": "a3-housing"}
    try:
        assert names(["unit:lead"], lead_unit="a3-new-office") == ["A3区住房和城乡建设局联络员"]
    finally:
        del directory.units["a3-new-office"]


def test_policy_file_errors_name_the_problem(tmp_path: Path):
    good = (BUNDLE / "notify.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "notify.yaml"
    for broken, message in (
        (
            good.replace(
                "channels: [sms, wecom_app], wait_minutes: 10}", "channels: [pigeon], wait_minutes: 10}", 1
            ),
            "pigeon",
        ),
        (good.replace("wait_minutes: 10}", "wait_minutes: 0}", 1), "wait_minutes > 0"),
        (good.replace("  challenge:\n    text:", "  challenged:\n    text:"), "templates missing"),
        (good.replace("events: [reminder]", "events: [birthday]"), "birthday"),
    ):
        bad.write_text(broken, encoding="utf-8")
        with pytest.raises(PolicyError, match=message):
            load_policy(bad)


def test_masking():
    assert mask("13800000001") == "138****0001"
    assert mask("+8613800000001") == "+86138****0001"
    assert mask("zhang.shizhang@a-city.gov.example") == "z***@a-city.gov.example"
    assert mask("leading-group") == "leading-group"


def test_production_refuses_demo_credentials():
    real = {"service_secret": "s" * 40, "ack_secret": "a" * 40, "receipt_token": "r" * 40}
    NotifySettings(mode="production", **real)
    with pytest.raises(ValidationError, match="ack_secret"):
        NotifySettings(mode="production", service_secret="s" * 40)
    with pytest.raises(ValidationError, match="tencent_secret_key"):
        NotifySettings(mode="production", **real, tencent_secret_key="demo-tencent")
    with pytest.raises(ValidationError, match="dingtalk_robots"):
        NotifySettings(
            mode="production",
            **real,
            dingtalk_robots={"duty": {"access_token": "t", "secret": "demo-secret"}},
        )
    assert not NotifySettings(mode="production", **real).fallback_to_console
