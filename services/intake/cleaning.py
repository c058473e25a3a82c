"""Text normalisation: what grading reads. The original is always kept beside it."""

import html
import re
import unicodedata
from functools import lru_cache

import opencc

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]+>", re.IGNORECASE | re.DOTALL)
_CONTROL = re.compile(
    r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\ufeff]"
)
_SPACE = re.compile(r"[ \t\u3000\u00a0]+")
_NEWLINES = re.compile(r"\s*\n\s*")
# Scraped pages often carry pinyin glosses after characters, 現(xiàn): a tone mark inside the
# parentheses tells them from real bracketed text.
_PINYIN_GLOSS = re.compile(
    r"(?<=[\u4e00-\u9fff])\((?=[a-zü]*[āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ])[a-zāáǎàēéěèīíǐìōóǒòūúǔùüǖǘǚǜ]{1,7}\)"
)


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalize_text(text: str) -> str:
    """NFKC, pinyin glosses out, Traditional → Simplified, HTML and control characters out, spaces folded."""
    if not text:
        return ""
    s = text
    if "<" in s:
        s = _TAG.sub(" ", s)
    if "&" in s:
        s = html.unescape(s)
    s = unicodedata.normalize("NFKC", s)
    if "(" in s:
        s = _PINYIN_GLOSS.sub("", s)
    s = _t2s().convert(s)
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = _CONTROL.sub("", s)
    s = _SPACE.sub(" ", s)
    s = _NEWLINES.sub("\n", s)
    return s.strip()
