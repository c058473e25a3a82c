"""One simple document model rendered three ways: HTML (jinja2), PDF (reportlab) and DOCX (python-docx).

Dossiers and reports are built as a list of blocks (headings, paragraphs, field lists, tables,
images); each renderer lays them out in its format, so the three always say the same thing.
"""

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from services.archive.fonts import cjk_font


@dataclass
class Heading:
    """A section title (level 1 or 2)."""

    text: str
    level: int = 1


@dataclass
class Para:
    """A paragraph of plain text."""

    text: str
    muted: bool = False


@dataclass
class Fields:
    """Label–value pairs."""

    items: list[tuple[str, str]]


@dataclass
class Table:
    """A table with a header row; `widths` are relative column widths."""

    headers: list[str]
    rows: list[list[str]]
    widths: list[float] | None = None


@dataclass
class Image:
    """A PNG picture (a chart) with its caption."""

    png: bytes
    caption: str = ""


@dataclass
class Document:
    """A titled document: blocks in reading order, and a footer line for every PDF page."""

    title: str
    subtitle: str = ""
    blocks: list[Any] = field(default_factory=list)
    footer: str = ""


# ---------------------------------------------------------------- HTML

_PAGE = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ doc.title }}</title>
<style>
  body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC",
         "WenQuanYi Micro Hei", "SimSun", sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
         color: #1f2a44; line-height: 1.7; }
  h1.title { text-align: center; font-size: 1.6rem; margin-bottom: .2rem; }
  p.subtitle { text-align: center; color: #667; margin-top: 0; }
  h2 { border-bottom: 2px solid #3d5a80; padding-bottom: .2rem; margin-top: 2rem; font-size: 1.2rem; }
  h3 { font-size: 1.05rem; margin-top: 1.2rem; }
  table { border-collapse: collapse; width: 100%; margin: .6rem 0 1rem; font-size: .92rem; }
  th, td { border: 1px solid #b0b7c3; padding: .3rem .5rem; vertical-align: top; text-align: left;
           white-space: pre-wrap; word-break: break-word; }
  th { background: #3d5a80; color: #fff; }
  table.fields th { background: #eef1f6; color: #1f2a44; width: 22%; }
  p.muted { color: #778; }
  figure { text-align: center; margin: 1rem 0; }
  figure img { max-width: 100%; }
  footer { margin-top: 3rem; color: #889; font-size: .8rem; border-top: 1px solid #ccd; padding-top: .5rem;
           word-break: break-all; }
</style>
</head>
<body>
<h1 class="title">{{ doc.title }}</h1>
{% if doc.subtitle %}<p class="subtitle">{{ doc.subtitle }}</p>{% endif %}
{% set ns = namespace(img=0) %}
{% for b in doc.blocks %}
{% set k = kind(b) %}
{% if k == "heading" %}{% if b.level == 1 %}<h2>{{ b.text }}</h2>{% else %}<h3>{{ b.text }}</h3>{% endif %}
{% elif k == "para" %}<p{% if b.muted %} class="muted"{% endif %}>{{ b.text }}</p>
{% elif k == "fields" and b.items %}<table class="fields">
{% for label, value in b.items %}<tr><th>{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
{% elif k == "table" %}<table>
<thead><tr>{% for h in b.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in b.rows %}<tr>{% for c in r %}<td>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>
{% elif k == "image" %}<figure><img src="{{ images[ns.img] }}" alt="{{ b.caption }}">
<figcaption>{{ b.caption }}</figcaption></figure>{% set ns.img = ns.img + 1 %}
{% endif %}
{% endfor %}
{% if doc.footer %}<footer>{{ doc.footer }}</footer>{% endif %}
</body>
</html>
"""
_ENV = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_TEMPLATE = _ENV.from_string(_PAGE)


def to_html(doc: Document, *, image_names: list[str] | None = None) -> str:
    """The document as one HTML page; images are referenced by file name, or embedded as data URIs."""
    import base64

    images = []
    for i, b in enumerate(x for x in doc.blocks if isinstance(x, Image)):
        if image_names:
            images.append(image_names[i])
        else:
            images.append("data:image/png;base64," + base64.b64encode(b.png).decode())
    return _TEMPLATE.render(doc=doc, images=images, kind=_kind)


def _kind(block: Any) -> str:
    return type(block).__name__.lower()


# ---------------------------------------------------------------- PDF


def to_pdf(doc: Document, *, font_path: Path | None = None) -> bytes:
    """The document as an A4 PDF with the CJK font embedded (when one is available)."""
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_CENTER
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as RLImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, TableStyle
    from reportlab.platypus import Table as RLTable

    font = cjk_font(font_path).pdf_name
    base = {"fontName": font, "wordWrap": "CJK"}
    title = ParagraphStyle("title", fontSize=18, leading=26, alignment=TA_CENTER, spaceAfter=4, **base)
    subtitle = ParagraphStyle(
        "subtitle", fontSize=10.5, leading=15, alignment=TA_CENTER, textColor=colors.grey, **base
    )
    h1 = ParagraphStyle("h1", fontSize=13.5, leading=20, spaceBefore=10, spaceAfter=4, keepWithNext=1, **base)
    h2 = ParagraphStyle("h2", fontSize=11.5, leading=17, spaceBefore=6, spaceAfter=3, keepWithNext=1, **base)
    body = ParagraphStyle("body", fontSize=10, leading=16, spaceAfter=4, firstLineIndent=0, **base)
    muted = ParagraphStyle("muted", parent=body, textColor=colors.grey)
    cell = ParagraphStyle("cell", fontSize=8.5, leading=12, **base)
    cell_head = ParagraphStyle("cellhead", parent=cell, textColor=colors.white)
    caption = ParagraphStyle("caption", parent=muted, alignment=TA_CENTER, fontSize=9)

    def p(text: str, style) -> Paragraph:
        from xml.sax.saxutils import escape

        return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)

    page_w, _page_h = A4
    frame_w = page_w - 36 * mm
    grid = TableStyle(
        [
            ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#b0b7c3")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 4),
            ("RIGHTPADDING", (0, 0), (-1, -1), 4),
        ]
    )
    story: list[Any] = [p(doc.title, title)]
    if doc.subtitle:
        story.append(p(doc.subtitle, subtitle))
    story.append(Spacer(1, 6 * mm))
    for b in doc.blocks:
        if isinstance(b, Heading):
            story.append(p(b.text, h1 if b.level == 1 else h2))
        elif isinstance(b, Para):
            story.append(p(b.text, muted if b.muted else body))
        elif isinstance(b, Fields):
            if not b.items:
                continue
            t = RLTable(
                [[p(k, cell), p(v, cell)] for k, v in b.items],
                colWidths=[frame_w * 0.22, frame_w * 0.78],
            )
            t.setStyle(grid)
            t.setStyle(TableStyle([("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#eef1f6"))]))
            story.append(t)
            story.append(Spacer(1, 3 * mm))
        elif isinstance(b, Table):
            widths = b.widths or [1.0] * len(b.headers)
            total = sum(widths)
            t = RLTable(
                [[p(h, cell_head) for h in b.headers]] + [[p(c, cell) for c in r] for r in b.rows],
                colWidths=[frame_w * w / total for w in widths],
                repeatRows=1,
            )
            t.setStyle(grid)
            t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#3d5a80"))]))
            story.append(t)
            story.append(Spacer(1, 3 * mm))
        elif isinstance(b, Image):
            img = RLImage(io.BytesIO(b.png))
            img.drawWidth = min(frame_w, 165 * mm)
            img.drawHeight = img.imageHeight * img.drawWidth / img.imageWidth
            story.append(img)
            if b.caption:
                story.append(p(b.caption, caption))

    def decorate(canvas, document) -> None:
        canvas.saveState()
        canvas.setFont(font, 8)
        canvas.setFillColor(colors.grey)
        canvas.drawString(18 * mm, 10 * mm, doc.footer[:150])
        canvas.drawRightString(page_w - 18 * mm, 10 * mm, f"第 {document.page} 页")
        canvas.restoreState()

    out = io.BytesIO()
    SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=doc.title,
        author="Minsheng 民声",
        invariant=1,  # the same document gives the same bytes (no creation time or random id)
    ).build(story, onFirstPage=decorate, onLaterPages=decorate)
    return out.getvalue()


# ---------------------------------------------------------------- DOCX


def to_docx(doc: Document, *, east_asian_font: str = "宋体") -> bytes:
    """The document as a Word file; text is set in an East Asian font the reader's system provides."""
    import docx
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn
    from docx.shared import Cm, Pt, RGBColor

    d = docx.Document()
    section = d.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.left_margin = section.right_margin = Cm(2.5)
    for style_name in ("Normal", "Title", "Heading 1", "Heading 2", "Table Grid"):
        style = d.styles[style_name]
        rpr = style.element.get_or_add_rPr()
        fonts = rpr.find(qn("w:rFonts"))
        if fonts is None:
            fonts = rpr.makeelement(qn("w:rFonts"), {})
            rpr.append(fonts)
        fonts.set(qn("w:eastAsia"), east_asian_font)
        if style_name != "Normal":
            style.font.color.rgb = RGBColor(0x1F, 0x2A, 0x44)
    d.styles["Normal"].font.size = Pt(11)

    t = d.add_paragraph(doc.title, style="Title")
    t.alignment = WD_ALIGN_PARAGRAPH.CENTER
    if doc.subtitle:
        s = d.add_paragraph(doc.subtitle)
        s.alignment = WD_ALIGN_PARAGRAPH.CENTER
    for b in doc.blocks:
        if isinstance(b, Heading):
            d.add_heading(b.text, level=b.level)
        elif isinstance(b, Para):
            para = d.add_paragraph(b.text)
            if b.muted:
                for run in para.runs:
                    run.font.color.rgb = RGBColor(0x80, 0x80, 0x80)
        elif isinstance(b, Fields | Table):
            headers, rows = (
                (None, [list(i) for i in b.items]) if isinstance(b, Fields) else (b.headers, b.rows)
            )
            if not rows and headers is None:
                continue
            ncols = len(headers) if headers else 2
            table = d.add_table(rows=0, cols=ncols, style="Table Grid")
            table.alignment = WD_TABLE_ALIGNMENT.CENTER
            if headers:
                cells = table.add_row().cells
                for c, h in zip(cells, headers, strict=True):
                    c.text = str(h)
                    for run in c.paragraphs[0].runs:
                        run.bold = True
            for r in rows:
                for c, v in zip(table.add_row().cells, r, strict=True):
                    c.text = str(v)
            widths = [0.22, 0.78] if isinstance(b, Fields) else (b.widths or [1.0] * ncols)
            table.autofit = False
            for col, w in zip(table.columns, widths, strict=True):  # the grid (LibreOffice reads this)
                col.width = Cm(16 * w / sum(widths))
            for row in table.rows:  # and each cell (Word reads these)
                for c, w in zip(row.cells, widths, strict=True):
                    c.width = Cm(16 * w / sum(widths))
            d.add_paragraph()
        elif isinstance(b, Image):
            d.add_picture(io.BytesIO(b.png), width=Cm(15))
            d.paragraphs[-1].alignment = WD_ALIGN_PARAGRAPH.CENTER
            if b.caption:
                cap = d.add_paragraph(b.caption)
                cap.alignment = WD_ALIGN_PARAGRAPH.CENTER
    if doc.footer:
        footer = section.footer.paragraphs[0]
        footer.text = doc.footer
    d.core_properties.title = doc.title
    d.core_properties.author = "Minsheng 民声"
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()
