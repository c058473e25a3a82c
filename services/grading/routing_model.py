"""Routing learned from a city's own handling history: which kind of unit, at which level, answered
matters like this one (read from the replies of past messages). It refines the taxonomy's rules with
local practice (who really handles 落户, 地铁线路规划, 小区违建 …); the rules stay the fallback."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.grading.bundle import CITY, Unit
from services.grading.linear import FastLinear, load_file, save_file
from services.grading.places import Places

MODEL_FORMAT = 3  # 3: pickled without joblib; 2: compiled arrays (joblib); 1: the scikit-learn pipeline
LEVELS = ("city", "district", "street")


def level_of(unit: Unit) -> str:
    """city, district or street: the tier a unit works at."""
    if unit.street:
        return "street"
    return "city" if unit.jurisdiction == CITY else "district"


def label_of(unit: Unit) -> str:
    """The learning target: department type at a tier, e.g. education@district."""
    return f"{unit.type}@{level_of(unit)}"


def place_tokens(places: Places) -> str:
    """What the place finding adds to the text the model reads."""
    tokens = []
    if places.streets:
        tokens.append("〔有街道〕")
    if len(places.districts) == 1:
        tokens.append("〔一个区县〕")
    elif len(places.districts) > 1:
        tokens.append("〔多个区县〕")
    elif places.names_city:
        tokens.append("〔全市〕")
    return "".join(tokens)


ROUTE_BODY_CHARS = 600  # the routing model reads the title and this much of the body


def route_text(title: str | None, content: str, places: Places) -> str:
    """What the routing model reads: title, the start of the body, and the place tokens."""
    return f"{title or ''}\n{content[:ROUTE_BODY_CHARS]}{place_tokens(places)}"


def build_pipeline():
    """char 1–2-gram TF-IDF + word-ish 3-grams → calibrated linear SVM."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True, min_df=2)),
            (
                "clf",
                # ~420 answered messages over ~35 labels: strong regularisation (C 0.1; 0.5 before) routes
                # better in 5-fold CV over four shuffles (0.4948 → 0.4981 on average).
                CalibratedClassifierCV(LinearSVC(C=0.1, class_weight="balanced"), cv=3, method="sigmoid"),
            ),
        ]
    )


@dataclass
class RouteModel:
    """A trained routing model."""

    compiled: Any  # linear.FastLinear
    labels: list[str]
    trained_at: datetime
    samples: int
    source: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    # Place words (小区, roads, villages) of past messages → the street office that answered them.
    street_memory: dict[str, dict[str, int]] = field(default_factory=dict)

    def street_for(self, words: list[str]) -> tuple[str, int] | None:
        """The street office past messages with these place words went to (votes), if any."""
        votes: dict[str, int] = {}
        for w in set(words):
            for street, n in self.street_memory.get(w, {}).items():
                votes[street] = votes.get(street, 0) + n
        if not votes:
            return None
        return max(votes.items(), key=lambda kv: kv[1])

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) of the best label per text."""
        return [ranked[0] for ranked in self.ranked(texts)]

    def ranked(self, texts: list[str], top: int = 3) -> list[list[tuple[str, float]]]:
        """The `top` most likely (label, probability) per text, best first."""
        probs = self.compiled.predict_proba(texts)
        classes = self.compiled.classes
        out = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:top]
            out.append([(classes[i], float(row[i])) for i in order])
        return out

    def save(self, path: Path) -> None:
        """Write the model atomically."""
        save_file(path, self, format_=MODEL_FORMAT, kind="routing")

    @staticmethod
    def load(path: Path) -> "RouteModel":
        """Read a model written by `save`."""
        return load_file(path, format_=MODEL_FORMAT, kind="routing")


MEMORY_MIN_VOTES = 2  # a place word seen once with a street may be chance


def memory_words(title: str) -> list[str]:
    """Words of a title that can name a place (two or more characters, not generic)."""
    from services.grading.text import words

    return [w for w in words(title) if len(w) >= 3]


def train_route_model(
    *,
    texts: list[str],
    labels: list[str],
    source: str = "",
    streets: list[tuple[str, str | None]] | None = None,
) -> RouteModel:
    """Fit on (text + place tokens, label) pairs; labels seen fewer than 3 times are left out.
    `streets`: (title, street name) of past messages, the street None when another unit than a street
    office answered, for the place memory."""
    from collections import Counter

    counts = Counter(labels)
    keep = [i for i, lb in enumerate(labels) if counts[lb] >= 3]
    pipeline = build_pipeline()
    pipeline.fit([texts[i] for i in keep], [labels[i] for i in keep])
    word_streets: dict[str, dict[str, int]] = {}
    elsewhere: Counter = Counter()
    for title, street in streets or ():
        for w in set(memory_words(title)):
            if street is None:
                elsewhere[w] += 1
                continue
            word_streets.setdefault(w, {}).setdefault(street, 0)
            word_streets[w][street] += 1
    # A word that points at many streets, or also at other units (幼儿园, 开发商), names no place.
    memory = {
        w: v
        for w, v in word_streets.items()
        if len(v) == 1 and not elsewhere[w] and sum(v.values()) >= MEMORY_MIN_VOTES
    }
    return RouteModel(
        compiled=FastLinear.from_tfidf_pipeline(pipeline),
        labels=[str(c) for c in pipeline.classes_],
        trained_at=datetime.now(UTC),
        samples=len(keep),
        source=source,
        street_memory=memory,
    )
