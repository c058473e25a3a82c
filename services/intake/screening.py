"""Junk screening: SEO link farms, porn and gambling spam, advertising, empty or meaningless text.

Works line by line on the normalised text, because scraped pages arrive wrapped in spam lines: a
line whose terms are many and densely packed is spam and is dropped from what grading reads (the
original stays stored). A message with too little left is screened out with the reason. Single
mentions of money, a phone number or even a sensitive word never screen a message: a real complaint
names them; spam piles them up.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.intake.config import Screening, TermCategory

_NOT_MEANINGFUL = re.compile(r"[^\u4e00-\u9fffA-Za-z0-9]+")
_URL = re.compile(r"(?:https?://|www\.)[^\s,，。]+|\b[a-z0-9-]+\.(?:com|net|cc|vip|top|xyz|me|tv)\b", re.I)
_CONTACT = re.compile(
    r"(?<!\d)1[3-9]\d{9}(?!\d)|(?:QQ|qq|扣扣)[:：\s]*\d{5,11}|(?:微信|VX|vx|V信|wx)[号]?[:：\s]*[A-Za-z][\w-]{4,}"
    r"|(?:https?://|www\.)\S+"
)
_SEGMENT_SPLIT = re.compile(r"[_|]")


def meaningful_count(text: str) -> int:
    """CJK characters, letters and digits in a text."""
    return len(_NOT_MEANINGFUL.sub("", text))


def _few_distinct(text: str, limit: int) -> bool:
    """Whether the text's CJK characters, letters and digits are at most `limit` distinct ones (read
    64 characters at a time: a genuine text is told apart by its first ones)."""
    seen: set[str] = set()
    for start in range(0, len(text), 64):
        seen.update(_NOT_MEANINGFUL.sub("", text[start : start + 64]))
        if len(seen) > limit:
            return False
    return True


@dataclass(frozen=True)
class _Term:
    category: str
    weight: float  # 1 for a strong term, 0.5 for a weak one


@dataclass
class Verdict:
    """What screening decided about one message."""

    screened: bool
    reason: str | None
    text: str
    title_spam: bool = False
    removed: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any] | None:
        """What is stored with the message (None when nothing was found)."""
        if not self.screened and not self.removed:
            return None
        return {"reason": self.reason, "removed_lines": self.removed, "title_spam": self.title_spam}


class Screener:
    """Screens normalised text by the bundle's rules."""

    def __init__(self, rules: Screening):
        self.rules = rules
        self.categories: dict[str, TermCategory] = dict(rules.categories)
        terms: dict[str, _Term] = {}
        for name, rule in rules.categories.items():
            for t in rule.weak:
                terms.setdefault(t, _Term(name, 0.5))
            for t in rule.strong:
                terms[t] = _Term(name, 1.0)
        self.terms = terms
        # One alternation for every term of every category, longest first: one pass over each line.
        ordered = sorted(terms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(t) for t in ordered)) if ordered else None

    def _scores(self, line: str) -> dict[str, tuple[float, int]]:
        """Score and distinct hits per category on one line."""
        if self._pattern is None:
            return {}
        found = set(self._pattern.findall(line))
        if not found:
            return {}
        out: dict[str, list] = {}
        for t in found:
            term = self.terms[t]
            acc = out.setdefault(term.category, [0.0, 0])
            acc[0] += term.weight
            acc[1] += 1
        contact = None
        for name, acc in out.items():
            bonus = self.categories[name].contact_bonus
            if bonus:
                if contact is None:
                    contact = _CONTACT.search(line) is not None
                if contact:
                    acc[0] += bonus
        return {k: (v[0], v[1]) for k, v in out.items()}

    def classify_line(self, line: str) -> tuple[str | None, float]:
        """The spam category of one line (None for a genuine line) and its score."""
        return self._classify(line, meaningful_count(line))

    def _classify(self, line: str, meaningful: int) -> tuple[str | None, float]:
        if meaningful == 0:
            return None, 0.0
        scores = self._scores(line)
        best: tuple[str | None, float] = (None, 0.0)
        for name, (score, hits) in scores.items():
            if (
                score >= self.categories[name].min_score
                and meaningful / hits <= self.rules.max_chars_per_hit
                and score > best[1]
            ):
                best = (name, score)
        if best[0] is not None:
            return best
        total_score = sum(score for score, _ in scores.values())
        if self._link_farm(line, total_score):
            return "link_farm", total_score
        return None, total_score

    def _link_farm(self, line: str, term_score: float) -> bool:
        lf = self.rules.link_farm
        if "_" not in line and "|" not in line and "." not in line:
            return False
        urls = _URL.findall(line)
        if len(urls) >= lf.min_urls:
            rest = _URL.sub("", line)
            if meaningful_count(rest) <= 10 * len(urls):
                return True
        if "_" not in line and "|" not in line:
            return False
        segments = [s for s in _SEGMENT_SPLIT.split(line) if s.strip()]
        if len(segments) < lf.min_segments:
            return False
        short = sum(1 for s in segments if len(s) <= lf.max_segment_chars)
        return short >= 0.8 * len(segments) and term_score >= lf.min_term_score

    def screen(self, *, title: str | None, text: str) -> Verdict:
        """Drop spam lines; screen the message out when what is left is empty, meaningless or all spam."""
        rules = self.rules
        if not rules.enabled:
            return Verdict(screened=False, reason=None, text=text)
        removed: list[dict[str, Any]] = []
        kept: list[str] = []
        meaningful = 0  # in the kept lines
        for i, line in enumerate(text.split("\n")):
            count = meaningful_count(line)
            category, score = self._classify(line, count)
            if category is None:
                kept.append(line)
                meaningful += count
            else:
                removed.append({"line": i, "category": category, "score": round(score, 2)})
        title_spam = False
        if title:
            category, score = self.classify_line(title)
            if category is not None:
                title_spam = True
                removed.append({"line": "title", "category": category, "score": round(score, 2)})
        cleaned = "\n".join(kept)
        reason = None
        if meaningful < rules.min_meaningful_chars:
            reason = Counter(r["category"] for r in removed).most_common(1)[0][0] if removed else "empty"
        elif meaningful >= rules.repetition.min_chars and _few_distinct(
            cleaned, rules.repetition.max_distinct_chars
        ):
            reason = "meaningless"
        return Verdict(
            screened=reason is not None,
            reason=reason,
            text=cleaned if reason is None else text,
            title_spam=title_spam,
            removed=removed,
        )
