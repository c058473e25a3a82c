"""舆情 reports and the annual self-inspection draft, from sealed dossiers, as JSON, DOCX and PDF."""

import io
from datetime import UTC, date, datetime, timedelta

import pytest

from schema.enums import Channel, Level
from services.archive import reports
from services.archive.tests import synth

# A day of 2031 no other test closes anything on (local time, Asia/Shanghai).
DAY = datetime(2031, 3, 10, 3, 0, tzinfo=UTC)
A, B, C = synth.units()[3:6]
CASES = [
    # level, unit, channel, category, late?, satisfaction
    (Level.I, A, Channel.weibo, "城乡建设", False, "satisfied"),
    (Level.II, A, Channel.portal, "城乡建设", True, "unsatisfied"),
    (Level.III, A, Channel.portal, "环境保护", False, None),
    (Level.III, B, Channel.hotline, "交通运输", False, "basically_satisfied"),
    (Level.IV, B, Channel.hotline, "城乡建设", False, "satisfied"),
    (Level.IV, C, Channel.portal, "教育文体", True, None),
]


@pytest.fixture(scope="module")
def closed_day(archive):
    """Six matters closed on DAY; the first is reopened and closed again the same day (counted once)."""
    first = None
    for i, (level, unit, channel, category, late, sat) in enumerate(CASES):
        incident, messages, notes = synth.build(
            300 + i,
            level=level,
            unit=unit,
            channel=channel,
            category=category,
            reply_late=late,
            satisfaction=sat,
            closed_at=DAY + timedelta(minutes=i),
        )
        archive.close(incident, messages, notes)
        first = first or (incident, messages, notes)
    incident, messages, notes = first
    archive.close(incident.model_copy(update={"close_count": 2}), messages, notes)
    return archive


def get_report(archive, kind, fmt, day="2031-03-10"):
    resp = archive.get(f"/api/v1/archive/reports/{kind}", params={"date": day, "format": fmt})
    assert resp.status_code == 200, resp.text
    return resp


def test_daily_figures_count_levels_channels_categories_and_on_time_rates(closed_day):
    r = get_report(closed_day, "daily", "json").json()
    assert r["period"]["label"].startswith("2031年3月10日")
    assert r["total"] == 6  # the re-closed matter once
    assert r["by_level"] == {"I": 1, "II": 1, "III": 2, "IV": 2}
    assert r["by_channel"] == {"portal": 3, "hotline": 2, "weibo": 1}
    assert r["by_category"]["城乡建设"] == 3
    assert r["reply"] == {"with_deadline": 6, "on_time": 4, "rate": pytest.approx(4 / 6)}
    units = {u["code"]: u for u in r["units"]}
    assert (units[A.code]["on_time"], units[A.code]["overdue"]) == (2, 1)
    assert units[B.code]["rate"] == 1.0 and units[C.code]["rate"] == 0.0
    assert [u["code"] for u in r["overdue_units"]] == sorted([A.code, C.code])
    assert r["satisfaction"]["rated"] == 4 and r["satisfaction"]["rate"] == pytest.approx(3 / 4)
    assert r["typical_cases"][0]["title"] and len(r["typical_cases"]) == 5
    empty = get_report(closed_day, "daily", "json", day="2031-03-11").json()
    assert empty["total"] == 0 and empty["units"] == []


def test_weekly_and_monthly_periods_contain_the_day(closed_day):
    week = get_report(closed_day, "weekly", "json").json()
    assert week["total"] == 6 and "第11周" in week["period"]["label"]
    month = get_report(closed_day, "monthly", "json", day="2031-03-31").json()
    assert month["total"] == 6 and month["period"]["label"] == "2031年3月"


def test_reports_come_as_docx_and_pdf_with_charts(closed_day):
    import docx
    import pypdfium2 as pdfium

    resp = get_report(closed_day, "weekly", "docx")
    assert resp.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "report-weekly-2031-03-10.docx" in resp.headers["content-disposition"]
    d = docx.Document(io.BytesIO(resp.content))
    text = "\n".join(p.text for p in d.paragraphs)
    assert "政务舆情周报" in text and "一、总体情况" in text and "超期单位" in text and C.name in text
    cells = [c.text for t in d.tables for row in t.rows for c in row.cells]
    assert A.name in cells and "66.7%" in cells  # A: 2 of 3 on time
    assert len(d.inline_shapes) >= 3  # charts

    pdf = pdfium.PdfDocument(get_report(closed_day, "monthly", "pdf").content)
    text = "".join("".join(pdf[i].get_textpage().get_text_range().split()) for i in range(len(pdf)))
    assert "政务舆情月报" in text and "典型案例" in text and "".join(A.name.split()) in text
    images = sum(
        1 for i in range(len(pdf)) for o in pdf[i].get_objects() if o.type == pdfium.raw.FPDF_PAGEOBJ_IMAGE
    )
    assert images >= 3


def test_the_annual_self_inspection_draft_has_the_four_parts_and_names_late_units(closed_day):
    import docx

    d = docx.Document(io.BytesIO(get_report(closed_day, "annual", "docx").content))
    text = "\n".join(p.text for p in d.paragraphs)
    assert "2031年政务舆情回应处置工作自查报告" in text
    for part in (
        "一、政务舆情回应工作制度、机制建立情况",
        "二、主要做法",
        "三、存在问题",
        "四、工作建议及下一步安排",
    ):
        assert part in text
    assert "按时率低于目标的单位：" in text and C.name in text
    assert "【待补充】" in text  # the draft marks what people must write


def test_report_parameters_are_validated(closed_day):
    for path, params in (
        ("/api/v1/archive/reports/hourly", {}),
        ("/api/v1/archive/reports/daily", {"format": "xls"}),
        ("/api/v1/archive/reports/daily", {"date": "2031-02-30"}),
    ):
        resp = closed_day.get(path, params=params)
        assert resp.status_code == 422 and resp.json()["error"]["code"] == "validation_error", params


@pytest.mark.once
def test_periods_are_local_days_iso_weeks_months_and_years():
    p = reports.period_of("weekly", date(2031, 3, 12), "Asia/Shanghai")
    assert p.start == datetime(2031, 3, 9, 16, tzinfo=UTC) and p.end == datetime(2031, 3, 16, 16, tzinfo=UTC)
    m = reports.period_of("monthly", date(2031, 12, 5), "Asia/Shanghai")
    assert m.end == datetime(2031, 12, 31, 16, tzinfo=UTC)
    y = reports.period_of("annual", date(2031, 7, 1), "Asia/Shanghai")
    assert y.label == "2031年度" and y.start == datetime(2030, 12, 31, 16, tzinfo=UTC)
