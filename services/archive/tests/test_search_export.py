"""Chinese full-text search with filters and highlights; the zip export and its manifest."""

import hashlib
import io
import json
import re
import uuid
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from schema.enums import Channel, Level
from services.archive import segment
from services.archive.tests import synth

UNITS = synth.units()[:3]
BASE = datetime(2030, 5, 10, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def corpus(archive):
    """Twenty-four dossiers from real messages under a category name no other test uses."""
    category = f"检索测试{uuid.uuid4().hex[:6]}"
    seeded = []
    for i in range(24):
        spec = {
            "level": [Level.I, Level.II, Level.III, Level.IV][i % 4],
            "unit": UNITS[i % 3],
            "channel": [Channel.portal, Channel.weibo][i % 2],
            "closed_at": BASE + timedelta(days=i),
        }
        incident, messages, notes = synth.build(
            100 + i, msg=synth.real_messages()[200 + i], category=category, attachments=i % 2, **spec
        )
        archive.close(incident, messages, notes)
        seeded.append({"incident": incident, "message": messages[0], **spec})
    archive.searchable()
    return category, seeded


def search(archive, **params):
    resp = archive.get("/api/v1/archive/dossiers", params=params)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _word_of(text: str) -> str:
    """A two-or-more character word from a title, as jieba cuts it."""
    return max((w for w in segment.tokens(text) if len(w) >= 2 and not w.isascii()), key=len)


def test_a_chinese_word_finds_its_dossier_with_highlights(archive, corpus):
    category, seeded = corpus
    target = seeded[5]
    word = _word_of(target["message"].title)
    page = search(archive, q=word, category=category, limit=50)
    ids = {i["incident_id"] for i in page["items"]}
    assert target["incident"].id in ids
    # Every hit really contains the word; the highlight marks it.
    for item in page["items"]:
        h = item["highlight"]
        marked = re.findall("<em>(.*?)</em>", (h["title"] or "") + (h["snippet"] or ""))
        assert any(word.lower() in m.lower() for m in marked), item
    assert word in page["terms"]


def test_words_in_the_body_are_found_and_all_words_must_match(archive, corpus):
    category, seeded = corpus
    body = seeded[7]["message"].content_original
    words = [w for w in segment.tokens(body) if len(w) >= 2 and not w.isascii()][:3]
    page = search(archive, q=" ".join(words), category=category, limit=50)
    assert seeded[7]["incident"].id in {i["incident_id"] for i in page["items"]}
    for item in page["items"]:
        assert item["highlight"]["snippet"] or item["highlight"]["title"]
    nothing = search(archive, q=words[0] + " 不存在的词语组合乙丙丁", category=category)
    assert nothing["total"] == 0 and nothing["items"] == []


def test_filters_by_level_unit_channel_category_and_date(archive, corpus):
    category, seeded = corpus

    def expect(pred):
        return {s["incident"].id for s in seeded if pred(s)}

    def found(**params):
        page = search(archive, category=category, limit=200, **params)
        assert page["total"] == len(page["items"])
        return {i["incident_id"] for i in page["items"]}

    assert found() == expect(lambda s: True)
    assert found(level="II") == expect(lambda s: s["level"] == Level.II)
    assert found(unit=UNITS[1].code) == expect(lambda s: s["unit"] == UNITS[1])
    assert found(channel="weibo", level="I") == expect(
        lambda s: s["channel"] == Channel.weibo and s["level"] == Level.I
    )
    # Dates are local days: closed 2030-05-13 02:00Z is 10:00 in Beijing on the 13th.
    window = found(closed_from="2030-05-13", closed_to="2030-05-16")
    assert window == expect(
        lambda s: (
            datetime(2030, 5, 12, 16, tzinfo=UTC) <= s["closed_at"] < datetime(2030, 5, 16, 16, tzinfo=UTC)
        )
    )
    assert len(window) == 4
    newest = search(archive, category=category, limit=3)
    assert [i["incident_id"] for i in newest["items"]] == [s["incident"].id for s in seeded[::-1][:3]]


def test_search_input_is_validated(archive):
    for params in (
        {"level": "V"},
        {"channel": "fax"},
        {"closed_from": "yesterday"},
        {"limit": 0},
        {"q": "字" * 201},
    ):
        resp = archive.get("/api/v1/archive/dossiers", params=params)
        assert resp.status_code == 422, params
        assert resp.json()["error"]["code"] == "validation_error"
    assert search(archive, q="，。！")["total"] == 0


@pytest.mark.once
def test_highlights_escape_html_and_prefer_whole_words():
    out = segment.highlight("<b>小区</b>停水三天，小区居民", ["小区", "停水"])
    assert out.startswith("&lt;b&gt;<em>小区</em>&lt;/b&gt;<em>停水</em>")
    assert segment.highlight("毫无关系", ["停水"]) is None
    assert segment.fts5_match(['a"b', "停水"]) == '"a""b" AND "停水"'


def test_export_is_a_zip_whose_manifest_checks_out(archive, corpus):
    _, seeded = corpus
    target = seeded[3]  # has an attachment
    [brief] = archive.dossiers_of(target["incident"].id)
    resp = archive.get(f"/api/v1/archive/dossiers/{brief['id']}/export")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/zip"
    assert (
        "attachment;" in resp.headers["content-disposition"] and ".zip" in resp.headers["content-disposition"]
    )
    z = zipfile.ZipFile(io.BytesIO(resp.content))
    names = set(z.namelist())
    assert names == {
        "dossier.json",
        "seal.json",
        "dossier.html",
        "dossier.pdf",
        "attachments.json",
        "manifest.json",
        "SHA256SUMS",
    }
    manifest = json.loads(z.read("manifest.json"))
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == names - {"manifest.json", "SHA256SUMS"}
    for path, f in listed.items():
        data = z.read(path)
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"], path
    sums = dict(reversed(line.split("  ")) for line in z.read("SHA256SUMS").decode().splitlines())
    assert sums == {p: f["sha256"] for p, f in listed.items()}
    # dossier.json is the sealed content itself.
    assert hashlib.sha256(z.read("dossier.json")).hexdigest() == brief["content_sha256"]
    assert json.loads(z.read("seal.json"))["chain_hash"] == brief["chain_hash"]
    [att] = json.loads(z.read("attachments.json"))["attachments"]
    assert att["name"] == "现场照片0.jpg" and att["tracking_code"] == target["message"].tracking_code
    html = z.read("dossier.html").decode()
    title = target["incident"].title
    assert title.replace("&", "&amp;").replace("<", "&lt;") in html and "原始留言" in html
    assert target["message"].reporter_encrypted not in html and "已加密保存" in html

    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(z.read("dossier.pdf"))
    text = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    squeezed = "".join(text.split())
    assert "原始留言" in squeezed and "".join(title.split())[:12] in squeezed
    assert "全过程时间线" in squeezed and brief["content_sha256"][:16] in squeezed
    # A tampered copy no longer matches its manifest.
    assert hashlib.sha256(z.read("dossier.json") + b" ").hexdigest() != listed["dossier.json"]["sha256"]


@pytest.mark.once
def test_the_dossier_document_shows_parts_it_does_not_know_yet():
    from types import SimpleNamespace

    from services.archive.documents import Table, to_html
    from services.archive.dossier_doc import dossier_document

    incident, messages, _ = synth.build(1)
    content = {
        "dossier": {"retention": {"years": None}},
        "incident": {
            **incident.model_dump(mode="json"),
            "instructions": [
                {"by": "市长", "text": "请市住建局牵头，三日内报结果", "at": "2030-01-01T01:00:00Z"}
            ],
        },
        "messages": [m.model_dump(mode="json") for m in messages],
        "notifications": [],
    }
    row = SimpleNamespace(
        id="d1", incident_code=incident.code, version=1, supersedes=None, sealed_at=incident.closed_at,
        retention_until=None, seq=1, content_sha256="0" * 64, prev_chain_hash="0" * 64, chain_hash="1" * 64,
        level="IV", title=incident.title, replied_at=incident.closed_at, responded_at=None,
    )  # fmt: skip
    doc = dossier_document(row, content, tz="Asia/Shanghai")
    tables = [b for b in doc.blocks if isinstance(b, Table)]
    assert any("请市住建局牵头，三日内报结果" in c for t in tables for r in t.rows for c in r)
    assert "其他记录：领导批示" in to_html(doc)
