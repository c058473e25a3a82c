"""What a matter is about: a trainable category classifier with a cold start from the taxonomy's terms.

The trained model (character n-gram TF-IDF plus taxonomy-term features, a calibrated linear SVM)
predicts the level-1 category a city labelled its history with; the taxonomy's terms choose level 2
and 3 under it and give the cold start when there is no model. Request types come from policy terms.
"""

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from schema.enums import RequestType
from services.grading.bundle import OTHER, Bundle, CategoryPath
from services.grading.linear import TITLE_WEIGHT, FastLinear, load_file, save_file
from services.grading.linear import title_body as _title_body
from services.grading.text import TermMatcher

log = logging.getLogger("minsheng.grading.classifier")

MODEL_FORMAT = 3  # 3: pickled without joblib; 2: compiled arrays (joblib); 1: the scikit-learn pipeline


@dataclass
class Prediction:
    """A category decision with its confidence and the runners-up."""

    path: CategoryPath | None
    confidence: float
    runners_up: list[tuple[str, float]] = field(default_factory=list)
    low_confidence: bool = True
    source: str = "cold_start"  # model | cold_start | hint | none
    department_scores: dict[str, float] = field(default_factory=dict)
    category_scores: dict[str, float] = field(default_factory=dict)  # path label → its terms' weight


class TaxonomyIndex:
    """The taxonomy's terms, indexed for level-1 scores, path choice and department scores."""

    def __init__(self, bundle: Bundle):
        self.level1 = list(bundle.paths_by_level1)
        self.paths = bundle.categories
        # term → [(level1, weight)] and term → [(path index, weight)]
        l1_terms: dict[str, set[str]] = {}
        path_terms: dict[str, list[tuple[int, float]]] = {}
        for name, terms in bundle.level1_terms.items():
            for t in terms:
                l1_terms.setdefault(t, set()).add(name)
        for i, p in enumerate(self.paths):
            own = [p.level3] if p.level3 != OTHER else []
            for t in (*own, *p.terms):
                path_terms.setdefault(t, []).append((i, 3.0))
                l1_terms.setdefault(t, set()).add(p.level1)
            for t in ((p.level2,) if p.level2 != OTHER else ()) + p.level2_terms:
                path_terms.setdefault(t, []).append((i, 1.5))
                l1_terms.setdefault(t, set()).add(p.level1)
        self.l1_terms = {t: sorted(v) for t, v in l1_terms.items()}
        self.path_terms = path_terms
        self.matcher = TermMatcher([*self.l1_terms, *self.path_terms])

    def hits(self, text: str) -> list[tuple[str, float]]:
        """(term, weight) for each occurrence; title occurrences weigh more."""
        title, body = _title_body(text)
        return [(t, TITLE_WEIGHT) for t in self.matcher.find(title)] + [
            (t, 1.0) for t in self.matcher.find(body)
        ]

    def level1_scores(self, text: str, hits: list[tuple[str, float]] | None = None) -> dict[str, float]:
        """Level-1 categories by the weight of their terms in the text (a term shared by k splits)."""
        scores: dict[str, float] = {}
        for term, w in hits if hits is not None else self.hits(text):
            owners = self.l1_terms.get(term, ())
            for name in owners:
                scores[name] = scores.get(name, 0.0) + w / len(owners)
        return scores

    def path_scores(self, hits: list[tuple[str, float]]) -> dict[int, float]:
        """Paths by the weight of their level-2/3 terms."""
        scores: dict[int, float] = {}
        for term, w in hits:
            for i, pw in self.path_terms.get(term, ()):
                scores[i] = scores.get(i, 0.0) + w * pw
        return scores

    def best_path(self, level1: str, path_scores: dict[int, float]) -> CategoryPath:
        """The level-2/3 under a level-1 whose terms weigh most; its 其他 when none appears."""
        best, best_score = None, 0.0
        for i, s in path_scores.items():
            p = self.paths[i]
            if p.level1 == level1 and s > best_score:
                best, best_score = p, s
        if best is not None:
            return best
        fallback = [p for p in self.paths if p.level1 == level1]
        for p in fallback:
            if p.level2 == OTHER:
                return p
        return fallback[0]

    def department_scores(self, path_scores: dict[int, float]) -> dict[str, float]:
        """Department types by the weight of their categories' terms (for co-handlers)."""
        out: dict[str, float] = {}
        for i, s in path_scores.items():
            t = self.paths[i].department_type
            out[t] = max(out.get(t, 0.0), s)
        return out


MODEL_BODY_CHARS = 600  # the character model reads this much of the body (the matter is stated early)


def title_boost(text: str) -> str:
    """The title twice more (it names the matter) and the start of the body: what the model reads."""
    title, body = _title_body(text)
    return f"{title}\n{title}\n{title}\n{body[:MODEL_BODY_CHARS]}"


@dataclass
class CategoryModel:
    """A trained level-1 model (compiled: no scikit-learn needed to use it) and what it was trained on."""

    compiled: FastLinear
    labels: list[str]
    trained_at: datetime
    samples: int
    source: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def predict_proba(
        self, texts: list[str], level1_scores: list[dict[str, float]] | None = None
    ) -> np.ndarray:
        """Probabilities per label (columns in `self.labels` order)."""
        return self.compiled.predict_proba(texts, level1_scores)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_terms_match", None)
        return state

    def save(self, path: Path) -> None:
        """Write the model atomically."""
        save_file(path, self, format_=MODEL_FORMAT)

    @staticmethod
    def load(path: Path) -> "CategoryModel":
        """Read a model written by `save`."""
        return load_file(path, format_=MODEL_FORMAT)


class Classifier:
    """Category and request type for a message, from a trained model or the taxonomy alone."""

    def __init__(self, bundle: Bundle, model: CategoryModel | None = None):
        self.bundle = bundle
        self.policy = bundle.policy
        self.index = TaxonomyIndex(bundle)
        known = set(self.index.level1)
        self.model = model
        self.model_labels = [lb for lb in model.labels if lb in known] if model else []
        if model is not None and len(self.model_labels) != len(model.labels):
            log.warning("the model knows categories the taxonomy lacks: %s", set(model.labels) - known)
        self.request_terms = {
            rt: TermMatcher(terms) for rt, terms in self.policy.request_types.items() if terms
        }
        self.by_name = {p.level1: p for p in bundle.categories}

    @property
    def mode(self) -> str:
        """`model` when a trained model is loaded, else `cold_start`."""
        return "model" if self.model is not None else "cold_start"

    def classify(self, text: str, *, hint: str | None = None) -> Prediction:
        """The category of one text (title on the first line)."""
        return self.classify_many([text], hints=[hint])[0]

    def classify_many(self, texts: list[str], *, hints: list[str | None] | None = None) -> list[Prediction]:
        """Categories of several texts (one model call for all)."""
        hints = hints or [None] * len(texts)
        hits = [self.index.hits(t) for t in texts]
        colds = [self.index.level1_scores(t, h) for t, h in zip(texts, hits, strict=True)]
        probs = None
        if self.model is not None:
            same_terms = self.model.__dict__.get("_terms_match")
            if same_terms is None:
                tax = self.model.compiled.taxonomy
                same_terms = self.model.__dict__["_terms_match"] = tax.l1_terms == self.index.l1_terms
            probs = self.model.predict_proba(texts, colds if same_terms else None)
        out = []
        for i, text in enumerate(texts):
            row = probs[i] if probs is not None else None
            out.append(self._decide(text, hints[i], row, hits[i], colds[i]))
        return out

    def _decide(
        self, text: str, hint: str | None, row: np.ndarray | None, hits: list, cold: dict[str, float]
    ) -> Prediction:
        policy = self.policy.classifier
        path_scores = self.index.path_scores(hits)
        depts = self.index.department_scores(path_scores)
        by_label = {self.index.paths[i].label: s for i, s in path_scores.items()}
        hinted = self._from_hint(hint)
        if hinted is not None:
            return Prediction(hinted, 1.0, [], False, "hint", depts, by_label)
        ranked: list[tuple[str, float]]
        source = "cold_start"
        if row is not None:
            ranked = sorted(
                ((lb, float(p)) for lb, p in zip(self.model.labels, row, strict=True) if lb in self.by_name),
                key=lambda x: -x[1],
            )
            source = "model"
            top_cold = max(cold.items(), key=lambda kv: kv[1], default=(None, 0.0))
            # The model knows only the categories of its training data: a strong cold-start signal for
            # another category wins over it.
            if (
                top_cold[0] is not None
                and top_cold[0] not in self.model.labels
                and ranked[0][1] < policy.low_confidence
                and top_cold[1] >= 3 * policy.cold_start_min_hits
                and top_cold[1] > 1.5 * cold.get(ranked[0][0], 0.0)
            ):
                ranked = self._cold_ranking(cold)
                source = "cold_start"
        else:
            ranked = self._cold_ranking(cold)
        if not ranked or (
            source == "cold_start" and cold.get(ranked[0][0], 0.0) < policy.cold_start_min_hits
        ):
            return Prediction(None, 0.0, ranked[: policy.runners_up], True, "none", depts, by_label)
        label, confidence = ranked[0]
        path = self.index.best_path(label, path_scores)
        return Prediction(
            path=path,
            confidence=round(confidence, 4),
            runners_up=[(lb, round(p, 4)) for lb, p in ranked[1 : 1 + policy.runners_up]],
            low_confidence=confidence < policy.low_confidence,
            source=source,
            department_scores=depts,
            category_scores=by_label,
        )

    @staticmethod
    def _cold_ranking(cold: dict[str, float]) -> list[tuple[str, float]]:
        """Cold-start scores as a distribution (softmax-like share with one pseudo-count)."""
        if not cold:
            return []
        total = sum(math.exp(min(v, 30)) for v in cold.values()) + 1.0
        return sorted(((k, math.exp(min(v, 30)) / total) for k, v in cold.items()), key=lambda x: -x[1])

    def _from_hint(self, hint: str | None) -> CategoryPath | None:
        """A channel's category hint that names a taxonomy entry exactly."""
        if not hint:
            return None
        parts = [p for p in hint.replace(">", "/").split("/") if p]
        for p in self.bundle.categories:
            names = (p.level1, p.level2, p.level3)
            if parts == list(names[: len(parts)]):
                return p if len(parts) == 3 else self.index.best_path(p.level1, {}) if len(parts) == 1 else p
        return None

    def request_type(self, text: str) -> RequestType:
        """咨询/求助/投诉/举报/建议/表扬 from the policy's terms; the policy default when none appears."""
        title, body = _title_body(text)
        best, best_score = None, 0.0
        for rt, matcher in self.request_terms.items():
            score = TITLE_WEIGHT * len(matcher.find(title)) + len(matcher.find(body[:400]))
            if score > best_score:
                best, best_score = rt, score
        return best or self.policy.request_type_default


def model_info(model: CategoryModel | None, route_model: Any = None) -> dict[str, Any]:
    """What an operator sees of the loaded models."""
    routing = (
        {"routing": {"samples": route_model.samples, "trained_at": route_model.trained_at.isoformat()}}
        if route_model is not None
        else {"routing": None}
    )
    if model is None:
        return {"mode": "cold_start", **routing}
    return {
        **routing,
        "mode": "model",
        "labels": model.labels,
        "samples": model.samples,
        "trained_at": model.trained_at.isoformat(),
        "source": model.source,
        "metrics": model.metrics,
    }
