"""The CJK font for PDFs and charts.

Looked for in this order: the configured file (ARCHIVE_CJK_FONT_PATH); the WenQuanYi Micro Hei font
shipped in a PyPI package of the `archive` dependency group, so a fresh install needs no system fonts;
a CJK font the system has (fontconfig's list via matplotlib). Without any, PDFs fall back to
reportlab's built-in STSong-Light (a CID font the reader supplies, not embedded) and charts may show
boxes instead of characters; this is logged at start-up.
"""

import importlib.resources
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("minsheng.archive.fonts")

_PACKAGED = [("paperang_p2_fonts_cjk", "fonts/wqy-microhei.ttc")]
_SYSTEM_HINTS = (
    "Noto Sans CJK",
    "Noto Serif CJK",
    "WenQuanYi",
    "Source Han",
    "SimSun",
    "SimHei",
    "Microsoft YaHei",
)
PDF_FONT = "MinshengCJK"
PDF_FALLBACK = "STSong-Light"


@dataclass
class CJKFont:
    """The font found: its file (None when only the PDF fallback is left) and the PDF font name."""

    path: Path | None
    pdf_name: str
    family: str | None = None


_lock = threading.Lock()
_cache: dict[str, CJKFont] = {}


def _candidates(configured: Path | None) -> list[Path]:
    out = ([configured] if configured else []) + _packaged()
    try:
        from matplotlib import font_manager

        for f in font_manager.fontManager.ttflist:
            if any(h in f.name for h in _SYSTEM_HINTS):
                out.append(Path(f.fname))
    except Exception:  # matplotlib missing or its cache unreadable: the other candidates remain
        log.debug("no system font list", exc_info=True)
    return [p for p in out if p and p.is_file()]


def check_font_file(configured: Path | None = None) -> Path | None:
    """At start-up, cheaply: the configured or packaged font file, or a warning that there is none."""
    if configured is not None and not configured.is_file():
        log.warning(
            "ARCHIVE_CJK_FONT_PATH %s is not a file: the packaged or a system font is used", configured
        )
    for path in ([configured] if configured else []) + _packaged():
        if path.is_file():
            return path
    log.warning("no packaged CJK font: the first PDF looks for a system font (else %s)", PDF_FALLBACK)
    return None


def _packaged() -> list[Path]:
    out = []
    for package, rel in _PACKAGED:
        try:
            out.append(Path(str(importlib.resources.files(package) / rel)))
        except (ModuleNotFoundError, TypeError):
            continue
    return out


def cjk_font(configured: Path | None = None) -> CJKFont:
    """Find and register the font once per process (reportlab and matplotlib both get it)."""
    key = str(configured or "")
    with _lock:
        if key in _cache:
            return _cache[key]
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont
        from reportlab.pdfbase.ttfonts import TTFError, TTFont

        font = None
        for path in _candidates(configured):
            try:
                pdfmetrics.registerFont(TTFont(PDF_FONT, str(path), subfontIndex=0))
            except (TTFError, OSError) as exc:  # e.g. an OpenType/CFF file reportlab cannot embed
                log.warning("font %s is not usable for PDF: %s", path, exc)
                continue
            family = None
            try:
                from matplotlib import font_manager

                font_manager.fontManager.addfont(str(path))
                family = font_manager.FontProperties(fname=str(path)).get_name()
            except Exception:
                log.warning("font %s is not usable for charts", path, exc_info=True)
            font = CJKFont(path=path, pdf_name=PDF_FONT, family=family)
            break
        if font is None:
            log.warning("no CJK font file found: PDFs use the reader's %s, charts may lack CJK", PDF_FALLBACK)
            pdfmetrics.registerFont(UnicodeCIDFont(PDF_FALLBACK))
            font = CJKFont(path=None, pdf_name=PDF_FALLBACK)
        _cache[key] = font
        return font
