"""How well routing agrees with who really answered: the unit a reply names, read where it can be.

A reply often names the unit that answered: in its signature ("A8县住房保障局 2014年3月14日"), as the
subject of the investigation ("经A5区教育局核实", "洞井街道高度重视"), or as "我局/我街道" beside a
unit named in full. Relative names ("区教育局", "县公安局", "市城管局") are resolved with the district
the message names. Replies that name no unit of the directory are left out and counted.
"""

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from schema.enums import Channel
from schema.events import MessageReceivedData
from services.grading.bundle import CITY, Bundle, Unit
from services.grading.grader import Engine
from services.grading.routing_model import label_of, route_text, train_route_model
from services.grading.text import TermMatcher, message_text

_SUBJECT_AFTER = re.compile(
    r"^(?:高度重视|非常重视|十分重视|立即|收到|接到|已|对此|组织|联合|调查|核实|经|工作人员|现场|及时)"
)
_SUBJECT_BEFORE = re.compile(r"(?:经|由|我们?|据|已转|交由|责成|要求|根据)$")
_TAIL = 40  # characters at the end of a reply where its signature sits


@dataclass
class Mention:
    """A unit named in a reply."""

    start: int
    end: int
    unit: Unit
    text: str


@dataclass
class Agreement:
    """Routing compared with the replies."""

    messages: int = 0
    outside_city: int = 0  # messages that name no place of the city (other cities): not comparable
    readable: int = 0
    lead_agrees: int = 0
    lead_or_co_agrees: int = 0
    same_jurisdiction: int = 0
    by_rule: Counter = field(default_factory=Counter)
    agree_by_rule: Counter = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        r = self.readable or 1
        return {
            "messages": self.messages,
            "outside_city": self.outside_city,
            "readable": self.readable,
            "lead_agreement": round(self.lead_agrees / r, 4),
            "lead_or_co_agreement": round(self.lead_or_co_agrees / r, 4),
            "jurisdiction_agreement": round(self.same_jurisdiction / r, 4),
            "by_rule": {k: f"{self.agree_by_rule[k]}/{v}" for k, v in self.by_rule.most_common()},
        }


class ReplyReader:
    """Finds directory units named in reply texts."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.full: dict[str, Unit] = {}
        for u in bundle.units.values():
            for n in (u.name, *u.aliases):
                self.full.setdefault(n, u)
        # <jurisdiction name><type alias>, e.g. A7县教育局, A市城管局
        juris = {CITY: (*bundle.city_aliases[:1], bundle.city_name)}
        for d in bundle.districts.values():
            juris[d.code] = (d.name, *d.aliases)
        for code, names in juris.items():
            for t in bundle.types.values():
                unit = bundle.unit_for(jurisdiction=code, department_type=t.code)
                if unit is None:
                    continue
                for n in names:
                    for a in t.aliases:
                        if len(a) >= 2:
                            self.full.setdefault(f"{n}{a}", unit)
        for d in bundle.districts.values():
            for s in d.streets:
                unit = bundle.street_unit(s.name)
                if unit is None:
                    continue
                for n in (s.name, *s.aliases):
                    for form in (n, f"{d.name}{n}", f"{n}办事处", f"{n}人民政府", f"{n}政府"):
                        self.full.setdefault(form, unit)
        self.relative: dict[str, tuple[str, str]] = {}  # 区教育局 → (区, education)
        for t in bundle.types.values():
            if t.code in ("street", "government", "dispatch"):
                continue
            for a in t.aliases:
                if len(a) >= 3 or a.endswith("局"):
                    for level in ("市", "区", "县"):
                        self.relative.setdefault(f"{level}{a}", (level, t.code))
        self.matcher = TermMatcher([*self.full, *self.relative])

    def mentions(self, reply: str, district: str | None, *, county_city: bool = False) -> list[Mention]:
        """Units named in a reply, in order (relative names need the message's district).

        `county_city`: the message's district is a county-level city (A9市), whose own bureaus a
        reply calls 市教育局 as A市's are called."""
        out = []
        for m in self.matcher.pattern.finditer(reply) if self.matcher.pattern else ():
            name = m.group(0)
            unit = self.full.get(name)
            if unit is None and name in self.relative:
                level, dept = self.relative[name]
                jur = (district if county_city else CITY) if level == "市" else district
                if jur is None:
                    continue
                unit = self.bundle.unit_for(jurisdiction=jur, department_type=dept)
            if unit is not None and unit.type != "dispatch":
                out.append(Mention(m.start(), m.end(), unit, name))
        return out

    def answering_unit(
        self, reply: str, district: str | None, *, county_city: bool = False
    ) -> Mention | None:
        """The unit that answered: the signature, else the subject of the handling, else the first named."""
        found = self.mentions(reply, district, county_city=county_city)
        specific = [m for m in found if m.unit.type != "government"] or found
        if not specific:
            return None
        tail = [m for m in specific if m.end >= len(reply.rstrip()) - _TAIL]
        if tail:
            return tail[-1]
        for m in specific:
            if _SUBJECT_AFTER.match(reply[m.end : m.end + 6]) or _SUBJECT_BEFORE.search(
                reply[max(0, m.start - 3) : m.start]
            ):
                return m
        return specific[0]


@dataclass
class HistoryItem:
    """A past message whose reply names the unit that answered."""

    msg: MessageReceivedData
    truth: Mention
    route_text: str  # what the routing model reads: text + place tokens
    title: str


def read_history(
    *, engine: Engine, path: Path, limit: int | None = None
) -> tuple[list[HistoryItem], Agreement]:
    """Messages of the city whose reply names a directory unit (and the counts of the rest)."""
    reader = ReplyReader(engine.bundle)
    result = Agreement()
    items = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if limit is not None and n >= limit:
                break
            row = json.loads(line)
            result.messages += 1
            msg = MessageReceivedData(
                message_id=str(row.get("id", n)),
                tracking_code="eval",
                channel=Channel.portal,
                title=row.get("title"),
                content=row.get("body") or "",
                received_at=datetime.fromisoformat(row["time"])
                if row.get("time")
                else datetime.now().astimezone(),
            )
            text = message_text(msg.title, msg.content)
            places = engine.locator.locate(text, title=msg.title)
            if not places.in_city:
                result.outside_city += 1
                continue
            district = places.districts[0] if len(places.districts) == 1 else None
            county_city = district is not None and any(w.endswith("市") for w in places.evidence[district])
            truth = reader.answering_unit(row.get("reply") or "", district, county_city=county_city)
            if truth is None:
                continue
            items.append(
                HistoryItem(msg, truth, route_text(msg.title, msg.content, places), row.get("title") or "")
            )
    result.readable = len(items)
    return items, result


def compare(*, engine: Engine, items: list[HistoryItem], result: Agreement, examples: int = 0) -> Agreement:
    """Route each item and count agreement with the unit its reply names."""
    for it in items:
        g = engine.grade(it.msg)
        truth = it.truth
        result.by_rule[g.route.rule] += 1
        routed = {g.route.lead.code, *(u.code for u in g.route.co)}
        if g.route.lead.code == truth.unit.code:
            result.lead_agrees += 1
            result.agree_by_rule[g.route.rule] += 1
        if truth.unit.code in routed:
            result.lead_or_co_agrees += 1
        if g.route.lead.jurisdiction == truth.unit.jurisdiction:
            result.same_jurisdiction += 1
        if len(result.examples) < examples and g.route.lead.code != truth.unit.code:
            result.examples.append(
                {
                    "title": it.title,
                    "routed": g.route.lead.name,
                    "reason": g.route.reason,
                    "reply_names": truth.text,
                    "reply_unit": truth.unit.name,
                }
            )
    return result


def evaluate_routing(*, engine: Engine, path: Path, limit: int | None = None, examples: int = 0) -> Agreement:
    """Route every message of a replies file with the engine as it is and compare with the replies."""
    items, result = read_history(engine=engine, path=path, limit=limit)
    return compare(engine=engine, items=items, result=result, examples=examples)


def cross_validate_routing(*, engine: Engine, path: Path, folds: int = 5, seed: int = 0) -> Agreement:
    """k-fold: learn routing from the other folds' replies, route the held-out fold with it."""
    from sklearn.model_selection import KFold

    items, result = read_history(engine=engine, path=path)
    for train_idx, test_idx in KFold(folds, shuffle=True, random_state=seed).split(items):
        train = [items[i] for i in train_idx]
        model = train_route_model(
            texts=[i.route_text for i in train],
            labels=[label_of(i.truth.unit) for i in train],
            streets=street_pairs(train),
        )
        fold_engine = Engine(
            engine.bundle, engine.classifier.model, route_model=model, timezone=engine.timezone
        )
        compare(engine=fold_engine, items=[items[i] for i in test_idx], result=result)
    return result


def street_pairs(items: list[HistoryItem]) -> list[tuple[str, str | None]]:
    """(title, street) of the items, the street None when another unit than a street office answered."""
    return [(i.title, i.truth.unit.street or None) for i in items]


def history_training_set(
    *, engine: Engine, path: Path
) -> tuple[list[str], list[str], list[tuple[str, str | None]]]:
    """(route texts, labels, street pairs) to train the routing model on a replies file."""
    items, _ = read_history(engine=engine, path=path)
    return [i.route_text for i in items], [label_of(i.truth.unit) for i in items], street_pairs(items)
