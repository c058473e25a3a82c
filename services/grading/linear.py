"""Trained linear models in a form that predicts without scikit-learn.

Training uses scikit-learn (TF-IDF, calibrated linear SVM); what is saved and loaded is only the fitted
numbers (vocabulary, idf, coefficients, sigmoid calibration) and these small classes, so the running
service never imports scikit-learn or SciPy (≈ 100 MB less resident memory) and predicts in ~0.1 ms a
message instead of ~7 (no per-call validation or sparse-matrix building). The coefficients are kept in
8 bits, so probabilities are within 0.01 of the fitted pipeline's `predict_proba`, with the same best
label (a test compares them).
"""

import copy
import pickle
import re
from collections import Counter
from typing import Any

import numpy as np

from services.grading.text import TermMatcher

TITLE_WEIGHT = 2.0  # a term in the title says more about the matter than one in the body
_WHITE_SPACES = re.compile(r"\s\s+")


def title_body(text: str) -> tuple[str, str]:
    """The first line (title) and the rest."""
    title, _, body = text.partition("\n")
    return title, body


class CharNgrams:
    """scikit-learn's `analyzer="char"`: lower-cased, runs of white space made one, 1…n-grams."""

    def __init__(self, ngram_range: tuple[int, int], lowercase: bool = True):
        self.ngram_range = tuple(ngram_range)
        self.lowercase = lowercase

    def _fold(self, text: str) -> str:
        if self.lowercase:
            text = text.lower()
        return _WHITE_SPACES.sub(" ", text)

    def __call__(self, text: str) -> list[str]:
        text = self._fold(text)
        low, high = self.ngram_range
        grams = list(text) if low == 1 else []
        for n in range(max(low, 2), min(high + 1, len(text) + 1)):
            grams.extend(text[i : i + n] for i in range(len(text) - n + 1))
        return grams

    @property
    def encodable(self) -> bool:
        """Whether every n-gram fits one 64-bit code (n ≤ 3)."""
        return self.ngram_range[1] <= MAX_CODED_N

    def codes(self, text: str) -> np.ndarray:
        """The same n-grams as 64-bit codes (`gram_code`), computed with numpy."""
        text = self._fold(text)
        chars = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        chars += 1
        low, high = self.ngram_range
        parts = []
        for n in range(low, min(high, len(chars)) + 1):
            m = len(chars) - n + 1
            code = chars[:m].copy()
            for k in range(1, n):
                code |= chars[k : k + m] << (_CHAR_BITS * k)
            parts.append(code)
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


# A code point + 1 takes at most 21 bits, so up to three characters make one non-negative int64 and
# grams of different lengths never share a code (the last character is never 0).
_CHAR_BITS = 21
MAX_CODED_N = 3


def gram_code(gram: str) -> int:
    """The 64-bit code of an n-gram of at most three characters."""
    return sum((ord(c) + 1) << (_CHAR_BITS * k) for k, c in enumerate(gram))


class TermFeatures:
    """Log-scaled level-1 term weights of a text: the taxonomy's knowledge as model features."""

    def __init__(
        self, level1: list[str] | None = None, l1_terms: dict[str, list[str]] | None = None, weight=0.5
    ):
        self.level1 = level1
        self.l1_terms = l1_terms
        self.weight = weight

    def _matcher(self) -> TermMatcher:
        m = self.__dict__.get("_m")
        if m is None:
            m = self.__dict__["_m"] = TermMatcher(self.l1_terms or {})
        return m

    def dense(self, text: str) -> np.ndarray:
        """The features of one text as a dense row."""
        index = self.__dict__.get("_index")
        if index is None:
            index = self.__dict__["_index"] = {name: i for i, name in enumerate(self.level1 or [])}
        matcher = self._matcher()
        out = np.zeros(len(index))
        title, body = title_body(text)
        for part, w in ((title, TITLE_WEIGHT), (body, 1.0)):
            for term in matcher.find(part):
                owners = self.l1_terms[term]
                for name in owners:
                    out[index[name]] += w / len(owners)
        return np.log1p(out) * self.weight

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_m", None)
        state.pop("_index", None)
        return state


def _calibrated_heads(head) -> list[tuple]:
    """(coef, intercept, sigmoid a, sigmoid b, class index) of each fold of a sigmoid-calibrated SVM."""
    from sklearn.preprocessing import LabelEncoder

    heads = []
    for cc in head.calibrated_classifiers_:
        est = cc.estimator
        idx = LabelEncoder().fit(head.classes_).transform(est.classes_)
        a = np.array([c.a_ for c in cc.calibrators])
        b = np.array([c.b_ for c in cc.calibrators])
        coef = np.asarray(est.coef_, dtype=np.float32)
        heads.append((coef, np.asarray(est.intercept_), a, b, np.asarray(idx)))
    return heads


def _analyzer(tfidf) -> CharNgrams:
    if tfidf.analyzer != "char" or tfidf.preprocessor is not None or tfidf.strip_accents is not None:
        raise ValueError("only a plain character n-gram TF-IDF can be compiled")
    return CharNgrams(tfidf.ngram_range, tfidf.lowercase)


class FastLinear:
    """A fitted TF-IDF (+ term features) → calibrated linear SVM, as plain arrays.

    The vocabulary is kept as sorted n-gram codes (12 bytes a term instead of a ≈ 120-byte dict entry)
    and a text's n-grams are looked up all at once with numpy; the calibration folds' coefficients are
    stacked, features by row, so one gather and one product give every fold's decision values.
    """

    def __init__(self, analyzer, vocabulary, idf, taxonomy, heads, classes, prep=None):
        self.prep = prep
        self.analyzer = analyzer
        self.idf = idf
        self.taxonomy = taxonomy
        self.classes = [str(c) for c in classes]
        self.n_classes = len(self.classes)
        self.n_chars = len(idf)
        self._set_vocabulary(vocabulary)
        self._stack(heads)

    def _set_vocabulary(self, vocabulary: dict[str, int]) -> None:
        if self.analyzer.encodable:
            codes = np.fromiter((gram_code(g) for g in vocabulary), dtype=np.int64, count=len(vocabulary))
            order = np.argsort(codes)
            self.codes = codes[order]
            self.code_cols = np.fromiter(vocabulary.values(), dtype=np.int32, count=len(vocabulary))[order]
            self.vocabulary = None
        else:
            self.codes, self.code_cols, self.vocabulary = None, None, dict(vocabulary)

    def _stack(self, heads: list[tuple]) -> None:
        """heads: [(coef (k×d), intercept (k), sigmoid a (k), sigmoid b (k), class index (k))]."""
        # 8-bit coefficients with one scale per column (symmetric linear quantisation): an eighth of
        # float64's memory (the routing model's 32,805 n-grams × 75 columns: 2.5 MB). Probabilities move
        # by ~1e-3; the routing agreement, macro-F1 and best labels stay those of float32 (measured).
        weights = np.concatenate([h[0] for h in heads]).T.astype(np.float64)
        scale = np.abs(weights).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        self.weights = np.ascontiguousarray(np.rint(weights / scale), dtype=np.int8)
        self.weight_scale = scale
        self.intercept = np.concatenate([h[1] for h in heads]).astype(np.float64)
        self.sig_a = np.concatenate([h[2] for h in heads]).astype(np.float64)
        self.sig_b = np.concatenate([h[3] for h in heads]).astype(np.float64)
        self.head_slices = []
        start = 0
        for h in heads:
            self.head_slices.append((start, start + len(h[4]), np.asarray(h[4])))
            start += len(h[4])

    def vocabulary_dict(self) -> dict[str, int]:
        """The vocabulary as n-gram → column (decoded from the codes when they are in use)."""
        if self.codes is None:
            return dict(self.vocabulary)
        mask = (1 << _CHAR_BITS) - 1
        out = {}
        for code, col in zip(self.codes.tolist(), self.code_cols.tolist(), strict=True):
            chars = []
            while code:
                chars.append(chr((code & mask) - 1))
                code >>= _CHAR_BITS
            out["".join(chars)] = col
        return out

    def with_dict_lookup(self) -> "FastLinear":
        """The same model looking n-grams up in a dict (the way before the codes; for comparison)."""
        twin = copy.copy(self)
        twin.vocabulary, twin.codes, twin.code_cols = self.vocabulary_dict(), None, None
        return twin

    @classmethod
    def from_pipeline(cls, pipeline, *, prep) -> "FastLinear":
        """From build_pipeline's category pipeline: (chars: prep → TF-IDF) ∪ taxonomy → calibrated SVM."""
        parts = dict(pipeline.named_steps["features"].transformer_list)
        tfidf = parts["chars"].steps[-1][1]
        tax = parts["taxonomy"]
        return cls(
            _analyzer(tfidf),
            dict(tfidf.vocabulary_),
            np.asarray(tfidf.idf_),
            TermFeatures(tax.level1, tax.l1_terms, tax.weight),
            _calibrated_heads(pipeline.named_steps["clf"]),
            pipeline.classes_,
            prep=prep,
        )

    @classmethod
    def from_tfidf_pipeline(cls, pipeline) -> "FastLinear":
        """From a plain TF-IDF → calibrated linear SVM pipeline (the routing model)."""
        tfidf = pipeline.named_steps["tfidf"]
        return cls(
            _analyzer(tfidf),
            dict(tfidf.vocabulary_),
            np.asarray(tfidf.idf_),
            None,
            _calibrated_heads(pipeline.named_steps["clf"]),
            pipeline.classes_,
        )

    def _term_counts(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Vocabulary columns of the text's n-grams and how often each occurs."""
        if self.codes is None:
            vocab = self.vocabulary
            counts: dict[int, int] = {}
            for gram, n in Counter(self.analyzer(text)).items():
                j = vocab.get(gram)
                if j is not None:
                    counts[j] = n
            cols = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            return cols, np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        codes = self.analyzer.codes(text)
        if not len(self.codes) or not len(codes):
            return np.empty(0, dtype=np.int64), np.empty(0)
        pos = np.searchsorted(self.codes, codes)
        np.minimum(pos, len(self.codes) - 1, out=pos)
        pos = pos[self.codes[pos] == codes]
        cols, counts = np.unique(self.code_cols[pos], return_counts=True)
        return cols.astype(np.int64), counts.astype(np.float64)

    def _row(self, text: str, tax: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        cols, counts = self._term_counts(self.prep(text) if self.prep else text)
        vals = (1.0 + np.log(counts)) * self.idf[cols]
        norm = np.sqrt((vals * vals).sum())
        if norm > 0:
            vals = vals / norm
        if self.taxonomy is None:
            return cols, vals
        if tax is None:
            tax = self.taxonomy.dense(text)
        nz = np.nonzero(tax)[0]
        return np.concatenate([cols, nz + self.n_chars]), np.concatenate([vals, tax[nz]])

    def predict_proba(
        self, texts: list[str], level1_scores: list[dict[str, float]] | None = None
    ) -> np.ndarray:
        """Probabilities (columns in `classes` order); `level1_scores` (the taxonomy index's, same
        terms) spares a second term scan."""
        out = np.zeros((len(texts), self.n_classes))
        for i, text in enumerate(texts):
            tax = None
            if level1_scores is not None and self.taxonomy is not None:
                t = self.taxonomy
                tax = np.log1p(np.array([level1_scores[i].get(n, 0.0) for n in t.level1])) * t.weight
            cols, vals = self._row(text, tax)
            decision = (vals @ self.weights[cols]) * self.weight_scale + self.intercept
            sig = 1.0 / (1.0 + np.exp(self.sig_a * decision + self.sig_b))
            mean = out[i]
            for start, stop, idx in self.head_slices:
                p = np.zeros(self.n_classes)
                p[idx] = sig[start:stop]
                total = p.sum()
                mean += p / total if total > 0 else 1.0 / self.n_classes
            mean /= len(self.head_slices)
        return out


# What a model file may name: the models' own classes, numpy's array rebuilding and datetime. The
# unpickler refuses anything else (os.system, say) instead of calling it.
_MODEL_GLOBALS = {
    "services.grading.classifier": {"CategoryModel", "title_boost"},
    "services.grading.linear": {"CharNgrams", "FastLinear", "TermFeatures"},
    "services.grading.routing_model": {"RouteModel"},
    "datetime": {"datetime", "date", "timedelta", "timezone"},
    "numpy": {"dtype", "ndarray"},
    "numpy._core.numeric": {"_frombuffer"},
    "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
}


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if name in _MODEL_GLOBALS.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a model file may not name {module}.{name}")


def load_file(path, *, format_: int, kind: str | None = None) -> Any:
    """A model written by `save_file` (pickle, protocol 5: arrays are read without joblib or copies)."""
    try:
        with open(path, "rb") as f:
            data = _ModelUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as exc:
        raise ValueError(f"{path} is not a grading model file of this version ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != format_ or data.get("kind") != kind:
        raise ValueError(f"{path} is not a grading {kind or 'category'} model of format {format_}")
    return data["model"]


def save_file(path, model: Any, *, format_: int, kind: str | None = None) -> None:
    """Write a model atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump({"format": format_, "kind": kind, "model": model}, f, protocol=5)
    tmp.replace(path)
