"""A sealed dossier as a human-readable document (卷内文件), and its export as a zip with a manifest."""

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from schema.enums import (
    CITIZEN_STATUS_TEXT,
    FINDING_TEXT,
    LEVEL_TEXT,
    REQUEST_TYPE_TEXT,
    RESPONSE_TYPE_TEXT,
    WARNING_CLASS_TEXT,
)
from services.archive.documents import Document, Fields, Heading, Para, Table, to_html, to_pdf

CHANNEL_TEXT = {
    "hotline": "12345热线",
    "portal": "政府网站留言板",
    "weibo": "微博",
    "wechat": "微信",
    "douyin": "抖音",
    "forum": "论坛",
    "news": "新闻媒体",
    "superior": "上级转办",
    "grid": "网格员上报",
    "other": "其他",
}
ROLE_TEXT = {"lead": "主办", "co": "协办", "co_handler": "协办"}
SATISFACTION_TEXT = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}
DEADLINE_TEXT = {
    "report_due": "上报时限",
    "first_release_due": "首次发布时限",
    "response_due": "公开回应时限",
    "reply_due": "留言答复时限",
}
# Labels of the keys other services put in the dossier's free-form parts (assignments, reply, …);
# an unknown key is shown as it is.
KEY_TEXT = {
    "id": "编号",
    "unit": "单位",
    "unit_code": "单位代码",
    "unit_name": "单位",
    "lead_unit": "主办单位",
    "co_units": "协办单位",
    "role": "角色",
    "instruction": "批示/交办意见",
    "instructions": "领导批示",
    "assigned_by": "交办人",
    "assigned_at": "交办时间",
    "signed_at": "签收时间",
    "signed_by": "签收人",
    "returned_at": "退回时间",
    "return_reason": "退回理由",
    "reason": "理由",
    "status": "状态",
    "due": "时限",
    "due_at": "时限",
    "extension": "延期",
    "extensions": "延期申请",
    "requested_due": "申请延至",
    "decided_by": "审批人",
    "decided_at": "审批时间",
    "approved": "是否同意",
    "progress": "进展",
    "finding": "核查结论",
    "reply_text": "答复内容",
    "text": "内容",
    "measures": "处理措施",
    "replied_at": "答复时间",
    "replied_by": "答复人",
    "approved_at": "审定时间",
    "approved_by": "审定人",
    "decision": "审定意见",
    "comment": "意见",
    "edited_text": "修改后文本",
    "published_at": "公开时间",
    "published_by": "公开人",
    "channel": "渠道",
    "url": "链接",
    "actor": "操作人",
    "at": "时间",
    "by": "操作人",
    "before": "调整前",
    "after": "调整后",
    "level": "等级",
    "category": "类别",
    "satisfaction": "满意度",
    "summary": "办结摘要",
    "note": "说明",
    "created_at": "时间",
    "result": "结果",
}


# Steps of the workflow as staff name them (timeline actions and statuses); others are shown as they are.
ACTION_TEXT = {
    "received": "受理",
    "graded": "研判定级",
    "regraded": "重新定级",
    "escalated": "升级",
    "reviewed": "复核",
    "assigned": "交办",
    "signed": "签收",
    "returned": "退回",
    "extension_requested": "延期申请",
    "extension_decided": "延期审批",
    "progress": "进展",
    "replied": "答复",
    "approved": "审定",
    "sent_back": "退回修改",
    "published": "公开答复",
    "public_response": "公开回应",
    "closed": "办结",
    "reopened": "重办",
    "archived": "归档",
    "screened_out": "甄别为无效",
    "restored": "恢复受理",
    "feedback": "回访评价",
    "reminded": "催办",
    "supervised": "督办",
}


def local(value: Any, tz: str) -> str:
    """An ISO time (or datetime) as local 'YYYY-MM-DD HH:MM'; anything else as text; '—' for nothing."""
    if value in (None, "", [], {}):
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    return str(value)


def _value(key: str, value: Any, tz: str) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if key == "finding" and value in FINDING_TEXT:
        return FINDING_TEXT[value]
    if key == "satisfaction" and value in SATISFACTION_TEXT:
        return SATISFACTION_TEXT[value]
    if key == "role" and value in ROLE_TEXT:
        return ROLE_TEXT[value]
    if key == "channel" and value in CHANNEL_TEXT:
        return CHANNEL_TEXT[value]
    if isinstance(value, dict):
        if set(value) >= {"code", "name"}:
            return f"{value['name']}（{value['code']}）"
        return "；".join(f"{KEY_TEXT.get(k, k)}：{_value(k, v, tz)}" for k, v in value.items())
    if isinstance(value, list):
        return "、".join(_value(key, v, tz) for v in value) or "—"
    return local(value, tz)


_KEY_ORDER = {k: n for n, k in enumerate(KEY_TEXT)}


def _ordered(keys) -> list[str]:
    """Known keys in a reader's order (the sealed JSON sorts them alphabetically), unknown ones after."""
    return sorted(keys, key=lambda k: (_KEY_ORDER.get(k, len(_KEY_ORDER)), k))


def _dict_fields(data: dict[str, Any] | None, tz: str) -> Fields:
    data = data or {}
    return Fields([(KEY_TEXT.get(k, k), _value(k, data[k], tz)) for k in _ordered(data)])


def _dict_table(items: list[dict[str, Any]], tz: str) -> Table:
    keys: list[str] = []
    for item in items:
        keys += [k for k in item if k not in keys]
    keys = _ordered(keys)
    return Table([KEY_TEXT.get(k, k) for k in keys], [[_value(k, i.get(k), tz) for k in keys] for i in items])


# The incident's fields the document shows in their own sections.
_SHOWN = {
    "id", "code", "title", "status", "level", "score", "factors", "category", "request_type", "response_type",
    "warning_class", "lead_unit", "co_units", "deadlines", "message_ids", "channels", "received_at", "heat",
    "district", "excerpt", "policy_version", "closed_at", "closed_by", "close_summary", "timeline",
    "assignments", "reviews", "reply", "public_response", "feedback", "close_count",
}  # fmt: skip


def dossier_document(row: Any, content: dict[str, Any], *, tz: str) -> Document:
    """The dossier as headings, field lists and tables, every part of the sealed content shown."""
    inc = content.get("incident", {})
    meta = content.get("dossier", {})
    level = inc.get("level", row.level)
    retention = meta.get("retention") or {}
    years = retention.get("years")
    blocks: list[Any] = [
        Heading("一、案卷信息"),
        Fields(
            [
                ("案卷编号", row.id),
                ("事件编号", row.incident_code),
                ("版本", f"第 {row.version} 版" + (f"（取代 {row.supersedes}）" if row.supersedes else "")),
                ("封存时间", local(row.sealed_at, tz)),
                (
                    "保管期限",
                    "永久" if years is None else f"{years} 年（至 {local(row.retention_until, tz)}）",
                ),
                ("链上序号", str(row.seq)),
                ("内容 SHA-256", row.content_sha256),
                ("前一链接", row.prev_chain_hash),
                ("本链接", row.chain_hash),
            ]
        ),
        Heading("二、事件概况"),
    ]
    cat = inc.get("category") or {}
    units = [inc.get("lead_unit")] if inc.get("lead_unit") else []
    blocks.append(
        Fields(
            [
                ("标题", inc.get("title", row.title)),
                ("等级", f"{level} 级（{LEVEL_TEXT.get(level, '')}）  研判分值 {inc.get('score', '—')}"),
                (
                    "类别",
                    " / ".join(x for x in (cat.get("level1"), cat.get("level2"), cat.get("level3")) if x)
                    or "—",
                ),
                ("诉求类型", REQUEST_TYPE_TEXT.get(inc.get("request_type"), inc.get("request_type") or "—")),
                (
                    "回应类型",
                    RESPONSE_TYPE_TEXT.get(inc.get("response_type"), inc.get("response_type") or "—"),
                ),
                (
                    "预警类别",
                    WARNING_CLASS_TEXT.get(inc.get("warning_class"), inc.get("warning_class") or "—"),
                ),
                ("属地", inc.get("district") or "—"),
                ("渠道", "、".join(CHANNEL_TEXT.get(c, c) for c in inc.get("channels", [])) or "—"),
                ("主办单位", _value("unit", units[0], tz) if units else "—"),
                ("协办单位", _value("co_units", inc.get("co_units") or [], tz)),
                ("受理时间", local(inc.get("received_at"), tz)),
                ("办结时间", local(inc.get("closed_at"), tz)),
                ("办结人", inc.get("closed_by") or "—"),
                ("热度", str(inc.get("heat", "—"))),
                ("办结次数", str(inc.get("close_count", 1))),
                ("研判规则版本", inc.get("policy_version") or "—"),
            ]
        )
    )
    factors = inc.get("factors") or []
    blocks.append(Heading("三、研判定级依据"))
    if factors:
        blocks.append(
            Table(
                ["因素", "分值", "说明"],
                [[f.get("name", ""), str(f.get("points", "")), f.get("detail", "")] for f in factors],
                [2, 1, 6],
            )
        )
    else:
        blocks.append(Para("（无）", muted=True))
    deadlines = inc.get("deadlines") or {}
    blocks.append(Heading("四、办理时限"))
    blocks.append(
        Table(
            ["时限", "截止时间", "实际", "是否按时"],
            _deadline_rows(row, deadlines, tz),
            [2, 2, 2, 1.2],
        )
    )
    blocks.append(Heading("五、原始留言"))
    for i, m in enumerate(content.get("messages", []), 1):
        blocks += _message_blocks(i, m, tz)
    for n, (title, key) in enumerate(
        [
            ("交办记录（批办、签收、退回、延期）", "assignments"),
            ("定级与交办复核", "reviews"),
        ],
        start=6,
    ):
        blocks.append(Heading(f"{_num(n)}、{title}"))
        items = inc.get(key) or []
        blocks.append(_dict_table(items, tz) if items else Para("（无）", muted=True))
    blocks.append(Heading("八、答复与审定"))
    blocks.append(_dict_fields(inc.get("reply"), tz) if inc.get("reply") else Para("（无）", muted=True))
    blocks.append(Heading("九、公开回应"))
    pr = inc.get("public_response")
    blocks.append(_dict_fields(pr, tz) if pr else Para("（无）", muted=True))
    blocks.append(Heading("十、通知与确认"))
    notes = content.get("notifications", [])
    if notes:
        blocks.append(
            Table(
                ["时间", "事项", "接收人", "方式", "状态", "送达", "确认"],
                [
                    [
                        local(n.get("created_at"), tz),
                        n.get("event", ""),
                        n.get("recipient", ""),
                        n.get("channel", ""),
                        n.get("status", ""),
                        local(n.get("sent_at"), tz),
                        local(n.get("acked_at"), tz) + (f" {n['acked_by']}" if n.get("acked_by") else ""),
                    ]
                    for n in notes
                ],
                [2, 1.6, 1.6, 1, 1, 2, 2.2],
            )
        )
    else:
        blocks.append(Para("（无）", muted=True))
    blocks.append(Heading("十一、群众评价（回访）"))
    feedback = list(inc.get("feedback") or [])
    for m in content.get("messages", []):
        feedback += [{"tracking_code": m.get("tracking_code"), **f} for f in m.get("feedback") or []]
    blocks.append(_dict_table(feedback, tz) if feedback else Para("（无）", muted=True))
    blocks.append(Heading("十二、办结情况"))
    blocks.append(
        _dict_fields(inc.get("close_summary"), tz) if inc.get("close_summary") else Para("（无）", muted=True)
    )
    # Parts a newer grading adds to the dossier (e.g. leader instructions as their own list) are shown too.
    for key in sorted(set(inc) - _SHOWN):
        value = inc[key]
        if value in (None, "", [], {}):
            continue
        blocks.append(Heading(f"其他记录：{KEY_TEXT.get(key, key)}", level=2))
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            blocks.append(_dict_table(value, tz))
        elif isinstance(value, dict):
            blocks.append(_dict_fields(value, tz))
        else:
            blocks.append(Para(_value(key, value, tz)))
    blocks.append(Heading("十三、全过程时间线"))
    timeline = inc.get("timeline") or []
    blocks.append(
        Table(
            ["时间", "环节", "状态", "操作人", "说明", "公开"],
            [
                [
                    local(e.get("at"), tz),
                    ACTION_TEXT.get(e.get("action", ""), e.get("action", "")),
                    ACTION_TEXT.get(e.get("status") or "", e.get("status") or ""),
                    e.get("actor") or "",
                    e.get("note") or "",
                    "是" if e.get("public") else "否",
                ]
                for e in timeline
            ],
            [2, 1.5, 1.2, 1.3, 4, 0.7],
        )
        if timeline
        else Para("（无）", muted=True)
    )
    blocks.append(Heading("十四、附件"))
    atts = content.get("attachments") or []
    blocks.append(
        Table(
            ["留言", "名称", "类型", "地址"],
            [
                [a.get("tracking_code", ""), a.get("name") or "", a.get("media_type") or "", a.get("url", "")]
                for a in atts
            ],
            [1.5, 2, 1.3, 4],
        )
        if atts
        else Para("（无）", muted=True)
    )
    blocks.append(
        Para(
            "说明：举报人身份信息按保密规定加密保存于卷内（reporter_encrypted），本文件不显示。"
            "本文件由已封存的 dossier.json 生成，以 dossier.json 及其 SHA-256 为准。",
            muted=True,
        )
    )
    return Document(
        title=f"{inc.get('title', row.title)}",
        subtitle=f"民声 · 归档卷宗 {row.incident_code} 第 {row.version} 版 · "
        f"{LEVEL_TEXT.get(level, '')}（{level} 级）",
        blocks=blocks,
        footer=f"{row.incident_code} v{row.version} · SHA-256 {row.content_sha256}",
    )


def _num(n: int) -> str:
    return "零一二三四五六七八九十"[n] if n <= 10 else "十" + "零一二三四五六七八九"[n - 10]


def _deadline_rows(row: Any, deadlines: dict[str, Any], tz: str) -> list[list[str]]:
    actual = {"reply_due": row.replied_at, "response_due": row.responded_at}
    out = []
    for key, label in DEADLINE_TEXT.items():
        due = deadlines.get(key)
        done = actual.get(key)
        if due is None and done is None:
            continue
        on_time = "—"
        if due is not None and done is not None:
            due_dt = datetime.fromisoformat(due) if isinstance(due, str) else due
            on_time = "按时" if done <= due_dt else "超时"
        out.append([label, local(due, tz), local(done, tz), on_time])
    return out or [["—", "—", "—", "—"]]


def _message_blocks(i: int, m: dict[str, Any], tz: str) -> list[Any]:
    metrics = m.get("metrics") or {}
    location = m.get("location") or {}
    superior = m.get("superior") or {}
    fields = [
        ("追踪码", m.get("tracking_code", "")),
        ("渠道", CHANNEL_TEXT.get(m.get("channel"), m.get("channel", ""))),
        ("外部编号", m.get("external_id") or "—"),
        ("来源", " ".join(x for x in (m.get("source_name"), m.get("source_url")) if x) or "—"),
        ("诉求类型", REQUEST_TYPE_TEXT.get(m.get("request_type"), m.get("request_type") or "—")),
        (
            "发生/发布/受理",
            " / ".join(local(m.get(k), tz) for k in ("occurred_at", "published_at", "received_at")),
        ),
        ("地点", location.get("text") or location.get("district_code") or "—"),
        ("传播数据", "，".join(f"{k} {v}" for k, v in metrics.items() if v) or "—"),
        ("上级转办", _value("superior", superior, tz) if superior else "—"),
        ("群众可见状态", CITIZEN_STATUS_TEXT.get(m.get("citizen_status"), m.get("citizen_status") or "—")),
        ("举报人", "已加密保存（不显示）" if m.get("reporter_encrypted") else "无"),
        ("标题", m.get("title") or "—"),
        ("原文", m.get("content_original", "")),
    ]
    if m.get("content_normalized") and m.get("content_normalized") != m.get("content_original"):
        fields.append(("规范化文本", m["content_normalized"]))
    return [Heading(f"留言 {i}", level=2), Fields(fields)]


# ---------------------------------------------------------------- export


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_zip(row: Any, *, tz: str, font_path: Path | None = None) -> bytes:
    """The export: dossier.json (the sealed bytes), seal.json, HTML, PDF, attachments and a manifest."""
    content = json.loads(row.content)
    doc = dossier_document(row, content, tz=tz)
    seal = {
        "dossier_id": row.id,
        "incident_id": row.incident_id,
        "incident_code": row.incident_code,
        "version": row.version,
        "seq": row.seq,
        "sealed_at": row.sealed_at.isoformat(),
        "content_sha256": row.content_sha256,
        "header_sha256": row.header_sha256,
        "prev_chain_hash": row.prev_chain_hash,
        "chain_hash": row.chain_hash,
        "seal_version": row.seal_version,
        "note": "dossier.json is the sealed content byte for byte: its SHA-256 is content_sha256.",
    }
    files: dict[str, bytes] = {
        "dossier.json": row.content.encode("utf-8"),
        "seal.json": json.dumps(seal, ensure_ascii=False, indent=2).encode("utf-8"),
        "dossier.html": to_html(doc).encode("utf-8"),
        "dossier.pdf": to_pdf(doc, font_path=font_path),
        "attachments.json": json.dumps(
            {
                "note": "references to the attachments as the channels sent them; the files are not copied",
                "attachments": content.get("attachments") or [],
            },
            ensure_ascii=False,
            indent=2,
        ).encode("utf-8"),
    }
    manifest = {
        "algorithm": "SHA-256",
        "dossier_id": row.id,
        "files": [{"path": name, "bytes": len(data), "sha256": _sha(data)} for name, data in files.items()],
    }
    files["manifest.json"] = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
    # The same list in `sha256sum -c` form, so the check needs no tool of ours.
    files["SHA256SUMS"] = "".join(f"{f['sha256']}  {f['path']}\n" for f in manifest["files"]).encode()
    out = io.BytesIO()
    stamp = row.sealed_at.astimezone(ZoneInfo(tz)).timetuple()[:6]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return out.getvalue()
