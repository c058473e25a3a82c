"""Alert texts: one Chinese template per event, filled and shortened to fit the SMS segment budget."""

import math
from dataclasses import dataclass

from services.notify.policy import Template

SINGLE_SEGMENT = 70  # characters of one SMS (UCS-2, Chinese)
PART_SEGMENT = 67  # characters per part once an SMS is cut in parts (the rest carries the join header)
# Free-text fields, in the order they give way when an SMS is too long.
SHRINKABLE = ("title", "items", "summary", "note", "progress", "unit")


def sms_segments(text: str) -> int:
    """How many SMS parts a text takes (70 characters alone, 67 per part when concatenated)."""
    n = len(text)
    if n <= SINGLE_SEGMENT:
        return 1
    return math.ceil(n / PART_SEGMENT)


def sms_text(sign: str, text: str) -> str:
    """The SMS as the phone shows it: the sign name in 【】 and the text."""
    return f"【{sign}】{text}" if sign else text


@dataclass(frozen=True)
class Rendered:
    """A filled template: the text everyone reads, and the template variables providers get."""

    text: str
    params: dict[str, str]
    segments: int


class _Missing(dict):
    def __missing__(self, key):
        return ""


def _fill(template: Template, values: dict[str, str]) -> str:
    return template.text.format_map(_Missing(values))


def render(
    template: Template, values: dict[str, object], *, sign: str = "", max_segments: int = 0
) -> Rendered:
    """Fill a template; with max_segments, shorten free-text fields until the SMS fits in that many parts."""
    vals = {k: "" if v is None else str(v) for k, v in values.items()}
    text = _fill(template, vals)
    if max_segments > 0:
        for name in SHRINKABLE:
            if sms_segments(sms_text(sign, text)) <= max_segments:
                break
            if not vals.get(name):
                continue
            over = len(sms_text(sign, text)) - _budget(max_segments)
            keep = max(4, len(vals[name]) - over - 1)
            if keep < len(vals[name]):
                vals[name] = vals[name][:keep] + "…"
                text = _fill(template, vals)
    params = {p: vals.get(p, "") for p in template.params}
    return Rendered(text=text, params=params, segments=sms_segments(sms_text(sign, text)))


def _budget(max_segments: int) -> int:
    return SINGLE_SEGMENT if max_segments <= 1 else PART_SEGMENT * max_segments
