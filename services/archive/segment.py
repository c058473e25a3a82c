"""Chinese word segmentation for the full-text index and highlighted snippets (jieba's dictionary and
algorithm, by its Rust implementation rjieba: the same words, ~15 times faster, ~60 MB less memory;
kit.segmenter builds it).

Documents and queries are cut the same way (search mode, no HMM guessing) so that a word of the query
is a word of the document whatever the context; the index stores the words separated by spaces, which
PostgreSQL's 'simple' configuration and SQLite's FTS5 unicode61 tokenizer both split on.
"""

import html
import logging
import re
from functools import lru_cache

from kit.segmenter import segmenter

log = logging.getLogger("minsheng.archive.segment")

_WORD = re.compile(r"\w", re.UNICODE)


def warm_up() -> None:
    """Segment once, so the first dossier or query does not pay for loading the dictionary."""
    segmenter().cut_for_search("预热分词词典", hmm=False)


def tokens(text: str) -> list[str]:
    """The words of a text, lower-cased, punctuation and spaces dropped, in order (with repeats)."""
    out = []
    for w in segmenter().cut_for_search(text, hmm=False):
        w = w.strip().lower()
        if w and _WORD.search(w):
            out.append(w)
    return out


@lru_cache(maxsize=8192)
def _part_tokens(part: str) -> tuple[str, ...]:
    # Unit names, categories and the texts of re-closed incidents repeat: segment each once.
    return tuple(tokens(part))


def index_text(parts: list[str], *, max_chars: int) -> str:
    """The segmented text stored in the full-text index: each part's words, separated by spaces."""
    out: list[str] = []
    budget = max_chars
    for part in parts:
        if not part or budget <= 0:
            continue
        part = part[:budget]
        budget -= len(part)
        out.extend(_part_tokens(part))
    return " ".join(out)


def clear_cache() -> None:
    """Forget the segmented parts (benchmarks measure cold segmentation)."""
    _part_tokens.cache_clear()


def query_terms(q: str) -> list[str]:
    """The distinct words of a search query, in order; every one must occur in a hit."""
    seen: dict[str, None] = {}
    for w in tokens(q):
        seen.setdefault(w, None)
    return list(seen)


def fts5_match(terms: list[str]) -> str:
    """An FTS5 MATCH expression requiring every term (each quoted, so no term is read as syntax)."""
    return " AND ".join('"' + t.replace('"', '""') + '"' for t in terms)


def highlight(text: str, terms: list[str], *, width: int = 120) -> str | None:
    """An HTML-escaped window of `text` around the best cluster of terms, each hit wrapped in <em>.

    None when no term occurs in the text.
    """
    if not text or not terms:
        return None
    # Longest first, so "停水" is marked whole rather than as "停" + "水".
    pattern = re.compile("|".join(re.escape(t) for t in sorted(set(terms), key=len, reverse=True)), re.I)
    hits = [(m.start(), m.end()) for m in pattern.finditer(text)]
    if not hits:
        return None
    # The window that covers the most distinct terms, starting at a hit.
    best_start, best_score = hits[0][0], -1
    for s, _ in hits:
        found = {text[a:b].lower() for a, b in hits if s <= a and b <= s + width}
        if len(found) > best_score:
            best_start, best_score = s, len(found)
    start = max(0, best_start - width // 4)
    end = min(len(text), start + width)
    spans: list[list[int]] = []  # hits in the window, touching ones merged: <em>档案检索</em>
    for a, b in hits:
        if a < start or b > end or (spans and a < spans[-1][1]):
            continue
        if spans and a == spans[-1][1]:
            spans[-1][1] = b
        else:
            spans.append([a, b])
    out, pos = [], start
    for a, b in spans:
        out.append(html.escape(text[pos:a]))
        out.append(f"<em>{html.escape(text[a:b])}</em>")
        pos = b
    out.append(html.escape(text[pos:end]))
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(text) else ""
    return prefix + "".join(out).replace("\n", " ") + suffix
