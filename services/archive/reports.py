"""舆情日报/周报/月报 and the annual 政务舆情回应处置工作自查报告 draft, built from sealed dossiers.

Statistics come from the sealed header columns (level, channels, category, lead unit, deadlines and
when they were met), so a report over a year reads no dossier content except its typical cases.
"""

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from schema.enums import LEVEL_TEXT
from services.archive.documents import Document, Fields, Heading, Image, Para, Table
from services.archive.dossier_doc import CHANNEL_TEXT, SATISFACTION_TEXT, local
from services.archive.fonts import cjk_font
from services.archive.models import Dossier

KINDS = ("daily", "weekly", "monthly", "annual")
KIND_TEXT = {"daily": "日报", "weekly": "周报", "monthly": "月报", "annual": "年度自查报告"}
LEVELS = ("I", "II", "III", "IV")
_WEEKDAYS = "一二三四五六日"
_STAT_COLUMNS = [
    Dossier.id,
    Dossier.seq,
    Dossier.incident_id,
    Dossier.incident_code,
    Dossier.version,
    Dossier.title,
    Dossier.level,
    Dossier.category,
    Dossier.lead_unit_code,
    Dossier.lead_unit_name,
    Dossier.channels,
    Dossier.closed_at,
    Dossier.received_at,
    Dossier.reply_due,
    Dossier.replied_at,
    Dossier.response_due,
    Dossier.responded_at,
    Dossier.satisfaction,
    Dossier.heat,
]


@dataclass
class Period:
    """A report's period [start, end) in local time, and how it is named."""

    kind: str
    start: datetime
    end: datetime
    label: str
    year: int


def period_of(kind: str, day: date, tz: str) -> Period:
    """The daily, ISO-weekly, monthly or yearly period that contains `day`."""
    z = ZoneInfo(tz)
    if kind == "daily":
        s = day
        e = s + timedelta(days=1)
        label = f"{s.year}年{s.month}月{s.day}日（星期{_WEEKDAYS[s.weekday()]}）"
    elif kind == "weekly":
        s = day - timedelta(days=day.weekday())
        e = s + timedelta(days=7)
        last = e - timedelta(days=1)
        iso = s.isocalendar()
        label = f"{iso.year}年第{iso.week}周（{s.month}月{s.day}日—{last.month}月{last.day}日）"
    elif kind == "monthly":
        s = day.replace(day=1)
        e = (s + timedelta(days=32)).replace(day=1)
        label = f"{s.year}年{s.month}月"
    else:
        s = day.replace(month=1, day=1)
        e = s.replace(year=s.year + 1)
        label = f"{s.year}年度"
    start = datetime(s.year, s.month, s.day, tzinfo=z)
    end = datetime(e.year, e.month, e.day, tzinfo=z)
    return Period(kind=kind, start=start.astimezone(UTC), end=end.astimezone(UTC), label=label, year=s.year)


@dataclass
class UnitStat:
    """How one lead unit did in the period."""

    code: str
    name: str
    total: int = 0
    with_deadline: int = 0
    on_time: int = 0
    overdue: int = 0
    overdue_cases: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        """Share of matters with a reply deadline that were answered in time."""
        return self.on_time / self.with_deadline if self.with_deadline else None


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def compute(rows: list[dict[str, Any]], *, config: dict[str, Any], tz: str) -> dict[str, Any]:
    """The report's figures from dossier header rows (latest closing of each incident in the period)."""
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["incident_id"] not in latest or r["version"] > latest[r["incident_id"]]["version"]:
            latest[r["incident_id"]] = r
    items = sorted(latest.values(), key=lambda r: r["seq"])
    by_level = Counter(r["level"] for r in items)
    by_channel: Counter = Counter()
    for r in items:
        by_channel.update(c for c in (r["channels"] or "other").split(",") if c)
    by_category = Counter(r["category"] or "未分类" for r in items)
    units: dict[str, UnitStat] = {}
    reply_due = reply_on_time = resp_due = resp_on_time = 0
    for r in items:
        code = r["lead_unit_code"] or "-"
        u = units.setdefault(code, UnitStat(code=code, name=r["lead_unit_name"] or "未交办（直接办结）"))
        u.total += 1
        if r["reply_due"] is not None:
            u.with_deadline += 1
            reply_due += 1
            if r["replied_at"] is not None and r["replied_at"] <= r["reply_due"]:
                u.on_time += 1
                reply_on_time += 1
            else:
                u.overdue += 1
                u.overdue_cases.append(r["incident_code"])
        if r["response_due"] is not None:
            resp_due += 1
            if r["responded_at"] is not None and r["responded_at"] <= r["response_due"]:
                resp_on_time += 1
    sat = Counter(r["satisfaction"] for r in items if r["satisfaction"])
    rated = sum(sat.values())
    typical = sorted(
        items, key=lambda r: (LEVELS.index(r["level"]) if r["level"] in LEVELS else 9, -r["heat"])
    )
    unit_list = sorted(units.values(), key=lambda u: (-u.total, u.code))
    return {
        "total": len(items),
        "by_level": {lv: by_level.get(lv, 0) for lv in LEVELS},
        "by_channel": dict(by_channel.most_common()),
        "by_category": dict(by_category.most_common()),
        "reply": {
            "with_deadline": reply_due,
            "on_time": reply_on_time,
            "rate": _rate(reply_on_time, reply_due),
        },
        "public_response": {
            "with_deadline": resp_due,
            "on_time": resp_on_time,
            "rate": _rate(resp_on_time, resp_due),
        },
        "satisfaction": {
            "rated": rated,
            "counts": dict(sat),
            "rate": _rate(sat.get("satisfied", 0) + sat.get("basically_satisfied", 0), rated),
        },
        "units": [
            {
                "code": u.code,
                "name": u.name,
                "total": u.total,
                "with_deadline": u.with_deadline,
                "on_time": u.on_time,
                "overdue": u.overdue,
                "rate": u.rate,
                "overdue_cases": u.overdue_cases,
            }
            for u in unit_list
        ],
        "overdue_units": [
            {"code": u.code, "name": u.name, "overdue": u.overdue, "cases": u.overdue_cases}
            for u in sorted(unit_list, key=lambda u: (-u.overdue, u.code))
            if u.overdue
        ],
        "below_target": [
            {"code": u.code, "name": u.name, "rate": u.rate}
            for u in unit_list
            if u.rate is not None and u.rate < float(config.get("on_time_target", 0.95))
        ],
        "typical_ids": [r["id"] for r in typical[: int(config.get("typical_cases", 5))]],
        "trend": _trend(items, tz),
    }


def _trend(items: list[dict[str, Any]], tz: str) -> list[tuple[str, int]]:
    """Matters per local day (per month when the span exceeds 62 days), for the trend chart."""
    if not items:
        return []
    z = ZoneInfo(tz)
    days = Counter(r["closed_at"].astimezone(z).date() for r in items)
    if (max(days) - min(days)).days > 62:
        months = Counter(f"{d.year}-{d.month:02d}" for d in days.elements())
        return sorted(months.items())
    return [(d.isoformat(), n) for d, n in sorted(days.items())]


async def gather(
    *, session: AsyncSession, period: Period, config: dict[str, Any], tz: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The figures of a period and the content of its typical cases."""
    q = select(*_STAT_COLUMNS).where(Dossier.closed_at >= period.start, Dossier.closed_at < period.end)
    rows = [dict(r._mapping) for r in (await session.exec(q)).all()]
    stats = compute(rows, config=config, tz=tz)
    cases = []
    if stats["typical_ids"]:
        found = (await session.exec(select(Dossier).where(Dossier.id.in_(stats["typical_ids"])))).all()
        order = {i: n for n, i in enumerate(stats["typical_ids"])}
        for d in sorted(found, key=lambda d: order[d.id]):
            content = json.loads(d.content)
            cases.append(
                {"row": d, "incident": content.get("incident", {}), "messages": content.get("messages", [])}
            )
    return stats, cases


# ---------------------------------------------------------------- charts


def _charts(stats: dict[str, Any], *, font_path: Path | None, dpi: int, top_units: int) -> list[Image]:
    """Bar charts of levels, channels, categories and unit on-time rates, and the trend, as PNGs."""
    from matplotlib.figure import Figure

    family = cjk_font(font_path).family
    rc = {"font.family": [family, "sans-serif"] if family else ["sans-serif"], "axes.unicode_minus": False}
    import matplotlib

    charts: list[Image] = []

    def save(fig, caption: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        charts.append(Image(buf.getvalue(), caption))

    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(7.5, 3.2))
        ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
        levels = stats["by_level"]
        labels = [f"{lv}级\n{LEVEL_TEXT[lv]}" for lv in LEVELS]
        bars = ax[0].bar(
            labels, [levels[lv] for lv in LEVELS], color=["#b22222", "#e0702f", "#e8b33a", "#4f81bd"]
        )
        ax[0].bar_label(bars)
        ax[0].set_title("按等级")
        ax[0].set_ylabel("件数")
        ch = list(stats["by_channel"].items())[:10]
        ax[1].barh([CHANNEL_TEXT.get(c, c) for c, _ in ch][::-1], [n for _, n in ch][::-1], color="#3d5a80")
        ax[1].set_title("按渠道")
        for i, (_, n) in enumerate(ch[::-1]):
            ax[1].text(n, i, f" {n}", va="center")
        fig.tight_layout()
        save(fig, "图1  舆情及诉求事项等级、渠道分布")

        cats = list(stats["by_category"].items())[:12]
        fig = Figure(figsize=(7.5, max(2.2, 0.38 * len(cats) + 0.8)))
        ax = fig.subplots()
        ax.barh([c for c, _ in cats][::-1], [n for _, n in cats][::-1], color="#5b8c5a")
        for i, (_, n) in enumerate(cats[::-1]):
            ax.text(n, i, f" {n}", va="center")
        ax.set_title("按类别")
        fig.tight_layout()
        save(fig, "图2  事项类别分布")

        units = [u for u in stats["units"] if u["rate"] is not None][:top_units]
        if units:
            fig = Figure(figsize=(7.5, max(2.2, 0.38 * len(units) + 0.9)))
            ax = fig.subplots()
            rates = [u["rate"] * 100 for u in units][::-1]
            colors = ["#b22222" if r < 100 * stats.get("target", 0.95) else "#3d7a3d" for r in rates]
            ax.barh([u["name"] for u in units][::-1], rates, color=colors)
            for i, r in enumerate(rates):
                ax.text(r, i, f" {r:.0f}%", va="center")
            ax.axvline(100 * stats.get("target", 0.95), color="#888", linestyle="--", linewidth=1)
            ax.set_xlim(0, 115)
            ax.set_xlabel("留言答复按时率（%）")
            ax.set_title("各承办单位按时办理情况")
            fig.tight_layout()
            save(fig, "图3  承办单位按时率（虚线为目标）")

        trend = stats["trend"]
        if len(trend) > 1:
            fig = Figure(figsize=(7.5, 2.6))
            ax = fig.subplots()
            # Days as MM-DD (months stay YYYY-MM); whole numbers on the count axis.
            ax.plot([t[5:] if len(t) == 10 else t for t, _ in trend], [n for _, n in trend], marker="o")
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.set_title("办结事项走势")
            ax.set_ylabel("件数")
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
            fig.tight_layout()
            save(fig, "图4  办结事项走势")
    return charts


# ---------------------------------------------------------------- the documents


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _overview(stats: dict[str, Any]) -> str:
    lv = stats["by_level"]
    channels = "、".join(f"{CHANNEL_TEXT.get(c, c)}{n}件" for c, n in list(stats["by_channel"].items())[:5])
    cats = "、".join(f"{c}{n}件" for c, n in list(stats["by_category"].items())[:5])
    sat = stats["satisfaction"]
    return (
        f"本期共办结舆情及诉求事项{stats['total']}件，其中特别重大（I级）{lv['I']}件、重大（II级）{lv['II']}件、"
        f"较大（III级）{lv['III']}件、一般（IV级）{lv['IV']}件。来源渠道以{channels or '—'}为主；"
        f"类别集中在{cats or '—'}。留言答复按时率{_pct(stats['reply']['rate'])}"
        f"（{stats['reply']['on_time']}/{stats['reply']['with_deadline']}），"
        f"公开回应按时率{_pct(stats['public_response']['rate'])}"
        f"（{stats['public_response']['on_time']}/{stats['public_response']['with_deadline']}）；"
        f"回访{sat['rated']}件，满意率{_pct(sat['rate'])}。"
    )


def _tables(stats: dict[str, Any]) -> dict[str, Table]:
    total = stats["total"] or 1
    return {
        "level": Table(
            ["等级", "件数", "占比"],
            [[f"{lv}级（{LEVEL_TEXT[lv]}）", str(n), _pct(n / total)] for lv, n in stats["by_level"].items()],
            [2, 1, 1],
        ),
        "channel": Table(
            ["渠道", "件数"],
            [[CHANNEL_TEXT.get(c, c), str(n)] for c, n in stats["by_channel"].items()],
            [2, 1],
        ),
        "category": Table(["类别", "件数"], [[c, str(n)] for c, n in stats["by_category"].items()], [2, 1]),
        "units": Table(
            ["承办单位", "办结", "有答复时限", "按时", "超时", "按时率"],
            [
                [
                    u["name"],
                    str(u["total"]),
                    str(u["with_deadline"]),
                    str(u["on_time"]),
                    str(u["overdue"]),
                    _pct(u["rate"]),
                ]
                for u in stats["units"]
            ],
            [3, 1, 1.2, 1, 1, 1.2],
        ),
    }


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "……"


def _cases(cases: list[dict[str, Any]], tz: str) -> list[Any]:
    blocks: list[Any] = []
    for i, c in enumerate(cases, 1):
        row, inc = c["row"], c["incident"]
        reply = inc.get("reply") or {}
        summary = (inc.get("close_summary") or {}).get("summary")
        answer = reply.get("reply_text") or reply.get("text") or summary or "—"
        excerpt = inc.get("excerpt") or (
            c["messages"][0].get("content_normalized", "") if c["messages"] else ""
        )
        blocks.append(Heading(f"案例{i}：{row.title}", level=2))
        blocks.append(
            Fields(
                [
                    ("事件编号", f"{row.incident_code}（第{row.version}版）"),
                    ("等级", f"{row.level}级（{LEVEL_TEXT.get(row.level, '')}）"),
                    ("承办单位", row.lead_unit_name or "—"),
                    ("受理 / 办结", f"{local(row.received_at, tz)} / {local(row.closed_at, tz)}"),
                    ("反映内容", _clip(excerpt, 300)),
                    ("办理结果", _clip(str(answer), 400)),
                    ("群众评价", SATISFACTION_TEXT.get(row.satisfaction or "", "未回访")),
                ]
            )
        )
    return blocks or [Para("本期无典型案例。", muted=True)]


def build_document(
    *,
    kind: str,
    period: Period,
    stats: dict[str, Any],
    cases: list[dict[str, Any]],
    config: dict[str, Any],
    city: str,
    tz: str,
    now: datetime,
    font_path: Path | None,
) -> Document:
    """The report as a document (headings, text, tables and charts)."""
    stats = {**stats, "target": float(config.get("on_time_target", 0.95))}
    charts = (
        _charts(
            stats,
            font_path=font_path,
            dpi=int(config.get("chart_dpi", 150)),
            top_units=int(config.get("top_units", 12)),
        )
        if stats["total"]
        else []
    )
    tables = _tables(stats)
    issuer = config.get("issuer", "")
    made = f"{issuer}  {local(now, tz)} 生成" if issuer else f"{local(now, tz)} 生成"
    overdue = stats["overdue_units"]
    overdue_text = (
        f"超期单位{len(overdue)}个，共超期{sum(u['overdue'] for u in overdue)}件："
        + "、".join(f"{u['name']}（{u['overdue']}件）" for u in overdue)
        + "。"
        if overdue
        else "本期无超期单位。"
    )
    tables["overdue"] = Table(
        ["超期单位", "超期件数", "超期事项"],
        [
            [u["name"], str(u["overdue"]), "、".join(u["cases"][:6]) + ("等" if len(u["cases"]) > 6 else "")]
            for u in overdue
        ],
        [2.2, 1, 5],
    )
    if kind != "annual":
        blocks: list[Any] = [
            Heading("一、总体情况"),
            Para(_overview(stats) if stats["total"] else "本期无办结事项。"),
        ]
        if stats["total"]:
            blocks += [
                Heading("二、分级分类情况"),
                tables["level"],
                charts[0],
                tables["channel"],
                tables["category"],
                charts[1],
                Heading("三、办理时效"),
                tables["units"],
                Para(overdue_text),
                *([tables["overdue"]] if overdue else []),
                *charts[2:],
                Heading("四、典型案例"),
                *_cases(cases, tz),
            ]
        return Document(
            title=f"{city}政务舆情{KIND_TEXT[kind]}",
            subtitle=f"{period.label} · {made}",
            blocks=blocks,
            footer=f"{city}政务舆情{KIND_TEXT[kind]} {period.label} · 由民声归档数据生成",
        )
    return _self_inspection(period, stats, cases, tables, charts, overdue_text, city=city, tz=tz, made=made)


def _self_inspection(period, stats, cases, tables, charts, overdue_text, *, city, tz, made) -> Document:
    """The annual 政务舆情回应处置工作自查报告 draft: the usual four parts, figures filled in."""
    lv = stats["by_level"]
    below = stats["below_target"]
    todo = "【待补充】"
    blocks: list[Any] = [
        Para(
            f"根据{todo}（上级通知文件名称）要求，现将{city}{period.year}年政务舆情回应处置工作自查情况报告如下："
        ),
        Heading("一、政务舆情回应工作制度、机制建立情况"),
        Para(
            f"{city}将政务舆情回应工作作为重要工作来抓，依托民声平台建立了“统一受理、研判定级、分级交办、"
            "限时办结、公开回应、立卷归档”的工作机制：12345热线、政府网站留言板和网络舆情监测等渠道的"
            "事项统一受理，按特别重大、重大、较大、一般四级研判定级，按属地管理、分级负责、谁主管谁负责"
            "的原则交办，对上报、公开回应和留言答复实行时限管理，临期催办、超期督办，办结后全过程立卷归档。"
        ),
        Para(f"{todo}本地制度文件（如网络舆情应急处置预案、留言办理工作制度）名称及印发时间。", muted=True),
        Heading("二、主要做法"),
        Heading("（一）加强日常监看", level=2),
        Para(
            f"全年共受理并办结舆情及诉求事项{stats['total']}件，来源渠道分布见下表，"
            "实现了热线、网站和网络舆情的统一汇聚。"
        ),
        tables["channel"],
        Heading("（二）把握舆情研判", level=2),
        Para(
            f"全年研判为特别重大（I级）{lv['I']}件、重大（II级）{lv['II']}件、较大（III级）{lv['III']}件、"
            f"一般（IV级）{lv['IV']}件；I—II级事项第一时间报告主要领导和分管领导。"
        ),
        tables["level"],
        *(charts[:1]),
        tables["category"],
        *(charts[1:2]),
        Heading("（三）及时处置应对", level=2),
        Para(
            f"留言答复按时率{_pct(stats['reply']['rate'])}，公开回应按时率{_pct(stats['public_response']['rate'])}，"
            f"群众满意率{_pct(stats['satisfaction']['rate'])}（回访{stats['satisfaction']['rated']}件）。"
        ),
        tables["units"],
        *(charts[2:]),
        Heading("（四）深入总结分析", level=2),
        Para("以下典型案例按等级和热度选取，供总结经验、完善预案参考。"),
        *_cases(cases, tz),
        Heading("三、存在问题"),
        Para(
            "（一）部分单位办理时效有待提高。"
            + (
                "按时率低于目标的单位："
                + "、".join(f"{u['name']}（{_pct(u['rate'])}）" for u in below)
                + "。"
                if below
                else "全年各承办单位按时率均达到目标。"
            )
        ),
        Para("（二）" + overdue_text),
        *([tables["overdue"]] if stats["overdue_units"] else []),
        Para(
            f"（三）群众满意度仍有提升空间：不满意{stats['satisfaction']['counts'].get('unsatisfied', 0)}件。"
            if stats["satisfaction"]["rated"]
            else "（三）回访覆盖面不足，全年无回访评价记录。"
        ),
        Para(f"{todo}其他问题（如主动公开、回应形式等）。", muted=True),
        Heading("四、工作建议及下一步安排"),
        Para("（一）压实办理责任。对超期单位加强督办和通报，将按时率纳入年度考评。"),
        Para("（二）提升研判水平。围绕高发类别开展专题分析，提前研判风险点和敏感时段。"),
        Para("（三）完善回应平台。用好政府门户网站、政务新媒体等渠道，及时公开办理结果。"),
        Para(f"{todo}下一步具体安排。", muted=True),
    ]
    return Document(
        title=f"{city}{period.year}年政务舆情回应处置工作自查报告",
        subtitle=f"（草稿）· {made}",
        blocks=blocks,
        footer=f"{city}{period.year}年政务舆情回应处置工作自查报告（草稿）· 数据来自民声归档",
    )
